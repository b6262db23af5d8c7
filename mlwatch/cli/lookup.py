"""Where ``mlwatch status`` and ``mlwatch events`` look, and the plain text they print.

They look at a running sidecar over HTTP (``--url``, else the ``sidecar_url`` setting;
the token is the ``token`` setting: ``MLWATCH_TOKEN``, ``MLWATCH_TOKEN_FILE`` or the config
file, never a flag, which would show in ``ps``), or read a data directory's store directly
and read-only (``--data-dir``, else the ``data_dir`` setting when no sidecar URL is set).
Both sources give the same plain answers, the bodies of the sidecar's ``GET /v1/models``,
``/v1/models/{model}/status`` and ``/v1/models/{model}/events``, which the commands
render; a model nothing is known about is refused with the same message either way.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from mlwatch.errors import ConfigError, MlwatchError, StoreError
from mlwatch.settings import NAME_RE, Config, load_config
from mlwatch.store.catalog import unknown_model
from mlwatch.store.outbox import trigger_view
from mlwatch.store.readonly import ReadOnlyStore
from mlwatch.times import format_us
from mlwatch.wire import ENVIRONMENT_RE

HTTP_TIMEOUT_S = 30.0  # a model list reads every model's counts: allow a large store
MAX_ERROR_BYTES = 64 * 1024


@dataclass(frozen=True)
class Window:
    """Which events to read: ``[since_us, until_us)`` (None: open), newest ``limit`` first."""

    since_us: int | None = None
    until_us: int | None = None
    limit: int = 20
    environment: str | None = None  # None: every environment's


class Source(Protocol):
    """What both commands read, as the sidecar's JSON bodies."""

    def models(self, environment: str | None = None) -> dict[str, Any]: ...
    def status(self, model: str, environment: str | None = None) -> dict[str, Any]: ...
    def events(self, model: str, window: Window) -> dict[str, Any]: ...
    def close(self) -> None: ...


def model_name(text: str) -> str:
    """The MODEL argument, checked as the wire format checks it (argparse ``type``)."""
    if not NAME_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"not a model name: {text[:64]!r} (a letter or digit, then letters, digits "
            "and '_.:-', at most 128)"
        )
    return text


def environment_name(text: str) -> str:
    """An ``--environment`` value, checked as the wire format checks it (argparse ``type``)."""
    if not ENVIRONMENT_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"not an environment: {text[:64]!r} (lowercase letters, digits and '_', at most 64)"
        )
    return text


def add_environment(parser: argparse._ActionsContainer, what: str = "events") -> None:
    """``--environment``: only one environment's events."""
    parser.add_argument(
        "--environment",
        type=environment_name,
        help=f"only the {what} of this environment (dev, qa, prod, ...); default: all",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and where to look: ``--url`` or ``--data-dir``."""
    parser.add_argument("--config", help="path of mlwatch.yaml (default: $MLWATCH_CONFIG)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        help="ask this running sidecar (default: the sidecar_url setting, "
        "$MLWATCH_SIDECAR_URL); the token comes from $MLWATCH_TOKEN or $MLWATCH_TOKEN_FILE",
    )
    where.add_argument(
        "--data-dir",
        help="read this data directory's store directly, read-only (default: the "
        "data_dir setting, when no sidecar URL is set)",
    )


@contextmanager
def open_source(args: argparse.Namespace) -> Iterator[Source]:
    """The source the arguments and settings name, closed after use."""
    config = load_config(args.config)
    source = _choose(args, config)
    try:
        yield source
    finally:
        source.close()


def _choose(args: argparse.Namespace, config: Config) -> Source:
    """``--data-dir`` first; else a sidecar URL (the flag, else the setting, unless
    ``off``); else the ``data_dir`` setting, where the client's local mode writes."""
    if args.data_dir is None:
        url = args.url or config.sidecar_url
        if url and url.strip().lower() != "off":
            setting = "--url" if args.url else "sidecar_url"
            return SidecarSource(url, token=config.token, setting=setting)
    data_dir = Path(args.data_dir or config.data_dir)
    return StoreSource(data_dir, configured=[spec.name for spec in config.models])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers, not followed: the token must not travel to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class SidecarSource:
    """A running sidecar's answers, over HTTP with the bearer token."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        setting: str = "sidecar_url",
        timeout_s: float = HTTP_TIMEOUT_S,
    ) -> None:
        self.where = _base_url(url, setting)  # without user info: safe to show
        self.timeout_s = timeout_s
        self._token = token
        self._opener = urllib.request.build_opener(_NoRedirect)

    def models(self, environment: str | None = None) -> dict[str, Any]:
        return self._get("/v1/models" + _query(environment=environment))

    def status(self, model: str, environment: str | None = None) -> dict[str, Any]:
        return self._get(
            f"/v1/models/{quote(model, safe='')}/status" + _query(environment=environment)
        )

    def events(self, model: str, window: Window) -> dict[str, Any]:
        query: dict[str, Any] = {"limit": window.limit}
        if window.environment is not None:
            query["environment"] = window.environment
        if window.since_us is not None:
            query["since"] = format_us(window.since_us)
        if window.until_us is not None:
            query["until"] = format_us(window.until_us)
        return self._get(f"/v1/models/{quote(model, safe='')}/events?{urlencode(query)}")

    def triggers(self, model: str, limit: int) -> dict[str, Any]:
        return self._get(f"/v1/models/{quote(model, safe='')}/triggers?limit={limit}")

    def retrain(self, model: str, reason: str, version: str | None) -> dict[str, Any]:
        body = {"reason": reason} | ({"version": version} if version else {})
        return self._get(f"/v1/models/{quote(model, safe='')}/retrain", body)

    def close(self) -> None:
        """Nothing to close: each request has its own connection."""

    def _get(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET ``path``, or POST ``body`` as JSON to it."""
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.where + path, data=data, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise MlwatchError(self._refusal(exc.code, _error_body(exc))) from None
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise MlwatchError(f"cannot reach the sidecar at {self.where}: {reason}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise MlwatchError(f"{self.where} did not answer JSON: is it an mlwatch sidecar?")
        return answer

    def _refusal(self, status: int, body: bytes) -> str:
        """One line: the sidecar's own message for an unknown model, else what it answered
        and what to change."""
        detail = _detail(body)
        if (status == 404 and detail.startswith("unknown model")) or status == 409:
            return detail
        hint = ""
        if status == 401:
            hint = " (set MLWATCH_TOKEN or MLWATCH_TOKEN_FILE to the sidecar's token)"
        elif status in (404, 405) or 300 <= status < 400:
            hint = " (is it an mlwatch sidecar of this version, at the URL given?)"
        return f"the sidecar at {self.where} answered {status}: {detail}{hint}"


def _query(**params: str | None) -> str:
    """``?k=v&...`` of the parameters that are set, else nothing."""
    given = {k: v for k, v in params.items() if v is not None}
    return f"?{urlencode(given)}" if given else ""


def _base_url(url: str, setting: str) -> str:
    """``scheme://host[:port][/prefix]`` of a sidecar URL, refused unless http(s)."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise ConfigError(
            setting, "expected an http:// or https:// URL such as http://127.0.0.1:8765"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}{parts.path.rstrip('/')}"


def _error_body(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read(MAX_ERROR_BYTES)
    except (OSError, http.client.HTTPException):
        return b""


def _detail(body: bytes) -> str:
    """The ``detail`` of the sidecar's error body, else the start of the text, on one line."""
    try:
        found = json.loads(body)
        text = found["detail"] if isinstance(found, dict) else body.decode(errors="replace")
    except (ValueError, KeyError):
        text = body.decode(errors="replace")
    return " ".join(str(text).split())[:300] or "(no detail)"


class StoreSource:
    """A data directory's store, read directly and read-only; the configuration's model
    specs count as known models, as they do for the sidecar."""

    def __init__(self, data_dir: Path, *, configured: Collection[str]) -> None:
        path = data_dir / "store.db"
        if not path.is_file():
            raise StoreError(f"no mlwatch store at {path}; is --data-dir the sidecar's?")
        self.store = ReadOnlyStore(path)
        self.configured = frozenset(configured)

    def models(self, environment: str | None = None) -> dict[str, Any]:
        with self._reading():
            return {"models": self.store.model_list(self.configured, environment=environment)}

    def status(self, model: str, environment: str | None = None) -> dict[str, Any]:
        with self._reading():
            self._require(model)
            return self.store.model_status(model, environment=environment)

    def events(self, model: str, window: Window) -> dict[str, Any]:
        with self._reading():
            self._require(model)
            rows = self.store.events(
                model,
                since_us=window.since_us,
                until_us=window.until_us,
                environment=window.environment,
                limit=window.limit,
            )
        return {"model": model, "count": len(rows), "events": rows}

    def triggers(self, model: str, limit: int) -> dict[str, Any]:
        with self._reading():
            self._require(model)
            rows = self.store.triggers(model, limit=limit) if self.store.has_triggers() else []
        return {"model": model, "count": len(rows), "triggers": [trigger_view(t) for t in rows]}

    def close(self) -> None:
        self.store.close()

    def _require(self, model: str) -> None:
        if model in self.configured or self.store.has_model(model):
            return
        raise MlwatchError(unknown_model(model, self.store.known_models(self.configured)))

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """SQLite's errors (a locked or damaged file) as one line naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self.store.path}: {exc}") from None


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns under a header and a rule, as ``mlwatch drift`` prints them."""
    lines = [header, *rows]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def short_time(ts: str | None) -> str:
    """An RFC 3339 time as mlwatch writes it, to the second (``-`` for none)."""
    if not ts:
        return "-"
    return ts[:19] + "Z" if len(ts) > 20 and ts.endswith("Z") else ts
