"""Watch the Ethernet frames virtual machines send on an ipn network.

A QEMU VM joins the network through the ipn:// vdeplug plugin:

    qemu-system-x86_64 ... -netdev vde,id=n0,sock=ipn:///tmp/lab \\
                           -device virtio-net-pci,netdev=n0

and this script joins the same network (the path, without ipn://) and
prints one line per frame: source and destination address, and what it
carries (ARP, IPv4 with its protocol and addresses, IPv6, ...):

    python qemu_subscriber.py /tmp/lab [--count N] [--timeout S] [--summary]

It only listens (write=False): the VMs never see it. With --summary it
prints, at the end, a JSON line counting frames by source address and
kind (the system test scripts/system/python-qemu.sh reads that). Ctrl-C
or SIGTERM stops it.
"""

import argparse
import ipaddress
import json
import signal
from collections import Counter

import ipn

IP_PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6"}


def mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def describe(frame: bytes) -> tuple[str, str]:
    """(kind, text) of an Ethernet frame."""
    if len(frame) < 14:
        return "runt", f"{len(frame)} bytes, too short for Ethernet"
    ethertype = int.from_bytes(frame[12:14], "big")
    body = frame[14:]
    if ethertype == 0x8100 and len(frame) >= 18:  # 802.1Q tag
        vid = int.from_bytes(frame[14:16], "big") & 0xFFF
        kind, text = describe(frame[:12] + frame[16:])
        return kind, f"vlan {vid} {text}"
    if ethertype == 0x0806 and len(body) >= 28:  # as tcpdump says it
        op = int.from_bytes(body[6:8], "big")
        sender, target = ipaddress.IPv4Address(body[14:18]), ipaddress.IPv4Address(body[24:28])
        if op == 2:
            return "ARP", f"ARP reply {sender} is-at {mac(body[8:14])}"
        return "ARP", f"ARP who-has {target} tell {sender}"
    if ethertype == 0x0800 and len(body) >= 20:
        proto = IP_PROTOCOLS.get(body[9], f"proto {body[9]}")
        src, dst = ipaddress.IPv4Address(body[12:16]), ipaddress.IPv4Address(body[16:20])
        return f"IPv4/{proto}", f"IPv4 {src} -> {dst} {proto}"
    if ethertype == 0x86DD and len(body) >= 40:
        proto = IP_PROTOCOLS.get(body[6], f"next header {body[6]}")
        src, dst = ipaddress.IPv6Address(body[8:24]), ipaddress.IPv6Address(body[24:40])
        return f"IPv6/{proto}", f"IPv6 {src} -> {dst} {proto}"
    return f"0x{ethertype:04x}", f"ethertype 0x{ethertype:04x}, {len(frame)} bytes"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="the network's path (ipn:///PATH to QEMU)")
    ap.add_argument("--count", type=int, help="stop after this many frames")
    ap.add_argument("--timeout", type=float, help="stop after this many seconds without a frame")
    ap.add_argument("--summary", action="store_true", help="print a JSON summary at the end")
    ap.add_argument("--create", action="store_true", help="create the network if there is none")
    args = ap.parse_args()

    # SIGTERM stops it as Ctrl-C does, summary included.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    seen: Counter = Counter()
    buf = bytearray(65536)
    with ipn.join(args.path, write=False, create=args.create,
                  description="qemu_subscriber.py") as port:
        print(f"listening on {args.path} (port {port.index})", flush=True)
        try:
            while args.count is None or sum(seen.values()) < args.count:
                try:
                    n = port.recv_into(buf, timeout=args.timeout)
                except TimeoutError:
                    break
                frame = bytes(buf[:n])
                kind, text = describe(frame)
                src = mac(frame[6:12]) if n >= 12 else "?"
                seen[(src, kind)] += 1
                print(f"{src} > {mac(frame[0:6]) if n >= 6 else '?'}  {text}", flush=True)
        except KeyboardInterrupt:
            pass
    if args.summary:
        print(json.dumps({"frames": sum(seen.values()),
                          "by_source": [{"mac": m, "kind": k, "frames": c}
                                        for (m, k), c in sorted(seen.items())]}))


if __name__ == "__main__":
    main()
