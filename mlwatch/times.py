"""Time in mlwatch: RFC 3339 UTC text on the wire, integers inside.

Events carry ``ts`` as RFC 3339 text and the store keeps ``ts_us``, microseconds since
the epoch, so windows are integer ranges. Every conversion between the two, and from
what users pass (a ``datetime``, epoch seconds, a YAML timestamp), is here.

>>> format_ts(1_700_000_000_123_456_789)
'2023-11-14T22:13:20.123456Z'
>>> parse_ts("2023-11-14T23:13:20.5+01:00", line=None)
('2023-11-14T22:13:20.500000Z', 1700000000500000)
>>> format_us(1_700_000_000_000_000)
'2023-11-14T22:13:20.000000Z'
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from mlwatch.errors import ValidationError

#: What mlwatch writes: UTC with six fractional digits. Checked whole before the fast path,
#: since ``fromisoformat`` alone takes any separator, and a ``Z`` within the first 26.
_CANONICAL_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)
_TS_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$", re.ASCII
)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def format_ts(ts_ns: int) -> str:
    """RFC 3339 UTC with microseconds (the form mlwatch writes) of epoch nanoseconds."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    t = time.gmtime(seconds)  # the year zero-padded: strftime's %Y is not, before 1000
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ns // 1000:06d}Z"
    )


def format_us(ts_us: int) -> str:
    """:func:`format_ts` of epoch microseconds (the store's unit)."""
    return format_ts(ts_us * 1000)


def now_ts() -> str:
    """The current time as mlwatch writes it."""
    return format_ts(time.time_ns())


def show(value: Any) -> str:
    """A value as error messages quote it: short scalars as they are, else the type.

    >>> show(None), show(12), show("x" * 50), show([1])
    ('null', '12', "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...", 'list')
    """
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return type(value).__name__


def parse_ts(value: Any, *, line: int | None, field: str = "ts") -> tuple[str, int]:
    """Validate an RFC 3339 timestamp; return it normalised to UTC and as epoch
    microseconds. Raises :class:`~mlwatch.errors.ValidationError` naming line and field."""
    if type(value) is str and _CANONICAL_RE.fullmatch(value):
        try:  # fast path: the canonical form mlwatch itself writes
            return value, (datetime.fromisoformat(value[:26]) - _EPOCH) // _MICROSECOND
        except ValueError:
            pass  # e.g. February 30: the general path says so
    if not isinstance(value, str) or not _TS_RE.fullmatch(value):
        raise ValidationError(
            f"expected an RFC 3339 timestamp like 2026-01-31T12:00:00Z, got {show(value)}",
            line=line,
            field=field,
        )
    try:
        text = value
        frac = re.search(r"\.(\d+)", text)
        if frac and len(frac.group(1)) > 6:  # fromisoformat takes at most microseconds
            text = text.replace(frac.group(0), "." + frac.group(1)[:6])
        dt = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    except (ValueError, OverflowError, TypeError):  # e.g. year 1 at +01:00: before datetime.min
        raise ValidationError(f"not a valid date/time: {value!r}", line=line, field=field) from None
    us = (dt.replace(tzinfo=None) - _EPOCH) // _MICROSECOND
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z", us


def datetime_us(when: datetime) -> int:
    """Epoch microseconds of a datetime, exactly (a naive one is taken as UTC)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    return (aware - _EPOCH_UTC) // _MICROSECOND


def to_rfc3339(value: Any, *, field: str = "ts") -> str:
    """What a user passes as a time — RFC 3339 text (checked), a ``datetime`` (naive is
    UTC) or epoch seconds — as mlwatch writes it.

    >>> to_rfc3339(1_700_000_000), to_rfc3339(datetime(2026, 1, 2, 3, 4, 5))
    ('2023-11-14T22:13:20.000000Z', '2026-01-02T03:04:05.000000Z')
    """
    if isinstance(value, str):
        return parse_ts(value, line=None, field=field)[0]
    if isinstance(value, datetime):
        return format_us(datetime_us(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_ts(int(value * 1e9))
    raise ValidationError(
        f"expected a datetime, RFC 3339 string or epoch seconds, got {type(value).__name__}",
        field=field,
    )


def lenient_us(value: Any) -> int | None:
    """Epoch microseconds of an ISO 8601 string, without the wire format's checks (rows
    built by hand); None when it does not read as a time."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return datetime_us(when)
