#!/bin/bash
# What a real client spends receiving, joined to a network that a paced
# sender (vdebench -R, one receiver of its own) sends 64-byte frames to,
# at each RATE:
#
# - `vde_plug URL null://`, which drops what it receives, for ipn:// and
#   for a vde_switch;
# - a subscriber that writes every frame to its standard output (here
#   /dev/null) in the vde_plug stream format, one write per frame:
#   `vde_plug URL` for ipn:// and for a vde_switch, and `ipn sub --raw`.
#
# Each receiver's CPU time is read from /proc/PID/schedstat (nanoseconds
# of run time, not the 10 ms ticks of /proc/PID/stat) before and after; so
# is vde_switch's, the process in the middle that an ipn network does
# not have (it relays each frame to vdebench's own receiver and to
# the client: its CPU per frame sent is what the switch adds).
#
#   crates/vdeplug-ipn/bench/vde_plug_cpu.sh [SECONDS] [RATE...]   (default 4 s; 5000 20000)
#
# Builds the plugin and ipn (release) and vdebench.c like run.sh. Needs cc,
# libvdeplug-dev, vdeplug (vde_plug) and vde2 (vde_switch).
set -euo pipefail

secs=${1:-4}
shift || true
rates=${*:-5000 20000}
case $secs in '' | *[!0-9]*) echo "vde_plug_cpu.sh: SECONDS must be a whole number, not '$secs'" >&2; exit 2 ;; esac
for rate in $rates; do
	case $rate in '' | *[!0-9]*) echo "vde_plug_cpu.sh: RATE must be a whole number, not '$rate'" >&2; exit 2 ;; esac
done
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d /tmp/vde_plug_cpu.XXXXXX)
swpid=""
plug=""
cleanup() {
	[ -n "$plug" ] && kill "$plug" 2>/dev/null || true
	[ -n "$swpid" ] && kill "$swpid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
for tool in cc vde_switch vde_plug cargo; do
	command -v "$tool" >/dev/null || { echo "vde_plug_cpu.sh: $tool is not installed" >&2; exit 1; }
done

load=$(cut -d' ' -f1-3 /proc/loadavg)
(cd "$root" && cargo build --quiet --release -p vdeplug-ipn -p ipn-cli)
ipn=$root/target/release/ipn
cc -O2 -Wall -Werror -o "$work/vdebench" "$here/vdebench.c" -lvdeplug
export LD_LIBRARY_PATH="$root/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
vde_switch -d -s "$work/sw" -p "$work/sw.pid"
for _ in $(seq 50); do [ -s "$work/sw.pid" ] && [ -e "$work/sw/ctl" ] && break; sleep 0.1; done
swpid=$(cat "$work/sw.pid")

mkfifo "$work/silent"
exec 3<>"$work/silent"

run_time() { cut -d' ' -f1 "/proc/$1/schedstat"; }

echo "vde_plug_cpu.sh: $secs s per case; $(nproc) CPUs; $(uname -r); load average before the run: $load"
echo
echo "| rate | receiver | frames sent | receiver CPU per frame | share of a CPU | vde_switch CPU per frame |"
echo "|---:|---|---:|---:|---:|---:|"
# One receiver: start it, wait until it has joined, count the frames a
# paced vdebench sends through URL, and print the row.
measure() {
	local rate=$1 url=$2 name=$3
	shift 3
	# Standard input: a FIFO nobody writes, held open by this shell (at
	# the end of its input vde_plug exits; what it reads, it sends).
	"$@" <&3 >/dev/null &
	plug=$!
	sleep 0.5
	kill -0 "$plug" 2>/dev/null || { echo "vde_plug_cpu.sh: '$*' did not start" >&2; exit 1; }
	local before sw_before out after sw_after sent switch
	before=$(run_time "$plug")
	sw_before=$(run_time "$swpid")
	out=$("$work/vdebench" -s "$url" -r "$url" -n 1 -l 64 -t "$secs" -p once -R "$rate")
	after=$(run_time "$plug")
	sw_after=$(run_time "$swpid")
	kill "$plug"
	wait "$plug" 2>/dev/null || true
	plug=""
	sent=$(echo "$out" | sed 's/.*sent=\([0-9]*\).*/\1/')
	case $url in
	vde://*) switch=$(awk -v s="$sent" -v a="$sw_before" -v b="$sw_after" 'BEGIN { printf "%.1f us", (b - a) / s / 1000 }') ;;
	*) switch="(none)" ;;
	esac
	awk -v r="$rate" -v n="$name" -v s="$sent" -v a="$before" -v b="$after" -v t="$secs" -v sw="$switch" \
		'BEGIN { printf "| %d/s | %s | %d | %.1f us | %.1f%% | %s |\n", r, n, s, (b - a) / s / 1000, (b - a) / (t * 1e9) * 100, sw }'
}
for rate in $rates; do
	sw="vde://$work/sw"
	net="$work/net$rate"
	measure "$rate" "$sw" "vde_plug vde:// null:// (vde_switch)" vde_plug "$sw" null://
	measure "$rate" "ipn://$net" "vde_plug ipn:// null://" vde_plug "ipn://$net" null://
	measure "$rate" "$sw" "vde_plug vde:// > stdout (vde_switch)" vde_plug "$sw"
	measure "$rate" "ipn://$net" "vde_plug ipn:// > stdout" vde_plug "ipn://$net"
	measure "$rate" "ipn://$net" "ipn sub --raw > stdout" "$ipn" sub --raw --create "$net"
done
