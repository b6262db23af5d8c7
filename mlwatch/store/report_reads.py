"""What ``mlwatch report`` reads of a served model over a period: the stored drift and
KPI results by window, and traffic (predictions, errors, latency) per time bucket and
version, aggregated inside SQLite so that a period of millions of events returns a few
hundred rows."""

from __future__ import annotations

from typing import Any

from mlwatch.store.database import Database, window_clause
from mlwatch.store.rows import loads


class ReportReads(Database):
    """Period queries over the ``results`` and ``events`` tables."""

    def results_in(
        self, model: str, kind: str, *, since_us: int | None = None, until_us: int | None = None
    ) -> list[dict[str, Any]]:
        """The stored results of a kind (``drift``, ``kpi``) whose window starts in
        ``[since_us, until_us)``, oldest window first, each version's row apart."""
        sql = (
            "SELECT version, start_us, end_us, computed_us, body FROM results "
            "WHERE model = ? AND kind = ?"
        )
        args: list[Any] = [model, kind]
        if since_us is not None:
            sql += " AND start_us >= ?"
            args.append(since_us)
        if until_us is not None:
            sql += " AND start_us < ?"
            args.append(until_us)
        rows = self._conn().execute(sql + " ORDER BY start_us, version", args)
        return [
            {
                "version": str(v),
                "start_us": int(s),
                "end_us": int(e),
                "computed_us": int(c),
                "body": loads(b),
            }
            for v, s, e, c, b in rows
        ]

    def traffic(
        self,
        model: str,
        bucket_us: int,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        environment: str | None = None,
    ) -> list[dict[str, Any]]:
        """Predictions, errors and latency (mean, max, in ms) per ``bucket_us`` bucket of
        event time and per version, oldest bucket first (of one environment, when given)."""
        if bucket_us <= 0:
            raise ValueError(f"bucket_us must be positive, got {bucket_us}")
        where, args = window_clause("", model, since_us, until_us, None, environment)
        sql = (
            "SELECT (ts_us / ?) * ? AS b, version, COUNT(*), "
            "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), AVG(latency_ms), "
            f"MAX(latency_ms) FROM events WHERE {where} GROUP BY b, version ORDER BY b, version"
        )
        rows = self._conn().execute(sql, [bucket_us, bucket_us, *args])
        return [
            {
                "start_us": int(b),
                "version": str(v),
                "count": int(n),
                "errors": int(err),
                "latency_mean_ms": float(mean),
                "latency_max_ms": float(top),
            }
            for b, v, n, err, mean, top in rows
        ]
