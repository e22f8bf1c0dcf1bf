"""The package's API in one process: creating and removing networks,
status, frames of every bytes-like kind, batches, errors as built-in
exceptions with the library's messages, timeouts, threads and the GIL."""

from __future__ import annotations

import errno
import io
import json
import re
import selectors
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import ipn
from conftest import WORKSPACE, frame, spawn_peer, wait_for, wait_ready


def test_version_is_the_crates():
    cargo = (WORKSPACE / "Cargo.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    assert ipn.__version__ == version
    assert ipn._ipn.__version__ == version


def test_create_status_remove(scratch: Path, ipn_bin: Path):
    path = str(scratch / "n")
    ipn.create(path, ports=8, mtu=9000, ring=64, lossless=True, switch=True, mode=0o750)
    s = ipn.status(path)
    assert (s["max_ports"], s["mtu"], s["ring_slots"], s["lossless"], s["protocol"]) == (
        8, 9000, 64, True, "switch")
    assert s["path"] == path and s["readers"] == 0 and s["ports"] == []
    with ipn.join(path, description="one") as port:
        assert port.mtu == 9000 and port.lossless and port.path == path
        cli = json.loads(subprocess.run([ipn_bin, "status", "--json", path],
                                        check=True, capture_output=True).stdout)
        # The same document, key for key, value for value.
        assert ipn.status(path) == cli
        assert port.status() == cli
        assert cli["ports"][0]["description"] == "one"
        with pytest.raises(OSError) as busy:
            ipn.remove(path)
        assert busy.value.errno == errno.EBUSY
        assert "still joined" in str(busy.value)
    ipn.remove(path)
    with pytest.raises(FileNotFoundError, match="no such network"):
        ipn.status(path)


def test_ring_frames_follow_ring_bytes_unless_given(scratch: Path):
    # As `ipn create`: one frame per KiB of ring_bytes, at least 256.
    for name, kwargs, slots in [("a", {}, 256), ("b", {"ring_bytes": 4 << 20}, 4096),
                                ("c", {"ring_bytes": 4 << 20, "ring": 64}, 64)]:
        path = str(scratch / name)
        ipn.create(path, **kwargs)
        assert ipn.status(path)["ring_slots"] == slots, kwargs
        ipn.remove(path)


def test_default_description_names_the_script(net: str):
    with ipn.join(net) as port:
        mine = port.status()["ports"][0]
        assert mine["description"].startswith("python")


def test_every_bytes_like_frame(net: str):
    with ipn.join(net) as a, ipn.join(net) as b:
        sent = [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview"),
                memoryview(b"xxsliced")[2:], bytes(range(256)) * 5]
        for data in sent:
            a.send(data)
        for data in sent:
            assert b.recv(timeout=5) == bytes(data)
        with pytest.raises(BlockingIOError):  # a never receives its own
            a.recv(timeout=0)


def test_recv_into_fills_the_start_of_the_buffer(net: str):
    with ipn.join(net) as a, ipn.join(net) as b:
        buf = bytearray(b"\xee" * 100)
        a.send(b"hello")
        assert b.recv_into(buf, timeout=5) == 5
        assert buf[:5] == b"hello" and buf[5:] == b"\xee" * 95
        # Longer than the buffer: truncated, as the library does.
        a.send(b"0123456789")
        small = bytearray(4)
        assert b.recv_into(memoryview(small), timeout=5) == 4
        assert small == b"0123"
        with pytest.raises(TypeError, match="writable"):
            b.recv_into(b"read-only bytes", timeout=0)


def test_batches_keep_order(net: str):
    with ipn.join(net) as a, ipn.join(net) as b:
        assert a.send_many(frame(i) for i in range(200)) == 200
        got = []
        while len(got) < 200:
            got += b.recv_many(64, timeout=5)
        assert [int.from_bytes(f[:8], "big") for f in got] == list(range(200))
        with pytest.raises(BlockingIOError):
            b.recv_many(timeout=0)
        with pytest.raises(ValueError, match="max_frames"):
            b.recv_many(0)


def test_errors_are_builtin_exceptions_with_the_librarys_messages(net: str, scratch: Path):
    missing = str(scratch / "missing")
    with pytest.raises(FileNotFoundError) as e:
        ipn.join(missing)
    assert e.value.errno == errno.ENOENT
    assert str(e.value) == f"[Errno 2] {missing}: no such network; create it with `ipn create {missing}`"
    with pytest.raises(FileExistsError, match="already exists"):
        ipn.create(net)
    with pytest.raises(ValueError, match="mtu 10 not in"):
        ipn.create(str(scratch / "bad"), mtu=10)
    with pytest.raises(ValueError, match="unknown group 'no-such-group-here'"):
        ipn.create(str(scratch / "bad"), group="no-such-group-here")
    with pytest.raises(ValueError, match="timeout must be"):
        ipn.join(net).recv(timeout=-1)
    with ipn.join(net) as port:
        with pytest.raises(ValueError, match="exceeds the network MTU of 1514"):
            port.send(bytes(1515))
        with pytest.raises(ValueError, match="empty frame"):
            port.send(b"")
        with pytest.raises(TypeError, match="bytes-like"):
            port.send("text is not a frame")
    with ipn.join(net, write=False) as listener:
        with pytest.raises(io.UnsupportedOperation, match="does not write"):
            listener.send(b"x")
    with ipn.join(net, read=False) as talker:
        with pytest.raises(io.UnsupportedOperation, match="does not read"):
            talker.recv(timeout=0)
    port = ipn.join(net)
    port.close()
    port.close()  # again: nothing
    assert port.closed and "closed" in repr(port)
    for call in (lambda: port.send(b"x"), lambda: port.recv(0), port.fileno):
        with pytest.raises(ValueError, match="closed port"):
            call()


def test_timeouts(lossless_net: str):
    with ipn.join(lossless_net) as a, \
            ipn.join(lossless_net, write=False) as slow:
        start = time.monotonic()
        with pytest.raises(TimeoutError) as e:
            slow.recv(timeout=0.2)
        waited = time.monotonic() - start
        assert 0.2 <= waited < 5, waited
        assert e.value.errno == errno.ETIMEDOUT
        # The reader does not read: the lossless ring fills up (256 frames).
        sent = 0
        with pytest.raises(BlockingIOError):
            while True:
                a.send(frame(sent), timeout=0)
                sent += 1
        assert sent == 256
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="make room"):
            a.send(frame(sent), timeout=0.2)
        assert 0.2 <= time.monotonic() - start < 5
        with pytest.raises(TimeoutError) as many:
            a.send_many([frame(1), frame(2)], timeout=0.1)
        assert many.value.frames_sent == 0
        # Reading makes room.
        assert len(slow.recv_many(300, timeout=1)) == 256
        assert a.send_many([frame(1), frame(2)], timeout=1) == 2


def test_waiting_releases_the_gil(net: str):
    with ipn.join(net) as a, ipn.join(net) as b:
        got = []
        t = threading.Thread(target=lambda: got.append(b.recv(timeout=10)))
        t.start()
        # While the thread waits in recv(), this one runs Python code.
        spins, end = 0, time.monotonic() + 0.3
        while time.monotonic() < end:
            spins += 1
        assert spins > 10_000, spins
        a.send(b"wake up")
        t.join(10)
        assert got == [b"wake up"]


def test_a_send_goes_out_while_another_thread_waits_in_recv(net: str):
    # A request sent while its thread's twin waits, forever, for the
    # answer: the wait must not hold the port.
    with ipn.join(net) as client, ipn.join(net) as server:
        answers = []
        waiter = threading.Thread(target=lambda: answers.append(client.recv()))
        waiter.start()
        time.sleep(0.2)  # in its wait
        started = time.monotonic()
        sender = threading.Thread(target=client.send, args=(b"request",))
        sender.start()
        sender.join(2)
        assert not sender.is_alive(), "send() waited for the other thread's recv()"
        assert time.monotonic() - started < 0.5
        assert server.recv(timeout=2) == b"request"
        server.send(b"answer")
        waiter.join(5)
        assert answers == [b"answer"]
        # Twice more, each thread again: the port is as it was.
        for n in range(2):
            waiter = threading.Thread(target=lambda: answers.append(client.recv(timeout=5)))
            waiter.start()
            time.sleep(0.05)
            client.send(b"again")
            assert server.recv(timeout=2) == b"again"
            server.send(b"answer %d" % n)
            waiter.join(5)
        assert answers == [b"answer", b"answer 0", b"answer 1"]


def test_a_recv_goes_on_while_another_thread_waits_for_room(scratch: Path):
    path = str(scratch / "n")
    ipn.create(path, lossless=True, ring=16)
    with ipn.join(path) as a, ipn.join(path) as b:
        for i in range(16):
            a.send(frame(i), timeout=1)
        # b's room is gone: this waits until b reads.
        sender = threading.Thread(target=a.send, args=(b"the 17th",))
        sender.start()
        time.sleep(0.1)
        assert sender.is_alive()
        b.send(b"to a")
        got = []
        started = time.monotonic()
        receiver = threading.Thread(target=lambda: got.append(a.recv(timeout=5)))
        receiver.start()
        receiver.join(2)
        assert got == [b"to a"], "recv() waited for the other thread's send()"
        assert time.monotonic() - started < 0.5
        frames = []
        while len(frames) < 17:
            frames += b.recv_many(64, timeout=2)
        sender.join(5)
        assert not sender.is_alive()
        assert frames[-1] == b"the 17th" and len(frames) == 17


def test_close_from_another_thread_ends_a_wait(net: str):
    port = ipn.join(net)
    outcome = []

    def wait():
        try:
            port.recv()
        except ValueError as e:
            outcome.append(str(e))

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)
    port.close()
    t.join(5)
    assert outcome == ["I/O operation on a closed port"]


def test_iteration_ends_when_closed(net: str):
    with ipn.join(net) as a:
        b = ipn.join(net)
        got = []
        t = threading.Thread(target=lambda: got.extend(b))
        t.start()
        a.send(b"one")
        a.send(b"two")
        wait_for(lambda: len(got) == 2, what="both frames")
        b.close()
        t.join(5)
        assert got == [b"one", b"two"]


def test_ctrl_c_interrupts_a_wait_forever(net: str):
    peer = spawn_peer("wait", net, stderr=subprocess.PIPE)
    wait_ready(peer)
    time.sleep(0.2)
    peer.send_signal(signal.SIGINT)
    _, err = peer.communicate(timeout=10)
    assert "KeyboardInterrupt" in err
    # It left the network on the way out.
    assert ipn.status(net)["ports"] == [] or all(
        p["state"] != "active" for p in ipn.status(net)["ports"])


def test_fileno_works_with_selectors(net: str):
    with ipn.join(net) as a, ipn.join(net) as b, selectors.DefaultSelector() as sel:
        sel.register(b, selectors.EVENT_READ)
        assert sel.select(timeout=0.1) == []
        a.send(b"ping")
        ready = sel.select(timeout=5)
        assert [key.fileobj for key, _ in ready] == [b]
        assert b.recv(timeout=0) == b"ping"
        with pytest.raises(BlockingIOError):
            b.recv(timeout=0)  # the empty receive clears the fd
        assert sel.select(timeout=0.1) == []


def test_readers_writers_and_shutdown(net: str):
    with ipn.join(net) as a:
        assert (a.readers, a.writers) == (1, 1)
        with ipn.join(net, write=False) as b, ipn.join(net, read=False):
            assert (a.readers, a.writers) == (2, 2)
            b.shutdown("read")
            assert a.readers == 1
            with pytest.raises(ValueError, match="shutdown takes"):
                b.shutdown("sideways")


def test_busy_poll(net: str):
    with ipn.join(net) as a, ipn.join(net, busy_poll=0.001) as b:
        a.send(b"quick")
        assert b.recv(timeout=5) == b"quick"
    with pytest.raises(ValueError, match="busy poll of"):
        ipn.join(net, busy_poll=1.0)
    with pytest.raises(ValueError, match="busy_poll must be"):
        ipn.join(net, busy_poll=-1)
