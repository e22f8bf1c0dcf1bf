#!/bin/bash
# `perf stat` of a real client receiving: `vde_plug URL null://` joined to
# a network a paced vdebench sends 64-byte frames to (as vde_plug_cpu.sh),
# for a vde_switch and for ipn://, ROUNDS times each, alternating. Prints
# vdebench's summary, vde_plug's task-clock, context switches, CPU
# migrations, page faults and system calls over the run, and beside them
# its run time from /proc/PID/schedstat (what vde_plug_cpu.sh reads) over
# the same frames: the scheduler's count includes each context switch
# around the task, perf's task-clock only the time the task ran.
#
#   crates/vdeplug-ipn/bench/vde_plug_perfstat.sh [RATE] [SECONDS] [ROUNDS]   (default 20000 4 2)
#
# PIN=apart in the environment runs vde_plug on CPU 1 and vdebench and
# vde_switch on CPU 0 (taskset): the client is then always woken on a CPU
# that was idle, whoever woke it.
#
# Needs perf (linux-perf), cc, libvdeplug-dev, vdeplug and vde2; root or
# kernel.perf_event_paranoid <= 1 for the syscall tracepoint.
set -euo pipefail
rate=${1:-20000}
secs=${2:-4}
rounds=${3:-2}
for n in "$rate" "$secs" "$rounds"; do
	case $n in '' | *[!0-9]*) echo "vde_plug_perfstat.sh: '$n' is not a whole number" >&2; exit 2 ;; esac
done
for tool in cc perf vde_switch vde_plug cargo; do
	command -v "$tool" >/dev/null || { echo "vde_plug_perfstat.sh: $tool is not installed" >&2; exit 1; }
done
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d /tmp/vde_plug_perfstat.XXXXXX)
plug=""
cleanup() {
	[ -n "$plug" ] && kill "$plug" 2>/dev/null || true
	[ -s "$work/sw.pid" ] && kill "$(cat "$work/sw.pid")" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
(cd "$root" && cargo build --quiet --release -p vdeplug-ipn)
cc -O2 -Wall -Werror -o "$work/vdebench" "$here/vdebench.c" -lvdeplug
export LD_LIBRARY_PATH="$root/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
case ${PIN:-} in
'') on_client=() on_sender=() ;;
apart) on_client=(taskset -c 1) on_sender=(taskset -c 0) ;;
*) echo "vde_plug_perfstat.sh: PIN is 'apart' or unset, not '$PIN'" >&2; exit 2 ;;
esac
"${on_sender[@]}" vde_switch -d -s "$work/sw" -p "$work/sw.pid"
for _ in $(seq 50); do [ -s "$work/sw.pid" ] && [ -e "$work/sw/ctl" ] && break; sleep 0.1; done
echo "vde_plug_perfstat.sh: $rate frames/s, $secs s, $rounds rounds, PIN=${PIN:-none}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
	for url in "vde://$work/sw" "ipn://$work/net"; do
		"${on_client[@]}" vde_plug "$url" null:// &
		plug=$!
		sleep 0.5
		perf stat -e task-clock,context-switches,cpu-migrations,page-faults,raw_syscalls:sys_enter \
			-p "$plug" -o "$work/stat.txt" &
		stat=$!
		sleep 0.2
		before=$(cut -d' ' -f1 "/proc/$plug/schedstat")
		out=$("${on_sender[@]}" "$work/vdebench" -s "$url" -r "$url" -n 1 -l 64 -t "$secs" -p once -R "$rate")
		after=$(cut -d' ' -f1 "/proc/$plug/schedstat")
		kill -INT "$stat"
		wait "$stat" 2>/dev/null || true
		kill "$plug"
		wait "$plug" 2>/dev/null || true
		plug=""
		sent=$(echo "$out" | sed 's/.*sent=\([0-9]*\).*/\1/')
		echo "== round $round ${url%%://*}:// vdebench: $out"
		grep -E "task-clock|switches|migrations|faults|sys_enter" "$work/stat.txt"
		awk -v s="$sent" -v a="$before" -v b="$after" 'BEGIN { printf "     schedstat run time: %.1f ms, %.2f us a frame sent\n", (b - a) / 1e6, (b - a) / s / 1000 }'
	done
done
