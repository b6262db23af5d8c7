"""The channel between the proxy's worker and the sidecar: batches, counts, the bound on
what waits unsent, and a worker that dies in the middle of a message."""

from __future__ import annotations

import asyncio
import io
import pickle
import struct
from typing import Any

from mlwatch.proxy import channel
from mlwatch.proxy.exchange import Exchange


def call(n: int) -> Exchange:
    return Exchange("POST", f"/v2/models/m{n}/infer", [], b"{}", 200, b"{}", None, n, 1.0)


class Transport:
    """What the shipper writes, and a write buffer as large as the test says."""

    def __init__(self, buffered: int = 0) -> None:
        self.written = bytearray()
        self.buffered = buffered
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closed = True


def test_calls_and_counts_arrive_in_batches_in_order() -> None:
    async def ship() -> bytes:
        shipper = channel.Shipper(lambda: None)
        transport = Transport()
        shipper.connection_made(transport)
        for n in range(channel.BATCH_CALLS + 3):  # one full batch at once, 3 by the timer
            shipper.counts.answered(200)  # as the forwarder does: counted, then submitted
            shipper.submit(call(n))
        shipper.counts.upstream_failed("timeout")
        shipper.counts.refusal(431)
        await asyncio.sleep(channel.FLUSH_S * 3)
        shipper.flush()  # nothing left: sends nothing
        return bytes(transport.written)

    messages = list(channel.messages(io.BytesIO(asyncio.run(ship()))))
    assert [len(m[1]) for m in messages] == [channel.BATCH_CALLS, 3]
    calls = [ex.started_ns for m in messages for ex in m[1]]
    assert calls == list(range(channel.BATCH_CALLS + 3))
    first, second = messages[0][2], messages[1][2]
    assert first.codes == {"2xx": channel.BATCH_CALLS} and not first.upstream
    assert second.codes == {"2xx": 3}
    assert (second.upstream, second.refused) == ({"timeout": 1}, {431: 1})


def test_beyond_the_unsent_bound_calls_are_dropped_and_counted() -> None:
    async def drop() -> None:  # the worker submits on its loop
        shipper = channel.Shipper(lambda: None)
        shipper.connection_made(Transport(buffered=channel.MAX_UNSENT_BYTES + 1))
        shipper.submit(call(1))
        assert shipper.counts.dropped == 1
        lost: list[bool] = []
        gone = channel.Shipper(lambda: lost.append(True))
        gone.connection_made(Transport())
        gone.connection_lost(None)  # the sidecar went away
        gone.submit(call(2))
        assert (gone.counts.dropped, lost) == (1, [True])

    asyncio.run(drop())


def test_a_message_cut_off_by_a_dying_worker_ends_the_stream() -> None:
    whole = pickle.dumps(("batch", [call(1)], channel.Counts()))
    data = struct.pack("!I", len(whole)) + whole
    cut = data + struct.pack("!I", 1000) + b"only part"
    got: list[Any] = list(channel.messages(io.BytesIO(cut)))
    assert len(got) == 1 and got[0][1][0].path == "/v2/models/m1/infer"
    assert list(channel.messages(io.BytesIO(data[:-1]))) == []


def test_the_count_of_dropped_calls_is_sent_without_another_call() -> None:
    """When the sidecar catches up and no call follows, the drops still reach it."""

    async def ship() -> bytes:
        transport = Transport(buffered=channel.MAX_UNSENT_BYTES + 1)
        shipper = channel.Shipper(lambda: None)
        shipper.connection_made(transport)
        shipper.submit(call(1))
        transport.buffered = 0  # the sidecar read what waited
        await asyncio.sleep(channel.FLUSH_S * 3)
        return bytes(transport.written)

    got = list(channel.messages(io.BytesIO(asyncio.run(ship()))))
    assert [(m[0], m[1], m[2].dropped) for m in got] == [("batch", [], 1)]
