"""What a sync did (or, in a dry run, would do), and the content hash that tells whether a
dashboard or rule in Grafana is the one mlwatch wrote.

The hash is the first 12 hex digits of the SHA-256 of the canonical JSON (sorted keys, no
spaces) of the object without what the server sets (``id``, ``version``, ...) and without
the hash itself, so it survives Grafana's round trip:

>>> a = {"uid": "m", "title": "M", "tags": ["b", "a"], "panels": []}
>>> content_hash(a) == content_hash({**a, "id": 7, "version": 3, "tags": ["a", "b"]})
True
>>> content_hash(a) == content_hash({**a, "title": "M2"})
False
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Every dashboard mlwatch writes has this tag; prune looks only at these.
MANAGED_TAG = "mlwatch"
#: ... and ``mlwatch-hash:<12 hex>``, the hash of what mlwatch wrote.
HASH_TAG_PREFIX = "mlwatch-hash:"
#: Keys Grafana sets on a dashboard or an alert rule: left out of the hash and the diff.
SERVER_KEYS = frozenset({"id", "version", "iteration", "updated", "provenance", "orgID"})

#: What happened to one object, in the order the text report lists them.
ACTIONS = ("create", "update", "delete", "hand-edited", "stale", "unchanged")


def canonical(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without the server's keys and the hash tag, tags sorted."""
    out = {k: v for k, v in obj.items() if k not in SERVER_KEYS}
    if isinstance(out.get("tags"), list):
        out["tags"] = sorted(t for t in out["tags"] if not str(t).startswith(HASH_TAG_PREFIX))
    return out


def content_hash(obj: Mapping[str, Any]) -> str:
    text = json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def hash_tag(dashboard: Mapping[str, Any]) -> str | None:
    """The hash mlwatch recorded in a dashboard's tags, or None."""
    for tag in dashboard.get("tags") or ():
        if isinstance(tag, str) and tag.startswith(HASH_TAG_PREFIX):
            return tag[len(HASH_TAG_PREFIX) :]
    return None


def unified_diff(
    uid: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> str:
    """The change from Grafana's JSON to mlwatch's, as a unified diff (keys sorted)."""

    def lines(obj: Mapping[str, Any] | None) -> list[str]:
        if obj is None:
            return []
        text = json.dumps(canonical(obj), indent=2, sort_keys=True, ensure_ascii=False)
        return [line + "\n" for line in text.splitlines()]

    return "".join(
        difflib.unified_diff(lines(before), lines(after), f"grafana/{uid}", f"mlwatch/{uid}")
    )


@dataclass(frozen=True)
class Change:
    """One object: ``kind`` is folder, dashboard or rule; ``action`` one of :data:`ACTIONS`;
    ``detail`` says why (a hand edit) or the version written; ``diff`` is set in dry runs."""

    kind: str
    uid: str
    action: str
    detail: str = ""
    diff: str = ""


@dataclass
class SyncReport:
    """Every object the sync looked at. ``ok`` is false when a hand edit was left alone."""

    dry_run: bool = False
    changes: list[Change] = field(default_factory=list)

    def add(self, kind: str, uid: str, action: str, detail: str = "", diff: str = "") -> None:
        self.changes.append(Change(kind, uid, action, detail, diff))

    def uids(self, kind: str, action: str) -> list[str]:
        return [c.uid for c in self.changes if c.kind == kind and c.action == action]

    @property
    def ok(self) -> bool:
        return not any(c.action == "hand-edited" for c in self.changes)

    @property
    def diffs(self) -> dict[str, str]:
        """``{"dashboard/<uid>": diff}`` for each object a dry run would write."""
        return {f"{c.kind}/{c.uid}": c.diff for c in self.changes if c.diff}

    def text(self, *, with_diffs: bool = True) -> str:
        """The report for a terminal: one line per object that is not unchanged, a count of
        the unchanged ones, then the diffs of a dry run."""
        lines = ["dry run: nothing was written to Grafana" if self.dry_run else ""]
        order = {action: i for i, action in enumerate(ACTIONS)}
        kinds = {"folder": 0, "dashboard": 1, "rule": 2}
        changed = [c for c in self.changes if c.action != "unchanged"]
        for c in sorted(changed, key=lambda c: (order[c.action], kinds.get(c.kind, 3), c.uid)):
            would = "would " if self.dry_run and c.action in ("create", "update", "delete") else ""
            detail = f" ({c.detail})" if c.detail else ""
            lines.append(f"{would}{c.action} {c.kind} {c.uid}{detail}")
        lines.append(f"{len(self.changes) - len(changed)} unchanged")
        if with_diffs:
            lines.extend(c.diff.rstrip("\n") for c in self.changes if c.diff)
        return "\n".join(line for line in lines if line) + "\n"


def by_uid(items: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(item["uid"]): item for item in items if item.get("uid")}
