"""Versions named by an MLflow model URI, resolved off the serving thread.

The shipper's worker asks for a call site's identity when it builds events, never the
calling thread. For a site whose version is ``models:/churn@champion`` the answer comes
from a background :class:`~mlwatch.tracking.resolver.Resolver`: the worker waits for it
once per URI (``mlflow_wait_s``), then takes whatever it has — the resolved version, or the
provisional ``@champion`` while MLflow is down. A moved alias gives a new identity, so
the next events carry the new version and the shipper registers it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlwatch.client.features import printable
from mlwatch.wire import MAX_NAME

WAIT_SLICE_S = 0.05

if TYPE_CHECKING:
    from mlwatch.client.identity import Identity
    from mlwatch.client.site import Site
    from mlwatch.settings import Config
    from mlwatch.tracking.identity import Identity as Found
    from mlwatch.tracking.resolver import Resolver


class MlflowNames:
    """MLflow's answers for the model URIs of one runtime; never raises, never blocks the
    serving thread (it is only called from the shipper's worker)."""

    def __init__(self, config: Config, hurry: Callable[[], bool] = lambda: False) -> None:
        self.config = config
        self.hurry = hurry  # True: the worker has better things to do than wait for MLflow
        self._resolver: Resolver | None = None
        self._waited: set[str] = set()
        self._cache: dict[Site, tuple[Found, Identity]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def resolved(self, site: Site, ident: Identity) -> Identity:
        """``ident`` as MLflow names it now; ``ident`` itself while MLflow has not answered."""
        if ident.mlflow is None:
            return ident
        found = self._lookup(ident.mlflow)
        if found is None:
            return ident
        hit = self._cache.get(site)
        if hit is not None and hit[0] is found:  # the resolver keeps an unchanged answer
            return hit[1]
        out = dataclasses.replace(
            ident,
            version=printable(found.version, MAX_NAME) or ident.version,
            run_id=ident.run_id or (printable(found.run_id, MAX_NAME) if found.run_id else None),
            code_version=(
                ident.code_version
                if self.config.code_version or not found.code_version
                else printable(found.code_version, MAX_NAME)
            ),
            params=found.registration_params(),
        )
        self._cache[site] = (found, out)
        return out

    def _lookup(self, uri: str) -> Found | None:
        resolver = self._resolver or self._start()
        if resolver is None:
            return None
        found = resolver.current(uri)
        if found is not None or uri in self._waited:
            return found
        self._waited.add(uri)
        return self._first_answer(resolver, uri)

    def _first_answer(self, resolver: Resolver, uri: str) -> Found | None:
        """Wait for MLflow's first answer for ``uri``, in short slices, up to ``mlflow_wait_s``;
        no longer once the first attempt failed (MLflow is down: the provisional version it
        is), the queue fills or shutdown begins — events must not be dropped for a label."""
        deadline = time.monotonic() + self.config.mlflow_wait_s
        while (left := deadline - time.monotonic()) > 0:
            found = resolver.wait(uri, min(WAIT_SLICE_S, left))
            if found is not None or resolver.last_error(uri) is not None or self.hurry():
                return found
        return resolver.current(uri)

    def _start(self) -> Resolver | None:
        with self._lock:
            if self._resolver is None and not self._closed:
                from mlwatch.tracking.resolver import Resolver

                self._resolver = Resolver(
                    self.config.mlflow_tracking_uri,
                    refresh_s=self.config.mlflow_refresh_s,
                    timeout_s=self.config.mlflow_timeout_s,
                )
            return self._resolver

    @property
    def failures(self) -> int:
        """Lookups that failed so far (each is logged when a failure starts and ends)."""
        return 0 if self._resolver is None else self._resolver.failures

    def close(self, timeout: float = 1.0) -> None:
        """Stop resolving; the answers so far stay, for a worker that is still finishing."""
        with self._lock:
            self._closed = True
            resolver = self._resolver
        if resolver is not None:
            resolver.close(timeout)
