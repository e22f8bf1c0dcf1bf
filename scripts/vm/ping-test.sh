#!/usr/bin/env bash
# Boot two tiny Linux VMs with QEMU, each NIC attached through libvdeplug
# (-netdev vde,sock=URL), and check that they ping each other.
#
# Usage: ping-test.sh URL_A URL_B [IMAGEDIR]
#   URL_A, URL_B  libvdeplug URLs for VM A and VM B (usually the same), e.g.
#                 vde:///tmp/sw  or  ipn:///tmp/net
#   IMAGEDIR      directory with vmlinuz + initramfs.cpio.gz; default
#                 ${IPN_VM_CACHE:-/var/tmp/ipn-vm}, built with build-image.sh
#
# VM A is 10.0.0.1/24 and pings 10.0.0.2, VM B the reverse (test-only
# addresses; the traffic stays on the virtual network).
# Exit status: 0 only if both VMs printed IPN-PING-OK; 1 on failure; 2 usage.
#
# Environment:
#   IPN_VM_TIMEOUT   seconds to wait for both results (default 150)
#   IPN_VM_TRIES     ping attempts inside each VM, ~1 s each (default 60)
#   IPN_VM_ACCEL     auto (default: kvm if /dev/kvm is usable and a probe boot
#                    succeeds, else tcg), kvm or tcg
#   IPN_VM_NIC       virtio (default) or e1000
#   IPN_VM_MEM       guest memory in MiB (default 128)
#   IPN_VM_LOGDIR    keep the logs there (default: a temp dir, removed on
#                    success, kept and printed on failure)
#   IPN_VM_QEMU      QEMU binary (default qemu-system-x86_64)
#   LD_LIBRARY_PATH / VDEPLUGIN_PATH are passed to QEMU unchanged (this is
#                    how a not-installed libvdeplug_ipn.so is found).
set -euo pipefail

log() { printf '[vm] %s\n' "$*" >&2; }
die() { printf '[vm] ERROR: %s\n' "$*" >&2; exit 2; }

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 URL_A URL_B [IMAGEDIR]" >&2
    exit 2
fi
url_a=$1
url_b=$2
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=${IPN_VM_TIMEOUT:-150}
tries=${IPN_VM_TRIES:-60}
mem=${IPN_VM_MEM:-128}
qemu=${IPN_VM_QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install qemu-system-x86)"

if [ $# -eq 3 ]; then
    imagedir=$3
else
    imagedir=${IPN_VM_CACHE:-/var/tmp/ipn-vm}
    "$script_dir/build-image.sh" "$imagedir"
fi
for f in vmlinuz initramfs.cpio.gz; do
    [ -s "$imagedir/$f" ] || die "$imagedir/$f missing (run build-image.sh $imagedir)"
done

# --- accelerator ---------------------------------------------------------------
# KVM is used only if /dev/kvm is usable AND a probe boot works: nested KVM
# can be present yet broken (e.g. "failed to set MSR" assertions, or a guest
# hanging in early boot), and TCG boots this image in ~10 s anyway.
kvm_probe() {
    local out rc=0
    out=$(timeout 20 "$qemu" -nodefaults -no-user-config -display none -no-reboot \
        -accel kvm -cpu host -smp 1 -m "$mem" \
        -kernel "$imagedir/vmlinuz" -initrd "$imagedir/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 ipn.probe" \
        -serial stdio -monitor none </dev/null 2>&1) || rc=$?
    if printf '%s' "$out" | grep -q IPN-PROBE-OK; then
        return 0
    fi
    kvm_probe_error=$(printf '%s\n' "$out" | grep -v '^$' | tail -n 1)
    [ "$rc" = 124 ] && kvm_probe_error="probe guest did not finish within 20s"
    return 1
}
accel=${IPN_VM_ACCEL:-auto}
if [ "$accel" = auto ]; then
    accel=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        log "probing KVM..."
        kvm_probe_error=""
        if kvm_probe; then
            accel=kvm
        else
            log "KVM present but not usable (${kvm_probe_error:-unknown error}); using TCG"
        fi
    fi
fi
case "$accel" in
    kvm) accel_args=(-accel kvm -cpu host) ;;
    tcg) accel_args=(-accel tcg -cpu max) ;;
    *) die "IPN_VM_ACCEL must be auto, kvm or tcg (got '$accel')" ;;
esac
case "${IPN_VM_NIC:-virtio}" in
    virtio) nic_model=virtio-net-pci ;;
    e1000) nic_model=e1000 ;;
    *) die "IPN_VM_NIC must be virtio or e1000" ;;
esac

# --- logs + cleanup ------------------------------------------------------------------
if [ -n "${IPN_VM_LOGDIR:-}" ]; then
    logdir=$IPN_VM_LOGDIR
    mkdir -p "$logdir"
    keep_logs=1
else
    logdir=$(mktemp -d "${TMPDIR:-/tmp}/ipn-vm-test.XXXXXX")
    keep_logs=0
fi

declare -A pid=()
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    local p
    for p in "${pid[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pid[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ "$keep_logs" = 0 ]; then rm -rf "$logdir"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- start the VMs ---------------------------------------------------------------------
# VM spec: name url ip/cidr peer mac
start_vm() {
    local name=$1 url=$2 ip=$3 peer=$4 mac=$5
    # QEMU's option parser treats ',' as a separator: double it in the URL.
    local sock=${url//,/,,}
    local serial="$logdir/$name.serial.log"
    : >"$serial"
    "$qemu" -nodefaults -no-user-config -display none -no-reboot \
        "${accel_args[@]}" -smp 1 -m "$mem" \
        -kernel "$imagedir/vmlinuz" -initrd "$imagedir/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 ipn.ip=$ip ipn.peer=$peer ipn.tries=$tries" \
        -serial "file:$serial" -monitor none \
        -netdev "vde,id=n0,sock=$sock" \
        -device "$nic_model,netdev=n0,mac=$mac,romfile=" \
        </dev/null >"$logdir/$name.qemu.log" 2>&1 &
    pid[$name]=$!
    log "VM $name: pid ${pid[$name]}, $ip -> $peer, mac $mac, sock $url"
}

log "booting 2 VMs (accel=$accel, nic=$nic_model, timeout ${timeout_s}s, logs in $logdir)..."
start=$SECONDS
start_vm A "$url_a" 10.0.0.1/24 10.0.0.2 52:54:00:49:50:0a
start_vm B "$url_b" 10.0.0.2/24 10.0.0.1 52:54:00:49:50:0b

# --- wait ---------------------------------------------------------------------------------
declare -A state=() took=()
vm_state() { # prints: OK FAIL DEAD pinging booting starting
    local name=$1 serial="$logdir/$1.serial.log"
    if grep -q 'IPN-PING-OK' "$serial"; then echo OK
    elif grep -q 'IPN-PING-FAIL' "$serial"; then echo FAIL
    elif ! kill -0 "${pid[$name]}" 2>/dev/null; then echo DEAD
    elif grep -q 'IPN-NET-UP' "$serial"; then echo pinging
    elif grep -q 'IPN-INIT-START' "$serial"; then echo init
    else echo booting
    fi
}
final() { case "$1" in OK | FAIL | DEAD) return 0 ;; *) return 1 ;; esac; }

last_report=$SECONDS
while :; do
    done_all=1
    for name in A B; do
        if [ -z "${took[$name]:-}" ]; then
            state[$name]=$(vm_state "$name")
            if final "${state[$name]}"; then
                took[$name]=$((SECONDS - start))
                log "VM $name: ${state[$name]} after ${took[$name]}s"
            else
                done_all=0
            fi
        fi
    done
    [ "$done_all" = 1 ] && break
    elapsed=$((SECONDS - start))
    if [ "$elapsed" -ge "$timeout_s" ]; then
        log "timeout after ${elapsed}s"
        break
    fi
    if [ $((SECONDS - last_report)) -ge 10 ]; then
        log "waiting... ${elapsed}s: A=${state[A]} B=${state[B]}"
        last_report=$SECONDS
    fi
    sleep 1
done

# --- summary --------------------------------------------------------------------------------
rc=0
for name in A B; do
    serial="$logdir/$name.serial.log"
    case "${state[$name]}" in
        OK)
            detail=$(grep -m1 -o 'IPN-PING-OK.*' "$serial" | tr -d '\r')
            log "RESULT VM $name: OK   ${detail#IPN-PING-OK } [${took[$name]}s]"
            ;;
        FAIL)
            detail=$(grep -m1 -o 'IPN-PING-FAIL.*' "$serial" | tr -d '\r')
            log "RESULT VM $name: FAIL ${detail#IPN-PING-FAIL } [${took[$name]}s]"
            rc=1
            ;;
        DEAD)
            log "RESULT VM $name: FAIL qemu exited before a result (see qemu log below) [${took[$name]}s]"
            rc=1
            ;;
        *)
            log "RESULT VM $name: FAIL no result within ${timeout_s}s (last state: ${state[$name]})"
            rc=1
            ;;
    esac
done

if [ "$rc" -ne 0 ]; then
    keep_logs=1
    for name in A B; do
        echo "----- VM $name: qemu output ($logdir/$name.qemu.log) -----" >&2
        tail -n 20 "$logdir/$name.qemu.log" >&2 || true
        echo "----- VM $name: serial console, last 40 lines ($logdir/$name.serial.log) -----" >&2
        tail -n 40 "$logdir/$name.serial.log" | tr -d '\r' >&2 || true
    done
    log "PING TEST FAILED (A: $url_a, B: $url_b); logs kept in $logdir"
else
    log "PING TEST PASSED in $((SECONDS - start))s (A: $url_a, B: $url_b)"
fi
exit "$rc"
