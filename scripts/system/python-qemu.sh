#!/usr/bin/env bash
# System test: the Python example crates/ipn-py/examples/qemu_subscriber.py
# listens on an ipn network while two QEMU VMs attached to it through the
# vdeplug plugin (-netdev vde,sock=ipn:///PATH) ping each other; it must
# have seen both VMs' ARP and ICMP frames, from their MAC addresses.
#
# Needs the virtual environment scripts/test-python.sh makes
# (target/python-venv, with the package installed); scripts/test.sh runs
# that before the system tests.
set -euo pipefail
cd "$(dirname "$0")/../.."

python=target/python-venv/bin/python
"$python" -c 'import ipn' 2>/dev/null \
  || { echo "[python-qemu] $python cannot import ipn: run scripts/test-python.sh first" >&2; exit 1; }

cargo build --release -q -p vdeplug-ipn
export LD_LIBRARY_PATH=$PWD/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

dir=$(mktemp -d /tmp/ipn-py-qemu.XXXXXX)
net=$dir/net
out=$dir/frames.txt
trap 'kill "$listener" 2>/dev/null || true; rm -rf "$dir"' EXIT

# It creates the network and listens until SIGTERM.
"$python" crates/ipn-py/examples/qemu_subscriber.py "$net" --create --summary >"$out" &
listener=$!
for _ in $(seq 100); do
  grep -q '^listening' "$out" 2>/dev/null && break
  sleep 0.1
done
grep -q '^listening' "$out" || { echo "[python-qemu] the subscriber did not start" >&2; exit 1; }

echo "[python-qemu] two QEMU VMs ping each other on ipn://$net"
scripts/vm/ping-test.sh "ipn://$net" "ipn://$net"

kill -TERM "$listener"
wait "$listener"
summary=$(tail -n 1 "$out")
echo "[python-qemu] the Python subscriber saw: $summary"
grep -E 'ARP|ICMP' "$out" | head -n 4 | sed 's/^/[python-qemu]   /'
"$python" - "$summary" <<'PY'
import json, sys
summary = json.loads(sys.argv[1])
kinds = {}
for row in summary["by_source"]:
    kinds.setdefault(row["mac"], set()).add(row["kind"])
vms = [m for m, k in kinds.items() if {"ARP", "IPv4/ICMP"} <= k]
if len(vms) < 2:
    sys.exit(f"[python-qemu] expected ARP and ICMP from both VMs, saw {kinds}")
print(f"[python-qemu] ok: ARP and ICMP from {', '.join(sorted(vms))}")
PY
