#!/usr/bin/env bash
# Host-path benchmark: two network namespaces joined through
#   ipn        two `ipn tap` on one ipn network: MTU 1514 with offloads
#              (the default: the kernel's 64 KiB GSO frames cross whole),
#              MTU 1514 with --no-offload (wire frames only), MTU 9014 and
#              65535 (TAP MTU 9000 and 65521) with offloads,
#   bridge     a Linux bridge with a veth pair to each namespace, what
#              people use to join namespaces in the kernel,
#   vde_switch two `vde_plug tap://NAME vde:///SWITCH` on a vde2 vde_switch,
#   hub://     vdeplug4's hub: `vde_plug hub:///HUB tap://A` (it owns the
#              hub) and `vde_plug vde:///HUB tap://B`,
#   veth       a plain veth pair, the kernel's upper bound (reference only),
# measured one after another in the same run with iperf3: TCP throughput,
# and UDP with 64-byte payloads sent flat out (-u -l 64 -b 0): packets/s
# received and loss. Prints a table with ratios against vde_switch.
#
#   scripts/bench-tap.sh [SECONDS]      (default 5 per measurement; root)
#
# Everything lives in namespaces made here (ipnbt-*), addresses in
# 10.230.0.0/16; namespaces, processes and networks are removed on exit.
set -euo pipefail

secs=${1:-5}
case $secs in '' | *[!0-9]*) echo "bench-tap.sh: SECONDS must be a whole number, not '$secs'" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
	echo "bench-tap.sh: must run as root (namespaces, TAPs, veths); try: sudo $0 $*" >&2
	exit 1
fi
for tool in ip iperf3 vde_switch vde_plug python3 cargo; do
	command -v "$tool" >/dev/null || { echo "bench-tap.sh: $tool is not installed (scripts/deps.sh installs it)" >&2; exit 1; }
done

(cd "$root" && cargo build --release -q -p ipn-cli)
ipn=$root/target/release/ipn

work=$(mktemp -d /tmp/bench-tap.XXXXXX)
tag=$(($$ % 10000))
pids=()
daemons=()
client=""
namespaces=()

cleanup() {
	local pid ns
	if [ -n "$client" ]; then kill "$client" 2>/dev/null || true; fi
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${daemons[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	pids=()
	daemons=()
	for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	namespaces=()
}
finish() {
	# Not interrupted by a second signal: clean up to the end.
	trap '' INT TERM
	cleanup
	rm -rf "$work"
}
trap finish EXIT
trap 'exit 130' INT TERM

# started PID: remember a background process for cleanup.
started() { pids+=("$1"); }

# wait_link NAME: until interface NAME exists here (its maker is up).
wait_link() {
	for _ in $(seq 100); do
		ip link show "$1" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "bench-tap.sh: interface $1 never appeared" >&2
	exit 1
}

# netns NAME: a fresh namespace with lo up.
netns() {
	ip netns del "$1" 2>/dev/null || true
	ip netns add "$1"
	namespaces+=("$1")
	ip -n "$1" link set lo up
}

# place IFNAME NS ADDR: move into NS, address it, set it up.
place() {
	ip link set "$1" netns "$2"
	ip -n "$2" addr add "$3" dev "$1"
	ip -n "$2" link set "$1" up
}

# measure LABEL NS_CLIENT NS_SERVER SERVER_IP: appends a result line
# "LABEL<TAB>tcp_bps<TAB>udp_pps<TAB>loss%" to $work/results.
measure() {
	local label=$1 nsc=$2 nss=$3 ip=$4 ok="" key=${1//[^A-Za-z0-9]/_}
	for _ in $(seq 50); do
		if ip netns exec "$nsc" ping -c 1 -W 1 "$ip" >/dev/null 2>&1; then ok=1; break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "bench-tap.sh: $label: no ping reply from $ip" >&2; exit 1; }
	ip netns exec "$nss" iperf3 -s -B "$ip" >/dev/null 2>&1 &
	started $!
	# iperf3 [ARGS]: one client run, retried while the server is not up
	# yet, or when a run ends without the receiver's totals (iperf3 3.12
	# sometimes does).
	iperf() {
		local out=$work/client.json
		for _ in $(seq 20); do
			# In the background and waited for: iperf3 handles SIGINT
			# itself, and bash would not run our trap after a foreground
			# command that did; `wait` is interrupted at once.
			ip netns exec "$nsc" iperf3 -c "$ip" -t "$secs" --connect-timeout 1000 -J "$@" >"$out" 2>&1 &
			client=$!
			if wait "$client" &&
				python3 -c '
import json, sys
end = json.load(open(sys.argv[1]))["end"]
ok = end["sum"]["packets"] > 0 if "-u" in sys.argv[2:] else end["sum_received"]["bits_per_second"] > 0
sys.exit(0 if ok else 1)' "$out" "$@" 2>/dev/null; then
				client=""
				cat "$out"
				return 0
			fi
			client=""
			sleep 0.2
		done
		echo "bench-tap.sh: $label: iperf3 $* never completed: $(cat "$out")" >&2
		exit 1
	}
	iperf >"$work/$key.tcp.json"
	iperf -u -l 64 -b 0 >"$work/$key.udp.json"
	python3 - "$label" "$work/$key.tcp.json" "$work/$key.udp.json" "$secs" >>"$work/results" <<-'EOF'
		import json, sys
		label, tcp, udp, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
		t = json.load(open(tcp))["end"]["sum_received"]["bits_per_second"]
		end = json.load(open(udp))["end"]
		# The receiver's counts: sum_received when iperf3 has it, else sum.
		s = end.get("sum_received") or end["sum"]
		sent = end["sum"]["packets"]
		lost = end["sum"]["lost_packets"]
		seconds = s.get("seconds") or secs
		received = sent - lost
		print(f"{label}\t{t:.0f}\t{received / seconds:.0f}\t{100.0 * lost / sent if sent else 0:.1f}")
	EOF
}

# One case each: namespaces a/b, the plumbing, the measurement, cleanup.
case_veth() {
	local a=ipnbt-veth-a-$tag b=ipnbt-veth-b-$tag
	netns "$a"; netns "$b"
	ip link add "bva$tag" netns "$a" type veth peer name "bvb$tag" netns "$b"
	ip -n "$a" addr add 10.230.1.1/24 dev "bva$tag"; ip -n "$a" link set "bva$tag" up
	ip -n "$b" addr add 10.230.1.2/24 dev "bvb$tag"; ip -n "$b" link set "bvb$tag" up
	measure "veth" "$a" "$b" 10.230.1.2
	cleanup
}

case_vde_switch() {
	local a=ipnbt-vde-a-$tag b=ipnbt-vde-b-$tag
	netns "$a"; netns "$b"
	vde_switch -d -s "$work/sw" -p "$work/sw.pid" >/dev/null
	for _ in $(seq 50); do [ -s "$work/sw.pid" ] && [ -e "$work/sw/ctl" ] && break; sleep 0.1; done
	daemons+=("$(cat "$work/sw.pid")")
	vde_plug "tap://bsa$tag" "vde://$work/sw" & started $!
	vde_plug "tap://bsb$tag" "vde://$work/sw" & started $!
	wait_link "bsa$tag"; wait_link "bsb$tag"
	place "bsa$tag" "$a" 10.230.2.1/24
	place "bsb$tag" "$b" 10.230.2.2/24
	measure "vde_switch" "$a" "$b" 10.230.2.2
	cleanup
}

case_hub() {
	local a=ipnbt-hub-a-$tag b=ipnbt-hub-b-$tag
	netns "$a"; netns "$b"
	# The first opener of hub:// is the hub; it forwards inside its own
	# vde_recv, which vde_plug calls whenever the hub's fd is readable.
	vde_plug "hub://$work/hub" "tap://bha$tag" & started $!
	wait_link "bha$tag"
	for _ in $(seq 50); do [ -e "$work/hub/ctl" ] && break; sleep 0.1; done
	vde_plug "vde://$work/hub" "tap://bhb$tag" & started $!
	wait_link "bhb$tag"
	place "bha$tag" "$a" 10.230.3.1/24
	place "bhb$tag" "$b" 10.230.3.2/24
	measure "hub://" "$a" "$b" 10.230.3.2
	cleanup
}

case_bridge() {
	local a=ipnbt-br-a-$tag b=ipnbt-br-b-$tag m=ipnbt-br-m-$tag
	netns "$a"; netns "$b"; netns "$m"
	ip -n "$m" link add "br$tag" type bridge
	ip -n "$m" link set "br$tag" up
	ip link add "bra$tag" netns "$a" type veth peer name "brA$tag" netns "$m"
	ip link add "brb$tag" netns "$b" type veth peer name "brB$tag" netns "$m"
	for port in "brA$tag" "brB$tag"; do
		ip -n "$m" link set "$port" master "br$tag"
		ip -n "$m" link set "$port" up
	done
	ip -n "$a" addr add 10.230.6.1/24 dev "bra$tag"; ip -n "$a" link set "bra$tag" up
	ip -n "$b" addr add 10.230.6.2/24 dev "brb$tag"; ip -n "$b" link set "brb$tag" up
	measure "bridge" "$a" "$b" 10.230.6.2
	cleanup
}

# case_ipn LABEL NETWORK_MTU SUBNET [TAP OPTIONS...]
case_ipn() {
	local label=$1 mtu=$2 net=$3 a=ipnbt-ipn$3-a-$tag b=ipnbt-ipn$3-b-$tag
	shift 3
	netns "$a"; netns "$b"
	"$ipn" create "$work/ipn$mtu" --mtu "$mtu" >/dev/null
	# ipn tap sets the TAP's MTU to the network's minus the Ethernet header.
	"$ipn" tap "$work/ipn$mtu" --name "bia$tag" "$@" 2>"$work/ipn$mtu.a.log" & started $!
	"$ipn" tap "$work/ipn$mtu" --name "bib$tag" "$@" 2>"$work/ipn$mtu.b.log" & started $!
	wait_link "bia$tag"; wait_link "bib$tag"
	place "bia$tag" "$a" "10.230.$net.1/24"
	place "bib$tag" "$b" "10.230.$net.2/24"
	measure "$label" "$a" "$b" "10.230.$net.2"
	# What the lossy hub dropped (readers lapped), counted by ipn.
	"$ipn" status "$work/ipn$mtu" --json | python3 -c '
import json, sys
ports = json.load(sys.stdin)["ports"]
print(sys.argv[1] + "\t" + str(sum(p.get("rx_dropped", 0) for p in ports)))' "$label" >>"$work/drops"
	cleanup
	"$ipn" rm --force "$work/ipn$mtu" >/dev/null 2>&1 || true
}

echo "bench-tap: ${secs} s per measurement; $(nproc) CPUs; $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "iperf3 client in namespace a, server in namespace b; TCP: iperf3 -c B -t ${secs}; UDP: iperf3 -c B -t ${secs} -u -l 64 -b 0"
: >"$work/results"
: >"$work/drops"
case_veth
case_bridge
case_vde_switch
case_hub
case_ipn "ipn tap (MTU 1514)" 1514 4
case_ipn "ipn tap (MTU 1514, --no-offload)" 1514 7 --no-offload
case_ipn "ipn tap (MTU 9014)" 9014 5
case_ipn "ipn tap (MTU 65535)" 65535 8
echo

python3 - "$work/results" "$work/drops" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
drops = dict(l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip())
res = {r[0]: (float(r[1]), float(r[2]), float(r[3])) for r in rows}
order = ["ipn tap (MTU 1514)", "ipn tap (MTU 1514, --no-offload)", "ipn tap (MTU 9014)",
         "ipn tap (MTU 65535)", "vde_switch", "hub://", "bridge", "veth"]
vt, vu, _ = res["vde_switch"]
bt = res["bridge"][0]
def ratio(x, v):
    return f"{x / v:.2f}x" if v > 0 else "-"
print("| path | TCP Mbit/s | x bridge | x vde_switch | UDP 64 B pps received | x vde_switch | UDP loss |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in order:
    if name not in res:
        continue
    t, u, loss = res[name]
    label = {"veth": "veth pair (kernel reference)",
             "bridge": "Linux bridge + veth (kernel)"}.get(name, name)
    print(f"| {label} | {t / 1e6:.0f} | {ratio(t, bt)} | {ratio(t, vt)} | {u:.0f} | {ratio(u, vu)} | {loss:.1f}% |")
if drops:
    print()
    print("ipn frames dropped by lapped readers (lossy hub, counted by ipn status): " +
          ", ".join(f"{k}: {v}" for k, v in drops.items()))
EOF
