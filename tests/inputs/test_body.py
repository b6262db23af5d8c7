"""Request bodies: every gzip member is read, nothing after the last one is ignored."""

from __future__ import annotations

import gzip

import pytest

from mlwatch.errors import IngestError
from mlwatch.inputs.body import decompress

LIMIT = 1 << 20


def test_all_gzip_members_are_decoded() -> None:
    body = gzip.compress(b'{"a":1}\n') + gzip.compress(b'{"b":2}\n')
    assert decompress(body, "gzip", LIMIT) == b'{"a":1}\n{"b":2}\n'


def test_trailing_bytes_after_the_gzip_stream_are_refused() -> None:
    with pytest.raises(IngestError) as err:
        decompress(gzip.compress(b"[]") + b"garbage", "gzip", LIMIT)
    assert err.value.status == 400 and "7 bytes of trailing data" in str(err.value)


def test_a_bad_second_member_is_named() -> None:
    body = gzip.compress(b"[]") + gzip.compress(b"[]")[:-4]
    with pytest.raises(IngestError) as err:
        decompress(body, "gzip", LIMIT)
    assert err.value.status == 400 and "member 2" in str(err.value)


def test_the_size_limit_bounds_the_sum_of_the_members() -> None:
    member = gzip.compress(b" " * 600)
    assert len(decompress(member, "gzip", 1000)) == 600
    with pytest.raises(IngestError) as err:
        decompress(member * 2, "gzip", 1000)
    assert err.value.status == 413


def test_a_large_member_after_many_small_ones_is_decoded_whole() -> None:
    """The input is walked in slices (a member no longer copies the rest of the body):
    members that span many slices, and slices that hold many members, decode alike."""
    large = gzip.compress(bytes(range(256)) * 40_000, compresslevel=0)  # ~10 MB stored
    body = gzip.compress(b"x", mtime=0) * 999 + large
    assert decompress(body, "gzip", 16 << 20) == b"x" * 999 + bytes(range(256)) * 40_000


def test_more_than_a_thousand_gzip_members_are_refused() -> None:
    body = gzip.compress(b"", mtime=0) * 1001
    with pytest.raises(IngestError, match="more than 1000 members") as exc:
        decompress(body, "gzip", 1 << 20)
    assert exc.value.status == 400
