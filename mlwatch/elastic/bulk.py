"""Bulk requests to Elasticsearch: one document per operation, grouped under the size
limits, and the dead letter of a document Elasticsearch refuses for what it is.

A per-item error caused by the document itself (:data:`DOCUMENT_ERRORS`: a mapping
conflict, a parse error) cannot succeed on retry, so the document goes to the
dead-letter stream; anything else (401, 403, 404, 429, 5xx, cluster blocks, bad index
names) is the cluster's state or the configuration: retried, never skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from mlwatch.elastic.documents import DEAD_LETTER, Origin
from mlwatch.times import now_ts

MAX_REQUEST_BYTES = 16 << 20
TRUNCATED_DEAD_LETTER = 64 << 10
# Per-item errors caused by the document itself: retrying cannot help, so the document
# goes to the dead-letter stream. Anything else (401, 403, 404, 429, 5xx, cluster blocks,
# bad index names) is the cluster's state or our configuration: retried, never skipped.
DOCUMENT_ERRORS = frozenset(
    {
        "mapper_parsing_exception",
        "document_parsing_exception",
        "illegal_argument_exception",
        "strict_dynamic_mapping_exception",
        "x_content_parse_exception",
        "parse_exception",
        "mapper_exception",
        "json_parse_exception",
        "document_source_missing_exception",
    }
)
_PREVIEW = re.compile(r"Preview of field's value: .*", re.DOTALL)


@dataclass
class Op:
    """One document to create: its target, id, and encoded source."""

    stream: str
    doc_id: str
    source: bytes

    def lines(self) -> bytes:
        action = orjson.dumps({"create": {"_index": self.stream, "_id": self.doc_id}})
        return action + b"\n" + self.source + b"\n"


@dataclass
class Outcome:
    """What one bulk request left to do."""

    retry: list[Op] = field(default_factory=list)
    dead: list[Op] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def join(self, other: Outcome) -> Outcome:
        self.retry += other.retry
        self.dead += other.dead
        self.problems += other.problems
        return self


def chunks(ops: list[Op], batch_size: int) -> list[list[Op]]:
    """Consecutive groups of at most ``batch_size`` documents and MAX_REQUEST_BYTES."""
    out: list[list[Op]] = []
    size = 0
    for op in ops:
        n = len(op.source) + 128
        if out and len(out[-1]) < batch_size and size + n <= MAX_REQUEST_BYTES:
            out[-1].append(op)
            size += n
        else:
            out.append([op])
            size = n
    return out


def dead_letter(op: Op, status: int, error: dict[str, Any], stream: str, origin: Origin) -> Op:
    """The dead letter of ``op`` for the stream ``stream``: the error, where the document
    was going, and the document — its first 64 KiB when it was refused for its size (or
    its dead letter would be refused too; the original is still in the embedded store)."""
    limit = TRUNCATED_DEAD_LETTER if status == 413 else len(op.source)
    letter: dict[str, Any] = {
        "data_stream": op.stream,
        "status": status,
        "document": op.source[:limit].decode(errors="replace"),
    }
    if limit < len(op.source):
        letter["truncated_from"] = len(op.source)
    doc = {
        "@timestamp": now_ts(),
        "event": {"id": op.doc_id, "kind": "event", "dataset": DEAD_LETTER},
        "error": {
            "type": str(error.get("type", "unknown")),
            "message": str(error.get("reason", error))[:8192],
        },
        "mlwatch": {"dead_letter": letter},
        **origin.fields(),
    }
    return Op(stream, op.doc_id, orjson.dumps(doc))


def quiet(reason: str) -> str:
    """An Elasticsearch error reason without the value it quotes: feature values that are
    not marked sensitive still do not belong in logs."""
    return _PREVIEW.sub("Preview of field's value: (omitted)", reason)
