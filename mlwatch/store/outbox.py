"""Retraining triggers in the store: the outbox they are sent from, every attempt, and
the state of each cause (active or cleared, when it last triggered).

A trigger is written (committed, in WAL mode with ``synchronous=FULL``) before anything
is sent, so it survives ``kill -9``; the sender reads the due ones back after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlwatch.store.database import Database
from mlwatch.store.rows import dumps, loads
from mlwatch.times import format_us

#: States of a trigger: ``pending`` (to send), ``delivered``, ``rejected`` (a 4xx),
#: ``failed`` (given up at its deadline), ``dry_run`` (recorded, never sent).
STATES = ("pending", "delivered", "rejected", "failed", "dry_run")
DAY_US = 86_400_000_000
_COLUMNS = (
    "key, model, cause, target, state, body, created_us, updated_us, next_us, attempts, "
    "detail, reference"
)


class Outbox(Database):
    """The ``triggers``, ``trigger_attempts`` and ``causes`` tables."""

    def cause(self, model: str, cause: str) -> dict[str, Any] | None:
        """A cause's state: ``active``, ``changed_us``, ``last_trigger_us`` and the
        ``instances`` still holding it (alert fingerprints, versions)."""
        return _cause(self._conn(), model, cause)

    def request_trigger(
        self,
        model: str,
        cause: str,
        instance: str,
        now_us: int,
        decide: Callable[[dict[str, Any] | None, int], str | None],
        build: Callable[[], tuple[str, dict[str, Any], str]],
    ) -> tuple[str | None, str | None]:
        """In one write transaction, so that two processes on one store decide one at a
        time: the cause's state and the model's triggers of the last day are read,
        ``decide(state, recent)`` says why not (or None), and either the trigger
        ``build()`` makes (key, body, state) is recorded with the cause active, or only
        ``instance`` is added to the active cause. Returns (key, None) or (None, why)."""
        with self._write() as conn:
            state = _cause(conn, model, cause)
            recent = conn.execute(
                "SELECT COUNT(*) FROM triggers WHERE model = ? AND created_us >= ?",
                (model, now_us - DAY_US),
            ).fetchone()[0]
            why = decide(state, int(recent))
            instances = sorted({*(state["instances"] if state else []), instance})
            key = None
            if why is None:
                key, body, trigger_state = build()
                _insert_trigger(conn, key, body, trigger_state, now_us)
            elif state is not None and state["active"] and instance in state["instances"]:
                return None, why  # nothing changed: a storm writes nothing more
            _put_cause(conn, model, cause, instances, now_us, triggered=key is not None)
            return key, why

    def clear_cause(self, model: str, cause: str, instance: str | None, now_us: int) -> bool:
        """``instance`` no longer holds the cause (None: none does); the cause clears when
        no instance is left. Returns whether it cleared."""
        with self._write() as conn:
            state = _cause(conn, model, cause)
            if state is None or not state["active"]:
                return False
            left = [] if instance is None else [i for i in state["instances"] if i != instance]
            conn.execute(
                "UPDATE causes SET active = ?, instances = ?, changed_us = CASE WHEN ? THEN ? "
                "ELSE changed_us END WHERE model = ? AND cause = ?",
                (int(bool(left)), dumps(left), not left, now_us, model, cause),
            )
            return not left

    def count_triggers(self, model: str, since_us: int) -> int:
        """Triggers of ``model`` created since ``since_us`` (every state: a dry run counts)."""
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(*) FROM triggers WHERE model = ? AND created_us >= ?",
                (model, since_us),
            )
            .fetchone()
        )
        return int(row[0])

    def due_triggers(self, now_us: int, limit: int = 50) -> list[dict[str, Any]]:
        """Pending triggers whose next attempt is due, oldest first."""
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM triggers WHERE state = 'pending' "
            "AND (next_us IS NULL OR next_us <= ?) ORDER BY created_us LIMIT ?",
            (now_us, limit),
        )
        return [_trigger(r) for r in rows]

    def next_due_us(self) -> int | None:
        """When the next pending trigger is due (None: nothing pending)."""
        row = (
            self._conn()
            .execute("SELECT MIN(COALESCE(next_us, 0)) FROM triggers WHERE state = 'pending'")
            .fetchone()
        )
        return None if row[0] is None else int(row[0])

    def record_attempt(
        self, key: str, attempt: dict[str, Any], *, state: str, next_us: int | None
    ) -> None:
        """One attempt and what it made of the trigger, in one transaction."""
        with self._write() as conn:
            n = conn.execute(
                "UPDATE triggers SET attempts = attempts + 1, state = ?, next_us = ?, "
                "updated_us = ?, detail = ?, reference = COALESCE(?, reference) "
                "WHERE key = ? RETURNING attempts",
                (
                    state,
                    next_us,
                    attempt["at_us"],
                    attempt["detail"],
                    attempt.get("reference"),
                    key,
                ),
            ).fetchone()[0]
            conn.execute(
                "INSERT OR REPLACE INTO trigger_attempts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    n,
                    attempt["at_us"],
                    attempt["outcome"],
                    attempt["status"],
                    attempt["detail"],
                ),
            )

    def trigger(self, key: str) -> dict[str, Any] | None:
        """One trigger with its attempts."""
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM triggers WHERE key = ?", (key,))
        found = row.fetchone()
        if found is None:
            return None
        trig = _trigger(found)
        trig["attempts"] = self._attempts(key)
        return trig

    def _attempts(self, key: str) -> list[dict[str, Any]]:
        return [
            dict(zip(("n", "at_us", "outcome", "status", "detail"), a, strict=True))
            for a in self._conn().execute(
                "SELECT n, at_us, outcome, status, detail FROM trigger_attempts "
                "WHERE key = ? ORDER BY n",
                (key,),
            )
        ]

    def triggers(
        self,
        model: str,
        *,
        limit: int = 100,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[dict[str, Any]]:
        """A model's triggers created in ``[since_us, until_us)`` (any time by default),
        newest first, each with its attempts."""
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM triggers WHERE model = ? AND created_us >= ? "
            "AND created_us < ? ORDER BY created_us DESC LIMIT ?",
            (model, since_us or 0, until_us if until_us is not None else 2**62, limit),
        )
        out = [_trigger(r) for r in rows]
        for trig in out:
            trig["attempts"] = self._attempts(trig["key"])
        return out

    def has_triggers(self) -> bool:
        """Whether the file has the outbox's tables (a store older than schema 3 read
        read-only does not)."""
        row = self._conn().execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'triggers'"
        )
        return row.fetchone() is not None

    def pending_triggers(self) -> int:
        row = self._conn().execute("SELECT COUNT(*) FROM triggers WHERE state = 'pending'")
        return int(row.fetchone()[0])


def _trigger(row: Any) -> dict[str, Any]:
    names = [c.strip() for c in _COLUMNS.split(",")]
    out = dict(zip(names, row, strict=True))
    out["body"] = loads(out["body"])
    return out


def trigger_view(trigger: dict[str, Any]) -> dict[str, Any]:
    """A stored trigger as the API shows it: times as RFC 3339."""
    out = {k: v for k, v in trigger.items() if not k.endswith("_us")}
    out["created"] = format_us(trigger["created_us"])
    out["updated"] = format_us(trigger["updated_us"])
    out["next_attempt"] = None if trigger["next_us"] is None else format_us(trigger["next_us"])
    out["attempts"] = [
        {**{k: v for k, v in a.items() if k != "at_us"}, "at": format_us(a["at_us"])}
        for a in trigger["attempts"]
    ]
    return out


def _cause(conn: Any, model: str, cause: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT active, changed_us, last_trigger_us, instances FROM causes "
        "WHERE model = ? AND cause = ?",
        (model, cause),
    ).fetchone()
    if row is None:
        return None
    keys = ("active", "changed_us", "last_trigger_us", "instances")
    out = dict(zip(keys, row, strict=True))
    out["instances"] = loads(out["instances"])
    return out


def _put_cause(
    conn: Any, model: str, cause: str, instances: list[str], now_us: int, *, triggered: bool
) -> None:
    """The cause active with ``instances``; ``triggered`` records the trigger's time."""
    conn.execute(
        "INSERT INTO causes (model, cause, active, changed_us, last_trigger_us, instances) "
        "VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (model, cause) DO UPDATE SET "
        "changed_us = CASE WHEN causes.active THEN causes.changed_us ELSE excluded.changed_us "
        "END, active = 1, last_trigger_us = COALESCE(excluded.last_trigger_us, "
        "causes.last_trigger_us), instances = excluded.instances",
        (model, cause, now_us, now_us if triggered else None, dumps(instances)),
    )


def _insert_trigger(conn: Any, key: str, body: dict[str, Any], state: str, now_us: int) -> None:
    """A trigger recorded (idempotent: a key already there is left as it is)."""
    conn.execute(
        f"INSERT OR IGNORE INTO triggers ({_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, NULL, NULL)",
        (key, body["model"], body["cause"], body["target"], state, dumps(body), now_us, now_us),
    )
