"""asyncio helpers behind ``Port.frames()`` and ``Port.arecv()``.

A port's ``fileno()`` is readable while frames wait for it (the doorbell's
datagram stays until a receive finds nothing), so the pattern is: receive
with ``timeout=0`` until BlockingIOError, then wait in the event loop for
the fd to become readable, and again. Nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, AsyncIterator

if TYPE_CHECKING:
    from ._ipn import Port


async def _readable(fd: int) -> None:
    """Waits in the running event loop until ``fd`` is readable."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def frames(port: Port, max_frames: int = 64) -> AsyncIterator[bytes]:
    """Yields the port's frames as they come (see ``Port.frames``)."""
    fd = port.fileno()
    while True:
        try:
            batch = port.recv_many(max_frames, timeout=0)
        except BlockingIOError:
            await _readable(fd)
            continue
        for frame in batch:
            yield frame


async def recv(port: Port) -> bytes:
    """Receives one frame, waiting in the event loop (see ``Port.arecv``)."""
    fd = port.fileno()
    while True:
        try:
            return port.recv(timeout=0)
        except BlockingIOError:
            await _readable(fd)
