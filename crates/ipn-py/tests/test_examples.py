"""The examples users copy from work: publisher.py to subscriber.py and
asyncio_subscriber.py, each a process of its own. (qemu_subscriber.py is
run against real VMs by scripts/system/python-qemu.sh.)"""

from __future__ import annotations

import json
import subprocess
import sys

import ipn
from conftest import HERE, wait_for

EXAMPLES = HERE.parent / "examples"


def test_publisher_to_both_subscribers(net: str):
    subs = [subprocess.Popen([sys.executable, str(EXAMPLES / name), net, "--count", "3"],
                             stdout=subprocess.PIPE, text=True)
            for name in ("subscriber.py", "asyncio_subscriber.py")]
    with ipn.join(net, read=False) as watcher:
        wait_for(lambda: watcher.readers == 2, what="both subscribers to join")
    subprocess.run([sys.executable, str(EXAMPLES / "publisher.py"), net, "--count", "3",
                    "--rate", "50"], check=True, timeout=60, capture_output=True)
    for sub in subs:
        out, _ = sub.communicate(timeout=60)
        assert sub.returncode == 0, out
        readings = [json.loads(line) for line in out.splitlines() if not line.startswith("#")]
        assert [r["seq"] for r in readings] == [0, 1, 2]
