#!/usr/bin/env bash
# System test: two QEMU VMs on an ipn *switch* network ping each other,
# while a third port (`ipn sub`) watches: it must see their ARP broadcasts
# but none of their unicast IPv4 (ICMP) frames, which the switch delivers
# to the addressee only.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release -q -p vdeplug-ipn -p ipn-cli
export LD_LIBRARY_PATH=$PWD/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
ipn=$PWD/target/release/ipn

work=$(mktemp -d /tmp/ipn-vm-switch.XXXXXX)
net=$work/net
sub_pid=""
cleanup() {
  if [ -n "$sub_pid" ]; then kill "$sub_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$ipn" create "$net" --switch
"$ipn" sub "$net" --hex --description bystander >"$work/seen.hex" &
sub_pid=$!
for _ in $(seq 100); do
  "$ipn" status "$net" --json | grep '"readers": 1,' >/dev/null && break
  sleep 0.05
done

echo "[vm-switch] QEMU <-> QEMU on ipn://$net (switch), bystander listening"
scripts/vm/ping-test.sh "ipn://$net" "ipn://$net"

kill -INT "$sub_pid"
wait "$sub_pid" || true
sub_pid=""

# `ipn sub --hex`: one frame per line, bytes as two hex digits; the
# EtherType is bytes 13 and 14.
arp=$(awk '$13 == "08" && $14 == "06"' "$work/seen.hex" | wc -l)
ipv4=$(awk '$13 == "08" && $14 == "00"' "$work/seen.hex" | wc -l)
total=$(wc -l <"$work/seen.hex")
echo "[vm-switch] bystander saw $total frames: $arp ARP, $ipv4 IPv4"
if [ "$arp" -lt 1 ]; then
  echo "[vm-switch] FAIL: the bystander saw no ARP broadcast; flooding is broken" >&2
  exit 1
fi
if [ "$ipv4" -ne 0 ]; then
  echo "[vm-switch] FAIL: the bystander saw $ipv4 unicast IPv4 frames; the switch leaked them" >&2
  head -n 5 "$work/seen.hex" >&2
  exit 1
fi
echo "[vm-switch] ok: broadcasts flooded, unicast delivered only to its addressee"
