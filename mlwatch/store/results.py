"""Profiles and job results in the embedded store: references, slice profiles, drift and
KPI results by window (a recomputed window replaces its row)."""

from __future__ import annotations

import time
from typing import Any

from mlwatch.store.database import Database
from mlwatch.store.rows import dumps, loads
from mlwatch.times import format_us


class ProfilesAndResults(Database):
    """The ``profiles`` and ``results`` tables."""

    def put_profile(
        self,
        model: str,
        version: str,
        kind: str,
        start_us: int,
        end_us: int,
        body: str,
        *,
        tag: str = "",
        now_us: int | None = None,
    ) -> None:
        """Store (or replace) one profile; ``body`` is its JSON, ``tag`` what it was built
        from (a reference's fingerprint)."""
        now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO profiles (model, version, kind, start_us, "
                "end_us, updated_us, tag, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (model, version, kind, start_us, end_us, now_us, tag, body),
            )

    def profile_tag(self, model: str, version: str, kind: str) -> str | None:
        """The tag of the newest profile of a kind (None when there is none)."""
        row = (
            self._conn()
            .execute(
                "SELECT tag FROM profiles WHERE model = ? AND version = ? AND kind = ? "
                "ORDER BY start_us DESC LIMIT 1",
                (model, version, kind),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def profiles(
        self,
        model: str,
        version: str,
        kind: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[tuple[int, int, str]]:
        """``(start_us, end_us, body)`` of the profiles of a kind whose window starts in
        ``[since_us, until_us)``, oldest first."""
        sql = (
            "SELECT start_us, end_us, body FROM profiles WHERE model = ? AND version = ? "
            "AND kind = ?"
        )
        args: list[Any] = [model, version, kind]
        if since_us is not None:
            sql += " AND start_us >= ?"
            args.append(since_us)
        if until_us is not None:
            sql += " AND start_us < ?"
            args.append(until_us)
        return [
            (int(a), int(b), str(c))
            for a, b, c in self._conn().execute(sql + " ORDER BY start_us", args)
        ]

    def put_result(
        self,
        model: str,
        version: str,
        kind: str,
        start_us: int,
        end_us: int,
        body: dict[str, Any],
        *,
        now_us: int | None = None,
    ) -> None:
        """Record a drift or KPI result of a window; a recomputed window replaces its row."""
        now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO results (model, version, kind, start_us, "
                "end_us, computed_us, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, version, kind, start_us, end_us, now_us, dumps(body)),
            )

    def latest_results(self, model: str) -> dict[str, dict[str, Any]]:
        """The newest result of each kind (and version) of a model: the window computed
        last, and among those the latest window. A KPI window that could not report (too
        few labels: its ``reason`` is set) is passed over, as the gauges pass it over."""
        sql = (
            "SELECT r.version, r.kind, r.start_us, r.end_us, r.computed_us, r.body "
            "FROM (SELECT version, kind, MAX(computed_us) AS c FROM results "
            "WHERE model = ? AND (kind != 'kpi' OR json_extract(body, '$.reason') IS NULL) "
            "GROUP BY version, kind) m JOIN results r ON r.model = ? "
            "AND r.version = m.version AND r.kind = m.kind AND r.computed_us = m.c "
            "AND (r.kind != 'kpi' OR json_extract(r.body, '$.reason') IS NULL) "
            "ORDER BY r.kind, r.version, r.start_us"
        )
        out: dict[str, dict[str, Any]] = {}
        rows = self._conn().execute(sql, (model, model))
        for version, kind, start_us, end_us, computed_us, body in rows:
            out.setdefault(kind, {})[version] = {
                "window": [format_us(start_us), format_us(end_us)],
                "computed": format_us(computed_us),
                **loads(body),
            }
        return out
