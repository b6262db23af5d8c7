"""One run of the compare job: the candidate against the baseline over every event from
the comparison's start until now.

The start is the ``compare.since`` setting, else the candidate's first event: the sample
only grows from run to run, which is what lets the anytime-valid sequences of
:mod:`mlwatch.stats.canary` be checked at every run. Without configured versions the two
served most recently since the start are compared, and a version left out is the most
recently served other than the one named (:func:`.served.live_pair`).
"""

from __future__ import annotations

from typing import Any

from mlwatch.scheduler.served import live_pair, served_sample
from mlwatch.settings import ModelSpec
from mlwatch.store import EmbeddedStore
from mlwatch.times import parse_ts


def compare_served(
    store: EmbeddedStore, spec: ModelSpec, *, now_us: int, environment: str | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """``(Comparison.to_dict(), None)``, or ``(None, why)`` when there is nothing to compare;
    with ``environment``, over that environment's events only."""
    from mlwatch.stats.canary import CompareOptions, compare_versions

    assert spec.monitoring is not None and spec.monitoring.compare is not None
    cfg = spec.monitoring.compare
    since = None if cfg.since is None else parse_ts(cfg.since, line=None)[1]
    pair = live_pair(
        store,
        spec.name,
        baseline=cfg.baseline,
        candidate=cfg.candidate,
        since_us=since,
        until_us=now_us,
        environment=environment,
    )
    if pair is None:
        return None, f"compare {spec.name}: fewer than two versions served"
    baseline, candidate = pair
    if since is None:
        since = store.first_event_us(spec.name, candidate, environment=environment)
        if since is None:
            return None, f"compare {spec.name}: no event of the candidate {candidate} yet"
    a, b = (
        served_sample(store, spec, v, since_us=since, until_us=now_us, environment=environment)
        for v in (baseline, candidate)
    )
    options = CompareOptions(
        alpha=cfg.alpha,
        margins=dict(cfg.margins),
        min_samples=cfg.min_samples,
        tune_n=cfg.tune_n,
        gate=cfg.gate,
    )
    return compare_versions(a, b, options, names=(baseline, candidate)).to_dict(), None
