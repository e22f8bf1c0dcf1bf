"""Publish/subscribe from Python, one publisher to N subscribers, each a
separate process: ipn against what Python programs use for the same job.

  ipn          a lossless ipn network; Port.send / Port.recv per message
  ipn-batch    the same network; Port.send_many / Port.recv_many
  zmq          pyzmq PUB/SUB over ipc://, high-water marks 0 (unbounded:
               nothing is dropped)
  mp-queue     one multiprocessing.Queue per subscriber
  unix-dgram   one Unix datagram socket per subscriber (the publisher
               sends each message to each; a full socket blocks it)

Every transport is lossless here, so each subscriber should get every
message. The publisher sends for DURATION seconds, then an end marker;
each subscriber counts what it received until the marker. Reported per
run: messages received per second per subscriber (from the publisher's
first send to the subscriber's marker), loss, and CPU time (user+system,
all threads: pyzmq's I/O thread, the Queue's feeder) per message: the
publisher's per message sent, the subscribers' per message received, and
all processes' together per message delivered.

Usage: python pubsub.py [--duration S] [--sizes 64,1500] [--fanouts 1,4]
                        [--transports ipn,ipn-batch,zmq,mp-queue,unix-dgram]
                        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import tempfile
import time

BATCH = 64  # frames per send_many
# The ipn networks, lossless. Per-call (`ipn`): the default ring, 256
# frames / 256 KiB per sender. Batches (`ipn-batch`): a ring of 16384
# frames / 4 MiB, room for many batches of 64 (pyzmq's queues, with
# high-water marks 0, have no bound at all). Each measured best so (see
# BENCHMARKS.md); --ipn-ring FRAMES sets one ring for both.
IPN_RINGS = {"ipn": {}, "ipn-batch": {"ring": 16384, "ring_bytes": 4 << 20}}
END = 1  # first byte of the end marker; messages start with 0


def payload(size: int) -> tuple[bytes, bytes]:
    return bytes(size), bytes([END]) + bytes(size - 1)


# ----- publishers: send `msg` until `duration` is over, then `end` ------

def publish_loop(send, msg: bytes, end: bytes, duration: float) -> int:
    sent, stop = 0, time.monotonic() + duration
    while time.monotonic() < stop:
        for _ in range(1000):
            send(msg)
        sent += 1000
    send(end)
    return sent


def pub_ipn(where, msg, end, duration, fanout, batch):
    import ipn
    with ipn.join(where, read=False, description="bench publisher") as port:
        while port.readers < fanout:
            time.sleep(0.001)
        yield
        if not batch:
            yield publish_loop(port.send, msg, end, duration)
            return
        chunk = [msg] * BATCH
        sent, stop = 0, time.monotonic() + duration
        while time.monotonic() < stop:
            for _ in range(1000 // BATCH):
                sent += port.send_many(chunk)
        port.send(end)
        yield sent


def pub_zmq(where, msg, end, duration, fanout, batch):
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.bind(where)
    time.sleep(1.0)  # subscribers connect and subscribe (zmq's slow joiner)
    yield
    yield publish_loop(sock.send, msg, end, duration)
    sock.close(linger=-1)
    ctx.term()


def pub_queue(where, msg, end, duration, fanout, batch):
    queues = where
    yield

    def send(m):
        for q in queues:
            q.put(m)
    yield publish_loop(send, msg, end, duration)
    for q in queues:
        q.close()
        q.join_thread()


def pub_dgram(where, msg, end, duration, fanout, batch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    paths = [f"{where}/sub{i}" for i in range(fanout)]
    while not all(os.path.exists(p) for p in paths):
        time.sleep(0.001)
    yield

    def send(m):
        for p in paths:
            sock.sendto(m, p)
    yield publish_loop(send, msg, end, duration)


# ----- subscribers: receive until the end marker; return the count ------

def sub_ipn(where, i, ready, batch):
    import ipn
    with ipn.join(where, write=False, description=f"bench subscriber {i}") as port:
        ready.set()
        n = 0
        if batch:
            while True:
                frames = port.recv_many(256)
                n += len(frames)
                if frames[-1][0] == END:
                    return n - 1
        recv = port.recv
        while True:
            if recv()[0] == END:
                return n
            n += 1


def sub_zmq(where, i, ready, batch):
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(where)
    ready.set()
    n, recv = 0, sock.recv
    while True:
        if recv()[0] == END:
            sock.close()
            ctx.term()
            return n
        n += 1


def sub_queue(where, i, ready, batch):
    q = where[i]
    ready.set()
    n, get = 0, q.get
    while True:
        if get()[0] == END:
            return n
        n += 1


def sub_dgram(where, i, ready, batch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(f"{where}/sub{i}")
    ready.set()
    n, recv = 0, sock.recv
    while True:
        if recv(65536)[0] == END:
            return n
        n += 1


TRANSPORTS = {
    "ipn": (pub_ipn, sub_ipn, False),
    "ipn-batch": (pub_ipn, sub_ipn, True),
    "zmq": (pub_zmq, sub_zmq, False),
    "mp-queue": (pub_queue, sub_queue, False),
    "unix-dgram": (pub_dgram, sub_dgram, False),
}


def subscriber(name, where, i, ready, results):
    _, sub, batch = TRANSPORTS[name]
    cpu = time.process_time()
    n = sub(where, i, ready, batch)
    results.put(("sub", i, n, time.monotonic(), time.process_time() - cpu))


def publisher(name, where, size, duration, fanout, go, results):
    pub, _, batch = TRANSPORTS[name]
    msg, end = payload(size)
    steps = pub(where, msg, end, duration, fanout, batch)
    next(steps)  # joined, connected, bound
    go.wait()
    cpu, start = time.process_time(), time.monotonic()
    sent = next(steps)
    for _ in steps:
        pass
    results.put(("pub", start, sent, time.monotonic(), time.process_time() - cpu))


def run(name: str, size: int, fanout: int, duration: float) -> dict:
    scratch = tempfile.mkdtemp(prefix="ipn-bench-")
    ctx = mp.get_context("fork")
    if name.startswith("ipn"):
        import ipn
        where = f"{scratch}/net"
        ipn.create(where, lossless=True, **IPN_RINGS[name])
    elif name == "zmq":
        where = f"ipc://{scratch}/zmq"
    elif name == "mp-queue":
        where = [ctx.Queue() for _ in range(fanout)]
    else:
        where = scratch
    results = ctx.Queue()
    readies = [ctx.Event() for _ in range(fanout)]
    go = ctx.Event()
    subs = [ctx.Process(target=subscriber, args=(name, where, i, readies[i], results))
            for i in range(fanout)]
    for p in subs:
        p.start()
    for r in readies:
        if not r.wait(30):
            raise RuntimeError(f"{name}: a subscriber did not start")
    pub = ctx.Process(target=publisher,
                      args=(name, where, size, duration, fanout, go, results))
    pub.start()
    go.set()
    got = [results.get(timeout=duration + 120) for _ in range(fanout + 1)]
    for p in subs + [pub]:
        p.join(30)
    shutil.rmtree(scratch, ignore_errors=True)
    (_, start, sent, _, pub_cpu), = [g for g in got if g[0] == "pub"]
    received = [g for g in got if g[0] == "sub"]
    rates = [n / (t - start) for _, _, n, t, _ in received]
    delivered = sum(n for _, _, n, _, _ in received)
    sub_cpu = sum(c for *_, c in received)
    return {
        "transport": name, "size": size, "subscribers": fanout, "sent": sent,
        "received_min": min(n for _, _, n, _, _ in received),
        "loss": sent * fanout - delivered,
        "rate_per_sub": sum(rates) / len(rates),
        "rate_min": min(rates),
        "pub_cpu_us_per_msg": pub_cpu / sent * 1e6,
        "sub_cpu_us_per_msg": sub_cpu / max(delivered, 1) * 1e6,
        "cpu_us_per_delivered": (pub_cpu + sub_cpu) / max(delivered, 1) * 1e6,
        "seconds": max(t for _, _, _, t, _ in received) - start,
    }


def call_costs(size: int = 64, n: int = 60_000) -> dict:
    """Where a Python process's time goes, in one process: the CPU time
    (process_time) per frame of each call, on a lossy network with a ring
    large enough that nothing is lost or waited for, so that what is
    measured is the call and the library, never a wait."""
    import ipn
    scratch = tempfile.mkdtemp(prefix="ipn-bench-")
    path = f"{scratch}/net"
    ipn.create(path, ports=4, ring=65536, ring_bytes=16 << 20)
    msg, buf, chunk = bytes(size), bytearray(2048), [bytes(size)] * BATCH
    costs = {}
    with ipn.join(path) as a, ipn.join(path) as b:
        def measure(label, fn, frames):
            start = time.process_time()
            fn()
            costs[label] = (time.process_time() - start) / frames * 1e9
        measure("empty Python loop", lambda: [None for _ in range(n)], n)
        measure("send()", lambda: [a.send(msg) for _ in range(n)], n)
        measure("recv()", lambda: [b.recv() for _ in range(n)], n)
        a.send_many(msg for _ in range(n))
        measure("recv(timeout=0)", lambda: [b.recv(timeout=0) for _ in range(n)], n)
        a.send_many(msg for _ in range(n))
        measure("recv_into()", lambda: [b.recv_into(buf) for _ in range(n)], n)
        measure("send_many(64 frames)", lambda: [a.send_many(chunk) for _ in range(n // BATCH)],
                n // BATCH * BATCH)
        measure("recv_many(64)", lambda: [b.recv_many(BATCH) for _ in range(n // BATCH)],
                n // BATCH * BATCH)
    shutil.rmtree(scratch, ignore_errors=True)
    return costs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ipn-ring", type=int, help="ring frames (bytes: 256 each, at least 256 KiB)")
    ap.add_argument("--sizes", default="64,1500")
    ap.add_argument("--fanouts", default="1,4")
    ap.add_argument("--transports", default=",".join(TRANSPORTS))
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.ipn_ring:
        for ring in IPN_RINGS.values():
            ring.update(ring=args.ipn_ring, ring_bytes=max(args.ipn_ring * 256, 256 << 10))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average before {load}, ipn rings {IPN_RINGS}, "
          f"{args.duration} s per run, median of {args.repeat}", flush=True)
    costs = call_costs()
    print("CPU per frame of each call, one process, 64 B, nothing waited for: " + ", ".join(
        f"{k} {v:.0f} ns" for k, v in costs.items()), flush=True)
    rows = []
    print(f"{'transport':<11} {'size':>5} {'subs':>4} {'msgs/s/sub':>11} {'min':>10} "
          f"{'loss':>5} {'pub us/msg':>10} {'sub us/msg':>10} {'all us/dlv':>10}", flush=True)
    for size in map(int, args.sizes.split(",")):
        for fanout in map(int, args.fanouts.split(",")):
            names = args.transports.split(",")
            runs = {name: [] for name in names}
            for _ in range(args.repeat):
                for name in names:
                    runs[name].append(run(name, size, fanout, args.duration))
            for name in names:
                ordered = sorted(runs[name], key=lambda r: r["rate_per_sub"])
                r = ordered[len(ordered) // 2]
                r["rates_all"] = [x["rate_per_sub"] for x in runs[name]]
                rows.append(r)
                print(f"{name:<11} {size:>5} {fanout:>4} {r['rate_per_sub']:>11,.0f} "
                      f"{r['rate_min']:>10,.0f} {r['loss']:>5} {r['pub_cpu_us_per_msg']:>10.2f} "
                      f"{r['sub_cpu_us_per_msg']:>10.2f} {r['cpu_us_per_delivered']:>10.2f}",
                      flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpus": os.cpu_count(), "duration": args.duration,
                       "call_costs_ns": costs, "runs": rows}, f,
                      indent=1)


if __name__ == "__main__":
    main()
