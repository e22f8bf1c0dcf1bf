#!/usr/bin/env bash
# System test: QEMU VMs whose NICs are served by `ipn vhost-user` (one
# backend process per VM, each a port of one network), as root:
#   1. two vhost-user VMs ping each other (scripts/vm/ping-test.sh);
#   2. a VM on the ipn:// plugin (no offloads) and a vhost-user VM ping,
#      then the vhost-user VM sends TCP to it with iperf3: its 64 KiB TSO
#      frames are cut by the network for the plugin's port (the
#      segmentation path), and the receiving kernel takes the segments;
#   3. the vhost-user VM's backend is killed (-9) while the VM runs and
#      started again on the same socket: QEMU reconnects and the VM's
#      pings come back;
#   4. the vhost-user VM is reset (system_reset on QEMU's monitor): the
#      guest boots again on the same connection (device reset, queues
#      stopped and started again) and pings again;
#   5. SIGTERM: the backend leaves within a second, its socket removed,
#      both while it waits for QEMU and while it serves a running VM; a
#      socket in use, and one in a missing directory, are refused;
#   6. on a lossless network, two vhost-user VMs run iperf3 and nothing is
#      dropped anywhere: a full ring holds the sender's transmit queue, a
#      guest without receive buffers holds the network;
#   7. QEMU listens and the backend connects (`--connect`, libvirt's
#      mode='server'): two such VMs ping; the backend is killed and
#      started again, then QEMU itself is restarted, and each time the
#      pings come back with nothing else done.
# Fails loudly: every step must pass; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

log() { printf '[vm-vhost-user] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "must run as root"
for tool in qemu-system-x86_64 mkfifo; do
    command -v "$tool" >/dev/null || fail "$tool not found (scripts/deps.sh installs it)"
done

cargo build --release -q -p ipn-cli -p vdeplug-ipn
ipn=$root/target/release/ipn
export LD_LIBRARY_PATH=$root/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
imagedir=${IPN_VM_CACHE:-/var/tmp/ipn-vm}
scripts/vm/build-image.sh "$imagedir"
# shellcheck source=../vm/vm-lib.sh
. scripts/vm/vm-lib.sh

work=$(mktemp -d /tmp/ipn-vhost-test.XXXXXX)
net=$work/net
declare -A backend=() vm_pid=()
vm_work=$work vm_image=$imagedir vm_accel=tcg
cleanup() {
    local p
    vm_stop_all
    for p in "${backend[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${backend[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${keep:-0}" = 1 ]; then
        log "logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
keep=1   # until the end: a failure keeps the logs

# start_backend NAME [NETWORK]: `ipn vhost-user NETWORK --socket
# WORK/NAME.sock` (NETWORK: $net by default).
start_backend() {
    local name=$1 network=${2:-$net}
    "$ipn" vhost-user "$network" --socket "$work/$name.sock" --create 2>>"$work/$name.backend.log" &
    backend[$name]=$!
    for _ in $(seq 100); do
        [ -S "$work/$name.sock" ] && return 0
        kill -0 "${backend[$name]}" 2>/dev/null || break
        sleep 0.05
    done
    cat "$work/$name.backend.log" >&2
    fail "backend $name did not start listening on $work/$name.sock"
}

wait_for() { vm_wait_for "$@" || fail "see above"; }

# --- 1. two vhost-user VMs -----------------------------------------------------
start_backend a
start_backend b
log "1. two vhost-user VMs ping each other"
IPN_VM_LOGDIR=$work/ping IPN_VM_CACHE=$imagedir scripts/vm/ping-test.sh \
    "vhost-user://$work/a.sock" "vhost-user://$work/b.sock" "$imagedir" \
    || fail "two vhost-user VMs did not ping each other (logs in $work/ping)"
"$ipn" status "$net"

# --- 2. a vhost-user VM and a plugin VM: ping, then TCP cut for the plugin -----
log "2. vhost-user VM <-> ipn:// plugin VM: ping, then iperf3 from the vhost-user VM"
vm_start plug "ipn://$net" 10.0.0.1/24 10.0.0.2 52:54:00:49:50:01 ipn.iperf=server ipn.linger=600
vm_start vhost "vhost-user://$work/a.sock" 10.0.0.2/24 10.0.0.1 52:54:00:49:50:02 \
    ipn.iperf=5 ipn.watch=600 ipn.linger=600
wait_for plug IPN-PING-OK 120
wait_for vhost IPN-PING-OK 120
wait_for vhost IPN-IPERF-OK 120
rate=$(grep -m1 -o 'IPN-IPERF-OK [0-9.]*' "$work/vhost.serial.log" | awk '{print $2}')
log "   vhost-user -> plugin TCP: $rate Mbit/s"
awk -v r="$rate" 'BEGIN { exit !(r > 0) }' || fail "no TCP throughput from the vhost-user VM to the plugin VM"
"$ipn" status "$net"

# --- 3. the backend dies and comes back ------------------------------------------
log "3. kill -9 the vhost-user VM's backend, start it again"
wait_for vhost 'IPN-WATCH [0-9]* ok' 60 3
kill -KILL "${backend[a]}"
wait "${backend[a]}" 2>/dev/null || true
[ -S "$work/a.sock" ] || fail "expected the killed backend's stale socket to stay"
sleep 2
before=$(grep -c 'IPN-WATCH' "$work/vhost.serial.log" || true)
start_backend a
log "   restarted; waiting for the VM's pings to come back"
start=$SECONDS
while :; do
    okay=$(grep 'IPN-WATCH' "$work/vhost.serial.log" | tail -n +"$((before + 1))" | grep -c ' ok' || true)
    [ "$okay" -ge 3 ] && break
    [ $((SECONDS - start)) -lt 60 ] || {
        tail -n 20 "$work/vhost.serial.log" >&2
        cat "$work/a.backend.log" >&2
        fail "pings did not come back within 60s of the backend restarting"
    }
    sleep 0.5
done
lost=$(grep 'IPN-WATCH' "$work/vhost.serial.log" | tail -n +"$((before - 2))" | grep -c lost || true)
log "   pings back after $((SECONDS - start))s ($lost lost around the restart)"
grep -q 'QEMU connected' "$work/a.backend.log" || fail "QEMU did not reconnect"

# --- 4. the guest reboots --------------------------------------------------------
log "4. system_reset the vhost-user VM: the guest boots again and pings"
vm_monitor vhost system_reset
wait_for vhost IPN-INIT-START 60 2
wait_for vhost IPN-PING-OK 120 2
log "   pinging again after the reset"

# --- 5. clean exit and refusals ---------------------------------------------------
log "5. SIGTERM, a socket in use, a socket in a missing directory"
if "$ipn" vhost-user "$net" --socket "$work/a.sock" 2>"$work/inuse.err"; then
    fail "a second backend on a socket in use started"
fi
grep -q 'in use' "$work/inuse.err" || { cat "$work/inuse.err" >&2; fail "no 'in use' error"; }
if "$ipn" vhost-user "$net" --socket "$work/missing/x.sock" 2>"$work/nodir.err"; then
    fail "a backend in a missing directory started"
fi
grep -q 'does not exist' "$work/nodir.err" || { cat "$work/nodir.err" >&2; fail "no missing-directory error"; }
# stop_backend NAME WHAT [NETWORK]: SIGTERM; it must leave within a second, with
# status 143, its socket removed and its port gone.
stop_backend() { # NAME WHAT [NETWORK]
    local name=$1 what=$2 network=${3:-$net} start rc=0 took
    kill -TERM "${backend[$name]}"
    start=$(date +%s%N)
    wait "${backend[$name]}" || rc=$?
    took=$((($(date +%s%N) - start) / 1000000))
    unset "backend[$name]"
    [ "$rc" = 143 ] || fail "backend $name ($what) exited with $rc after SIGTERM, not 143"
    [ "$took" -le 1000 ] || fail "backend $name ($what) took ${took} ms to leave after SIGTERM"
    [ ! -e "$work/$name.sock" ] || fail "backend $name ($what) left its socket behind"
    # (A dead slot of the backend killed in step 3 may still be listed.)
    if "$ipn" status "$network" | grep " active .*vhost-user $work/$name.sock" >/dev/null; then
        fail "backend $name's port is still joined"
    fi
    log "   backend $name ($what) left in ${took} ms, socket removed, port gone"
}
stop_backend b "waiting for QEMU"
stop_backend a "serving a running VM"

# --- 6. lossless: backpressure instead of loss -------------------------------------
log "6. lossless network: iperf3 between two vhost-user VMs, nothing dropped"
vm_stop plug
vm_stop vhost
lossless=$work/lossless
"$ipn" create "$lossless" --lossless --ports 4 >/dev/null
start_backend ls "$lossless"
start_backend lc "$lossless"
vm_start ls "vhost-user://$work/ls.sock" 10.0.1.1/24 10.0.1.2 52:54:00:49:50:11 ipn.iperf=server ipn.linger=600
vm_start lc "vhost-user://$work/lc.sock" 10.0.1.2/24 10.0.1.1 52:54:00:49:50:12 ipn.iperf=5 ipn.linger=600
wait_for lc IPN-IPERF-OK 150
rate=$(grep -m1 -o 'IPN-IPERF-OK [0-9.]*' "$work/lc.serial.log" | awk '{print $2}')
"$ipn" status "$lossless"
# Every port's rx_dropped and tx_dropped, added up.
drops=$("$ipn" status "$lossless" --json | grep -o '"[rt]x_dropped": [0-9]*' \
    | awk '{ d += $2 } END { print d + 0 }')
[ "$drops" = 0 ] || fail "the lossless network dropped $drops frames"
vm_stop ls
vm_stop lc
stop_backend ls "lossless, its VM stopped" "$lossless"
stop_backend lc "lossless, its VM stopped" "$lossless"
log "   $rate Mbit/s, 0 frames dropped"

# --- 7. QEMU listens, the backend connects ------------------------------------------
log "7. QEMU as the server (--connect): ping, backend restarted, QEMU restarted"
# start_connecting NAME: `ipn vhost-user NET --connect WORK/NAME.sock`.
start_connecting() {
    local name=$1
    "$ipn" vhost-user "$net" --connect "$work/$name.sock" 2>>"$work/$name.backend.log" &
    backend[$name]=$!
}
# pings_back VM WHAT: three more IPN-WATCH ok lines on VM's console.
pings_back() {
    local vm=$1 what=$2 before start=$SECONDS okay
    before=$(grep -c 'IPN-WATCH' "$work/$vm.serial.log" || true)
    while :; do
        okay=$(grep 'IPN-WATCH' "$work/$vm.serial.log" | tail -n +"$((before + 1))" | grep -c ' ok' || true)
        [ "$okay" -ge 3 ] && break
        [ $((SECONDS - start)) -lt 90 ] || {
            tail -n 20 "$work/$vm.serial.log" >&2
            cat "$work"/s?.backend.log >&2
            fail "pings did not come back within 90s after $what"
        }
        sleep 0.5
    done
    log "   pings back after $what ($((SECONDS - start))s)"
}
start_connecting s1
start_connecting s2
grep -q 'connecting to QEMU' "$work/s1.backend.log" || sleep 0.5
vm_start s1 "vhost-user-server://$work/s1.sock" 10.0.2.1/24 10.0.2.2 52:54:00:49:50:21 \
    ipn.watch=600 ipn.linger=600
vm_start s2 "vhost-user-server://$work/s2.sock" 10.0.2.2/24 10.0.2.1 52:54:00:49:50:22 \
    ipn.watch=600 ipn.linger=600
wait_for s1 IPN-PING-OK 120
wait_for s2 IPN-PING-OK 120
wait_for s1 'IPN-WATCH [0-9]* ok' 60 3
kill -KILL "${backend[s1]}"
wait "${backend[s1]}" 2>/dev/null || true
sleep 2
start_connecting s1
pings_back s1 "its backend was killed and started again"
vm_stop s2
vm_start s2 "vhost-user-server://$work/s2.sock" 10.0.2.2/24 10.0.2.1 52:54:00:49:50:22 \
    ipn.watch=600 ipn.linger=600
wait_for s2 IPN-PING-OK 120
pings_back s1 "the other VM's QEMU was restarted"
[ "$(grep -c 'QEMU connected' "$work/s2.backend.log")" -ge 2 ] \
    || fail "the connecting backend did not connect to the restarted QEMU"
vm_stop s1
vm_stop s2
for name in s1 s2; do
    kill -TERM "${backend[$name]}"
    rc=0
    wait "${backend[$name]}" || rc=$?
    unset "backend[$name]"
    [ "$rc" = 143 ] || fail "connecting backend $name exited with $rc after SIGTERM"
done

keep=0
log "PASSED"
