"""Reading a bulk answer: what Elasticsearch said of each document, and nothing more.

A document counts as delivered only when its item says so in the shape Elasticsearch
writes: ``{"create": {"_id": <its id>, "status": 201}}`` (or 409, already there). An
answer that is not a JSON object with one item per document sent (a proxy's error page,
a truncated or foreign answer) confirms nothing, so the whole request is retried; an
item of another shape (another operation, a status that is not an integer, another
document's id, a success with an error) confirms nothing of its document, which is
retried. Nothing here raises: every oddity becomes a reason the sink shows.

>>> from mlwatch.elastic.bulk import Op
>>> ops = [Op("s", "e1", b"{}"), Op("s", "e2", b"{}")]
>>> read_items({"items": [{"create": {"_id": "e1", "status": 201}}]}, ops)
'bulk response has 1 items for 2 documents'
>>> [(i.status, i.problem) for i in read_items(
...     {"items": [{"create": {"_id": "e1", "status": 201}}, {"index": {"status": 201}}]}, ops)]
[(201, None), (0, "expected {'create': {...}}, got an object with keys ['index']")]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlwatch.elastic.bulk import Op


@dataclass
class Item:
    """One document's answer: its status and error, or why the item confirms nothing
    (``problem``; the status is then 0)."""

    status: int
    error: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


def kind(value: Any) -> str:
    """A JSON value's type in a sentence, never its content (it may quote features)."""
    if isinstance(value, dict):
        keys = sorted(str(k)[:40] for k in list(value)[:5])
        return f"an object with keys {keys}"
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else "a value")


def read_items(body: Any, ops: list[Op]) -> list[Item] | str:
    """One item per op, in order; or why the answer confirms nothing of the request."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return f"bulk response: expected a JSON object with an items array, got {kind(body)}"
    if len(items) != len(ops):
        return f"bulk response has {len(items)} items for {len(ops)} documents"
    return [_item(op, item) for op, item in zip(ops, items, strict=True)]


def _item(op: Op, item: Any) -> Item:
    result = item.get("create") if isinstance(item, dict) and len(item) == 1 else None
    if not isinstance(result, dict):
        return Item(0, problem=f"expected {{'create': {{...}}}}, got {kind(item)}")
    status, error = result.get("status"), result.get("error")
    if type(status) is not int:
        return Item(0, problem=f"expected an integer status, got {kind(status)}")
    doc_id = result.get("_id")
    if doc_id is not None and doc_id != op.doc_id:
        return Item(0, problem="the item is for another document than the one sent")
    if error is not None and not isinstance(error, dict):
        error = {"type": "unknown", "reason": f"an error that is {kind(error)}"}
    if 200 <= status < 300 and error:
        return Item(0, problem=f"status {status} together with an error")
    return Item(status, error or {})
