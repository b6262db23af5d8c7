"""What the KPI computation returns: the KPI names, one :class:`KPI`, a :class:`KPIReport`.

A KPI without a value keeps the reason (fewer labelled predictions than
``min_samples``, a single class for ROC AUC, constant labels for R^2, no
probabilities), so a report can say why a number is missing rather than show a zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CLASSIFICATION_KPIS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "log_loss",
    "brier",
    "ece",
)
REGRESSION_KPIS = ("mae", "rmse", "mape", "r2")
PROBA_KPIS = ("roc_auc", "log_loss", "brier", "ece")


@dataclass(frozen=True)
class KPI:
    """One KPI: its value, confidence interval and sample size, or why it has no value.

    ``method`` names how the interval was computed (``wilson``, ``bootstrap``); ``reason``
    says why ``value`` (or only the interval) is missing.
    """

    name: str
    value: float | None
    lower: float | None
    upper: float | None
    n: int
    method: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class KPIReport:
    """The KPIs of one set of joined rows (one window, or everything given).

    ``n_rows = n_missing + n_labelled`` and ``n_labelled = n_used + n_unusable``;
    ``unusable`` counts the excluded rows by reason, ``n_proba`` the used rows whose
    prediction carried valid class probabilities (the probability KPIs use those) and
    ``proba_invalid`` the rows whose probabilities were rejected (the row still counts
    for the label KPIs). ``reason`` is set when the sample is below ``min_samples``.
    """

    task: str
    kpis: dict[str, KPI]
    n_rows: int
    n_labelled: int
    n_missing: int
    n_used: int
    n_unusable: int
    unusable: dict[str, int] = field(default_factory=dict)
    n_proba: int = 0
    proba_invalid: int = 0
    confidence: float = 0.95
    reason: str | None = None
    window_start_us: int | None = None
    window_end_us: int | None = None

    def value(self, name: str) -> float | None:
        """The value of KPI ``name``, None when it has none (or is not computed)."""
        kpi = self.kpis.get(name)
        return None if kpi is None else kpi.value

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the status API, the scheduler's store)."""
        out = asdict(self)
        out["kpis"] = {name: asdict(k) for name, k in self.kpis.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KPIReport:
        """The report :meth:`to_dict` wrote (keys it does not know, such as the store's
        ``window`` and ``computed``, are ignored).

        >>> r = KPIReport("regression", {"mae": KPI("mae", 1.5, 1.0, 2.0, 40)}, 50, 40, 10, 40, 0)
        >>> KPIReport.from_dict(r.to_dict() | {"computed": "now"}) == r
        True
        """
        known = {f for f in cls.__dataclass_fields__ if f != "kpis"}
        kpis = {name: KPI(**k) for name, k in data.get("kpis", {}).items()}
        return cls(kpis=kpis, **{k: v for k, v in data.items() if k in known})
