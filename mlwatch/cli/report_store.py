"""The served-model source of ``mlwatch report``: a data directory's store, read-only.

The period is ``--since`` (default 7 days back) to ``--until`` (default now); the
thresholds drawn on the KPI plots are the configuration's: the model's ``alerts.kpis``
and its ``retrain`` KPI conditions.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from mlwatch.cli.events import point_in_time
from mlwatch.errors import MlwatchError, StoreError
from mlwatch.report.model import Report
from mlwatch.settings import Config, load_config
from mlwatch.settings.alerts import ERROR_KPIS
from mlwatch.settings.durations import parse_duration
from mlwatch.store.catalog import unknown_model
from mlwatch.store.readonly import ReadOnlyStore
from mlwatch.store.schema import ANY_VERSION
from mlwatch.times import format_us

DEFAULT_SINCE = "7d"


def served_report(args: Any, err: TextIO) -> Report:
    """The report of ``args.model`` over the period the flags name."""
    from mlwatch.report.served import latest_drift, served_section

    now_us = time.time_ns() // 1000
    since_us = point_in_time(args.since or DEFAULT_SINCE, "--since", now_us)
    until_us = now_us if args.until is None else point_in_time(args.until, "--until", now_us)
    if since_us >= until_us:
        raise MlwatchError(f"--since ({args.since}) must be before --until ({args.until})")
    bucket_s = None if args.bucket is None else int(parse_duration(args.bucket, "--bucket"))
    if bucket_s is not None and bucket_s < 1:
        raise MlwatchError(f"--bucket: at least 1s, got {args.bucket!r}")
    config = load_config(args.config)
    path = Path(args.data_dir or config.data_dir) / "store.db"
    if not path.is_file():
        raise StoreError(f"no mlwatch store at {path}; is --data-dir the sidecar's?")
    store = ReadOnlyStore(path)
    try:
        configured = [spec.name for spec in config.models]
        if args.model not in configured and not store.has_model(args.model):
            raise MlwatchError(unknown_model(args.model, store.known_models(configured)))
        period = {"since_us": since_us, "until_us": until_us}
        served = served_section(
            store,
            args.model,
            bucket_s=bucket_s,
            kpi_thresholds=kpi_thresholds(config, args.model),
            environment=args.environment,
            **period,
        )
        drift = latest_drift(
            store,
            args.model,
            profiles=stored_profiles(store, args.model, config.environment),
            **period,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {exc}") from None
    finally:
        store.close()
    notes = [] if drift else ["No stored drift result in this period."]
    return Report(
        title=args.title or f"Model {args.model}",
        generated=format_us(now_us),
        source={
            "mode": "store",
            "model": args.model,
            "since": served.since,
            "until": served.until,
            "environment": args.environment,
        },
        drift=drift,
        served=served,
        notes=notes,
    )


def stored_profiles(
    store: ReadOnlyStore, model: str, environment: str
) -> Callable[[Mapping[str, Any]], Any]:
    """For a stored drift result: the reference profile the scheduler stored (the result's
    version's, else the one for any version) and the profile of the result's window, as
    the drift job builds it (:class:`~mlwatch.scheduler.windows.StoreWindows`: of the
    scheduler's ``environment``, whose events the result is of); None without a stored
    reference."""
    from mlwatch.scheduler.windows import StoreWindows
    from mlwatch.stats.profile import DatasetProfile

    def pair(row: Mapping[str, Any]) -> Any:
        version = row["version"]
        stored = store.profiles(model, version, "reference") or store.profiles(
            model, ANY_VERSION, "reference"
        )
        if not stored:
            return None
        try:
            ref = DatasetProfile.from_json(stored[-1][2])
            window = StoreWindows(store, environment).profile(
                ref, model, version, row["start_us"], row["end_us"]
            )
        except ValueError:  # a profile of another layout: drawn without distributions
            return None
        return ref, window

    return pair


def kpi_thresholds(config: Config, model: str) -> dict[str, list[dict[str, Any]]]:
    """``{kpi: [{source, direction, value}]}`` from the model's alerts and retrain rules."""
    spec = config.model_spec(model)
    out: dict[str, list[dict[str, Any]]] = {}
    if spec is None:
        return out
    if spec.alerts is not None:
        for name, value in spec.alerts.kpis:
            direction = "above" if name in ERROR_KPIS else "below"
            out.setdefault(name, []).append(
                {"source": "alert", "direction": direction, "value": value}
            )
    if spec.retrain is not None:
        for cond in spec.retrain.on:
            if cond.kind != "kpi" or cond.kpi is None:
                continue
            bounds = {"below": cond.below, "above": cond.above}
            for direction, bound in bounds.items():
                if bound is not None:
                    out.setdefault(cond.kpi, []).append(
                        {"source": "retrain", "direction": direction, "value": bound}
                    )
    return out
