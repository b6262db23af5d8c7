"""``mlwatch demo``: the whole path on one machine, in about a minute.

Trains a small scikit-learn classifier on the breast-cancer data set that ships
with scikit-learn, starts a sidecar on the embedded store, serves predictions
through ``@mlwatch.monitor``, injects a drift half-way (and a few failing
requests), sends delayed ground truth for part of the traffic, then runs the drift
and KPI jobs on the stored windows (before and after the shift) and prints what was
recorded, what the jobs found, and where to look. Validation traffic is the drift
reference (``reference.csv`` and ``mlwatch.yaml`` in the data directory).
"""

from __future__ import annotations

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

MODEL = "breast-cancer"
VERSION = "1"
DRIFTED = ("mean radius", "mean texture")
LABELLED_SHARE = 0.6
MARKER = ".mlwatch-demo"


class _Progress:
    """A bar redrawn in place on a terminal; a line per quarter when output is a log."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.tty = label, max(total, 1), sys.stderr.isatty()
        self.shown = -1

    def update(self, done: int) -> None:
        step = 100 * done // self.total if self.tty else 4 * done // self.total
        if step == self.shown:
            return
        self.shown = step
        filled = 30 * done // self.total
        line = f"  {self.label:<22} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}"
        end = "\n" if done >= self.total or not self.tty else ""
        sys.stderr.write(("\r" if self.tty else "") + line + end)
        sys.stderr.flush()


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
    proc = subprocess.Popen([sys.executable, "-m", "mlwatch", "sidecar", "--port", str(port),
                             "--data-dir", str(data_dir)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sidecar exited with {proc.returncode}; see {data_dir}/sidecar.log")
        try:
            if _get(f"http://127.0.0.1:{port}/readyz").get("ready"):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"sidecar did not become ready in 30 s; see {data_dir}/sidecar.log")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_demo(*, requests: int = 4000, data_dir: str = "mlwatch-demo", port: int = 0) -> int:
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import mlwatch
    from mlwatch.errors import MlwatchError
    from mlwatch.store import EmbeddedStore

    started = time.monotonic()
    root = Path(data_dir).resolve()
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():  # never wipe a directory the demo did not make
            raise MlwatchError(f"{root} is not empty and was not made by 'mlwatch demo'; "
                               "choose another --data-dir")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by 'mlwatch demo'; the next demo run replaces it\n")
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"

    print(f"mlwatch demo: {requests} predictions of a '{MODEL}' classifier")
    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.4,
                                                        random_state=0, stratify=data.target)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
    clf.fit(x_train, y_train)
    print(f"  trained LogisticRegression on {len(x_train)} rows, "
          f"{len(names)} features (held-out accuracy {clf.score(x_test, y_test):.3f})")

    import pandas as pd

    # the reference: validation traffic as the model saw it before the change (the same
    # held-out rows and measurement noise as the served requests, another draw)
    ref_rng = np.random.default_rng(11)
    reference = x_test[ref_rng.integers(len(x_test), size=requests // 2)] * ref_rng.normal(
        1.0, 0.02, size=(requests // 2, len(names)))
    pd.DataFrame(reference, columns=names).to_csv(root / "reference.csv", index=False)
    _write_config(root, names)
    sidecar = _start_sidecar(root, port)
    print(f"  sidecar ready at {url} (data in {root})")
    try:
        mlwatch.configure(sidecar_url=url, model=MODEL, version=VERSION, batch_size=200,
                          flush_interval_ms=100)

        @mlwatch.monitor(request_id="request_id", params={"C": 1.0, "model": "LogisticRegression"})
        def predict(features: dict[str, float], request_id: str) -> int:
            if features["mean area"] <= 0:
                raise ValueError("mean area must be positive")
            row = np.array([[features[n] for n in names]])
            return int(clf.predict(row)[0])

        rng = np.random.default_rng(7)
        truth: list[tuple[str, int]] = []
        failures = 0
        drift_at = requests // 2
        t_start = time.time()
        t_shift = t_start
        serving = _Progress("serving predictions", requests)
        for i in range(requests):
            j = int(rng.integers(len(x_test)))
            row = x_test[j] * rng.normal(1.0, 0.02, size=len(names))
            features = dict(zip(names, row.tolist(), strict=True))
            if i == drift_at:
                t_shift = time.time()
            if i >= drift_at:  # the population changes: bigger, rougher cells
                for name in DRIFTED:
                    features[name] *= 1.35
            if i % 97 == 0:
                features["mean area"] = -1.0  # a malformed request the model rejects
            request_id = f"req-{i:06d}"
            try:
                predict(features, request_id=request_id)
            except ValueError:
                failures += 1
            if rng.random() < LABELLED_SHARE:
                truth.append((request_id, int(y_test[j])))
            serving.update(i + 1)
        mlwatch.flush()
        t_end = time.time() + 0.001
        print(f"  injected drift on {', '.join(DRIFTED)} from request {drift_at}; "
              f"{failures} requests failed on purpose")

        labelling = _Progress("sending ground truth", len(truth))
        for k, (request_id, label) in enumerate(truth):  # ground truth, arriving later
            mlwatch.log_feedback(request_id, label, model=MODEL)
            labelling.update(k + 1)
        mlwatch.flush()

        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = _get(f"{url}/v1/models/{MODEL}/status")
            if status["events_stored"] >= requests and status["feedback_stored"] >= len(truth):
                break
            time.sleep(0.2)
        store = EmbeddedStore(root / "store.db")  # WAL: safe to read beside the sidecar
        latencies = [e["latency_ms"] for e in store.events(MODEL, limit=requests)]
        store.close()
        metrics = _get(f"{url}/metrics")
        lines = [ln for ln in metrics.splitlines()
                 if ln.startswith(("mlwatch_predictions_total", "mlwatch_predicted_class_total"))]
        print("\nWhat was recorded")
        print(f"  events stored      {status['events_stored']} (sent {requests}, "
              f"{failures} with status=error)")
        print(f"  feedback stored    {status['feedback_stored']} labels "
              f"({LABELLED_SHARE:.0%} of requests)")
        print(f"  latency            p50 {_quantile(latencies, 0.5):.3f} ms, "
              f"p99 {_quantile(latencies, 0.99):.3f} ms")
        versions = status.get("versions") or [{}]
        print(f"  model version      {MODEL}:{VERSION}, code {versions[0].get('code_version')}, "
              f"params {versions[0].get('params')}")
        print("  metrics:")
        for line in lines:
            print(f"    {line}")
        _report_jobs(root, names, (t_start, t_shift, t_end))
        print("\nWhere to look")
        print(f"  embedded store     {root / 'store.db'} (SQLite; table events, feedback, models)")
        print(f"  spool              {root / 'spool'}")
        print(f"  events API         curl '{url}/v1/models/{MODEL}/events?limit=5'")
        print(f"  drift and KPIs     curl '{url}/v1/models/{MODEL}/status' (latest results);"
              f" on a schedule: mlwatch scheduler --config {root / 'mlwatch.yaml'}")
        print(f"  Prometheus scrape  - job_name: mlwatch\n"
              f"                       static_configs: [{{targets: ['127.0.0.1:{port}']}}]")
        ok = status["events_stored"] >= requests and status["feedback_stored"] >= len(truth)
        print(f"\nDone in {time.monotonic() - started:.1f} s"
              + ("" if ok else " — WARNING: not every record reached the store"))
        return 0 if ok else 1
    finally:
        mlwatch.shutdown()
        sidecar.send_signal(signal.SIGTERM)
        try:
            sidecar.wait(15)
        except subprocess.TimeoutExpired:
            sidecar.kill()


def _write_config(root: Path, names: list[str]) -> None:
    """The demo model's spec: features, the reference file, the jobs' options."""
    import json as _json

    spec = {"models": [{"name": MODEL, "version": VERSION, "task": "classification",
                        "features": names, "reference": str(root / "reference.csv"),
                        "schedule": "1m", "window": "10m", "kpi": {"min_samples": 50},
                        # two of thirty features moving is a change worth an alert here
                        "drift": {"correction": "bh", "drift_share": 0.05}}],
            "data_dir": str(root), "scheduler": False}
    (root / "mlwatch.yaml").write_text(_json.dumps(spec, indent=2) + "\n")  # JSON is YAML


def _report_jobs(root: Path, names: list[str], times: tuple[float, float, float]) -> None:
    """Run the drift and KPI jobs on the windows before and after the shift, and print them."""
    from prometheus_client import CollectorRegistry

    from mlwatch.jobs import Jobs
    from mlwatch.settings import load_config
    from mlwatch.store import EmbeddedStore

    config = load_config(root / "mlwatch.yaml", env={})
    store = EmbeddedStore(root / "store.db")
    jobs = Jobs(config, store, CollectorRegistry())
    t_start, t_shift, t_end = (int(t * 1_000_000) for t in times)
    print("\nDrift against the reference (mlwatch.jobs, the scheduler's code)")
    for label, window in (("before the shift", (t_start, t_shift)),
                          ("after the shift ", (t_shift, t_end))):
        report = jobs.drift(MODEL, window=window).get(VERSION)
        if report is None:
            print(f"  {label}: no events")
            continue
        drifted = [f for f in report["features"] if f["drifted"]]
        shown = ", ".join(f"{f['name']} ({f['method']} {f['score']:.3f})" for f in drifted[:6])
        print(f"  {label}  {report['rows']} rows, {len(drifted)} of {len(report['features'])} "
              f"features drifted (share {report['drift_share']:.2f}), dataset drift "
              f"{'YES' if report['dataset_drift'] else 'no'}" + (f": {shown}" if shown else ""))
    kpis = jobs.kpis(MODEL, window=(t_start, t_end)).get(VERSION)
    print("KPIs from the delayed labels")
    if kpis is None:
        print("  not enough labelled predictions")
    else:
        for name in ("accuracy", "f1_macro", "precision_macro", "recall_macro"):
            k = kpis["kpis"].get(name)
            if k and k.get("value") is not None:
                print(f"  {name:<17}  {k['value']:.3f}  (95% CI {k['lower']:.3f}-{k['upper']:.3f},"
                      f" n={k['n']})")
    store.close()
