"""``mlwatch demo``: the whole path on one machine, in about a minute.

Trains a small classifier, logs it to a local MLflow store and serves it by its alias
(:mod:`.demo_mlflow`), starts a sidecar on the embedded store, serves predictions
through ``@mlwatch.monitor`` with a drift injected half-way and a few failing requests
(:mod:`.demo_traffic`), sends delayed ground truth, then runs the drift and KPI jobs on the
stored windows before and after the shift and prints what was recorded, what the jobs
found, and where to look. Validation traffic is the drift reference (``reference.csv`` and
``mlwatch.yaml`` in the data directory).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from mlwatch.cli import demo_mlflow, demo_pipeline
from mlwatch.cli.demo_traffic import LABELLED_SHARE, MODEL, VERSION, Traffic
from mlwatch.errors import MlwatchError

MARKER = ".mlwatch-demo"
#: the monitoring metrics the demo shows of the many it writes to MLflow
HEADLINE = ("drift.share", "drift.dataset_drift", "kpi.accuracy", "kpi.f1_macro")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="end-to-end demo on the embedded store")
    p.add_argument("--requests", type=int, default=4000, help="predictions to serve (default 4000)")
    p.add_argument("--data-dir", default="mlwatch-demo", help="where the demo keeps its data")
    p.add_argument("--port", type=int, default=0, help="sidecar port (default: a free one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_demo(requests=args.requests, data_dir=args.data_dir, port=args.port)


def _get(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_sidecar(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    log = open(data_dir / "sidecar.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlwatch",
            "sidecar",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MlwatchError(
                f"the sidecar exited with {proc.returncode}; see {data_dir}/sidecar.log"
            )
        try:
            if _get(f"http://127.0.0.1:{port}/readyz").get("ready"):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise MlwatchError(f"the sidecar did not become ready in 30 s; see {data_dir}/sidecar.log")


def _stop_sidecar(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _prepare(data_dir: str) -> Path:
    """An empty data directory; one the demo did not make is never wiped."""
    root = Path(data_dir).resolve()
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise MlwatchError(
                f"{root} is not empty and was not made by 'mlwatch demo'; choose another --data-dir"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by 'mlwatch demo'; the next demo run replaces it\n")
    return root


def _write_config(
    root: Path, names: list[str], pipeline_url: str, logged: demo_mlflow.Logged
) -> None:
    """The demo model's spec: its MLflow alias, features, the reference file logged with its
    training run, the jobs' options, and the retraining policy with its target (the demo's
    stand-in pipeline)."""
    target, policy = demo_pipeline.target_and_policy(root, pipeline_url, drift_share=0.05)
    spec = {
        "mlflow_tracking_uri": logged.tracking_uri,
        "models": [
            {
                "name": MODEL,
                "version": logged.uri,
                "task": "classification",
                "features": names,
                "reference": {"mlflow": logged.uri, "artifact": demo_mlflow.REFERENCE_ARTIFACT},
                "schedule": "1m",
                # the last hour: `mlwatch scheduler --once` right after the demo sees it all
                "window": "1h",
                "sliding": True,
                "kpi": {"min_samples": 50},
                # two of thirty features moving is a change worth an alert here
                "drift": {"correction": "bh", "drift_share": 0.05},
                "retrain": policy,
            }
        ],
        "targets": [target],
        "data_dir": str(root),
        # a sidecar started again on this config runs the jobs and shows their results
        "scheduler": True,
    }
    (root / "mlwatch.yaml").write_text(json.dumps(spec, indent=2) + "\n")  # JSON is YAML


def run_demo(*, requests: int = 4000, data_dir: str = "mlwatch-demo", port: int = 0) -> int:
    from dataclasses import replace

    import mlwatch
    from mlwatch.cli import demo_traffic

    started = time.monotonic()
    root = _prepare(data_dir)
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"mlwatch demo: {requests} predictions of a '{MODEL}' classifier")
    model = demo_traffic.train()
    print(
        f"  trained LogisticRegression on {model.n_train} rows, {len(model.names)} features "
        f"(held-out accuracy {model.accuracy:.3f})"
    )
    demo_traffic.write_reference(model, root / demo_mlflow.REFERENCE_ARTIFACT, requests // 2)
    logged = demo_mlflow.log_training(root, model, MODEL, demo_traffic.PARAMS)
    print(
        f"  logged the training run to MLflow ({logged.tracking_uri}) and registered it as "
        f"{MODEL} version {logged.version}, alias {demo_mlflow.ALIAS}"
    )
    pipeline = demo_pipeline.Pipeline(demo_pipeline.new_secret(root))
    _write_config(root, model.names, pipeline.url, logged)
    sidecar = _start_sidecar(root, port)
    print(f"  sidecar ready on port {port} (data in {root}); it stops when the demo ends")
    try:
        mlwatch.configure(
            sidecar_url=url,
            model=MODEL,
            version=logged.uri,
            mlflow_tracking_uri=logged.tracking_uri,
            mlflow_wait_s=10.0,  # the worker's first wait for MLflow, not a request's
            batch_size=200,
            flush_interval_ms=100,
        )
        served = replace(model, clf=demo_mlflow.load_served(logged))
        print(f"  serving {logged.uri}, loaded back from MLflow")
        traffic = demo_traffic.serve(served, requests)
        print(
            f"  injected drift on {', '.join(demo_traffic.DRIFTED)} from request "
            f"{traffic.drift_at}; {traffic.failures} requests failed on purpose"
        )
        demo_traffic.send_truth(traffic)
        status = _wait_stored(url, requests, len(traffic.truth))
        _print_recorded(root, url, status, requests, traffic)
        _report_jobs(root, traffic.times, pipeline)
        _print_mlflow(logged)
        report = _write_report(root)
        _print_where(root, logged, report)
        ok = status["events_stored"] >= requests and status["feedback_stored"] >= len(traffic.truth)
        print(
            f"\nDone in {time.monotonic() - started:.1f} s"
            + ("" if ok else " — WARNING: not every record reached the store")
        )
        return 0 if ok else 1
    finally:
        mlwatch.shutdown()
        _stop_sidecar(sidecar)
        pipeline.close()


def _wait_stored(url: str, events: int, labels: int) -> dict[str, Any]:
    """The model's status once every event and label is stored (or after a minute)."""
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _get(f"{url}/v1/models/{MODEL}/status")
        if status["events_stored"] >= events and status["feedback_stored"] >= labels:
            break
        time.sleep(0.2)
    return status


def _print_recorded(
    root: Path, url: str, status: dict[str, Any], requests: int, traffic: Traffic
) -> None:
    from mlwatch.store import EmbeddedStore

    store = EmbeddedStore(root / "store.db")  # WAL: safe to read beside the sidecar
    latencies = [e["latency_ms"] for e in store.events(MODEL, limit=requests)]
    store.close()
    metrics = _get(f"{url}/metrics")
    lines = [
        ln
        for ln in metrics.splitlines()
        if ln.startswith(("mlwatch_predictions_total", "mlwatch_predicted_class_total"))
    ]
    print("\nWhat was recorded")
    print(
        f"  events stored      {status['events_stored']} (sent {requests}, "
        f"{traffic.failures} with status=error)"
    )
    print(
        f"  feedback stored    {status['feedback_stored']} labels "
        f"({LABELLED_SHARE:.0%} of requests)"
    )
    print(
        f"  latency            p50 {_quantile(latencies, 0.5):.3f} ms, "
        f"p99 {_quantile(latencies, 0.99):.3f} ms"
    )
    versions = status.get("versions") or [{}]
    params = {k: v for k, v in (versions[0].get("params") or {}).items() if k != "mlflow"}
    print(
        f"  model version      {MODEL}:{versions[0].get('version')} (run "
        f"{versions[0].get('run_id')}), code {versions[0].get('code_version')}, params {params}"
    )
    print("  metrics:")
    for line in lines:
        print(f"    {line}")


def _report_jobs(
    root: Path, times: tuple[float, float, float], pipeline: demo_pipeline.Pipeline
) -> None:
    """Run the drift and KPI jobs on the windows before and after the shift, and print them;
    the drift after the shift triggers retraining, sent to the stand-in pipeline."""
    from dataclasses import replace

    from prometheus_client import CollectorRegistry

    from mlwatch.alerting.retrain import Retrainer, targets_of
    from mlwatch.scheduler import Jobs
    from mlwatch.settings import load_config
    from mlwatch.store import EmbeddedStore

    config = load_config(root / "mlwatch.yaml", env={})
    [spec] = config.models
    assert spec.retrain is not None
    live = replace(spec, retrain=replace(spec.retrain, dry_run=False))  # the pipeline runs now
    config = replace(config, models=(live,))
    store = EmbeddedStore(root / "store.db")
    registry = CollectorRegistry()
    jobs = Jobs(config, store, registry)
    jobs.retrainer = Retrainer(config, store, registry, targets=targets_of(config))
    t_start, t_shift, t_end = (int(t * 1_000_000) for t in times)
    print("\nDrift against the reference (mlwatch.scheduler, the scheduler's code)")
    for label, window in (
        ("before the shift", (t_start, t_shift)),
        ("after the shift ", (t_shift, t_end)),
    ):
        report = jobs.drift(MODEL, window=window).get(VERSION)
        if report is None:
            print(f"  {label}: no events")
            continue
        drifted = [f for f in report["features"] if f["drifted"]]
        shown = ", ".join(f"{f['name']} ({f['method']} {f['score']:.3f})" for f in drifted[:6])
        print(
            f"  {label}  {report['rows']} rows, {len(drifted)} of {len(report['features'])} "
            f"features drifted (share {report['drift_share']:.2f}), dataset drift "
            f"{'YES' if report['dataset_drift'] else 'no'}" + (f": {shown}" if shown else "")
        )
    kpis = jobs.kpis(MODEL, window=(t_start, t_end)).get(VERSION)
    print("KPIs from the delayed labels")
    if kpis is None:
        print("  not enough labelled predictions")
    else:
        for name in ("accuracy", "f1_macro", "precision_macro", "recall_macro"):
            k = kpis["kpis"].get(name)
            if k and k.get("value") is not None:
                print(
                    f"  {name:<17}  {k['value']:.3f}  (95% CI {k['lower']:.3f}-{k['upper']:.3f},"
                    f" n={k['n']})"
                )
    jobs.retrainer.send_due()
    demo_pipeline.print_run(pipeline, store.triggers(MODEL))
    jobs.close()
    store.close()


def _print_mlflow(logged: demo_mlflow.Logged) -> None:
    """The monitoring results the jobs wrote next to the model in MLflow."""
    print("Monitoring results in MLflow (next to the training run)")
    runs = demo_mlflow.monitoring_runs(logged)
    if not runs:
        print("  none written")
    for experiment, name, metrics in runs:
        shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in HEADLINE if k in metrics)
        print(f"  run '{name}' in experiment '{experiment}': {len(metrics)} metrics")
        print(f"    latest         {shown}")


def _write_report(root: Path) -> str:
    """``mlwatch report --model`` on the demo's store: the page a person opens."""
    from mlwatch.cli import build_parser, report

    path = root / "report.html"
    config, data = str(root / "mlwatch.yaml"), str(root)
    args = build_parser().parse_args(
        ["report", "--model", MODEL, "--config", config, "--data-dir", data, "-o", str(path)]
    )
    code = report.run(args, err=io.StringIO())
    return str(path) if code == 0 and path.exists() else "not written (see mlwatch report)"


def _print_where(root: Path, logged: demo_mlflow.Logged, report: str) -> None:
    """What stays after the demo: its data, its HTML report, and the commands that serve
    it again (the demo's own sidecar has stopped, so no address of it is printed)."""
    config = root / "mlwatch.yaml"
    print("\nWhere to look (the demo's sidecar has stopped; its data stays)")
    print(f"  HTML report        {report} (open it in a browser)")
    print(
        f"  embedded store     {root / 'store.db'} (SQLite; tables events, feedback, models,"
        " profiles, results)"
    )
    print(f"  spool              {root / 'spool'}")
    print(f"  MLflow             {logged.tracking_uri} (training run {logged.run_id})")
    print(
        f"    browse it        MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri "
        f"{logged.tracking_uri}  (the full mlflow package)"
    )
    print(f"  look at it         mlwatch status {MODEL} --data-dir {root}")
    print(f"                     mlwatch report --model {MODEL} --data-dir {root} -o report.html")
    print(f"                     mlwatch events {MODEL} --data-dir {root} --limit 5")
    print(f"  drift and KPIs     mlwatch scheduler --config {config} --once")
    print(f"  serve it again     mlwatch sidecar --config {config} --port 8765")
    print(f"    then             curl 'http://127.0.0.1:8765/v1/models/{MODEL}/events?limit=5'")
    print("                     curl 'http://127.0.0.1:8765/metrics'  (counts from the store)")
    print(
        "    and scrape       - job_name: mlwatch\n"
        "                       static_configs: [{targets: ['127.0.0.1:8765']}]"
    )
