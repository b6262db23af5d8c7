"""The objects Prometheus rules are built from, and what every mlwatch alert carries.

:mod:`.build` assembles them from the config (:mod:`.rules_model`, :mod:`.slo`,
:mod:`.rules_self`); :mod:`.render` writes them as YAML. Keeping them plain data lets the
tests look at a rule without parsing YAML, and the renderer stay ignorant of alerting.

>>> duration(5400), duration(0.25), duration(86400)
('90m', '250ms', '1d')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Where ``runbook_url`` points by default: the runbooks beside the rules, as a path from
#: the repository root. Set ``--runbook-url`` to where your team can open them.
DEFAULT_RUNBOOK_URL = "alerts/runbooks.md"
_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))


@dataclass(frozen=True)
class Options:
    """What the rules need beyond the config: names of the deployment around mlwatch."""

    job: str = "mlwatch"  # the Prometheus job that scrapes the sidecar
    runbook_url: str = DEFAULT_RUNBOOK_URL  # each alert links to runbook_url#<alertname>
    token_file: str = "/etc/mlwatch/token"  # the bearer token Alertmanager sends the sidecar
    source: str = "mlwatch.yaml"  # the config's file name, written in each file's header


@dataclass(frozen=True)
class Rule:
    """One alerting rule (``alert``) or recording rule (``record``)."""

    expr: str
    alert: str | None = None
    record: str | None = None
    for_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The rule as Prometheus reads it: empty parts left out."""
        out: dict[str, Any] = {"expr": self.expr}
        if self.alert is not None:
            out["alert"] = self.alert
        if self.record is not None:
            out["record"] = self.record
        if self.for_s:
            out["for"] = duration(self.for_s)
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Group:
    """A rule group and the file it is written to (under ``rules/``)."""

    name: str
    file: str
    rules: tuple[Rule, ...]


def duration(seconds: float) -> str:
    """A Prometheus duration in the largest unit that divides ``seconds`` exactly: one
    unit reads at a glance (``90m`` rather than ``1h30m``)."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    for unit, size in _UNITS:
        if millis % round(size * 1000) == 0:
            return f"{millis // round(size * 1000)}{unit}"
    raise AssertionError("unreachable: every duration is a whole number of ms")


def number(value: float) -> str:
    """A threshold as PromQL and people write it: ``0.05``, ``200``, never ``0.05000000001``."""
    return f"{value:.10g}"


def percent(value: float) -> str:
    """A share for an annotation: ``0.05`` as ``5%``."""
    return f"{value * 100:.6g}%"


def alert(
    name: str,
    expr: str,
    *,
    options: Options,
    severity: str,
    summary: str,
    description: str,
    for_s: float = 0.0,
    labels: dict[str, str] | None = None,
) -> Rule:
    """An alerting rule with what every mlwatch alert carries: ``severity``, a summary, a
    description (with the value) and the link to its runbook."""
    return Rule(
        expr=expr,
        alert=name,
        for_s=for_s,
        labels={"severity": severity, **(labels or {})},
        annotations={
            "summary": summary,
            "description": description,
            "runbook_url": f"{options.runbook_url}#{name.lower()}",
        },
    )
