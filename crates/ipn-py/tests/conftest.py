"""Shared fixtures of the Python package's tests.

The tests run real processes on real networks: Python peers started from
peers.py, the `ipn` command and a C program linked with libipn. Where to
find the last two: IPN_BIN (the `ipn` command) and IPN_LIB_DIR (the
directory of libipn.so), which scripts/test-python.sh sets; by default,
this workspace's target/release/ipn and target/debug. Missing ones fail
the tests that need them, saying how to build them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import ipn

HERE = Path(__file__).resolve().parent
WORKSPACE = HERE.parents[2]
PEERS = HERE / "peers.py"


def _need(path: Path, how: str) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}")
    return path


@pytest.fixture(scope="session")
def ipn_bin() -> Path:
    path = Path(os.environ.get("IPN_BIN", WORKSPACE / "target/release/ipn"))
    return _need(path, "build it with `cargo build --release -p ipn-cli` or set IPN_BIN")


@pytest.fixture(scope="session")
def libipn_dir() -> Path:
    path = Path(os.environ.get("IPN_LIB_DIR", WORKSPACE / "target/debug"))
    _need(path / "libipn.so", "build it with `cargo build -p ipn-capi` or set IPN_LIB_DIR")
    return path


@pytest.fixture
def scratch():
    """A fresh directory (mode 0755: other users may look inside)."""
    with tempfile.TemporaryDirectory(prefix="ipn-py-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


@pytest.fixture
def net(scratch: Path) -> str:
    """A lossy network with default settings, removed afterwards."""
    path = str(scratch / "net")
    ipn.create(path)
    yield path
    ipn.remove(path, force=True)


@pytest.fixture
def lossless_net(scratch: Path) -> str:
    path = str(scratch / "lossless")
    ipn.create(path, lossless=True)
    yield path
    ipn.remove(path, force=True)


def frame(seq: int, size: int = 64) -> bytes:
    """A test frame: its sequence number, then filler up to `size` bytes."""
    return seq.to_bytes(8, "big") + bytes(size - 8)


def seq_of(data: bytes) -> int:
    return int.from_bytes(data[:8], "big")


def spawn_peer(*args: str, **kw) -> subprocess.Popen:
    """Starts `python peers.py ARGS...` with this interpreter; its standard
    output is a pipe, its first line `ready` once it has joined."""
    return subprocess.Popen(
        [sys.executable, str(PEERS), *args],
        stdout=subprocess.PIPE,
        text=True,
        **kw,
    )


def wait_ready(peer: subprocess.Popen, timeout: float = 20.0) -> None:
    line = peer.stdout.readline()
    assert line.strip() == "ready", f"peer said {line!r} instead of ready (exit {peer.poll()})"


def wait_for(condition, timeout: float = 20.0, what: str = "condition") -> None:
    """Polls `condition()` until true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
