"""Forward-protocol entries to records: fill what generic pipelines leave out, accept the
good ones durably, drop and count the bad ones alone.

A record from a Fluentd or Fluent Bit pipeline may omit ``ts`` (the entry's time is
used), ``model`` (taken from the tag) and ``event_id`` / ``feedback_id`` (derived from
tag, time and content, so a chunk re-sent after a lost ack is stored once). A record the
wire format refuses is counted in ``mlwatch_forward_records_rejected_total{reason}`` and
logged with its tag and entry index, while its neighbours are stored; when the sidecar
cannot take records now (503, 429) nothing is acked and the sender retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson
from prometheus_client import Counter

from mlwatch.errors import IngestError, ValidationError
from mlwatch.forward.protocol import (
    article,
    derived_id,
    entry_time_ns,
    model_from_tag,
    route,
    show,
    what,
)
from mlwatch.inputs.body import MAX_REPORTED_ERRORS
from mlwatch.logs import RateLimitedLog
from mlwatch.store.payloads import EVENTS, KINDS
from mlwatch.times import format_ts
from mlwatch.wire import (
    validate_drop_report,
    validate_event,
    validate_feedback,
    validate_registration,
)

VALIDATORS: dict[str, Callable[..., dict[str, Any]]] = {
    "events": validate_event,
    "feedback": validate_feedback,
    "models": validate_registration,
}

Item = tuple[int, dict[str, Any]]  # (entry index in its message, record)


class Accept(Protocol):
    """:meth:`mlwatch.sidecar.service.Sidecar.accept`: validate and durably append, or raise
    ``IngestError``; ``report_id``/``drops`` carry a client's drop report."""

    def __call__(
        self,
        kind: bytes,
        items: list[Any],
        report_id: str | None = None,
        drops: list[tuple[str, str, str, int]] | None = None,
    ) -> int: ...


class ForwardRecords:
    """Hands the records of one message to ``accept``, counting what it refuses."""

    def __init__(
        self,
        accept: Accept,
        *,
        max_records: int,
        records: Counter,
        rejected: Counter,
        unavailable: Any,
        log: RateLimitedLog,
    ) -> None:
        self._accept = accept
        self.max_records = max_records
        self.records = records
        self.rejected = rejected
        self.unavailable = unavailable
        self._log = log

    def _prepare(self, kind: str, tag: str, entry: Any) -> dict[str, Any]:
        """The record of one entry, with ``ts``, its id and ``model`` filled when absent."""
        if type(entry) is not list or len(entry) != 2:
            raise ValidationError(
                f"expected an entry [time, record], got {article(entry)} {show(entry)}"
            )
        ts_ns = entry_time_ns(entry[0])
        if ts_ns is None:
            raise ValidationError(
                "time: expected an EventTime or a number of seconds in "
                f"1970..9999, got {show(entry[0])}"
            )
        record = entry[1]
        if type(record) is not dict:
            raise ValidationError(f"record: expected a map, got {what(record)}")
        try:
            orjson.dumps(record)
        except TypeError:  # orjson.JSONEncodeError: bin or ext values, invalid UTF-8, ...
            raise ValidationError(
                "record: not representable as JSON (binary or extension values, "
                "non-string keys or invalid UTF-8)"
            ) from None
        if kind not in ("events", "feedback"):
            return record
        id_key = "event_id" if kind == "events" else "feedback_id"
        out = dict(record)
        if out.get(id_key) is None:
            out[id_key] = derived_id(tag, ts_ns, record)
        if out.get("ts") is None:
            out["ts"] = format_ts(ts_ns)
        if out.get("model") is None:
            model = model_from_tag(tag, kind)
            if model is not None:
                out["model"] = model
        return out

    def ingest(self, tag: str, entries: list[Any], where: str) -> bool:
        """Store the good records of one message; False when the sidecar cannot take them now
        (nothing to ack). Raises nothing for bad records: they are counted and logged."""
        kind = route(tag)
        batch: list[tuple[int, dict[str, Any]]] = []
        for index, entry in enumerate(entries):
            try:
                batch.append((index, self._prepare(kind, tag, entry)))
            except ValidationError as exc:
                self._reject(tag, index, "invalid", str(exc), where)
        if kind == "drops":
            return self._ingest_drops(tag, batch, where)
        for start in range(0, len(batch), self.max_records):
            if not self._store(kind, tag, batch[start : start + self.max_records], where):
                return False
        return True

    def _store(
        self, kind: str, tag: str, batch: list[tuple[int, dict[str, Any]]], where: str
    ) -> bool:
        """``accept`` the batch; on a 4xx drop the refused records and try the rest again."""
        todo = [batch]
        while todo:
            part = todo.pop()
            if not part:
                continue
            try:
                n = self._accept(KINDS[kind], [rec for _, rec in part])
            except IngestError as exc:
                if exc.status >= 500 or exc.status == 429:
                    self.unavailable.inc()
                    self._log.warning(
                        "forward.unavailable",
                        "forward: not acking tag %s from %s (%s); the sender will retry",
                        show(tag),
                        where,
                        exc.message,
                    )
                    return False
                todo.extend(self._after_refusal(kind, tag, part, exc, where))
                continue
            self.records.labels(kind).inc(n)
        return True

    def _after_refusal(
        self,
        kind: str,
        tag: str,
        part: list[tuple[int, dict[str, Any]]],
        exc: IngestError,
        where: str,
    ) -> list[list[tuple[int, dict[str, Any]]]]:
        """What to try next after ``accept`` refused ``part`` with a 4xx."""
        if len(part) == 1:
            reason = "too_large" if exc.status == 413 else "invalid"
            self._reject(tag, part[0][0], reason, exc.message, where)
            return []
        if exc.status == 413:  # too big for the spool in one piece: halves
            half = len(part) // 2
            return [part[half:], part[:half]]
        bad: dict[int, str] = {}
        for err in exc.errors:
            line = err.get("line")
            if type(line) is int and 1 <= line <= len(part):
                field = f"field {show(err.get('field'))}: " if err.get("field") else ""
                bad[line - 1] = field + str(err.get("message"))
        if not bad:  # no line numbers: one by one
            return [[item] for item in reversed(part)]
        rest = []
        for i, item in enumerate(part):
            if i in bad:
                self._reject(tag, item[0], "invalid", bad[i], where)
            else:
                rest.append(item)
        if len(exc.errors) >= MAX_REPORTED_ERRORS:  # maybe more: find them all in one pass
            screened = []
            for item in rest:
                try:
                    VALIDATORS[kind](item[1], line=None)
                except ValidationError as err:
                    self._reject(tag, item[0], "invalid", str(err), where)
                else:
                    screened.append(item)
            rest = screened
        return [rest]

    def _ingest_drops(self, tag: str, batch: list[tuple[int, dict[str, Any]]], where: str) -> bool:
        """Drop reports: the entries of one ``report_id`` are one report, applied once."""
        reports: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
        for item in batch:
            reports.setdefault(item[1].get("report_id"), []).append(item)
        for items in reports.values():
            try:
                report_id, drops = validate_drop_report([rec for _, rec in items])
            except ValidationError as exc:
                for index, _ in items:
                    self._reject(tag, index, "invalid", str(exc), where)
                continue
            try:
                self._accept(EVENTS, [], report_id, drops)
            except IngestError as exc:
                if exc.status >= 500 or exc.status == 429:
                    self.unavailable.inc()
                    return False
                for index, _ in items:
                    self._reject(tag, index, "invalid", exc.message, where)
                continue
            self.records.labels("drops").inc(len(items))
        return True

    def _reject(self, tag: str, index: int, reason: str, message: str, where: str) -> None:
        self.rejected.labels(reason).inc()
        self._log.warning(
            "forward.rejected." + reason,
            "forward: dropped entry %d of tag %s from %s (%s): %s",
            index,
            show(tag),
            where,
            reason,
            message.encode("utf-8", "backslashreplace").decode(),
        )
