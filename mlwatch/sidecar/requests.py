"""What the sidecar's routes share about a request: its body within the limits, and a
model name from the path."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Path, Query, Request
from starlette.requests import ClientDisconnect

from mlwatch import wire
from mlwatch.errors import IngestError

# The patterns are documented, and checked by the wire format's own functions, whose
# messages say what was expected.
ModelName = Annotated[
    str, Path(description="Model name.", json_schema_extra={"pattern": wire.NAME_PATTERN})
]
EnvironmentFilter = Annotated[
    str | None,
    Query(
        description="Only this environment's events (dev, qa, prod, ...); all when absent.",
        pattern=wire.ENVIRONMENT_PATTERN,
    ),
]
TIME_DOC = "RFC 3339, from 1970 on"  # with schemas.TIME_RANGE, what the pattern cannot say
TIME_SCHEMA = {"pattern": wire.TS_PATTERN}


def check_model(model: str) -> str:
    if not wire.NAME_RE.fullmatch(model):
        raise IngestError(422, f"path parameter 'model': not a model name: {model[:64]!r}")
    return model


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes | None:
    """The body, refused as soon as it is larger than ``limit`` (413) or not complete
    within ``timeout_s`` (408); None when the client went away before sending it all."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise IngestError(413, f"body of {length} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise IngestError(413, f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise IngestError(
            408,
            f"body not complete within {timeout_s:g}s (request_timeout_s)",
            headers={"Connection": "close"},  # the rest of the body is never read
        ) from None
    except ClientDisconnect:
        return None
    return b"".join(chunks)
