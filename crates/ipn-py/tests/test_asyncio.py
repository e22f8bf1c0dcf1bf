"""asyncio: `async for frame in port.frames()` and `await port.arecv()`
wait in the event loop, never blocking it."""

from __future__ import annotations

import asyncio

import pytest

import ipn
from conftest import frame, seq_of, spawn_peer


def test_frames_from_another_process_while_the_loop_runs(lossless_net: str):
    count = 5_000

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        with ipn.join(lossless_net, write=False) as port:
            tick = asyncio.create_task(ticker())
            pub = spawn_peer("publish", lossless_net, str(count), "100", "1")
            seqs = []
            async for data in port.frames():
                seqs.append(seq_of(data))
                if len(seqs) == count:
                    break
            await asyncio.sleep(0.05)
            tick.cancel()
            pub.communicate(timeout=30)
            return seqs, ticks

    seqs, ticks = asyncio.run(asyncio.wait_for(main(), 60))
    assert seqs == list(range(count))
    assert ticks > 0


def test_arecv_waits_without_blocking_the_loop(net: str):
    async def main():
        with ipn.join(net) as a, ipn.join(net) as b:
            waiter = asyncio.create_task(b.arecv())
            await asyncio.sleep(0.1)
            assert not waiter.done()  # the loop ran while it waited
            a.send(frame(7))
            assert seq_of(await asyncio.wait_for(waiter, 5)) == 7
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(b.arecv(), 0.1)

    asyncio.run(main())
