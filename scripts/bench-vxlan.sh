#!/usr/bin/env bash
# VXLAN benchmark: two network namespaces, two "hosts", joined by a veth
# underlay (MTU 1500), and a VXLAN tunnel (VNI 42, UDP 4789) over it:
#   ipn<->kernel   host A: an ipn network with `ipn tap` (the host's way
#                  in, offloads on) and `ipn vxlan`; host B: a Linux
#                  kernel vxlan device,
#   kernel<->kernel  a kernel vxlan device on each host (the reference),
# measured one after the other in the same run with iperf3: TCP A->B and
# B->A, 1 and 4 streams, and 64-byte UDP sent flat out (frames/s received,
# loss, where frames were lost: see `counters`, and frames/s that arrived
# at B's receiving socket, whether iperf3 read them or its full receive
# buffer dropped them: what the tunnel delivered), with the CPU the
# `ipn vxlan` process used (seconds per Gbit/s moved, share of a CPU). The tunnel's inner MTU is 1450 everywhere (1500
# minus the 50 bytes of VXLAN over IPv4). The kernel devices get
# `ethtool -K vx0 tx off`: over a veth the inner checksums are otherwise
# left to a NIC that is not there.
#
#   scripts/bench-vxlan.sh [SECONDS] [ipn vxlan options...]
#       (default 5 s per measurement; root; e.g. --no-offload to measure
#       the datagram-per-frame path; IPN_BENCH_TAP_OPTS: options for
#       the ipn tap, e.g. "--busy-poll 200"; IPN_BENCH_CREATE_OPTS: how
#       the network is made, default "--ring-bytes 4M --ring 16384")
#
# The network's ring holds 16384 frames: the 64-byte flood comes at about
# 450 000 frames/s, and four busy processes share the CPUs, so a reader
# may wait some milliseconds for one; 16384 frames are 36 ms of the
# flood, where the 4096 that `--ring-bytes 4M` alone gives are 9 ms and
# `ipn vxlan`'s port is lapped (its rx_dropped in the counters).
#
# Namespaces ipnbx-*, addresses in 10.231.0.0/16; removed on exit.
set -euo pipefail

secs=${1:-5}
case $secs in '' | *[!0-9]*) echo "bench-vxlan.sh: SECONDS must be a whole number, not '$secs'" >&2; exit 2 ;; esac
shift || true
vxlan_opts=("$@")
create_opts=${IPN_BENCH_CREATE_OPTS:---ring-bytes 4M --ring 16384}
root=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
	echo "bench-vxlan.sh: must run as root (namespaces, veths, vxlan); try: sudo $0" >&2
	exit 1
fi
for tool in ip iperf3 ethtool cargo; do
	command -v "$tool" >/dev/null || { echo "bench-vxlan.sh: $tool is not installed (scripts/deps.sh installs it)" >&2; exit 1; }
done

(cd "$root" && cargo build --release -q -p ipn-cli)
ipn=$root/target/release/ipn
work=$(mktemp -d /tmp/bench-vxlan.XXXXXX)
tag=$(($$ % 10000))
A=ipnbx-a-$tag
B=ipnbx-b-$tag
pids=()
vxlan_pid=""
tap_pid=""

cleanup() {
	local pid
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	pids=()
	vxlan_pid=""
	ip netns del "$A" 2>/dev/null || true
	ip netns del "$B" 2>/dev/null || true
	"$ipn" rm --force "$work/net" 2>/dev/null || true
}
finish() {
	trap '' INT TERM
	cleanup
	rm -rf "$work"
}
trap finish EXIT
trap 'exit 130' INT TERM

underlay() {
	ip netns add "$A"
	ip netns add "$B"
	ip link add ua netns "$A" type veth peer name ub netns "$B"
	ip -n "$A" addr add 10.231.0.1/24 dev ua
	ip -n "$B" addr add 10.231.0.2/24 dev ub
	for ns in "$A" "$B"; do
		ip -n "$ns" link set lo up
		ip -n "$ns" link set "u${ns:6:1}" up
	done
}

# kernel_vxlan NS LOCAL REMOTE INNER
kernel_vxlan() {
	local ns=$1 dev=u${1:6:1}
	ip -n "$ns" link add vx0 type vxlan id 42 local "$2" remote "$3" dstport 4789 dev "$dev"
	ip -n "$ns" link set vx0 mtu 1450 up
	ip -n "$ns" addr add "$4/24" dev vx0
	ip netns exec "$ns" ethtool -K vx0 tx off >/dev/null
}

setup_kernel() {
	underlay
	kernel_vxlan "$A" 10.231.0.1 10.231.0.2 10.231.1.1
	kernel_vxlan "$B" 10.231.0.2 10.231.0.1 10.231.1.2
}

setup_ipn() {
	underlay
	kernel_vxlan "$B" 10.231.0.2 10.231.0.1 10.231.1.2
	# shellcheck disable=SC2086 # options, split on purpose
	"$ipn" create "$work/net" $create_opts >/dev/null
	ip netns exec "$A" "$ipn" tap "$work/net" --name vx0 ${IPN_BENCH_TAP_OPTS:-} 2>"$work/tap.log" &
	tap_pid=$!
	pids+=($!)
	for _ in $(seq 100); do ip -n "$A" link show vx0 >/dev/null 2>&1 && break; sleep 0.05; done
	ip -n "$A" link set vx0 mtu 1450 up
	ip -n "$A" addr add 10.231.1.1/24 dev vx0
	ip netns exec "$A" "$ipn" vxlan "$work/net" --vni 42 --local 10.231.0.1 \
		--remote 10.231.0.2 "${vxlan_opts[@]}" 2>"$work/vxlan.log" &
	vxlan_pid=$!
	pids+=("$vxlan_pid")
	sleep 0.5
}

# cpu_ticks PID: user+system clock ticks of PID so far.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# thread_ticks PID: "name:ticks" for each thread of PID (the bridge's
# two directions: `ipn` moves link->network, `network->link` the other).
thread_ticks() {
	local t
	for t in /proc/"$1"/task/*; do
		printf '%s:%s ' "$(tr ' ' _ < "$t/comm")" "$(awk '{ print $14 + $15 }' "$t/stat")"
	done
}

# thread_shares BEFORE AFTER: each thread's share of a CPU in between.
thread_shares() {
	awk -v before="$1" -v after="$2" -v hz="$(getconf CLK_TCK)" -v s="$secs" 'BEGIN {
		n = split(before, b, " "); for (i = 1; i <= n; i++) { split(b[i], kv, ":"); t0[kv[1]] = kv[2] }
		n = split(after, a, " "); out = ""
		for (i = 1; i <= n; i++) { split(a[i], kv, ":"); out = out sprintf("%s%s %.0f%%", (out == "" ? "" : ", "), kv[1], 100 * (kv[2] - t0[kv[1]]) / hz / s) }
		print out }'
}

# counters: where 64-byte frames are lost, and who had the CPU, as
# "name=value" words: frames the TAP (or A's kernel vxlan device) dropped
# on the way out (`tx_dropped`: its queue was full), frames each ipn port
# lost (`rx_dropped`: lapped in the ring, read too slowly), datagrams B's
# UDP sockets dropped for a full receive buffer (UdpRcvbufErrors: the
# receiving iperf3 read too slowly).
counters() {
	local out
	out="A_vx0_tx_dropped=$(ip -n "$A" -s -j link show vx0 | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["dropped"])')"
	out+=" B_UdpRcvbufErrors=$(ip netns exec "$B" awk '/^Udp:/ { if (n++) print $6 }' /proc/net/snmp)"
	if [ -n "$vxlan_pid" ]; then
		out+=" $("$ipn" status "$work/net" --json | python3 -c 'import json, sys
for p in json.load(sys.stdin)["ports"]:
    print("%s_port_rx_dropped=%d" % (p["description"].split()[0], p["rx_dropped"]), end=" ")')"
	fi
	echo "$out"
}

# counters_between BEFORE AFTER: the counters' growth, CPU as a share.
counters_between() {
	awk -v before="$1" -v after="$2" 'BEGIN {
		n = split(before, b, " "); for (i = 1; i <= n; i++) { split(b[i], kv, "="); t0[kv[1]] = kv[2] }
		n = split(after, a, " "); out = ""
		for (i = 1; i <= n; i++) {
			split(a[i], kv, "=")
			out = out sprintf("%s%s %d", (out == "" ? "" : ", "), kv[1], kv[2] - t0[kv[1]])
		}
		print out }'
}

# measure NAME SERVER_NS CLIENT_NS SERVER_IP ARGS...: prints "bits/s cpu_s
# frames/s lost% arrived/s" (the last three for UDP only, 0 for TCP)
measure() {
	local server=$1 client=$2 ip=$3
	shift 3
	ip netns exec "$server" iperf3 -s -1 -D -I "$work/iperf.pid" >/dev/null
	sleep 0.3
	local t0=0 t1=0 p0=0 p1=0
	local th0="" th1=""
	[ -n "$vxlan_pid" ] && t0=$(cpu_ticks "$vxlan_pid") && p0=$(cpu_ticks "$tap_pid") && th0=$(thread_ticks "$vxlan_pid")
	local udp="" c0="" c1=""
	[[ " $* " == *" -u "* ]] && udp=yes # the 64 B case
	[ -n "$udp" ] && c0=$(counters)
	local out
	out=$(ip netns exec "$client" iperf3 -c "$ip" -t "$secs" -J "$@")
	[ -n "$udp" ] && c1=$(counters)
	[ -n "$vxlan_pid" ] && t1=$(cpu_ticks "$vxlan_pid") && p1=$(cpu_ticks "$tap_pid") && th1=$(thread_ticks "$vxlan_pid")
	[ -n "$udp" ] && echo "  (64 B UDP, $name: $(python3 -c 'import json, sys
r = json.loads(sys.argv[1])["end"]; s = r["sum"]; cpu = r["cpu_utilization_percent"]
print("sent %.0f frames/s, sending iperf3 %.0f%% of a CPU, receiving iperf3 %.0f%%" % (s["packets"] / s["seconds"], cpu["host_total"], cpu["remote_total"]))' "$out"); lost on the way, frames: $(counters_between "$c0" "$c1"))" >&2
	[ -n "$vxlan_pid" ] && echo "  (ipn tap: $(awk -v t=$((p1 - p0)) -v hz="$(getconf CLK_TCK)" -v s="$secs" 'BEGIN { printf "%.0f%%", 100 * t / hz / s }') of a CPU; ipn vxlan: $(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v s="$secs" 'BEGIN { printf "%.0f%%", 100 * t / hz / s }'), by thread: $(thread_shares "$th0" "$th1"))" >&2
	kill "$(cat "$work/iperf.pid" 2>/dev/null)" 2>/dev/null || true
	local hz rcvbuf_drops=0
	hz=$(getconf CLK_TCK)
	[ -n "$udp" ] && rcvbuf_drops=$(counters_between "$c0" "$c1" | grep -o 'B_UdpRcvbufErrors [0-9]*' | cut -d' ' -f2)
	python3 - "$out" "$((t1 - t0))" "$hz" "${rcvbuf_drops:-0}" <<-'EOF'
		import json, sys
		r = json.loads(sys.argv[1]); ticks = int(sys.argv[2]); hz = int(sys.argv[3])
		end = r["end"]
		if r["start"]["test_start"]["protocol"] == "TCP":
		    bps = end["sum_received"]["bits_per_second"]
		    print(f"{bps:.0f} {ticks / hz:.3f} 0 0 0")
		else:
		    # pps: what the receiving iperf3 read; arrived: that plus what
		    # B's UDP dropped for a full receive buffer, i.e. the frames
		    # the tunnel delivered to B's socket.
		    s = end["sum"]
		    pps = s["packets"] * (1 - s["lost_percent"] / 100) / s["seconds"]
		    arrived = pps + int(sys.argv[4]) / s["seconds"]
		    print(f"{s['bits_per_second']:.0f} {ticks / hz:.3f} {pps:.0f} {s['lost_percent']:.1f} {arrived:.0f}")
	EOF
}

declare -A result
run_setup() {
	local name=$1
	"setup_$name"
	# warm up ARP both ways
	ip netns exec "$A" ping -c 2 -i 0.2 -W 2 10.231.1.2 >/dev/null || { cat "$work"/*.log >&2 || true; echo "no ping through $name" >&2; exit 1; }
	result[$name,a2b1]=$(measure "$B" "$A" 10.231.1.2)
	result[$name,b2a1]=$(measure "$A" "$B" 10.231.1.1)
	result[$name,a2b4]=$(measure "$B" "$A" 10.231.1.2 -P 4)
	result[$name,b2a4]=$(measure "$A" "$B" 10.231.1.1 -P 4)
	result[$name,udp]=$(measure "$B" "$A" 10.231.1.2 -u -l 64 -b 0)
	if [ -n "$vxlan_pid" ]; then
		kill -INT "$vxlan_pid"
		wait "$vxlan_pid" 2>/dev/null || true
		echo "ipn vxlan: $(tail -n 1 "$work/vxlan.log")"
		echo "ipn vxlan offloads on veth: $(ip netns exec "$A" ethtool -k ua | grep -E 'generic-receive-offload|rx-udp-gro-forwarding' | tr -s ' \n' ' ')"
	fi
	cleanup
}

echo "bench-vxlan: ${secs}s per measurement; load average $(cut -d' ' -f1-3 /proc/loadavg); kernel $(uname -r)"
echo "ipn vxlan options: ${vxlan_opts[*]:-(none)}; ipn create options: $create_opts"
run_setup kernel
run_setup ipn

gbit() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e9 }'; }
printf '\n%-22s %14s %14s %8s %22s\n' "TCP (iperf3)" "kernel Gbit/s" "ipn Gbit/s" "ratio" "ipn vxlan CPU s/Gbit"
for t in a2b1 b2a1 a2b4 b2a4; do
	read -r kb _ _ _ <<<"${result[kernel,$t]}"
	read -r ib icpu _ _ <<<"${result[ipn,$t]}"
	case $t in
		a2b1) label="A->B (ipn sends), 1" ;; b2a1) label="B->A (ipn receives), 1" ;;
		a2b4) label="A->B, 4 streams" ;; b2a4) label="B->A, 4 streams" ;;
	esac
	awk -v l="$label" -v k="$kb" -v i="$ib" -v c="$icpu" -v s="$secs" 'BEGIN {
		gb = i * s / 1e9
		printf "%-22s %14.2f %14.2f %7.2fx %12.2f (%3.0f%% CPU)\n", l, k / 1e9, i / 1e9, i / k, (gb > 0 ? c / gb : 0), 100 * c / s }'
done
read -r _ _ kp kl ka <<<"${result[kernel,udp]}"
read -r _ ic ip_ il ia <<<"${result[ipn,udp]}"
ratio() { awk -v i="$1" -v k="$2" 'BEGIN { printf "%.2fx", (k > 0 ? i / k : 0) }'; }
printf '\n64 B UDP A->B flat out, read by iperf3: kernel %s frames/s (%s%% lost), ipn %s frames/s (%s%% lost): %s; ipn vxlan %s us CPU per frame\n' \
	"$kp" "$kl" "$ip_" "$il" "$(ratio "$ip_" "$kp")" \
	"$(awk -v c="$ic" -v p="$ip_" -v s="$secs" 'BEGIN { printf "%.2f", (p > 0 ? 1e6 * c / (p * s) : 0) }')"
printf '64 B UDP A->B flat out, arrived at B'"'"'s socket (read, or dropped there for a full receive buffer): kernel %s frames/s, ipn %s frames/s: %s\n' \
	"$ka" "$ia" "$(ratio "$ia" "$ka")"
