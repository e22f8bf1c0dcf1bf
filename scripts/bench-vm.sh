#!/usr/bin/env bash
# VM-to-VM benchmark: TCP throughput (iperf3, inside the test image)
# between two QEMU VMs joined by
#   vhost-user  two `ipn vhost-user` backends on one ipn network: the
#               guests' virtio-net queues served from outside QEMU, TSO and
#               checksum offload end to end (64 KiB frames cross whole);
#   plugin      two `-netdev vde,sock=ipn:///NET` VMs (libvdeplug_ipn.so):
#               wire frames through QEMU's own virtio-net;
#   vde_switch  two `-netdev vde,sock=vde:///SWITCH` VMs on vde2's switch,
#               the classic way (reference);
#   two hosts   the vhost-user pair, but each VM on its own "host": two
#               network namespaces joined by a veth underlay (MTU 1600, so
#               that the guests' 1500 fits with VXLAN's 50), one ipn
#               network on each, joined by `ipn vxlan` on both sides (UDP
#               GSO/GRO, TSO frames cut and joined again in between);
# one after another in the same run, each pair freshly booted, for ROUNDS
# rounds (IPN_BENCH_ROUNDS, default 3: the paths interleaved, so that load
# from elsewhere on the machine falls on all of them alike). Prints each
# round's rates, then a table of the medians and their ratio to the plugin
# path.
#
# Both ipn networks are made with `--ports 4 --ring-bytes RING` (RING from
# IPN_BENCH_RING, default 4M): a sender's ring holds RING bytes of frames,
# and a 64 KiB TSO frame takes 64 KiB of it, so the default 256 KiB holds
# four, and a receiver that falls behind (its guest slow to post buffers)
# loses whole 64 KiB frames, which TCP pays for in retransmissions. The
# vhost-user pair is also measured on a network with the default ring, to
# show what that costs.
#
#   scripts/bench-vm.sh [SECONDS]      (default 10 per measurement; root)
#
# Environment: IPN_VM_ACCEL=tcg (default) or kvm: with a working /dev/kvm,
# `IPN_VM_ACCEL=kvm scripts/bench-vm.sh` measures the same with KVM (the
# vhost-user device then keeps its MSI-X vectors). IPN_VM_CACHE: the image
# directory (default /var/tmp/ipn-vm). Everything is made in a temporary
# directory and removed on exit (logs kept on failure).
set -euo pipefail

secs=${1:-10}
case $secs in '' | *[!0-9]*) echo "bench-vm.sh: SECONDS must be a whole number, not '$secs'" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "$(id -u)" -ne 0 ]; then
    echo "bench-vm.sh: must run as root (QEMU with shared memory, vde_switch); try: sudo $0 $*" >&2
    exit 1
fi
for tool in qemu-system-x86_64 vde_switch ip cargo; do
    command -v "$tool" >/dev/null || { echo "bench-vm.sh: $tool is not installed (scripts/deps.sh installs it)" >&2; exit 1; }
done
accel=${IPN_VM_ACCEL:-tcg}
case $accel in tcg | kvm) ;; *) echo "bench-vm.sh: IPN_VM_ACCEL must be tcg or kvm" >&2; exit 2 ;; esac

cargo build --release -q -p ipn-cli -p vdeplug-ipn
ipn=$root/target/release/ipn
export LD_LIBRARY_PATH=$root/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
imagedir=${IPN_VM_CACHE:-/var/tmp/ipn-vm}
scripts/vm/build-image.sh "$imagedir"
# shellcheck source=vm/vm-lib.sh
. scripts/vm/vm-lib.sh

work=$(mktemp -d /tmp/bench-vm.XXXXXX)
declare -A vm_pid=()
vm_work=$work vm_image=$imagedir vm_accel=$accel
helpers=()
keep=1
finish() {
    trap '' INT TERM
    vm_stop_all
    local p
    for p in "${helpers[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${helpers[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "ipnbv-a-$$" 2>/dev/null || true
    ip netns del "ipnbv-b-$$" 2>/dev/null || true
    if [ "$keep" = 1 ]; then echo "bench-vm.sh: logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap finish EXIT
trap 'exit 130' INT TERM

# measure NAME URL_SERVER URL_CLIENT: boots a server VM and a client VM,
# prints the client's iperf3 receiver rate in Mbit/s.
measure() {
    local name=$1 server=$2 client=$3
    vm_start "$name-s" "$server" 10.0.0.1/24 10.0.0.2 52:54:00:49:51:01 ipn.iperf=server ipn.linger=900
    vm_start "$name-c" "$client" 10.0.0.2/24 10.0.0.1 52:54:00:49:51:02 "ipn.iperf=$secs" ipn.linger=900
    # Run in $(...): stop this pair before failing, the caller cannot.
    if ! vm_wait_for "$name-c" IPN-IPERF-OK $((180 + 12 * secs)); then
        vm_stop "$name-s"
        vm_stop "$name-c"
        echo "bench-vm.sh: $name: no result (logs in $work)" >&2
        exit 1
    fi
    grep -m1 -o 'IPN-IPERF-OK [0-9.]*' "$work/$name-c.serial.log" | awk '{print $2}'
    cp "$work/$name-c.serial.log" "$work/$name.result.log"
    vm_stop "$name-s"
    vm_stop "$name-c"
}

echo "bench-vm.sh: $accel, iperf3 TCP for ${secs}s per pair, guests with 1 vCPU and 256 MiB" >&2

ring=${IPN_BENCH_RING:-4M}

# vhost_pair NAME NETWORK: two backends on NETWORK, the pair measured on
# them, the backends stopped.
vhost_pair() {
    local name=$1 net=$2 side rate
    local -a pids=()
    for side in s c; do
        "$ipn" vhost-user "$net" --socket "$work/$name-$side.sock" 2>>"$work/$name-$side.backend.log" &
        pids+=($!)
        helpers+=($!)
    done
    for _ in $(seq 100); do
        [ -S "$work/$name-s.sock" ] && [ -S "$work/$name-c.sock" ] && break
        sleep 0.05
    done
    rate=$(measure "$name" "vhost-user://$work/$name-s.sock" "vhost-user://$work/$name-c.sock") || {
        kill -TERM "${pids[@]}"
        exit 1
    }
    kill -TERM "${pids[@]}"
    wait "${pids[@]}" 2>/dev/null || true
    echo "$rate"
}

# vxlan_pair NAME: the vhost-user pair with each VM on a network of its
# own, the two networks joined by `ipn vxlan` across two namespaces.
vxlan_pair() {
    local name=$1 side rate ns_a=ipnbv-a-$$ ns_b=ipnbv-b-$$
    local -a pids=()
    ip netns add "$ns_a"
    ip netns add "$ns_b"
    ip link add ua netns "$ns_a" mtu 1600 type veth peer name ub netns "$ns_b" mtu 1600
    ip -n "$ns_a" addr add 10.233.0.1/24 dev ua
    ip -n "$ns_b" addr add 10.233.0.2/24 dev ub
    ip -n "$ns_a" link set ua up
    ip -n "$ns_b" link set ub up
    for side in s c; do
        "$ipn" create "$work/$name-$side-net" --ports 4 --ring-bytes "$ring" >/dev/null
        "$ipn" vhost-user "$work/$name-$side-net" --socket "$work/$name-$side.sock" \
            2>>"$work/$name-$side.backend.log" &
        pids+=($!)
        helpers+=($!)
    done
    ip netns exec "$ns_a" "$ipn" vxlan "$work/$name-s-net" --vni 42 --local 10.233.0.1 \
        --remote 10.233.0.2 2>>"$work/$name-vxlan-a.log" &
    pids+=($!)
    helpers+=($!)
    ip netns exec "$ns_b" "$ipn" vxlan "$work/$name-c-net" --vni 42 --local 10.233.0.2 \
        --remote 10.233.0.1 2>>"$work/$name-vxlan-b.log" &
    pids+=($!)
    helpers+=($!)
    for _ in $(seq 100); do
        [ -S "$work/$name-s.sock" ] && [ -S "$work/$name-c.sock" ] && break
        sleep 0.05
    done
    rate=$(measure "$name" "vhost-user://$work/$name-s.sock" "vhost-user://$work/$name-c.sock") || {
        kill -TERM "${pids[@]}"
        exit 1
    }
    kill -TERM "${pids[@]}"
    wait "${pids[@]}" 2>/dev/null || true
    ip netns del "$ns_a"
    ip netns del "$ns_b"
    echo "$rate"
}

rounds=${IPN_BENCH_ROUNDS:-3}
case $rounds in '' | *[!0-9]* | 0) echo "bench-vm.sh: IPN_BENCH_ROUNDS must be a positive number" >&2; exit 2 ;; esac
"$ipn" create "$work/vhost-net" --ports 4 --ring-bytes "$ring" >/dev/null
"$ipn" create "$work/vhost-default-net" >/dev/null
"$ipn" create "$work/plugin-net" --ports 4 --ring-bytes "$ring" >/dev/null
vde_switch -d -s "$work/switch" -p "$work/switch.pid"
for _ in $(seq 100); do [ -s "$work/switch.pid" ] && break; sleep 0.05; done
[ -s "$work/switch.pid" ] || { echo "bench-vm.sh: vde_switch did not start" >&2; exit 1; }
helpers+=("$(cat "$work/switch.pid")")

declare -A rates=()
for round in $(seq "$rounds"); do
    r_vhost=$(vhost_pair "vhost$round" "$work/vhost-net")
    r_default=$(vhost_pair "vhost-default$round" "$work/vhost-default-net")
    r_plugin=$(measure "plugin$round" "ipn://$work/plugin-net" "ipn://$work/plugin-net")
    r_vde=$(measure "vde$round" "vde://$work/switch" "vde://$work/switch")
    r_vxlan=$(vxlan_pair "vxlan$round")
    rates[vhost]+=" $r_vhost"
    rates[default]+=" $r_default"
    rates[plugin]+=" $r_plugin"
    rates[vde]+=" $r_vde"
    rates[vxlan]+=" $r_vxlan"
    echo "  round $round: vhost-user $r_vhost, vhost-user (default ring) $r_default, plugin $r_plugin, vde_switch $r_vde, two hosts over ipn vxlan $r_vxlan Mbit/s" >&2
done
median() { printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
vhost=$(median "${rates[vhost]}")
vhost_default=$(median "${rates[default]}")
plugin=$(median "${rates[plugin]}")
vde=$(median "${rates[vde]}")
vxlan=$(median "${rates[vxlan]}")

printf '\nVM to VM TCP throughput, median of %s rounds (iperf3, %s s, %s; ipn networks --ports 4 --ring-bytes %s)\n' \
    "$rounds" "$secs" "$accel" "$ring"
printf '%-28s %10s %10s\n' path Mbit/s "x plugin"
for row in "vhost-user|$vhost" "vhost-user, default ring|$vhost_default" \
    "plugin (ipn://)|$plugin" "vde_switch (vde://)|$vde" "vhost-user, two hosts (vxlan)|$vxlan"; do
    awk -v n="${row%%|*}" -v r="${row#*|}" -v p="$plugin" \
        'BEGIN { printf "%-28s %10.0f %10.2f\n", n, r, (p > 0 ? r / p : 0) }'
done
awk -v x="$vxlan" -v v="$vhost" 'BEGIN { printf "two hosts over ipn vxlan / one host (vhost-user both): %.2fx\n", (v > 0 ? x / v : 0) }'
keep=0
