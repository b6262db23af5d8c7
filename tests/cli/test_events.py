"""``mlwatch events MODEL``: stored events, newest first, as a table, JSON or NDJSON, in a
window given as a duration back from now or RFC 3339, from a data directory or a sidecar."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlwatch.cli import main
from mlwatch.cli.events import point_in_time
from mlwatch.errors import MlwatchError
from mlwatch.store import EmbeddedStore
from mlwatch.store.payloads import EVENTS
from mlwatch.times import format_ts
from mlwatch.wire import validate_event
from tests.helpers import event, wait_until

TOKEN = "events-token-123456"
NOW_US = 1_800_000_000_000_000


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("MLWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def recent_and_old() -> list[dict[str, Any]]:
    """Three events of the last minutes and one of 2020."""
    now_ns = time.time_ns()
    evs = [
        event(i, ts=format_ts(now_ns - (3 - i) * 60_000_000_000), prediction={"p": [0.25, 0.75]})
        for i in range(3)
    ]
    evs[1] |= {"status": "error", "error": "ValueError", "prediction": None}
    return [*evs, event(9, ts="2020-01-01T00:00:00Z", version="0")]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    store = EmbeddedStore(tmp_path / "data" / "store.db", retention_days=0)
    store.insert_events([validate_event(e) for e in recent_and_old()])
    store.close()
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["events", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_table_newest_first(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "iris", "--data-dir", str(data_dir))
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "time",
        "version",
        "status",
        "latency",
        "ms",
        "request",
        "id",
        "prediction",
    ]
    rows = [line.split() for line in lines[2:6]]
    assert [row[-2] for row in rows] == ["r2", "r1", "r0", "r9"]
    assert [row[1] for row in rows] == ["1", "1", "1", "0"]
    assert rows[1][2:4] == ["error:", "ValueError"] and rows[0][-1] == '{"p":[0.25,0.75]}'
    assert lines[-1] == "4 events, newest first"
    assert rows[3][0] == "2020-01-01T00:00:00Z"


def test_limit_and_window(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "iris", "--data-dir", str(data_dir), "--limit", "2")
    assert (
        code == 0
        and out.splitlines()[-1] == "2 events, newest first (the --limit; there may be more)"
    )
    code, out, _ = run(
        capsys, "iris", "--data-dir", str(data_dir), "--since", "1h", "--format", "json"
    )
    page = json.loads(out)
    assert page["count"] == 3 and [e["request_id"] for e in page["events"]] == ["r2", "r1", "r0"]
    code, out, _ = run(
        capsys, "iris", "--data-dir", str(data_dir), "--until", "2021-01-01T00:00:00Z"
    )
    assert "2020-01-01T00:00:00Z" in out and out.splitlines()[-1] == "1 event, newest first"
    code, out, _ = run(
        capsys, "iris", "--data-dir", str(data_dir), "--since", "2030-01-01T00:00:00Z"
    )
    assert out == "no stored events of iris from 2030-01-01T00:00:00Z\n"


def test_ndjson_has_every_field(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "iris", "--data-dir", str(data_dir), "--format", "ndjson")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(events) == 4
    assert events[0]["features"] == {"x": 2.0, "color": "red"} and events[0]["model"] == "iris"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--since", "yesterday"), "--since: expected a duration back from now such as 30m"),
        (("--since", "1h", "--until", "2h"), "--since (1h) must be before --until (2h)"),
    ],
)
def test_a_bad_window_is_one_line_and_exit_2(
    data_dir: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], needle: str
) -> None:
    code, out, err = run(capsys, "iris", "--data-dir", str(data_dir), *args)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("mlwatch events: ") and needle in err


def test_durations_and_times() -> None:
    assert point_in_time("1h", "--since", NOW_US) == NOW_US - 3_600_000_000
    assert point_in_time("90", "--since", NOW_US) == NOW_US - 90_000_000
    assert point_in_time("2026-01-01T00:00:00Z", "--since", NOW_US) == 1_767_225_600_000_000
    assert point_in_time("100000d", "--since", NOW_US) == 0  # not before 1970
    with pytest.raises(MlwatchError, match="--until: expected"):
        point_in_time("1969-12-31T00:00:00Z", "--until", NOW_US)


def test_unknown_model_and_no_store(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "irsi", "--data-dir", str(data_dir))
    assert code == 2 and "unknown model 'irsi'" in err and "Did you mean 'iris'?" in err
    code, _, err = run(capsys, "iris", "--data-dir", str(tmp_path / "none"))
    assert code == 2 and "no mlwatch store at" in err and not (tmp_path / "none").exists()


def test_from_a_running_sidecar(
    live_sidecar: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, sidecar = live_sidecar(token=TOKEN)
    sidecar.accept(EVENTS, recent_and_old())
    wait_until(lambda: sidecar.store.count_events("iris") == 4, what="the events stored")
    monkeypatch.setenv("MLWATCH_TOKEN", TOKEN)
    code, out, _ = run(capsys, "iris", "--url", url + "/", "--since", "1h", "--format", "json")
    page = json.loads(out)
    assert code == 0 and page["count"] == 3
    assert [e["request_id"] for e in page["events"]] == ["r2", "r1", "r0"]
    code, _, err = run(capsys, "irsi", "--url", url)
    assert code == 2 and err.startswith("mlwatch events: unknown model 'irsi'")
    assert "Did you mean 'iris'?" in err


def _two_environments() -> list[dict[str, Any]]:
    return [event(i, environment="prod" if i % 2 else "qa") for i in range(5)]


def test_environment_filters_a_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EmbeddedStore(tmp_path / "d" / "store.db", retention_days=0)
    store.insert_events([validate_event(e) for e in _two_environments()])
    store.close()
    where = ("--data-dir", str(tmp_path / "d"), "--format", "json")
    code, out, _ = run(capsys, "iris", *where, "--environment", "prod")
    assert code == 0 and sorted(e["request_id"] for e in json.loads(out)["events"]) == ["r1", "r3"]
    code, out, _ = run(capsys, "iris", *where)
    assert json.loads(out)["count"] == 5
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        run(capsys, "iris", *where, "--environment", "Prod")
    assert usage.value.code == 2 and "not an environment: 'Prod'" in capsys.readouterr().err


def test_environment_filters_a_running_sidecar(
    live_sidecar: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, sidecar = live_sidecar()
    sidecar.accept(EVENTS, _two_environments())
    wait_until(lambda: sidecar.store.count_events("iris") == 5, what="the events stored")
    code, out, _ = run(capsys, "iris", "--url", url, "--environment", "qa", "--format", "ndjson")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(e["request_id"] for e in rows) == ["r0", "r2", "r4"]
    assert {e["environment"] for e in rows} == {"qa"}
