"""``mlwatch drift``: files in, the JSON of docs/contracts.md or a table out, exit codes for CI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlwatch.cli import main


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(7)
    n = 5000
    ref = pd.DataFrame(
        {"x": rng.normal(0, 1, n), "y": rng.uniform(0, 1, n), "c": rng.choice(["a", "b", "c"], n)}
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.5, 1, n),
            "y": rng.uniform(0, 1, n),
            "c": rng.choice(["a", "b", "c"], n, p=[0.6, 0.2, 0.2]),
        }
    )
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_parquet(tmp_path / "cur.parquet")
    ref.to_parquet(tmp_path / "same.parquet")
    return tmp_path / "ref.csv", tmp_path / "cur.parquet", tmp_path / "same.parquet"


def test_json_output_follows_the_contract(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur, _ = files
    assert main(["drift", str(ref), str(cur), "--format", "json", "--method", "ks"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"features", "drift_share", "dataset_drift"}
    by_name = {f["name"]: f for f in report["features"]}
    for f in report["features"]:
        assert set(f) >= {"name", "type", "method", "score", "p_value", "threshold", "drifted"}
    assert by_name["x"]["method"] == "ks" and by_name["y"]["method"] == "ks"
    assert by_name["c"]["type"] == "categorical" and by_name["c"]["method"] != "ks"
    expected = stats.ks_2samp(pd.read_csv(ref)["x"], pd.read_parquet(cur)["x"])
    assert by_name["x"]["score"] == pytest.approx(expected.statistic, abs=1e-12)
    assert by_name["x"]["p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert by_name["x"]["drifted"] and not by_name["y"]["drifted"] and by_name["c"]["drifted"]
    assert report["drift_share"] == pytest.approx(2 / 3) and report["dataset_drift"]


def test_exit_code_for_ci(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur, same = files
    assert main(["drift", str(ref), str(cur), "--fail-on-drift"]) == 1
    assert "dataset drift: YES" in capsys.readouterr().out
    assert main(["drift", str(ref), str(same), "--fail-on-drift"]) == 0
    table = capsys.readouterr().out
    assert "0 of 3 features drifted" in table and table.splitlines()[0].split()[:3] == [
        "feature",
        "type",
        "method",
    ]


def test_bad_input_is_exit_2_with_a_clear_message(
    files: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur, _ = files
    assert main(["drift", str(ref), str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    assert main(["drift", str(ref), str(cur), "--columns", "x,zz"]) == 2
    assert "--columns: not in both files: zz" in capsys.readouterr().err
    assert main(["drift", str(ref), str(cur), "--method", "nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("x,y,c\n")
    assert main(["drift", str(ref), str(empty)]) == 2
    assert "empty.csv: no rows" in capsys.readouterr().err
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    assert main(["drift", str(ref), str(broken)]) == 2
    assert "cannot read as Parquet" in capsys.readouterr().err


def test_progress_is_shown_when_asked(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur, _ = files
    assert main(["drift", str(ref), str(cur), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "reading ref.csv" in err and "100.0%" in err and "reading cur.parquet" in err
    assert main(["drift", str(ref), str(cur)]) == 0  # not a terminal: quiet
    assert capsys.readouterr().err == ""


def test_columns_on_one_side_and_nested_columns_are_reported_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"x": [1.0, 2.0, 3.0] * 50, "tags": [[1], [2], [3]] * 50, "old": [1, 2, 3] * 50}),
        tmp_path / "a.parquet",
    )
    pq.write_table(
        pa.table({"x": [1.0, 2.0, 3.5] * 50, "new": ["u", "v", "w"] * 50}), tmp_path / "b.parquet"
    )
    assert (
        main(
            ["drift", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"), "--format", "json"]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert [f["name"] for f in json.loads(captured.out)["features"]] == ["x"]
    assert "nested columns (lists, structs, maps) are not compared: tags" in captured.err
    assert "only in the reference file, not compared: old" in captured.err
    assert "only in the current file, not compared: new" in captured.err


def test_a_column_that_lost_its_values_is_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pd.DataFrame({"x": np.arange(100.0), "y": np.arange(100.0)}).to_csv(
        tmp_path / "r.csv", index=False
    )
    pd.DataFrame({"x": ["oops"] * 100, "y": np.arange(100.0)}).to_csv(
        tmp_path / "c.csv", index=False
    )
    assert (
        main(
            [
                "drift",
                str(tmp_path / "r.csv"),
                str(tmp_path / "c.csv"),
                "--format",
                "json",
                "--numeric",
                "x",
            ]
        )
        == 0
    )
    x = json.loads(capsys.readouterr().out)["features"][0]
    assert x["name"] == "x" and x["drifted"] and x["quality"]["current"]["invalid"] == 100


@pytest.fixture
def renamed(tmp_path: Path) -> tuple[Path, Path]:
    """``income`` renamed ``incme`` in the current file; ``age`` shifted and with gaps;
    a plan the reference never saw."""
    rng = np.random.default_rng(3)
    n = 2000
    ref = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.normal(50, 10, n),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    cur = ref.rename(columns={"income": "incme"})
    cur["age"] = cur["age"] + 5
    cur.loc[:20, "age"] = np.nan
    cur.loc[30:223, "plan"] = "enterprise"
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_csv(tmp_path / "cur.csv", index=False)
    return tmp_path / "ref.csv", tmp_path / "cur.csv"


def test_a_binary_file_is_refused_naming_it(
    files: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, _, same = files
    png = tmp_path / "img.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256)))
    assert main(["drift", str(ref), str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mlwatch drift: {png}: not a CSV or Parquet file "
        "(binary data: a PNG image; expected CSV text or Parquet)"
    )
    renamed = tmp_path / "refp.csv"
    renamed.write_bytes(same.read_bytes())  # Parquet under a CSV name: read as Parquet
    assert main(["drift", str(ref), str(renamed)]) == 0
    assert "0 of 3 features drifted" in capsys.readouterr().out


def test_strict_columns_fails_a_renamed_column(
    renamed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur = renamed
    assert main(["drift", str(ref), str(cur), "--strict-columns", "--fail-on-drift"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mlwatch drift: --strict-columns: income only in the reference file {ref}; "
        f"incme only in the current file {cur}"
    )
    assert main(["drift", str(ref), str(ref), "--strict-columns", "--fail-on-drift"]) == 0


def test_columns_in_one_file_are_shown_in_the_table_and_the_json(
    renamed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur = renamed
    assert main(["drift", str(ref), str(cur)]) == 0
    table = capsys.readouterr().out
    assert f"not compared, only in the reference file ({ref}): income" in table
    assert f"not compared, only in the current file ({cur}): incme" in table
    assert main(["drift", str(ref), str(cur), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["not_compared"] == {"reference_only": ["income"], "current_only": ["incme"]}
    assert report["files"] == {"reference": str(ref), "current": str(cur)}
    assert main(["drift", str(ref), str(ref), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["not_compared"] == {"reference_only": [], "current_only": []}


def test_the_table_shows_missing_values_and_unseen_categories(
    renamed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur = renamed
    assert main(["drift", str(ref), str(cur)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  age: current file: 21 of 2000 values missing (1.1%)" in lines
    assert "  plan: current file: 194 values in categories the reference never had: enterprise" in (
        lines
    )
    assert lines[-1].startswith("2 of 2 features drifted")


def test_the_table_shows_non_finite_and_unusable_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pd.DataFrame({"x": np.arange(100.0), "y": np.arange(100.0)}).to_csv(
        tmp_path / "r.csv", index=False
    )
    y = np.arange(100.0)
    y[:3] = np.inf
    pd.DataFrame({"x": ["oops"] * 100, "y": y}).to_csv(tmp_path / "c.csv", index=False)
    args = ["drift", str(tmp_path / "r.csv"), str(tmp_path / "c.csv"), "--numeric", "x"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  x: current file: 100 of 100 values not numbers (100.0%); no usable values" in lines
    assert "  y: current file: 3 of 100 values infinite (3.0%)" in lines


def test_a_forced_method_that_does_not_apply_is_noted(
    files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur, _ = files
    assert main(["drift", str(ref), str(cur), "--method", "ks", "--format", "json"]) == 0
    by_name = {f["name"]: f for f in json.loads(capsys.readouterr().out)["features"]}
    used = by_name["c"]["method"]
    assert by_name["c"]["method_note"] == (
        f"--method ks does not apply to categorical columns; used {used}"
    )
    assert by_name["x"]["method_note"] is None and by_name["x"]["method"] == "ks"
    assert main(["drift", str(ref), str(cur), "--method", "ks"]) == 0
    assert f"  c: --method ks does not apply to categorical columns; used {used}" in (
        capsys.readouterr().out.splitlines()
    )
    assert main(["drift", str(ref), str(cur), "--format", "json"]) == 0
    features = json.loads(capsys.readouterr().out)["features"]
    assert [f["method_note"] for f in features] == [None, None, None]


def test_column_errors_name_the_files(
    files: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cur, _ = files
    assert main(["drift", str(ref), str(cur), "--columns", "x,zz"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mlwatch drift: --columns: not in both files: zz (in neither {ref} nor {cur})"
    )
    pd.DataFrame({"x": [1.0, 2.0], "w": [1.0, 2.0]}).to_csv(tmp_path / "w.csv", index=False)
    assert main(["drift", str(ref), str(tmp_path / "w.csv"), "--columns", "x,w"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mlwatch drift: --columns: not in both files: w (not in {ref})"
    )
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    assert main(["drift", str(ref), str(other)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mlwatch drift: {ref} and {other} have no column in common "
        f"({ref.name}: x, y, c; {other.name}: a, b)"
    )
