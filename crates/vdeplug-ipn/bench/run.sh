#!/bin/bash
# vdeplug benchmark: ipn:// against vde2's vde_switch (vde://) and
# vdeplug4's hub://, all driven by the same C client over libvdeplug, all
# in one run.
#
#   crates/vdeplug-ipn/bench/run.sh [SECONDS_PER_CASE]   (default 3)
#   RATE=20000 crates/vdeplug-ipn/bench/run.sh           (paced latency rate)
#
# Builds the plugin (release) and bench/vdebench.c, starts a vde_switch,
# runs every case one after another, prints three markdown tables:
#
# 1. throughput, receivers in QEMU's pattern: poll() the datafd, then ONE
#    vde_recv per readiness (net/vde.c vde_to_qemu; vde_plug does the same);
# 2. throughput, receivers draining: vde_recv until it returns no frame
#    after each poll. No real client does this; kept for comparison with
#    the older figures, labelled as such;
# 3. latency: a sender paced at RATE frames/s to 4 receivers in QEMU's
#    pattern, one-way p50/p99/p99.9.
#
# For one frame size and fan-out, every URL and both patterns run back to
# back, so each ratio compares peers of the same minute. hub:// makes its
# first opener the hub, which forwards only inside its own vde_recv:
# receiver 0 opens hub:// (and always calls vde_recv once per readiness,
# its vde_recv blocking in epoll_wait when nothing is pending), the sender
# and the other receivers join it with vde://. Needs cc, libvdeplug-dev,
# vdeplug and vde-switch.
set -euo pipefail

secs=${1:-3}
rate=${RATE:-20000}
case $secs in '' | *[!0-9.]*) echo "run.sh: SECONDS must be a number, not '$secs'" >&2; exit 2 ;; esac
case $rate in '' | *[!0-9]*) echo "run.sh: RATE must be a whole number, not '$rate'" >&2; exit 2 ;; esac
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

load=$(cut -d' ' -f1-3 /proc/loadavg)
(cd "$root" && cargo build --quiet --release -p vdeplug-ipn)
cc -O2 -Wall -Werror -o "$work/vdebench" "$here/vdebench.c" -lvdeplug
# LD_LIBRARY_PATH (not VDEPLUGIN_PATH) keeps the system's vde:// and hub://.
export LD_LIBRARY_PATH="$root/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

vde_switch -d -s "$work/sw" -p "$work/sw.pid"
for _ in $(seq 50); do [ -s "$work/sw.pid" ] && [ -e "$work/sw/ctl" ] && break; sleep 0.1; done
swpid=$(cat "$work/sw.pid")

names="vde_switch hub ipn ipn-lossless"
label() {
	case $1 in
	ipn) echo "ipn:// (lossy)" ;; ipn-lossless) echo "ipn://[lossless]" ;;
	vde_switch) echo "vde:// (vde_switch)" ;; hub) echo "hub://" ;;
	esac
}

# bench TAG NAME RECEIVERS BYTES ARGS... -> vdebench's output line; every
# case gets a network (or hub) of its own, named by TAG.
bench() {
	local net="$work/net-$1" name=$2 n=$3 bytes=$4
	shift 4
	case $name in
	ipn)          "$work/vdebench" -s "ipn://$net" -r "ipn://$net" -n "$n" -l "$bytes" -t "$secs" "$@" ;;
	ipn-lossless) "$work/vdebench" -s "ipn://$net[lossless]" -r "ipn://$net[lossless]" -n "$n" -l "$bytes" -t "$secs" "$@" ;;
	vde_switch)   "$work/vdebench" -s "vde://$work/sw" -r "vde://$work/sw" -n "$n" -l "$bytes" -t "$secs" "$@" ;;
	hub)          "$work/vdebench" -s "vde://$net" -f "hub://$net" -1 -r "vde://$net" -n "$n" -l "$bytes" -t "$secs" "$@" ;;
	esac
}

# Reads a vdebench line on stdin, prints
# "sent/s delivered/s-per-receiver loss% cpu-ns-per-frame cpu%-of-run".
throughput_fields() {
	awk -v n="$1" '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		sent = f["sent"]; t = f["secs"]
		k = split(f["rx"], r, ","); split(f["cpu_ns"], c, ",")
		rx = 0; per = 0; share = 0; m = 0
		for (i = 1; i <= k; i++) {
			rx += r[i]
			if (r[i] > 0) { per += c[i] / r[i]; share += c[i] / (t * 1e9); m++ }
		}
		loss = sent > 0 ? 100 * (sent * n - rx) / (sent * n) : 0
		printf "%.0f %.0f %.1f %.0f %.0f\n", sent / t, rx / n / t, loss, (m ? per / m : 0), (m ? 100 * share / m : 0) }'
}

# table_rows PATTERN: one markdown row per case measured in PATTERN.
table_rows() {
	local pattern=$1 bytes n name vde hub
	for bytes in 64 1500; do
		for n in 1 4; do
			vde=$(cut -d' ' -f2 "$work/res.$pattern.$bytes.$n.vde_switch")
			hub=$(cut -d' ' -f2 "$work/res.$pattern.$bytes.$n.hub")
			for name in ipn ipn-lossless vde_switch hub; do
				set -- $(cat "$work/res.$pattern.$bytes.$n.$name")
				awk -v b="$bytes" -v n="$n" -v u="$(label "$name")" -v s="$1" -v d="$2" -v l="$3" \
					-v c="$4" -v p="$5" -v v="$vde" -v h="$hub" \
					'BEGIN { printf "| %d B | %d | %s | %d | %d | %.1f%% | %d ns, %d%% | %.1fx | %.1fx |\n",
						b, n, u, s, d, l, c, p, (v > 0 ? d / v : 0), (h > 0 ? d / h : 0) }'
			done
		done
	done
}

# Progress on a terminal's standard error, erased as it goes.
progress() { if [ -t 2 ]; then printf '\r\033[K%s' "$*" >&2; fi; }

echo "run.sh: $secs s per case; paced latency at $rate frames/s; $(nproc) CPUs; $(uname -r); load average before the run: $load"
for bytes in 64 1500; do
	for n in 1 4; do
		for pattern in once drain; do
			for name in $names; do
				progress "$pattern $bytes B 1->$n $(label "$name")"
				bench "$pattern-$bytes-$n-$name" "$name" "$n" "$bytes" -p "$pattern" | throughput_fields "$n" \
					>"$work/res.$pattern.$bytes.$n.$name"
			done
		done
	done
done
for name in $names; do
	progress "latency $(label "$name")"
	bench "latency-$name" "$name" 4 64 -p once -R "$rate" >"$work/lat.$name"
done

progress ""
header="| frame | receivers | URL | sent/s | delivered/s per receiver | loss | rx CPU per frame, % of run | x vde_switch | x hub:// |
|---:|---:|---|---:|---:|---:|---:|---:|---:|"
echo
echo "delivered/s = frames received per second per receiver (mean); loss = 1 - received / (sent x receivers);"
echo "rx CPU = each receiver's user+system CPU time per frame it received, and as a share of the send time (100% = one CPU), mean over receivers;"
echo "ratios compare delivered/s of the same frame size and fan-out."
echo
echo "Throughput, QEMU's pattern: poll() the datafd, then ONE vde_recv per readiness (headline)"
echo
echo "$header"
table_rows once
echo
echo "Throughput, drain pattern: vde_recv until it returns no frame after each poll (no real client does this)"
echo
echo "$header"
table_rows drain
echo
echo "Latency: 1 sender paced at $rate frames/s to 4 receivers in QEMU's pattern, 64 B frames, one-way (receiver's CLOCK_MONOTONIC after vde_recv - the stamp taken before vde_send)"
echo
echo "| URL | sent/s | p50 us | p99 us | p99.9 us | loss | rx CPU per frame, % of run | p50 / vde_switch's | p99 / vde_switch's | sender late p50, p99 us; skipped |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
vde_lat=$(tr ' ' '\n' <"$work/lat.vde_switch" | sed -n 's/^lat_ns=//p')
for name in ipn ipn-lossless vde_switch hub; do
	line=$(cat "$work/lat.$name")
	fields=$(echo "$line" | throughput_fields 4)
	echo "$line" | awk -v u="$(label "$name")" -v vl="$vde_lat" -v tf="$fields" '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		split(f["lat_ns"], l, ","); split(f["late_ns"], late, ","); split(vl, v, ","); split(tf, t, " ")
		printf "| %s | %d | %.1f | %.1f | %.1f | %.1f%% | %d ns, %d%% | %.2fx | %.2fx | %.1f, %.1f; %d |\n",
			u, t[1], l[1] / 1e3, l[2] / 1e3, l[3] / 1e3, t[3], t[4], t[5],
			(v[1] > 0 ? l[1] / v[1] : 0), (v[2] > 0 ? l[2] / v[2] : 0),
			late[1] / 1e3, late[2] / 1e3, f["skipped"] }'
done
