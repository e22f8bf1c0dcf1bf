#!/usr/bin/env bash
# System test: libvirt domains whose NICs are `ipn vhost-user` backends,
# with a real libvirtd (Debian's libvirt 9.0, started by hand: no systemd
# runs here), its QEMU running as libvirt-qemu, as root:
#   1. mode='client' (QEMU connects, reconnecting every second; the
#      backends listen): two TCG domains ping each other; one backend is
#      killed and started again, and the pings come back;
#   2. mode='server' (QEMU listens; the backends `--connect`): the same.
# The network is created with `--group libvirt-qemu`: the backends'
# sockets take its group and mode, which is all QEMU needs to connect (no
# umask tricks). The domain XML is docs/libvirt-domain.xml, filled in with
# sed: the documentation shows exactly what is tested.
#
# /dev/kvm: libvirt probes QEMU again on every define when /dev/kvm is
# root 0600 without udev (about 45 s here); Debian's usual root:kvm 0660
# takes under a second. The test sets that and restores what it found.
# Fails loudly: every step must pass; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

log() { printf '[libvirt] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "must run as root"
for tool in libvirtd virtlogd virsh qemu-system-x86_64; do
    command -v "$tool" >/dev/null || fail "$tool not found (scripts/deps.sh installs it)"
done
id libvirt-qemu >/dev/null 2>&1 || fail "no libvirt-qemu user (package libvirt-daemon-system)"

cargo build --release -q -p ipn-cli
ipn=$root/target/release/ipn
imagedir=${IPN_VM_CACHE:-/var/tmp/ipn-vm}
scripts/vm/build-image.sh "$imagedir"

# A directory libvirt-qemu may enter; the sockets' directory is the
# network's group's.
work=$(mktemp -d /tmp/ipn-libvirt.XXXXXX)
chmod 0711 "$work"
net=$work/net
socks=$work/sockets
virsh=(virsh -q -c qemu:///system)
declare -A backend=()
started_daemons=()
kvm_mode=""
domains=()

cleanup() {
    local d p
    for d in "${domains[@]}"; do
        "${virsh[@]}" destroy "$d" >/dev/null 2>&1 || true
        "${virsh[@]}" undefine "$d" >/dev/null 2>&1 || true
    done
    for p in "${backend[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${backend[@]}"; do wait "$p" 2>/dev/null || true; done
    for p in "${started_daemons[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    if [ -n "$kvm_mode" ]; then
        chown "${kvm_mode%% *}" /dev/kvm
        chmod "${kvm_mode##* }" /dev/kvm
    fi
    if [ "${keep:-0}" = 1 ]; then
        log "logs kept in $work"
    else
        "$ipn" rm --force "$net" 2>/dev/null || true
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
keep=1

if [ -e /dev/kvm ]; then
    kvm_mode="$(stat -c '%u:%g %a' /dev/kvm)"
    chown root:kvm /dev/kvm
    chmod 0660 /dev/kvm
fi

# The daemons, by hand, unless they run already.
start_daemon() {
    local name=$1
    if pgrep -x "$name" >/dev/null; then
        return 0
    fi
    "$name" -d
    for _ in $(seq 50); do
        pid=$(pgrep -x "$name" || true)
        [ -n "$pid" ] && { started_daemons+=("$pid"); return 0; }
        sleep 0.1
    done
    fail "$name did not start"
}
start_daemon virtlogd
start_daemon libvirtd
for _ in $(seq 100); do
    "${virsh[@]}" version >/dev/null 2>&1 && break
    sleep 0.1
done
"${virsh[@]}" version >/dev/null || fail "libvirtd does not answer on qemu:///system"

"$ipn" create "$net" --group libvirt-qemu --ring-bytes 4M >/dev/null
mkdir "$socks"
chgrp libvirt-qemu "$socks"
chmod 2770 "$socks"

# start_backend NAME MODE: `ipn vhost-user NET --socket|--connect SOCKS/NAME.sock`.
start_backend() {
    local name=$1 mode=$2 flag=--socket
    [ "$mode" = server ] && flag=--connect
    "$ipn" vhost-user "$net" "$flag" "$socks/$name.sock" 2>>"$work/$name.backend.log" &
    backend[$name]=$!
    if [ "$mode" = client ]; then
        for _ in $(seq 100); do
            [ -S "$socks/$name.sock" ] && return 0
            sleep 0.05
        done
        cat "$work/$name.backend.log" >&2
        fail "backend $name did not listen"
    fi
}

# define NAME MODE IP PEER MAC: a domain from docs/libvirt-domain.xml.
define() {
    local name=$1 mode=$2 ip=$3 peer=$4 mac=$5 reconnect=""
    # libvirt refuses <reconnect> with mode='server'.
    [ "$mode" = server ] && reconnect='/<reconnect /d'
    sed -e "${reconnect:-s|^||}" -e "s|@NAME@|$name|g" -e "s|@MODE@|$mode|g" -e "s|@SOCKET@|$socks/$name.sock|g" \
        -e "s|@MAC@|$mac|g" -e "s|@KERNEL@|$imagedir/vmlinuz|g" \
        -e "s|@INITRD@|$imagedir/initramfs.cpio.gz|g" \
        -e "s|@SERIAL@|$work/$name.serial.log|g" \
        -e "s|@CMDLINE@|console=ttyS0 panic=-1 quiet ipn.ip=$ip ipn.peer=$peer ipn.watch=900 ipn.linger=900|g" \
        docs/libvirt-domain.xml >"$work/$name.xml"
    local t0=$SECONDS
    "${virsh[@]}" define "$work/$name.xml" >/dev/null || fail "virsh define $name"
    domains+=("$name")
    log "   defined $name in $((SECONDS - t0))s"
}

# wait_serial NAME PATTERN SECONDS [COUNT]
wait_serial() {
    local name=$1 pattern=$2 secs=$3 count=${4:-1} start=$SECONDS
    local serial=$work/$name.serial.log
    while [ "$(grep -c -- "$pattern" "$serial" 2>/dev/null || true)" -lt "$count" ]; do
        grep -q 'IPN-PING-FAIL' "$serial" 2>/dev/null && { tail -n 20 "$serial" >&2; fail "$name: ping failed"; }
        if [ $((SECONDS - start)) -ge "$secs" ]; then
            tail -n 20 "$serial" >&2 2>/dev/null || true
            cat "$work"/*.backend.log >&2
            tail -n 20 "/var/log/libvirt/qemu/$name.log" >&2 2>/dev/null || true
            fail "$name: no '$pattern' within ${secs}s"
        fi
        sleep 0.5
    done
}

# pings_back NAME WHAT: three more IPN-WATCH ok lines on NAME's console.
pings_back() {
    local name=$1 what=$2 before start=$SECONDS okay
    before=$(grep -c 'IPN-WATCH' "$work/$name.serial.log" || true)
    while :; do
        okay=$(grep 'IPN-WATCH' "$work/$name.serial.log" | tail -n +"$((before + 1))" | grep -c ' ok' || true)
        [ "$okay" -ge 3 ] && break
        [ $((SECONDS - start)) -lt 90 ] || {
            tail -n 20 "$work/$name.serial.log" >&2
            cat "$work"/*.backend.log >&2
            fail "$name: pings did not come back within 90s after $what"
        }
        sleep 0.5
    done
    log "   pings back after $what ($((SECONDS - start))s)"
}

run_mode() {
    local mode=$1 a=${1}a b=${1}b n=$2
    log "$n. mode='$mode': two domains ping, a backend killed and started again"
    start_backend "$a" "$mode"
    start_backend "$b" "$mode"
    define "$a" "$mode" "10.0.$n.1/24" "10.0.$n.2" "52:54:00:4c:0$n:01"
    define "$b" "$mode" "10.0.$n.2/24" "10.0.$n.1" "52:54:00:4c:0$n:02"
    "${virsh[@]}" start "$a" >/dev/null || fail "virsh start $a"
    "${virsh[@]}" start "$b" >/dev/null || fail "virsh start $b"
    wait_serial "$a" IPN-PING-OK 180
    wait_serial "$b" IPN-PING-OK 180
    wait_serial "$a" 'IPN-WATCH [0-9]* ok' 60 3
    if [ "$mode" = client ]; then
        local owner
        owner=$(stat -c '%G %a' "$socks/$a.sock")
        [ "$owner" = "libvirt-qemu 660" ] || fail "socket $a.sock is '$owner', not 'libvirt-qemu 660'"
    fi
    kill -KILL "${backend[$a]}"
    wait "${backend[$a]}" 2>/dev/null || true
    sleep 2
    start_backend "$a" "$mode"
    pings_back "$a" "its backend was killed and started again"
    grep -c 'QEMU connected' "$work/$a.backend.log" >/dev/null || fail "no connection in $a's log"
    "$ipn" status "$net"
    for d in "$a" "$b"; do
        "${virsh[@]}" destroy "$d" >/dev/null
        "${virsh[@]}" undefine "$d" >/dev/null
    done
    domains=()
    for d in "$a" "$b"; do
        kill -TERM "${backend[$d]}"
        rc=0
        wait "${backend[$d]}" || rc=$?
        unset "backend[$d]"
        [ "$rc" = 143 ] || fail "backend $d exited with $rc after SIGTERM"
    done
}

run_mode client 1
run_mode server 2

keep=0
log "PASSED"
