"""Print what is published on an ipn network (see publisher.py).

    python subscriber.py /tmp/feed [--count N] [--timeout SECONDS]

Ctrl-C stops it (recv() waits with the GIL released and wakes for signals).
A busy subscriber would read with `port.recv_many()`: one call, many frames.
"""

import argparse

import ipn

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("path", help="the network, e.g. /tmp/feed")
ap.add_argument("--count", type=int, help="stop after this many messages")
ap.add_argument("--timeout", type=float, help="give up after this many seconds of silence")
args = ap.parse_args()

try:
    with ipn.join(args.path, write=False, description="subscriber.py") as port:
        got = 0
        while args.count is None or got < args.count:
            try:
                frame = port.recv(timeout=args.timeout)
            except TimeoutError:
                raise SystemExit(f"nothing for {args.timeout} s")
            print(frame.decode(errors="replace"), flush=True)
            got += 1
except FileNotFoundError as e:
    raise SystemExit(f"{e.strerror}\n(start publisher.py first, or `ipn create {args.path}`)")
except KeyboardInterrupt:
    pass
