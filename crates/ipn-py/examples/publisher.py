"""Publish readings on an ipn network, a few times a second.

    python publisher.py /tmp/feed            # creates the network if needed
    python subscriber.py /tmp/feed           # in other terminals, as many as you like

Each message is one frame: here a line of JSON. On a lossy network (the
default) a subscriber that falls behind loses the oldest messages and the
publisher never waits; `--lossless` makes it wait for the slowest one.
"""

import argparse
import json
import os
import time

import ipn

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("path", help="the network, e.g. /tmp/feed")
ap.add_argument("--rate", type=float, default=5.0, help="messages per second")
ap.add_argument("--count", type=int, help="stop after this many")
ap.add_argument("--lossless", action="store_true", help="create the network lossless")
args = ap.parse_args()

with ipn.join(args.path, create=True, lossless=args.lossless, read=False,
              description="publisher.py") as port:
    print(f"publishing on {args.path} as port {port.index} (mtu {port.mtu})")
    seq = 0
    while args.count is None or seq < args.count:
        reading = {"seq": seq, "time": time.time(), "load": os.getloadavg()[0]}
        port.send(json.dumps(reading).encode())
        seq += 1
        time.sleep(1 / args.rate)
