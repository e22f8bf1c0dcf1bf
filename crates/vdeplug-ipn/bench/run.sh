#!/bin/bash
# vdeplug benchmark: ipn:// against vde2's vde_switch (vde://) and
# vdeplug4's hub://, all driven by the same C client over libvdeplug.
#
#   crates/vdeplug-ipn/bench/run.sh [SECONDS_PER_CASE]   (default 3)
#
# Builds the plugin (release) and bench/vdebench.c, starts a vde_switch,
# runs every case one after another, prints a markdown table. Needs cc,
# libvdeplug-dev, vdeplug and vde-switch.
set -euo pipefail

secs=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d /tmp/vdebench.XXXXXX)
swpid=""
cleanup() {
	[ -n "$swpid" ] && kill "$swpid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

for tool in cc vde_switch vde_plug cargo; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed" >&2; exit 1; }
done

(cd "$root" && cargo build --quiet --release -p vdeplug-ipn)
cc -O2 -Wall -Werror -o "$work/vdebench" "$here/vdebench.c" -lvdeplug
# LD_LIBRARY_PATH (not VDEPLUGIN_PATH) keeps the system's vde:// and hub://.
export LD_LIBRARY_PATH="$root/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

vde_switch -d -s "$work/sw" -p "$work/sw.pid"
for _ in $(seq 50); do [ -s "$work/sw.pid" ] && [ -e "$work/sw/ctl" ] && break; sleep 0.1; done
swpid=$(cat "$work/sw.pid")

# run NAME RECEIVERS BYTES -> prints "sent/s delivered/s-per-receiver loss%"
run() {
	local name=$1 n=$2 bytes=$3 out
	case $name in
	ipn)          out=$("$work/vdebench" -s "ipn://$work/ipn-$n-$bytes" -r "ipn://$work/ipn-$n-$bytes" -n "$n" -l "$bytes" -t "$secs") ;;
	ipn-lossless) out=$("$work/vdebench" -s "ipn://$work/ipnl-$n-$bytes[lossless]" -r "ipn://$work/ipnl-$n-$bytes[lossless]" -n "$n" -l "$bytes" -t "$secs") ;;
	vde_switch)   out=$("$work/vdebench" -s "vde://$work/sw" -r "vde://$work/sw" -n "$n" -l "$bytes" -t "$secs") ;;
	hub)          out=$("$work/vdebench" -s "vde://$work/hub-$n-$bytes" -f "hub://$work/hub-$n-$bytes" -1 -r "vde://$work/hub-$n-$bytes" -n "$n" -l "$bytes" -t "$secs") ;;
	esac
	echo "$out" | awk -v n="$n" '{
		split($1, a, "="); sent = a[2]; split($3, b, "="); t = b[2]
		split($4, c, "="); k = split(c[2], r, ","); rx = 0
		for (i = 1; i <= k; i++) rx += r[i]
		loss = sent > 0 ? 100 * (sent * n - rx) / (sent * n) : 0
		printf "%.0f %.0f %.1f\n", sent / t, rx / n / t, loss }'
}

echo "Each case: 1 sender, N receivers, ${secs} s; $(nproc) cores; $(uname -r)."
echo "delivered/s = frames received per second per receiver (mean);"
echo "loss = 1 - received / (sent x receivers); ratios compare delivered/s."
echo
echo "| frame | receivers | URL | sent/s | delivered/s per receiver | loss | x vde_switch | x hub:// |"
echo "|---:|---:|---|---:|---:|---:|---:|---:|"
for bytes in 64 1500; do
	for n in 1 4; do
		declare -A res=()
		for name in vde_switch hub ipn ipn-lossless; do
			res[$name]=$(run "$name" "$n" "$bytes")
		done
		vde=$(echo "${res[vde_switch]}" | cut -d' ' -f2)
		hub=$(echo "${res[hub]}" | cut -d' ' -f2)
		for name in ipn ipn-lossless vde_switch hub; do
			set -- ${res[$name]}
			case $name in
			ipn) url="ipn:// (lossy)" ;; ipn-lossless) url="ipn://[lossless]" ;;
			vde_switch) url="vde:// (vde_switch)" ;; hub) url="hub://" ;;
			esac
			awk -v b="$bytes" -v n="$n" -v u="$url" -v s="$1" -v d="$2" -v l="$3" -v v="$vde" -v h="$hub" \
				'BEGIN { printf "| %d B | %d | %s | %d | %d | %.1f%% | %.1fx | %.1fx |\n", b, n, u, s, d, l, (v > 0 ? d / v : 0), (h > 0 ? d / h : 0) }'
		done
		unset res
	done
done
