"""Publish/subscribe between separate Python processes: every frame
reaches every subscriber in order on a lossless network; a slow subscriber
of a lossy one loses frames, counted, and never slows the publisher; a
subscriber killed mid-stream stalls nobody."""

from __future__ import annotations

import json
import signal

import ipn
from conftest import spawn_peer, wait_for, wait_ready


def finish(peer, timeout: float = 120.0) -> dict:
    out, _ = peer.communicate(timeout=timeout)
    assert peer.returncode == 0, f"peer exited {peer.returncode}: {out}"
    return json.loads(out.strip().splitlines()[-1])


def test_lossless_every_frame_reaches_every_subscriber(lossless_net: str):
    count, subscribers = 20_000, 3
    subs = [spawn_peer("subscribe", lossless_net, str(count)) for _ in range(subscribers)]
    for sub in subs:
        wait_ready(sub)
    pub = spawn_peer("publish", lossless_net, str(count), "200", str(subscribers))
    wait_ready(pub)
    assert finish(pub)["sent"] == count
    for sub in subs:
        report = finish(sub)
        assert report == {"got": count, "in_order": True, "first": 0,
                          "last": count - 1, "rx_dropped": 0}


def test_lossy_slow_subscriber_loses_frames_counted(net: str):
    count = 50_000
    slow = spawn_peer("subscribe", net, str(count), "0.01", "1")
    wait_ready(slow)
    pub = spawn_peer("publish", net, str(count), "64", "1")
    wait_ready(pub)
    assert finish(pub)["sent"] == count
    # The subscriber reads what is left in the ring, then stops after 1 s
    # without a frame: every frame was either received or counted lost.
    report = finish(slow, timeout=200)
    assert report["in_order"]
    assert report["rx_dropped"] > 0, report
    assert report["got"] + report["rx_dropped"] == count, report


def test_subscriber_killed_mid_stream_stalls_nobody(lossless_net: str):
    count = 100_000
    survivor = spawn_peer("subscribe", lossless_net, str(count))
    victim = spawn_peer("subscribe", lossless_net, str(count), "0.01")
    wait_ready(survivor)
    wait_ready(victim)
    pub = spawn_peer("publish", lossless_net, str(count), "64", "2")
    wait_ready(pub)
    # The slow victim holds the lossless publisher back until it dies.
    wait_for(lambda: any(p["rx_frames"] > 1000 for p in ipn.status(lossless_net)["ports"]
                         if p["description"] == "test subscriber"),
             what="the subscribers to get going")
    assert pub.poll() is None, "the publisher finished before the kill"
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert finish(pub)["sent"] == count
    report = finish(survivor)
    assert report["got"] == count and report["in_order"] and report["rx_dropped"] == 0
