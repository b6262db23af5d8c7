"""Drift statistics: mlwatch against a plain SciPy loop, Evidently and NannyML, same data.

Data: 20 numeric columns (5 each normal, lognormal, uniform, bimodal) and 5 categorical
(5, 10, 20, 35, 50 categories), reference and current of ``--rows`` rows each, with a
shift in a quarter of the columns. Written to Parquet first, so "whole command" figures
go from files to a result.

Figures (seconds, best of ``--repeat``):

- mlwatch full exact battery (KS, Wasserstein, PSI, JS, chi-square), in memory;
- mlwatch default auto-selected report, in memory;
- mlwatch from stored profiles (reference and window profiles from JSON);
- ``mlwatch drift ref.parquet cur.parquet`` as a subprocess (the whole command);
- profile update in the sidecar: µs per event for 25 features, batches of 500;
- baseline: a plain per-column SciPy loop over the same tests (``scipy.stats.ks_2samp``,
  ``wasserstein_distance``, ``np.histogram`` PSI, ``jensenshannon``, ``chi2_contingency``);
- Evidently's ``DataDriftPreset`` and NannyML's ``UnivariateDriftCalculator``, file to
  result, when they are installed (a benchmark environment only; never mlwatch deps):

    python -m venv /tmp/bench && /tmp/bench/bin/pip install evidently nannyml -e '.[sidecar]'
    /tmp/bench/bin/python bench/drift.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlwatch.stats.drift import battery, compare, compare_profiles
from mlwatch.stats.profile import DatasetProfile

NUMERIC = [
    f"{kind}_{i}" for kind in ("normal", "lognormal", "uniform", "bimodal") for i in range(5)
]
CATEGORICAL = [f"cat{k}" for k in (5, 10, 20, 35, 50)]


def make(rows: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i in range(5):
        s = shift if i == 0 else 0.0  # one shifted column of each kind
        cols[f"normal_{i}"] = rng.normal(s, 1, rows)
        cols[f"lognormal_{i}"] = rng.lognormal(s, 1, rows)
        cols[f"uniform_{i}"] = rng.uniform(s, 1 + s, rows)
        cols[f"bimodal_{i}"] = np.where(
            rng.random(rows) < 0.3 + s / 4, rng.normal(-2, 0.5, rows), rng.normal(2, 0.5, rows)
        )
    for k in (5, 10, 20, 35, 50):
        p = np.arange(1, k + 1, dtype=float)[::-1]
        if shift and k == 5:
            p = p[::-1]
        cols[f"cat{k}"] = rng.choice([f"c{j}" for j in range(k)], rows, p=p / p.sum())
    return pd.DataFrame(cols)


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def scipy_loop(ref: pd.DataFrame, cur: pd.DataFrame) -> int:
    """Every test of the battery, one column at a time, with SciPy and NumPy as documented."""
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    done = 0
    for c in NUMERIC:
        a, b = ref[c].to_numpy(), cur[c].to_numpy()
        stats.ks_2samp(a, b)
        stats.wasserstein_distance(a, b)
        edges = np.quantile(a, np.linspace(0, 1, 11))
        edges[0], edges[-1] = -np.inf, np.inf
        p = np.histogram(a, edges)[0] / a.size + 1e-4
        q = np.histogram(b, edges)[0] / b.size + 1e-4
        float(np.sum((q - p) * np.log(q / p)))
        jensenshannon(p, q, base=2)
        done += 4
    for c in CATEGORICAL:
        cats = sorted(set(ref[c].unique()) | set(cur[c].unique()))
        rc = ref[c].value_counts().reindex(cats, fill_value=0).to_numpy()
        cc = cur[c].value_counts().reindex(cats, fill_value=0).to_numpy()
        stats.chi2_contingency(np.vstack([rc, cc]), correction=False)
        p, q = rc / rc.sum() + 1e-4, cc / cc.sum() + 1e-4
        float(np.sum((q - p) * np.log(q / p)))
        jensenshannon(p, q, base=2)
        done += 3
    return done


EVIDENTLY = """
import sys, time, pandas as pd
t0 = time.perf_counter()
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
try:
    from evidently import Report
    from evidently.presets import DataDriftPreset
    Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
except ImportError:
    from evidently.report import Report
    from evidently.metric_preset import DataDriftPreset
    Report(metrics=[DataDriftPreset()]).run(current_data=cur, reference_data=ref)
print(time.perf_counter() - t0)
"""

NANNYML = """
import sys, time, pandas as pd
t0 = time.perf_counter()
import nannyml as nml
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
calc = nml.UnivariateDriftCalculator(
    column_names=list(ref.columns), chunk_number=1,
    continuous_methods=["kolmogorov_smirnov", "jensen_shannon"],
    categorical_methods=["chi2", "jensen_shannon"])
calc.fit(ref)
calc.calculate(cur)
print(time.perf_counter() - t0)
"""


def external(name: str, script: str, ref: Path, cur: Path, timeout: float) -> float | None:
    module = name.lower()
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    if probe.returncode != 0:
        print(f"  {name}: not installed in this environment (see the docstring)")
        return None
    try:
        out = subprocess.run(
            [sys.executable, "-c", script, str(ref), str(cur)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"  {name}: did not finish in {timeout:.0f} s")
        return None
    if out.returncode != 0:
        print(f"  {name}: failed: {out.stderr.strip().splitlines()[-1:]}")
        return None
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--external-timeout", type=float, default=900)
    ap.add_argument("--skip-external", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlwatch-bench-drift-"))
    ref, cur = make(args.rows, 1, 0.0), make(args.rows, 2, 0.1)
    ref_path, cur_path = work / "ref.parquet", work / "cur.parquet"
    ref.to_parquet(ref_path)
    cur.to_parquet(cur_path)
    print(
        f"{args.rows:,} rows per side, {len(NUMERIC)} numeric + {len(CATEGORICAL)} "
        f"categorical columns; best of {args.repeat}"
    )
    ref_cols = {c: ref[c].to_numpy() for c in ref.columns}
    cur_cols = {c: cur[c].to_numpy() for c in cur.columns}

    t_battery, _reports = best(lambda: battery(ref_cols, cur_cols), args.repeat)
    print(f"mlwatch full battery (ks, wasserstein, psi, js, chisquare): {t_battery:7.3f} s")
    t_auto, auto = best(lambda: compare(ref_cols, cur_cols), args.repeat)
    print(
        f"mlwatch default auto report:                             {t_auto:7.3f} s  "
        f"({sum(f.drifted for f in auto.features)} of {len(auto.features)} drifted)"
    )
    ref_prof = DatasetProfile.from_reference(ref_cols)
    cur_prof = ref_prof.new_window()
    cur_prof.update(cur_cols)
    ref_json, cur_json = ref_prof.to_json(), cur_prof.to_json()
    t_prof, _ = best(
        lambda: compare_profiles(
            DatasetProfile.from_json(ref_json), DatasetProfile.from_json(cur_json)
        ),
        max(args.repeat, 5),
    )
    print(f"mlwatch from stored profiles (incl. JSON decode):        {t_prof * 1000:7.1f} ms")
    t_cmd, _ = best(
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "mlwatch",
                "drift",
                str(ref_path),
                str(cur_path),
                "--format",
                "json",
            ],
            check=True,
            capture_output=True,
        ),
        args.repeat,
    )
    print(f"mlwatch drift ref.parquet cur.parquet (whole command):   {t_cmd:7.3f} s")

    names = NUMERIC + CATEGORICAL
    batch = {c: cur_cols[c][:500] for c in names}
    window = ref_prof.new_window()
    t_upd, _ = best(lambda: [window.update(batch) for _ in range(200)], args.repeat)
    per_event = t_upd / (200 * 500) * 1e6
    print(f"profile update, 25 features, batches of 500:             {per_event:7.2f} µs/event")

    t_loop, _ = best(lambda: scipy_loop(ref, cur), 1)
    print(
        f"baseline: plain per-column SciPy loop, same tests:       {t_loop:7.3f} s  "
        f"(mlwatch battery {t_loop / t_battery:.1f}x faster)"
    )
    if not args.skip_external:
        for name, script in (("Evidently", EVIDENTLY), ("NannyML", NANNYML)):
            t_ext = external(name, script, ref_path, cur_path, args.external_timeout)
            if t_ext is not None:
                print(
                    f"{name} (file to result):{' ' * (34 - len(name))}{t_ext:7.3f} s  "
                    f"(mlwatch drift command {t_ext / t_cmd:.0f}x faster)"
                )
    print(
        json.dumps(
            {
                "rows": args.rows,
                "battery_s": t_battery,
                "auto_s": t_auto,
                "profiles_ms": t_prof * 1000,
                "command_s": t_cmd,
                "update_us_per_event": per_event,
                "scipy_loop_s": t_loop,
            }
        )
    )


if __name__ == "__main__":
    main()
