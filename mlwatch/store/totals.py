"""What the store holds in total, as the sidecar's counters count it: predictions by
outcome, predicted classes, feedback, and the versions with their code and run. A
restarted sidecar starts its counters from these (its own environment's), so its
``/metrics`` shows what the store holds instead of zeros (a counter that starts high is a
new baseline to Prometheus, not traffic)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlwatch.store.database import Database

#: Predictions that name a class (not a number with a fraction, not a list or object).
_CLASS_TYPES = "('integer', 'text', 'true', 'false')"


@dataclass
class StoreTotals:
    """Counts by the labels of the sidecar's metrics."""

    # keys start with (model, version, environment); a registration has no environment ("")
    predictions: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    classes: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    feedback: dict[str, int] = field(default_factory=dict)
    info: set[tuple[str, str, str, str, str]] = field(default_factory=set)
    tasks: dict[str, str] = field(default_factory=dict)  # as registrations gave them


class Totals(Database):
    """Whole-store counts (one pass over events, one over feedback)."""

    def event_count(self) -> int:
        """How many events the store holds (an index count: cheap beside :meth:`totals`)."""
        return int(self._conn().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def totals(self) -> StoreTotals:
        out = StoreTotals()
        conn = self._conn()
        rows = conn.execute(
            "SELECT model, version, environment, status, COALESCE(code_version, ''), "
            "COALESCE(run_id, ''), COUNT(*) FROM events GROUP BY 1, 2, 3, 4, 5, 6"
        )
        for model, version, env, status, code, run, n in rows:
            key = (model, version, env, status)
            out.predictions[key] = out.predictions.get(key, 0) + n
            out.info.add((model, version, env, code, run))
        rows = conn.execute(
            "SELECT model, version, '', COALESCE(code_version, ''), COALESCE(run_id, '') "
            "FROM models"
        )
        out.info.update(rows)
        rows = conn.execute(
            "SELECT model, version, environment, json_type(prediction), "
            "json_extract(prediction, '$'), COUNT(*) FROM events WHERE status = 'ok' "
            f"AND json_type(prediction) IN {_CLASS_TYPES} GROUP BY 1, 2, 3, 4, 5"
        )
        for model, version, env, kind, value, n in rows:
            name = kind if kind in ("true", "false") else str(value)  # as the sidecar names them
            out.classes[(model, version, env, name)] = n
        out.feedback = dict(conn.execute("SELECT model, COUNT(*) FROM feedback GROUP BY 1"))
        out.tasks = dict(
            conn.execute(
                "SELECT model, task FROM models WHERE task IS NOT NULL ORDER BY last_seen_us"
            )
        )  # the newest registration's task wins
        return out
