"""``mlwatch retrain MODEL --reason TEXT``: request retraining now, through the running
sidecar (``POST /v1/models/{model}/retrain``; its outbox sends it to the model's target);
``--list`` shows the model's triggers and every attempt (from the sidecar, or read from
a data directory)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mlwatch.cli.lookup import SidecarSource, add_arguments, model_name, open_source, table
from mlwatch.errors import ConfigError

_THROUGH_SIDECAR = (
    "a retraining request goes through the running sidecar that sends it: pass --url or "
    "set sidecar_url (MLWATCH_SIDECAR_URL)"
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("retrain", help="request retraining of a model now, or list its triggers")
    p.add_argument("model", type=model_name, metavar="MODEL")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--reason", help="why (sent with the trigger; at most 500 characters)")
    what.add_argument("--list", action="store_true", help="list the model's triggers instead")
    p.add_argument("--version", help="the version to retrain (default: the newest registered)")
    p.add_argument("--limit", type=int, default=20, help="triggers to list (20)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.list and args.data_dir:
        raise ConfigError("--data-dir", _THROUGH_SIDECAR)
    with open_source(args) as source:
        if args.list:
            page = source.triggers(args.model, args.limit)  # type: ignore[attr-defined]
            print(json.dumps(page, indent=2) if args.format == "json" else render(page))
            return 0
        if not isinstance(source, SidecarSource):
            raise ConfigError("--url", _THROUGH_SIDECAR)
        done = source.retrain(args.model, args.reason, args.version)
    if args.format == "json":
        print(json.dumps(done))
    else:
        print(f"retraining of {args.model} requested: trigger {done['key']} ({done['state']})")
    return 0


def render(page: dict[str, Any]) -> str:
    rows = [
        [
            str(t.get("created", ""))[:19],
            t["cause"],
            t["state"],
            str(len(t["attempts"])),
            (t.get("detail") or t["body"]["reason"])[:60],
        ]
        for t in page["triggers"]
    ]
    if not rows:
        return f"no retraining triggers for {page['model']}"
    return table(["created", "cause", "state", "attempts", "reason / last answer"], rows)
