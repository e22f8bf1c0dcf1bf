"""Peer processes for the tests: `python peers.py ROLE PATH ...`.

Each joins the network, prints `ready`, does its part and prints a JSON
summary on its last line.

  subscribe PATH COUNT [DELAY [SILENCE]]  receives COUNT frames (or until
                                 SILENCE s, default 30, without one),
                                 sleeping DELAY s after each batch;
                                 reports how many, the sequence numbers'
                                 order, the first and last
  publish PATH COUNT SIZE READERS  waits until READERS ports read, sends
                                 COUNT frames numbered 0.., reports
  wait PATH                      receives forever (for signal tests)
"""

import json
import signal
import sys
import time

import ipn


def subscribe(path: str, count: int, delay: float = 0.0, silence: float = 30.0) -> None:
    with ipn.join(path, write=False, description="test subscriber") as port:
        print("ready", flush=True)
        got, in_order, last, first = 0, True, -1, None
        while got < count:
            try:
                frames = port.recv_many(256, timeout=silence)
            except TimeoutError:
                break
            for data in frames:
                seq = int.from_bytes(data[:8], "big")
                if first is None:
                    first = seq
                in_order = in_order and seq > last
                last = seq
                got += 1
                if got == count:
                    break
            if delay:
                time.sleep(delay)
        mine = next(p for p in port.status()["ports"] if p["port"] == port.index)
        print(json.dumps({"got": got, "in_order": in_order, "first": first,
                          "last": last, "rx_dropped": mine["rx_dropped"]}), flush=True)


def publish(path: str, count: int, size: int, readers: int) -> None:
    with ipn.join(path, read=False, description="test publisher") as port:
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while port.readers < readers:
            if time.monotonic() > deadline:
                sys.exit(f"only {port.readers} of {readers} readers joined")
            time.sleep(0.01)
        filler = bytes(size - 8)
        start = time.monotonic()
        for seq in range(count):
            port.send(seq.to_bytes(8, "big") + filler)
        print(json.dumps({"sent": count, "seconds": time.monotonic() - start}), flush=True)


def wait(path: str) -> None:
    # Python installs its KeyboardInterrupt handler only if SIGINT was not
    # ignored when it started, and a shell without job control starts
    # background commands with SIGINT ignored: install it whatever we
    # inherited, since the test sends SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with ipn.join(path, description="test waiter") as port:
        print("ready", flush=True)
        port.recv()


if __name__ == "__main__":
    role, path, *rest = sys.argv[1:]
    if role == "subscribe":
        subscribe(path, int(rest[0]), *map(float, rest[1:]))
    elif role == "publish":
        publish(path, int(rest[0]), int(rest[1]), int(rest[2]))
    elif role == "wait":
        wait(path)
    else:
        sys.exit(f"unknown role {role}")
