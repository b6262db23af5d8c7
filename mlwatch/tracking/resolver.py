"""Model URIs resolved in the background, so that serving code never waits for MLflow.

One daemon thread resolves every URI asked for, one at a time, each bounded by
``timeout_s``; callers only read a dict. An alias is resolved again every ``refresh_s``
(it may move); a version or run URI is fixed once it has answered. A failure is retried
with backoff, counted, and logged once when it starts and once when it ends.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from mlwatch.errors import TrackingError
from mlwatch.tracking.identity import Identity, resolve
from mlwatch.tracking.uris import ModelURI, mask, parse_model_uri

log = logging.getLogger("mlwatch.tracking")
FIRST_RETRY_S = 1.0


@dataclass
class _Entry:
    """What the resolver knows of one URI."""

    parsed: ModelURI | None
    identity: Identity | None = None
    error: str | None = None
    due: float | None = 0.0  # clock time of the next attempt; None: never again
    backoff: float = FIRST_RETRY_S


class Resolver:
    """Resolves MLflow model URIs in a background daemon thread, never on the caller's;
    caches; re-resolves aliases every refresh_s (an alias that moved gives a new
    Identity); retries failures with backoff (start 1 s, doubling, max refresh_s);
    never raises to callers."""

    def __init__(
        self,
        tracking_uri: str | None,
        *,
        refresh_s: float = 60.0,
        timeout_s: float = 10.0,
        on_change: Callable[[Identity], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.on_change = on_change
        self.clock = clock
        self.failures = 0
        self._entries: dict[str, _Entry] = {}
        self._closed = False
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        os.register_at_fork(after_in_child=_after_fork(weakref.ref(self)))

    def current(self, uri: str) -> Identity | None:
        """The identity of ``uri`` as last resolved, or None; never waits. The first
        call for a URI schedules it."""
        entry = self._entries.get(uri)
        if entry is None or self._thread is None:  # new, or the first call in a forked child
            entry = self._schedule(uri)
        return entry.identity

    def wait(self, uri: str, timeout: float) -> Identity | None:
        """The identity of ``uri``, waiting up to ``timeout`` for the first answer (at
        startup, in tests); None sooner if the URI is malformed."""
        deadline = time.monotonic() + timeout
        entry = self._entries.get(uri) or self._schedule(uri)
        with self._cond:
            while entry.identity is None and entry.parsed is not None and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        return entry.identity

    def last_error(self, uri: str) -> str | None:
        """Why the latest attempt for ``uri`` failed; None once it answers."""
        entry = self._entries.get(uri)
        return None if entry is None else entry.error

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (an attempt under way ends within ``timeout_s``). Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _schedule(self, uri: str) -> _Entry:
        with self._cond:
            entry = self._entries.get(uri)
            if entry is None:
                entry = self._entries[uri] = self._new_entry(uri)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._loop, name="mlwatch-mlflow-resolver", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
            return entry

    def _new_entry(self, uri: str) -> _Entry:
        try:
            return _Entry(parse_model_uri(uri))
        except TrackingError as exc:  # never retried: the text will not change
            self.failures += 1
            log.warning("%s", mask(str(exc)))
            return _Entry(None, error=mask(str(exc)), due=None)

    def _forked(self) -> None:
        """In a forked child the thread is gone and the lock may be held: start over."""
        self._cond = threading.Condition()
        self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                uri = self._next_due()
            if uri is not None:
                self._attempt(uri, self._entries[uri])

    def _next_due(self) -> str | None:
        """The URI whose attempt is due, or None after waiting (under the lock) a while."""
        now = self.clock()
        due = min(((e.due, u) for u, e in self._entries.items() if e.due is not None), default=None)
        if due is not None and due[0] <= now:
            return due[1]
        # at most a second, so that an injected clock that jumps is noticed
        self._cond.wait(min(1.0, due[0] - now) if due is not None else 1.0)
        return None

    def _attempt(self, uri: str, entry: _Entry) -> None:
        if entry.parsed is None:
            return
        try:
            found: Identity | None = resolve(
                entry.parsed, self.tracking_uri, timeout_s=self.timeout_s
            )
            error = None
        except TrackingError as exc:  # it names the URI
            found, error = None, mask(str(exc))
        except Exception as exc:  # a surprise from MLflow: counted, logged, retried all the same
            found, error = None, mask(f"{uri}: {type(exc).__name__}: {exc}")
        with self._cond:
            changed = found is not None and self._answered(uri, entry, found)
            if found is None:
                self._failed(uri, entry, str(error))
            self._cond.notify_all()
        if changed and found is not None and self.on_change is not None:
            self._notify(found)

    def _answered(self, uri: str, entry: _Entry, found: Identity) -> bool:
        """Records an answer; whether it names another version or run than before."""
        if entry.error is not None:
            log.warning("%s answers again: version %s", uri, found.version)
        old = entry.identity
        entry.error, entry.backoff = None, FIRST_RETRY_S
        alias = entry.parsed is not None and entry.parsed.kind == "alias"
        entry.due = self.clock() + self.refresh_s if alias else None
        changed = old is None or (old.version, old.run_id) != (found.version, found.run_id)
        # unchanged: keep the object, so that callers caching by identity see no change
        entry.identity = found if changed else old
        return changed

    def _failed(self, uri: str, entry: _Entry, error: str) -> None:
        self.failures += 1
        if entry.error is None:
            log.warning("%s (retrying; logged again when it answers)", error)
        entry.error = error
        entry.due = self.clock() + entry.backoff
        entry.backoff = min(entry.backoff * 2, max(self.refresh_s, FIRST_RETRY_S))

    def _notify(self, identity: Identity) -> None:
        try:
            self.on_change(identity)  # type: ignore[misc]
        except Exception:
            log.exception("on_change for %s failed", identity.uri)


def _after_fork(ref: weakref.ref[Resolver]) -> Callable[[], None]:
    """A fork hook that does not keep the resolver alive."""

    def hook() -> None:
        resolver = ref()
        if resolver is not None:
            resolver._forked()

    return hook
