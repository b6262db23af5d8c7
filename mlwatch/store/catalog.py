"""Which models a store knows, a summary of each, and what to say about a name it does not
know: the answers to "which models are there?" and "did I spell it right?"
(``GET /v1/models``, ``mlwatch status``).

A model is in the store when it has events, feedback or a registration. Callers add the
names they know otherwise (the configuration's model specs). The names are read by
skipping through the indexes, one seek per model rather than a scan of the events, so
checking a name before every status or events query stays cheap however much is stored.
A summary's counts come from the indexes too, and it reads no event beyond the newest
:data:`RECENT_EVENTS`: its versions are the registered ones and those of these events (a
full scan for every version ever served takes about a second per million events, and holds
back the WAL checkpoint while it runs).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from mlwatch.store.database import Database, window_clause
from mlwatch.times import format_us

#: How many of a model's newest events a summary reads for their versions.
RECENT_EVENTS = 1000
#: How many close names an unknown-model message suggests, and how many known ones it lists.
SUGGESTIONS = 3
LISTED = 5


def _names_of(table: str) -> str:
    """A recursive step over ``table``'s index on ``model``: the next name after the last."""
    return (
        f"{table}_names(name) AS (SELECT min(model) FROM {table} UNION ALL "
        f"SELECT (SELECT min(model) FROM {table} WHERE model > {table}_names.name) "
        f"FROM {table}_names WHERE {table}_names.name IS NOT NULL)"
    )


_MODEL_NAMES = (
    f"WITH RECURSIVE {_names_of('events')}, {_names_of('feedback')} "
    "SELECT name FROM events_names WHERE name IS NOT NULL "
    "UNION SELECT name FROM feedback_names WHERE name IS NOT NULL "
    "UNION SELECT model FROM models ORDER BY 1"
)
_HAS_MODEL = (
    "SELECT EXISTS (SELECT 1 FROM events WHERE model = ?) "
    "OR EXISTS (SELECT 1 FROM feedback WHERE model = ?) "
    "OR EXISTS (SELECT 1 FROM models WHERE model = ?)"
)
_VERSIONS = (
    "SELECT version FROM models WHERE model = ? UNION SELECT version FROM "
    "(SELECT version FROM events WHERE model = ? ORDER BY ts_us DESC LIMIT ?) ORDER BY 1"
)


class Catalog(Database):
    """The model names and summaries of the ``events``, ``feedback`` and ``models`` tables."""

    def models(self) -> list[str]:
        """Every model name with events, feedback or a registration, sorted."""
        return [str(row[0]) for row in self._conn().execute(_MODEL_NAMES)]

    def has_model(self, model: str) -> bool:
        """Whether ``model`` has events, feedback or a registration."""
        row = self._conn().execute(_HAS_MODEL, (model, model, model)).fetchone()
        return bool(row[0])

    def known_models(self, named: Iterable[str] = ()) -> list[str]:
        """The store's models and the ``named`` ones (from the configuration), sorted."""
        return sorted(set(self.models()).union(named))

    def model_summary(self, model: str, *, environment: str | None = None) -> dict[str, Any]:
        """Counts, last event time and versions of one model (zeros when it has no data);
        with ``environment``, the events are that environment's."""
        conn = self._conn()
        where, args = window_clause("", model, None, None, None, environment)
        events, last_us = conn.execute(
            f"SELECT count(*), max(ts_us) FROM events WHERE {where}", args
        ).fetchone()
        feedback = conn.execute("SELECT count(*) FROM feedback WHERE model = ?", (model,))
        versions = conn.execute(_VERSIONS, (model, model, RECENT_EVENTS))
        return {
            "model": model,
            "events_stored": int(events),
            "feedback_stored": int(feedback.fetchone()[0]),
            "last_event": None if last_us is None else format_us(int(last_us)),
            "versions": [str(row[0]) for row in versions],
        }

    def model_list(
        self,
        configured: Collection[str],
        *,
        also: Iterable[str] = (),
        environment: str | None = None,
    ) -> list[dict[str, Any]]:
        """A summary of every known model: the store's, the ``configured`` ones (marked so)
        and any ``also`` known to the caller, by name."""
        names = self.known_models([*configured, *also])
        return [
            self.model_summary(name, environment=environment) | {"configured": name in configured}
            for name in names
        ]


def unknown_model(model: str, known: Sequence[str]) -> str:
    """The message for a model name nothing is known about: the close names first (a typo
    is the likely cause), then a few of the known ones, so nobody has to list them."""
    sentences = [
        f"unknown model {model!r} (no events, feedback or registration, "
        "and not in the configuration)."
    ]
    close = difflib.get_close_matches(model, known, n=SUGGESTIONS)
    if close:
        *first, last = [repr(name) for name in close]
        sentences.append(f"Did you mean {', '.join(first) + ' or ' if first else ''}{last}?")
    if not known:
        sentences.append("No model is known yet.")
    else:
        more = f" (and {len(known) - LISTED} more)" if len(known) > LISTED else ""
        sentences.append(f"Known models: {', '.join(known[:LISTED])}{more}.")
    return " ".join(sentences)
