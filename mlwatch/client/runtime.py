"""Process-wide state: the current runtime and its lifecycle.

Nothing happens at import. The first monitored call (settings from the
environment and ``MLWATCH_CONFIG``) or :func:`configure` creates the runtime; the
worker thread starts with the first recorded call. The runtime registers, once
per process, an ``atexit`` hook (flush what is queued, within 5 s) and an
``os.register_at_fork`` hook: a forked child (gunicorn pre-fork, multiprocessing)
gets an empty queue, fresh locks and connection, zeroed drop counts and its own
worker, started lazily — the parent's queued events stay with the parent.

A bad configuration raises :class:`~mlwatch.errors.ConfigError` from
``configure()``; found by a monitored call (environment), it is logged and
monitoring turns itself off, because the model must keep serving.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Any

from mlwatch.client.exporter import Exporter
from mlwatch.client.identity import (
    Identity,
    fallback_identity,
    registration,
    resolve,
    resolve_code_version,
)
from mlwatch.client.local import LocalExporter
from mlwatch.client.mlflow_names import MlflowNames
from mlwatch.client.shipper import Shipper
from mlwatch.client.site import Site
from mlwatch.errors import ConfigError
from mlwatch.logs import failures
from mlwatch.settings import Config, load_config
from mlwatch.wire import NAME_RE

EXIT_TIMEOUT_S = 5.0


def make_exporter(config: Config) -> Exporter:
    """Fluentd / Fluent Bit when fluentd_host is set; else the sidecar over HTTP, or the
    embedded store when no sidecar_url is set."""
    if config.fluentd_host:
        from mlwatch.client.fluent import FluentExporter

        return FluentExporter(
            config.fluentd_host,
            config.fluentd_port,
            shared_key=config.forward_shared_key,
            timeout_s=config.send_timeout_s,
        )
    if config.sidecar_url is None:
        return LocalExporter(
            Path(config.data_dir) / "store.db", retention_days=config.retention_days, config=config
        )
    from mlwatch.client.transport import HttpExporter

    try:
        return HttpExporter(config.sidecar_url, token=config.token, timeout_s=config.send_timeout_s)
    except ValueError as exc:
        raise ConfigError("sidecar_url", str(exc)) from None


class Runtime:
    """One configuration, its shipper and the identities it resolved."""

    def __init__(self, config: Config, exporter: Exporter | None = None) -> None:
        if config.model is not None and not NAME_RE.fullmatch(config.model):
            raise ConfigError(
                "model", f"expected letters, digits and '_.:-' (at most 128), got {config.model!r}"
            )
        self.config = config
        self.sample_rate = config.sample_rate
        self._idents: dict[Site, Identity] = {}
        self._code_version: str | None = None
        self.mlflow = MlflowNames(config)
        self.shipper: Shipper | None = None
        if config.enabled and (config.sidecar_url or "").strip().lower() != "off":
            self.shipper = Shipper(
                exporter if exporter is not None else make_exporter(config),
                queue_size=config.queue_size,
                batch_size=config.batch_size,
                flush_interval_s=config.flush_interval_ms / 1000,
                retry_timeout_s=config.retry_timeout_s,
                identity_of=self.identity_of,
                registration_of=self.registration_of,
            )
        if self.shipper is not None:
            self.mlflow.hurry = self.shipper.hurried
        #: What the hot path records into; None means "just call the function".
        self.sink: Shipper | None = self.shipper

    def code_version(self) -> str:
        if self._code_version is None:  # may run git, once per process: not on the hot path
            self._code_version = resolve_code_version(self.config.code_version)
        return self._code_version

    def identity_of(self, site: Site) -> Identity:
        """The site's identity, resolved once (a version named by MLflow follows MLflow's
        answers); never raises (see ``fallback_identity``). Called from the worker only."""
        ident = self._idents.get(site)
        if ident is None:
            try:
                ident = resolve(site, self.config, self.code_version())
            except Exception as exc:  # one bad call site must not stop the others
                ident = fallback_identity(site)
                failures.error(
                    "identity",
                    "mlwatch: resolving the identity of %s failed (%r); "
                    "recording its calls as %s/%s",
                    site.name,
                    exc,
                    ident.model,
                    ident.version,
                )
            self._idents[site] = ident
        return self.mlflow.resolved(site, ident) if ident.mlflow else ident

    def registration_of(self, site: Site) -> dict[str, Any]:
        ident = self.identity_of(site)
        spec = self.config.model_spec(ident.model)
        return registration(ident, spec.task if spec else None, site.params)

    def flush(self, timeout: float) -> bool:
        return True if self.shipper is None else self.shipper.flush(timeout)

    def shutdown(self, timeout: float) -> bool:
        self.sink = None
        done = True if self.shipper is None else self.shipper.shutdown(timeout)
        self.mlflow.close(0.1)  # a lookup under way is a daemon thread: not waited for
        return done


_current: Runtime | None = None
_lock = threading.Lock()
_hooks_installed = False


def _install_hooks() -> None:
    global _hooks_installed
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)


def _at_exit() -> None:
    rt = _current
    if rt is not None:
        rt.shutdown(EXIT_TIMEOUT_S)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by another thread
    failures.reset()
    rt = _current
    if rt is not None and rt.shipper is not None and rt.sink is not None:
        rt.shipper.after_fork_in_child()


def start(config: Config, exporter: Exporter | None = None) -> Runtime:
    """Make a runtime current; the previous one is flushed and shut down."""
    global _current
    new = Runtime(config, exporter)
    with _lock:
        old, _current = _current, new
        _install_hooks()
    if old is not None:
        old.shutdown(EXIT_TIMEOUT_S)
    return new


def current() -> Runtime:
    """The current runtime; the first call builds it from the environment."""
    global _current
    rt = _current
    if rt is not None:
        return rt
    with _lock:
        if _current is None:
            try:
                _current = Runtime(load_config())
            except Exception as exc:  # the model keeps serving, unmonitored
                failures.error("config", "mlwatch: monitoring is off: %s", exc)
                _current = Runtime(Config(enabled=False))
            _install_hooks()
        return _current


def configure(**settings: Any) -> Config:
    """Validate ``settings`` (keys of :class:`~mlwatch.settings.Config`, over the environment
    and ``MLWATCH_CONFIG``) and start monitoring with them. Raises ConfigError."""
    config = load_config(**settings)
    start(config)
    return config


def flush(timeout: float = 5.0) -> bool:
    """Wait until what was recorded so far is shipped (or dropped). True when that
    happened within ``timeout`` and nothing was lost since the last answer of
    ``flush()`` or ``shutdown()``; the log says what was lost and why."""
    rt = _current
    return True if rt is None else rt.flush(timeout)


def shutdown(timeout: float = 5.0) -> bool:
    """Flush within ``timeout`` and stop the worker. Idempotent; also runs at exit.
    True when the worker stopped in time and nothing was lost since the last answer (as
    ``flush()``). Monitored calls made afterwards are not recorded until ``configure()``."""
    rt = _current
    return True if rt is None else rt.shutdown(timeout)
