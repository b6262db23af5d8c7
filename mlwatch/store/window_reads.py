"""What the jobs read of a window of events: versions served, predictions joined to
labels, feature values as columns (extracted by SQLite in C, so a window of a million
events does not build a million Python dicts)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from mlwatch.store.database import Database, window_clause
from mlwatch.store.rows import EVENT_COLUMNS, loads, row_event

# The events and feedback of a batch's (model, request_id) pairs that have both.
_JOINED = (
    "WITH k(model, request_id) AS ("
    "SELECT json_extract(value, '$[3]'), json_extract(value, '$[5]') FROM json_each(?) "
    "UNION SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)) "
    "SELECT {what} FROM k "
    "JOIN events e ON e.model = k.model AND e.request_id = k.request_id "
    "JOIN feedback f ON f.model = k.model AND f.request_id = k.request_id"
)


class WindowReads(Database):
    """Window queries over the ``events`` and ``feedback`` tables."""

    def joined(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
        environment: str | None = None,
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """Events of a window joined to their ground truth by request_id (label or None).

        Windows are by prediction time; a label that arrives late still joins its event.
        """
        where, args = window_clause("e.", model, since_us, until_us, version, environment)
        sql = (
            f"SELECT {', '.join('e.' + c for c in EVENT_COLUMNS)}, f.label FROM events e "
            "LEFT JOIN feedback f ON f.model = e.model AND f.request_id = e.request_id "
            f"WHERE {where} ORDER BY e.ts_us, e.seq"
        )
        for row in self._conn().execute(sql, args):
            label = row[-1]
            yield row_event(row[:-1]), (None if label is None else loads(label))

    def joined_predictions(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
        environment: str | None = None,
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """What KPIs need of :meth:`joined`: ``ts_us``, ``status``, ``prediction`` and the
        label — without decoding features, so a window of millions stays cheap."""
        where = window_clause("e.", model, since_us, until_us, version, environment)
        return self._predictions(where, latency=False)

    def served_predictions(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
        environment: str | None = None,
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """:meth:`joined_predictions` with each event's ``latency_ms``: what a comparison
        of two versions reads (KPIs, error ratio and latency of the same events)."""
        where = window_clause("e.", model, since_us, until_us, version, environment)
        return self._predictions(where, latency=True)

    def _predictions(
        self, where: tuple[str, list[Any]], *, latency: bool
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """``({ts_us, status[, latency_ms], prediction}, label)`` of the events ``where``
        selects, joined with their feedback."""
        clause, args = where
        columns = ["ts_us", "status", *(["latency_ms"] if latency else []), "prediction"]
        sql = (
            f"SELECT {', '.join('e.' + c for c in columns)}, f.label FROM events e "
            "LEFT JOIN feedback f ON f.model = e.model AND f.request_id = e.request_id "
            f"WHERE {clause}"
        )
        for *values, label in self._conn().execute(sql, args):
            event = dict(zip(columns, values, strict=True))
            prediction = event["prediction"]
            event["prediction"] = None if prediction is None else loads(prediction)
            yield event, (None if label is None else loads(label))

    def recent_versions(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        environment: str | None = None,
    ) -> list[str]:
        """Versions of a model with events in a window, the one served last first."""
        where, args = window_clause("", model, since_us, until_us, None, environment)
        sql = (
            f"SELECT version FROM events WHERE {where} GROUP BY version "
            "ORDER BY MAX(ts_us) DESC, version DESC"
        )
        return [str(r[0]) for r in self._conn().execute(sql, args)]

    def first_event_us(
        self, model: str, version: str, *, environment: str | None = None
    ) -> int | None:
        """When a version of a model served its first stored event (µs), None before."""
        where, args = window_clause("", model, None, None, version, environment)
        row = self._conn().execute(f"SELECT MIN(ts_us) FROM events WHERE {where}", args).fetchone()
        return None if row[0] is None else int(row[0])

    def joined_by_rows(
        self,
        event_rows_json: str,
        feedback_rows_json: str,
        *,
        before: set[tuple[str, str]] | None = None,
    ) -> list[tuple[str, str, dict[str, Any], Any]]:
        """The predictions a batch of rows joined to their ground truth: ``(model, version,
        event, label)`` for each (model, request_id) of the batch's events and feedback that
        now has both and was not in ``before`` (what :meth:`joined_keys` said before the
        batch was inserted), read in one query on the rows as they were spooled."""
        rows = self._conn().execute(
            _JOINED.format(
                what="e.model, e.request_id, e.version, e.status, e.prediction, f.label, "
                "e.environment"
            ),
            (event_rows_json, feedback_rows_json),
        )
        return [
            (
                model,
                version,
                {"status": status, "prediction": loads(pred), "ts_us": 0, "environment": env},
                loads(label),
            )
            for model, request_id, version, status, pred, label, env in rows
            if before is None or (model, request_id) not in before
        ]

    def joined_keys(self, event_rows_json: str, feedback_rows_json: str) -> set[tuple[str, str]]:
        """The (model, request_id) pairs of a batch's rows that already have both a
        prediction and its ground truth: a redelivered batch or a second label is no new
        labelled prediction."""
        sql = _JOINED.format(what="e.model, e.request_id")
        return set(self._conn().execute(sql, (event_rows_json, feedback_rows_json)))

    def span(self, model: str) -> tuple[int, int | None, int | None]:
        """How many events of ``model`` the store holds, and the times (µs) of the first
        and the last: what an empty window is explained with."""
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(*), MIN(ts_us), MAX(ts_us) FROM events WHERE model = ?", (model,)
            )
            .fetchone()
        )
        return int(row[0]), row[1], row[2]

    def count_in(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        environment: str | None = None,
    ) -> int:
        """Events of a window."""
        where, args = window_clause("", model, since_us, until_us, None, environment)
        return int(
            self._conn().execute(f"SELECT COUNT(*) FROM events WHERE {where}", args).fetchone()[0]
        )

    def count_labelled(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        environment: str | None = None,
    ) -> int:
        """Events of a window that have their ground truth."""
        where, args = window_clause("e.", model, since_us, until_us, None, environment)
        sql = (
            "SELECT COUNT(*) FROM events e JOIN feedback f ON f.model = e.model "
            f"AND f.request_id = e.request_id WHERE {where}"
        )
        return int(self._conn().execute(sql, args).fetchone()[0])

    def label_delays_us(
        self,
        model: str,
        *,
        since_us: int,
        until_us: int,
        version: str,
        environment: str | None = None,
    ) -> Iterator[int]:
        """For each labelled prediction of a window, the time from the prediction to its
        label (the feedback's time; a label stamped before its prediction counts 0)."""
        where, args = window_clause("e.", model, since_us, until_us, version, environment)
        sql = (
            "SELECT MAX(f.ts_us - e.ts_us, 0) FROM events e JOIN feedback f ON "
            f"f.model = e.model AND f.request_id = e.request_id WHERE {where}"
        )
        for (delay,) in self._conn().execute(sql, args):
            yield int(delay)

    def versions(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        environment: str | None = None,
    ) -> list[str]:
        """Versions of a model with events in a window."""
        where, args = window_clause("", model, since_us, until_us, None, environment)
        sql = f"SELECT DISTINCT version FROM events WHERE {where} ORDER BY version"
        return [str(r[0]) for r in self._conn().execute(sql, args)]

    def count_with_features(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
        environment: str | None = None,
    ) -> int:
        """Events of a window that carry features (what a window profile summarises)."""
        where, args = window_clause("", model, since_us, until_us, version, environment)
        sql = f"SELECT COUNT(*) FROM events WHERE {where} AND features IS NOT NULL"
        return int(self._conn().execute(sql, args).fetchone()[0])

    def feature_columns(
        self,
        model: str,
        names: Sequence[str],
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
        environment: str | None = None,
    ) -> dict[str, list[Any]]:
        """Feature values of a window as columns (a missing feature is None). SQLite
        extracts them in C, so a window of a million events does not build a million
        Python dicts."""
        where, args = window_clause("", model, since_us, until_us, version, environment)
        columns: dict[str, list[Any]] = {n: [] for n in names}
        if not names:
            return columns
        # JSON paths as parameters; a name with a double quote has no SQLite path (None)
        paths = ['$."' + n + '"' if '"' not in n else "$.__unreachable__" for n in names]
        picks = ", ".join("json_extract(features, ?)" for _ in names)
        rows = self._conn().execute(
            f"SELECT {picks} FROM events WHERE {where} AND features IS NOT NULL", [*paths, *args]
        )
        lists = [columns[n] for n in names]
        for row in rows:
            for target, value in zip(lists, row, strict=True):
                target.append(value)
        return columns
