"""``mlwatch report`` on two Parquet files, next to ``mlwatch drift`` and Evidently.

Data: :func:`bench.drift.make` (20 numeric columns of four shapes, 5 categorical with 5
to 50 categories, a known shift in one column of each numeric shape), ``--rows`` rows
per side, written to Parquet first. Figures (seconds, best of ``--repeat``, each a
subprocess from files to output, in the same run):

- ``mlwatch drift ref.parquet cur.parquet --format json``;
- ``mlwatch report ref.parquet cur.parquet -o report.html``, and its ratio to drift;
- Evidently's ``Report([DataDriftPreset()])`` saved as HTML, when ``--evidently-python``
  names a Python that has it (a throwaway venv; never an mlwatch dependency)::

    python -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install evidently 'pandas<3' pyarrow
    python bench/report.py --rows 1000000 --evidently-python /tmp/evvenv/bin/python
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.drift import make

ROOT = Path(__file__).resolve().parent.parent
EVIDENTLY = """
import sys, pandas as pd
try:
    from evidently import Report
    from evidently.presets import DataDriftPreset
    report = Report([DataDriftPreset()])
    snapshot = report.run(reference_data=pd.read_parquet(sys.argv[1]),
                          current_data=pd.read_parquet(sys.argv[2]))
    snapshot.save_html(sys.argv[3])
except ImportError:  # Evidently before 0.7
    from evidently.report import Report
    from evidently.metric_preset import DataDriftPreset
    report = Report(metrics=[DataDriftPreset()])
    report.run(reference_data=pd.read_parquet(sys.argv[1]),
               current_data=pd.read_parquet(sys.argv[2]))
    report.save_html(sys.argv[3])
"""


def timed(cmd: list[str], repeat: int) -> float:
    """Best wall time of ``repeat`` runs of a command (which must succeed)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evidently-python", help="a Python with evidently installed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ref, cur = Path(tmp) / "ref.parquet", Path(tmp) / "cur.parquet"
        make(args.rows, 1, 0.0).to_parquet(ref)
        make(args.rows, 2, 0.3).to_parquet(cur)
        html = Path(tmp) / "report.html"
        mlwatch = [sys.executable, "-m", "mlwatch"]
        drift = timed([*mlwatch, "drift", str(ref), str(cur), "--format", "json"], args.repeat)
        report = timed([*mlwatch, "report", str(ref), str(cur), "-o", str(html)], args.repeat)
        print(f"{args.rows:,} rows x 25 columns per side, best of {args.repeat}")
        print(f"mlwatch drift (JSON)     {drift:7.2f} s")
        print(
            f"mlwatch report (HTML)    {report:7.2f} s   {report / drift:.2f}x drift, "
            f"{html.stat().st_size / 1e6:.2f} MB"
        )
        if args.evidently_python:
            ev_html = Path(tmp) / "evidently.html"
            cmd = [args.evidently_python, "-c", EVIDENTLY, str(ref), str(cur), str(ev_html)]
            try:
                evidently = timed(cmd, 1)
            except subprocess.CalledProcessError:
                print("Evidently: failed (its traceback is above)")
                return
            print(
                f"Evidently DataDrift HTML {evidently:7.2f} s   {evidently / report:.2f}x "
                f"mlwatch report, {ev_html.stat().st_size / 1e6:.2f} MB (one run)"
            )
        else:
            print("Evidently: not run (--evidently-python not given)")


if __name__ == "__main__":
    main()
