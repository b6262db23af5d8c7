"""Turn a request body into validated records, or a 4xx that says exactly what is wrong.

Accepted bodies: a JSON array of objects (``application/json``; a single object
is taken as one record) or NDJSON (``application/x-ndjson``, also
``application/jsonl``), optionally ``Content-Encoding: gzip``. Limits are explicit:
``max_body_bytes`` applies to the body as received and again after decompression
(a gzip bomb gets 413, not memory exhaustion), ``max_records`` to the record count.

Errors carry an HTTP status and a message naming the line (1-based; for an array,
the element index + 1) and the field. A request is all or nothing: one bad record
rejects the request, and up to ten problems are listed so a client can fix them
in one round.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import orjson

from mlwatch.errors import IngestError, ValidationError

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")
MAX_REPORTED_ERRORS = 10
_GZIP_MAGIC = b"\x1f\x8b"
_FEED = 64 * 1024  # bytes given to zlib at a time: what a member's unused_data can copy
MAX_GZIP_MEMBERS = 1_000  # ``cat``-ed files, a streaming compressor's flushes: a few


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip) within ``max_bytes``.

    Every gzip member is decoded (``cat a.gz b.gz`` is one valid gzip body), with
    ``max_bytes`` bounding their sum and :data:`MAX_GZIP_MEMBERS` their number; bytes
    after the last member that do not start another are refused (400): a body is
    acknowledged only when it was read whole. The input is fed in slices of a memoryview,
    so a body of many small members costs time in proportion to its size.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise IngestError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    view, parts, size, at = memoryview(body), [], 0, 0
    for member in range(1, MAX_GZIP_MEMBERS + 1):
        out, at = _member(view, at, (max_bytes - size, max_bytes), member)
        parts.append(out)
        size += len(out)
        if at == len(view):
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if view[at : at + 2] != _GZIP_MAGIC:
            raise IngestError(
                400,
                f"body is not valid gzip: {len(view) - at} bytes of trailing data after the stream",
            )
    raise IngestError(400, f"body is not valid gzip: more than {MAX_GZIP_MEMBERS} members")


def _member(view: memoryview, at: int, limits: tuple[int, int], member: int) -> tuple[bytes, int]:
    """Decode the gzip member starting at ``at``: its bytes and where the next one starts.
    ``limits`` is what may still come out, and the body's limit (named when exceeded)."""
    budget, limit = limits
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out: list[bytes] = []
    size = 0
    while not inflater.eof:
        if at >= len(view):
            raise IngestError(400, f"body is not valid gzip: truncated stream (member {member})")
        chunk = view[at : at + _FEED]
        try:
            data = inflater.decompress(chunk, budget + 1 - size)
        except zlib.error as exc:
            raise IngestError(400, f"body is not valid gzip (member {member}): {exc}") from None
        size += len(data)
        if size > budget or inflater.unconsumed_tail:
            raise IngestError(413, f"body exceeds {limit} bytes after gzip decompression")
        out.append(data)
        at += len(chunk) - len(inflater.unused_data)
    return b"".join(out), at


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_documents(body: bytes, content_type: str | None) -> list[Any]:
    """Split a decoded body into JSON values, naming the line of a syntax error."""
    media = _media_type(content_type)
    if media in NDJSON_TYPES:
        items = []
        for number, raw in enumerate(body.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                items.append(orjson.loads(raw))
            except orjson.JSONDecodeError as exc:
                raise IngestError(
                    400, f"line {number}: invalid JSON at column {exc.colno}: {exc.msg}"
                ) from None
        if not items:
            raise IngestError(400, "empty body: expected NDJSON records, one per line")
        return items
    if media in JSON_TYPES:
        if not body.strip():
            raise IngestError(400, "empty body: expected a JSON array of records")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise IngestError(
                400, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        return doc if isinstance(doc, list) else [doc]
    accepted = ", ".join(JSON_TYPES + NDJSON_TYPES)
    raise IngestError(415, f"unsupported Content-Type {media or '(none)'!r}; use one of {accepted}")


def validate_all(
    items: list[Any], validate: Callable[..., dict[str, Any]], max_records: int
) -> list[dict[str, Any]]:
    """Validate every record; 413 beyond ``max_records``, 422 listing the first problems."""
    if len(items) > max_records:
        raise IngestError(413, f"{len(items)} records in one request; the limit is {max_records}")
    out: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for line, item in enumerate(items, start=1):
        try:
            out.append(validate(item, line=line))
        except ValidationError as exc:
            errors.append({"line": exc.line, "field": exc.field, "message": exc.reason})
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
    if errors:
        first = errors[0]
        where = f"line {first['line']}" + (f", field '{first['field']}'" if first["field"] else "")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise IngestError(422, f"{where}: {first['message']}{more}", errors)
    return out
