"""Receive from an ipn network inside an asyncio program, next to other
tasks: the port waits in the event loop (loop.add_reader on its fd),
never blocking it.

    python asyncio_subscriber.py /tmp/feed [--count N]
"""

import argparse
import asyncio
import time

import ipn


async def heartbeat() -> None:
    while True:
        await asyncio.sleep(1)
        print(f"# still responsive at {time.strftime('%H:%M:%S')}", flush=True)


async def main(path: str, count: int | None) -> None:
    beat = asyncio.create_task(heartbeat())
    with ipn.join(path, write=False, description="asyncio_subscriber.py") as port:
        got = 0
        async for frame in port.frames():
            print(frame.decode(errors="replace"), flush=True)
            got += 1
            if count is not None and got >= count:
                break
    beat.cancel()


ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("path")
ap.add_argument("--count", type=int)
args = ap.parse_args()
try:
    asyncio.run(main(args.path, args.count))
except KeyboardInterrupt:
    pass
