"""ipn: Inter Process Networking for Python.

Publish/subscribe among processes on one Linux machine with no broker. A
network is a path in the file system; processes join it as *ports*, and
every frame (a message of 1 to ``mtu`` bytes) one port sends reaches every
other port that reads, through shared memory. Frames from one sender
arrive in order; a port never receives its own.

A network is *lossy* by default: a reader that falls behind loses the
oldest frames (counted in its ``rx_dropped``) and the sender never waits.
A *lossless* network makes senders wait until every live reader has room;
a reader that dies or stops reading is never waited for.

    import ipn

    ipn.create("/tmp/feed", lossless=True)
    with ipn.join("/tmp/feed", description="publisher") as pub:
        pub.send(b"tick")

    with ipn.join("/tmp/feed", write=False) as sub:
        frame = sub.recv(timeout=1.0)            # bytes
        frames = sub.recv_many(64)              # list of bytes, one call

    async for frame in sub.frames():            # asyncio
        ...

The same networks are reached from Rust (the ``ipn`` crate), C (libipn),
the shell (``ipn pub``, ``ipn sub``, ``ipn status``) and QEMU
(``-netdev vde,sock=ipn:///path``).

Errors are the built-in exceptions: FileNotFoundError (no network),
FileExistsError, PermissionError (naming the group to ask to join),
TimeoutError, BlockingIOError (``timeout=0`` and nothing to do),
ValueError (an empty or oversized frame, a bad argument),
io.UnsupportedOperation (sending on a read-only port), OSError otherwise;
each carries the library's message and the errno libipn would set.
"""

from __future__ import annotations

import os
import sys

from . import _ipn
from ._ipn import LAYOUT_VERSION, Port, create, remove, status

__version__: str = _ipn.__version__

__all__ = [
    "LAYOUT_VERSION",
    "Port",
    "__version__",
    "create",
    "join",
    "remove",
    "status",
]


def _default_description() -> str:
    """What ``ipn status`` shows for a port joined without a description:
    ``python`` and the script's name."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return f"python {script}".strip()


def join(
    path: str | os.PathLike[str],
    *,
    description: str | None = None,
    read: bool = True,
    write: bool = True,
    busy_poll: float = 0.0,
    create: bool = False,
    ports: int = 64,
    mtu: int = 1514,
    ring: int | None = None,
    ring_bytes: int | None = None,
    lossless: bool = False,
    switch: bool = False,
    mode: int = 0o770,
    group: str | int | None = None,
) -> Port:
    """Joins the network at ``path`` as a new port and returns it.

    ``description`` is what ``ipn status`` shows for the port (default:
    ``python`` and the script's name). A port that does not ``read`` is
    never waited for by lossless senders; one that does not ``write`` only
    listens. ``busy_poll`` (seconds, at most 0.1), like Linux's
    SO_BUSY_POLL: a receive that finds nothing keeps looking that long
    before it sleeps, for the lowest latency at the cost of CPU; by
    default a receiver looks ahead only while frames come faster than a
    wake-up costs. With ``create=True`` the network is created first if there is
    none, with ``ports``, ``mtu``, ``ring``, ``ring_bytes``, ``lossless``,
    ``switch``, ``mode`` and ``group`` as ``create()`` takes them.

    The port is a context manager: leaving the ``with`` block leaves the
    network. FileNotFoundError if there is no network; PermissionError,
    naming the group to ask to be added to, if you may not join it.
    """
    return _ipn.join(
        path,
        description=_default_description() if description is None else description,
        read=read,
        write=write,
        busy_poll=busy_poll,
        create=create,
        ports=ports,
        mtu=mtu,
        ring=ring,
        ring_bytes=ring_bytes,
        lossless=lossless,
        switch=switch,
        mode=mode,
        group=group,
    )
