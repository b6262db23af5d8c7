"""What a report shows, as plain data: no statistic is computed here and nothing rendered.

The drift figures are copied from the result of ``mlwatch drift`` (its JSON, the same
dictionary), so the report and the command cannot disagree; the distributions beside them
are only for the eye. :meth:`Report.to_dict` is the JSON the HTML embeds, which a test
(or a person) can read back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Histogram:
    """A numeric feature on equal-width bins over the reference's range.

    ``ref`` and ``cur`` are the shares of each side's finite values per bin;
    ``below`` / ``above`` the shares of each side outside the reference's range
    (``[reference, current]``), which the reference has none of by construction.
    """

    edges: list[float]
    ref: list[float]
    cur: list[float]
    below: list[float]
    above: list[float]


@dataclass(frozen=True)
class CategoryBar:
    """One category's share on each side; ``unseen``: the reference never had it."""

    name: str
    ref: float
    cur: float
    unseen: bool = False


@dataclass(frozen=True)
class CategoryShares:
    """The largest categories of a categorical feature, and the rest as one bar."""

    bars: list[CategoryBar]
    rest_ref: float = 0.0
    rest_cur: float = 0.0
    rest_count: int = 0


@dataclass(frozen=True)
class FeatureSection:
    """One feature: the drift figures of ``mlwatch drift`` and its distributions.

    ``figures`` is the feature's dictionary of the drift JSON, unchanged; ``effect`` the
    size the features are sorted by (normalised Wasserstein distance for numeric, JS
    distance for categorical, as ``--min-effect`` measures it), None when unknown.
    """

    name: str
    figures: dict[str, Any]
    effect: float | None
    histogram: Histogram | None = None
    categories: CategoryShares | None = None


@dataclass(frozen=True)
class DriftSection:
    """The dataset-level drift decision and the features, sorted by effect."""

    summary: dict[str, Any]
    features: list[FeatureSection]
    window: list[str] | None = None  # served model: the window [start, end) compared
    version: str | None = None
    sampled: bool = False  # distributions drawn from the stored profiles' samples


@dataclass(frozen=True)
class ServedSection:
    """What a served model did over the report's period (lists of plain rows, oldest first).

    ``kpis``: one row per window and version (``start``, ``end``, ``version``, counts and
    ``kpis`` ``{name: {value, lower, upper, n, reason}}``); ``kpi_thresholds``:
    ``{kpi: [{"source", "direction", "value"}]}`` from the configuration; ``traffic``: one
    row per time bucket and version (``start``, ``version``, ``count``, ``errors``,
    ``latency_mean_ms``, ``latency_max_ms``); ``drift_windows``: the drift share per
    window; ``versions``: the registrations and events per version; ``triggers``: retrain
    triggers as the API shows them.
    """

    model: str
    since: str | None
    until: str | None
    kpis: list[dict[str, Any]] = field(default_factory=list)
    kpi_thresholds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    bucket_s: int = 3600
    drift_windows: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    """A whole report: where its data came from, its drift part and its served part."""

    title: str
    generated: str
    source: dict[str, Any]
    drift: DriftSection | None = None
    served: ServedSection | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
