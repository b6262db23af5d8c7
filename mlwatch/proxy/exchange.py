"""One proxied call as capture sees it, and which protocol reads it.

The forward path fills an :class:`Exchange` with references it already holds (the
request's header list, the bodies it kept) and nothing else: headers are looked up and
bodies decoded later, on the recorder's thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlwatch.proxy import oip, tfserving


@dataclass(slots=True)
class Exchange:
    """A call through the proxy: what was asked, what came back, how long it took."""

    method: str
    path: str
    headers: list[tuple[bytes, bytes]]  # the request's, as the ASGI scope gives them
    request_body: bytes | None  # None: larger than proxy_capture_max_bytes
    status: int  # the model server's, or 502 / 504 when it did not answer
    response_body: bytes | None  # None: larger than the limit, or no answer
    response_encoding: str | None
    started_ns: int  # wall clock, for the event's ts
    latency_ms: float  # from the request's head to the answer's last byte
    error: str | None = None  # why the call failed before the model server answered

    def header(self, name: bytes) -> str | None:
        """A request header's value (``name`` in lower case)."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None


@dataclass(frozen=True, slots=True)
class Route:
    """How one call is read: its protocol, and the model and version its path names."""

    protocol: str  # "oip", "tfserving" or "json"
    model: str | None
    version: str | None


def route(
    ex: Exchange, protocol: str, json_route: re.Pattern[str] | None, json_too: bool = False
) -> Route | None:
    """The protocol of an inference call, or None for any other call (a health check,
    metadata): those are forwarded and not recorded. ``json_too``: in ``auto``, a POST
    that is neither protocol is read as plain JSON (a ``proxy_*_path`` is set).

    >>> ex = Exchange("POST", "/v2/models/iris/versions/2/infer", [], b"", 200, b"", None, 0, 1.0)
    >>> route(ex, "auto", None)
    Route(protocol='oip', model='iris', version='2')
    >>> route(Exchange("GET", "/v2/health/ready", [], b"", 200, b"", None, 0, 1.0), "auto", None)
    """
    if ex.method != "POST":
        return None
    if protocol in ("auto", "oip") and (m := oip.PATH.match(ex.path)):
        return Route("oip", m["model"], m["version"])
    if protocol in ("auto", "tfserving") and (m := tfserving.PATH.match(ex.path)):
        return Route("tfserving", m["model"], m["version"] or m["label"])
    json = protocol == "json" or (protocol == "auto" and json_too)
    if json and (json_route is None or json_route.search(ex.path)):
        return Route("json", None, None)
    return None
