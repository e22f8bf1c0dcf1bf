"""Type stubs of the extension module ``ipn._ipn`` (see ``help(ipn)``)."""

import os
from collections.abc import AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal

from typing_extensions import Buffer, Self

__version__: str
LAYOUT_VERSION: int

_Path = str | os.PathLike[str]

def create(
    path: _Path,
    *,
    ports: int = 64,
    mtu: int = 1514,
    ring: int | None = None,
    ring_bytes: int | None = None,
    lossless: bool = False,
    switch: bool = False,
    mode: int = 0o770,
    group: str | int | None = None,
) -> None:
    """Creates a network at ``path``, as ``ipn create`` does."""

def remove(path: _Path, force: bool = False) -> None:
    """Removes the network at ``path``, as ``ipn rm`` does."""

def status(path: _Path) -> dict[str, Any]:
    """The network's snapshot: the dict ``ipn status --json`` prints,
    except that each port's ``vxlan`` is None (``ipn status`` reads the
    counters an ``ipn vxlan`` port publishes)."""

def join(
    path: _Path,
    *,
    description: str = "",
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
    """Joins the network at ``path`` as a new port."""

class Port:
    """A port joined to a network (see ``ipn.join``)."""

    @property
    def index(self) -> int:
        """This port's number (its slot)."""
    @property
    def mtu(self) -> int:
        """Largest frame the network carries, in bytes."""
    @property
    def max_frame(self) -> int:
        """Largest frame a receive can return."""
    @property
    def lossless(self) -> bool:
        """Whether senders wait for slow readers."""
    @property
    def path(self) -> str:
        """The network's path."""
    @property
    def readers(self) -> int:
        """Live ports that read, this one included if it reads."""
    @property
    def writers(self) -> int:
        """Live ports that write, this one included if it writes."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def send(self, frame: Buffer, timeout: float | None = None) -> None:
        """Sends one frame to every other port."""
    def send_many(self, frames: Iterable[Buffer], timeout: float | None = None) -> int:
        """Sends every frame of ``frames``, waking each sleeping subscriber
        once for all of them; returns how many."""
    def recv(self, timeout: float | None = None) -> bytes:
        """Receives one frame."""
    def recv_into(self, buffer: Buffer, timeout: float | None = None) -> int:
        """Receives one frame into a writable buffer; returns its length."""
    def recv_many(self, max_frames: int = 64, timeout: float | None = None) -> list[bytes]:
        """Receives up to ``max_frames`` frames, waiting for the first."""
    def frames(self, max_frames: int = 64) -> AsyncIterator[bytes]:
        """asyncio: ``async for frame in port.frames()``."""
    async def arecv(self) -> bytes:
        """asyncio: ``frame = await port.arecv()``."""
    def fileno(self) -> int:
        """The fd that is readable while frames wait."""
    def shutdown(self, how: Literal["read", "write", "both"]) -> None:
        """Stops receiving, sending, or both."""
    def status(self) -> dict[str, Any]:
        """The network's snapshot, as ``ipn.status()``."""
    def close(self) -> None:
        """Leaves the network."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
