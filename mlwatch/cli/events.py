"""``mlwatch events MODEL``: a model's stored events, newest first, from a running sidecar
or straight from a data directory's store (:mod:`.lookup`).

``--since`` and ``--until`` take a duration back from now (``30m``, ``1h``, ``7d``) or an
RFC 3339 time; ``since`` is inclusive, ``until`` exclusive. ``--format table`` shows the
main fields, ``json`` the answer as the sidecar gives it (``GET
/v1/models/{model}/events``), ``ndjson`` one event a line, every field, for ``jq``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Any, TextIO

from mlwatch.cli.lookup import (
    Window,
    add_arguments,
    add_environment,
    model_name,
    open_source,
    short_time,
    table,
)
from mlwatch.errors import ConfigError, MlwatchError, ValidationError
from mlwatch.settings import parse_duration
from mlwatch.times import format_us
from mlwatch.wire import event_time

MAX_LIMIT = 1000  # the sidecar's bound
MAX_PREDICTION_CHARS = 40


def add_parser(sub: Any) -> None:
    p = sub.add_parser("events", help="show a model's stored events, newest first")
    p.add_argument("model", metavar="MODEL", type=model_name, help="the model")
    p.add_argument(
        "--since", help="from this time on: a duration back from now (30m, 1h, 7d) or RFC 3339"
    )
    p.add_argument("--until", help="before this time: a duration back from now or RFC 3339")
    p.add_argument("--limit", type=_limit, default=20, help=f"at most 1 to {MAX_LIMIT} (20)")
    p.add_argument("--format", choices=("table", "json", "ndjson"), default="table")
    add_arguments(p)
    add_environment(p)
    p.set_defaults(func=run)


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``mlwatch events`` command (``args`` from its argparse parser)."""
    out = out if out is not None else sys.stdout
    window = window_of(args.since, args.until, args.limit, now_us=time.time_ns() // 1000)
    window = replace(window, environment=args.environment)
    with open_source(args) as source:
        page = source.events(args.model, window)
    if args.format == "json":
        out.write(json.dumps(page, indent=2, ensure_ascii=False) + "\n")
    elif args.format == "ndjson":
        for event in page["events"]:
            out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
    else:
        out.write(format_events(page, window) + "\n")
    return 0


def window_of(since: str | None, until: str | None, limit: int, *, now_us: int) -> Window:
    """The window the flags name, checked before anything is read."""
    since_us = None if since is None else point_in_time(since, "--since", now_us)
    until_us = None if until is None else point_in_time(until, "--until", now_us)
    if since_us is not None and until_us is not None and since_us >= until_us:
        raise MlwatchError(f"--since ({since}) must be before --until ({until})")
    return Window(since_us, until_us, limit)


def point_in_time(text: str, flag: str, now_us: int) -> int:
    """Epoch microseconds of a duration back from ``now_us`` or of an RFC 3339 time (no
    earlier than 1970, where the store's times start)."""
    try:
        return max(0, now_us - int(parse_duration(text, flag) * 1_000_000))
    except ConfigError:
        pass
    try:
        return event_time(text, line=None, field=flag)[1]
    except ValidationError:
        raise MlwatchError(
            f"{flag}: expected a duration back from now such as 30m, 1h or 7d, or an "
            f"RFC 3339 time from 1970 on such as 2026-01-31T12:00:00Z, got {text!r}"
        ) from None


def format_events(page: dict[str, Any], window: Window) -> str:
    """The events as a table (features and labels left out), with a closing line."""
    events = page["events"]
    if not events:
        return f"no stored events of {page['model']}{_bounds(window)}"
    rows = [
        (
            short_time(e.get("ts")),
            str(e.get("version")),
            e["status"] if not e.get("error") else f"{e['status']}: {e['error']}",
            f"{e['latency_ms']:g}",
            e.get("request_id") or "-",
            _prediction(e.get("prediction")),
        )
        for e in events
    ]
    header = ("time", "version", "status", "latency ms", "request id", "prediction")
    count = f"{len(events)} event{'' if len(events) == 1 else 's'}"
    more = " (the --limit; there may be more)" if len(events) >= window.limit else ""
    return f"{table(header, rows)}\n\n{count}, newest first{more}"


def _bounds(window: Window) -> str:
    parts = []
    if window.since_us is not None:
        parts.append(f" from {short_time(format_us(window.since_us))}")
    if window.until_us is not None:
        parts.append(f" before {short_time(format_us(window.until_us))}")
    return "".join(parts)


def _prediction(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= MAX_PREDICTION_CHARS else text[: MAX_PREDICTION_CHARS - 3] + "..."
