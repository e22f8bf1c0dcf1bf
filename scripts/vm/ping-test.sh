#!/usr/bin/env bash
# Boot two tiny Linux VMs, each NIC attached through libvdeplug, and check
# that they ping each other. By default both are QEMU VMs
# (-netdev vde,sock=URL); either can be a User-Mode Linux instance instead
# (eth0=vde,URL), see IPN_VM_A_KIND / IPN_VM_B_KIND and uml-ping-test.sh.
#
# Usage: ping-test.sh URL_A URL_B [IMAGEDIR]
#   URL_A, URL_B  libvdeplug URLs for VM A and VM B (usually the same), e.g.
#                 vde:///tmp/sw  or  ipn:///tmp/net, or vhost-user://SOCK
#                 for a QEMU VM whose NIC a vhost-user backend serves
#                 (`ipn vhost-user NET --socket SOCK`, see qemu-net.sh)
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
#   IPN_VM_A_KIND, IPN_VM_B_KIND
#                    qemu (default) or uml: how to run VM A / VM B
#   IPN_VM_A_PARAMS, IPN_VM_B_PARAMS
#                    more guest kernel parameters for VM A / VM B, e.g.
#                    ipn.vlan=10 (see init.sh)
#   IPN_UML          User-Mode Linux binary (default linux.uml, from the
#                    Debian package user-mode-linux). UML's vde transport
#                    runs the vde_plug helper (package vdeplug) from PATH,
#                    which opens URL with the shared libvdeplug + plugins.
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
# shellcheck source=qemu-net.sh
. "$script_dir/qemu-net.sh"
timeout_s=${IPN_VM_TIMEOUT:-150}
tries=${IPN_VM_TRIES:-60}
mem=${IPN_VM_MEM:-128}
qemu=${IPN_VM_QEMU:-qemu-system-x86_64}
uml=${IPN_UML:-linux.uml}
declare -A kind=([A]=${IPN_VM_A_KIND:-qemu} [B]=${IPN_VM_B_KIND:-qemu})
declare -A url=([A]=$url_a [B]=$url_b)
declare -A extra=([A]=${IPN_VM_A_PARAMS:-} [B]=${IPN_VM_B_PARAMS:-})
need_qemu=0
for name in A B; do
    case "${kind[$name]}" in
        qemu) need_qemu=1 ;;
        uml)
            command -v "$uml" >/dev/null || die "$uml not found (apt-get install user-mode-linux)"
            command -v vde_plug >/dev/null \
                || die "vde_plug not found in PATH; UML's vde transport needs it (apt-get install vdeplug)"
            # UML splits eth0=... on commas and has no escape for them.
            case "${url[$name]}" in
                *,*) die "VM $name: UML cannot take a URL containing ',' (${url[$name]})" ;;
            esac
            ;;
        *) die "IPN_VM_${name}_KIND must be qemu or uml (got '${kind[$name]}')" ;;
    esac
done
if [ "$need_qemu" = 1 ]; then
    command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install qemu-system-x86)"
fi

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
    if printf '%s' "$out" | grep IPN-PROBE-OK >/dev/null; then
        return 0
    fi
    kvm_probe_error=$(printf '%s\n' "$out" | grep -v '^$' | tail -n 1)
    [ "$rc" = 124 ] && kvm_probe_error="probe guest did not finish within 20s"
    return 1
}
accel=${IPN_VM_ACCEL:-auto}
if [ "$need_qemu" = 0 ]; then
    accel=none
elif [ "$accel" = auto ]; then
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
    none) accel_args=() ;;
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
    # Each VM runs in its own process group (setsid): UML is several
    # processes plus its vde_plug helper.
    for p in "${pid[@]}"; do
        kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pid[@]}"; do
        wait "$p" 2>/dev/null || true
        kill -KILL -- "-$p" 2>/dev/null || true
    done
    if [ "$keep_logs" = 0 ]; then rm -rf "$logdir"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- start the VMs ---------------------------------------------------------------------
start_vm() { # name ip/cidr peer mac
    local name=$1 ip=$2 peer=$3 mac=$4
    local u=${url[$name]}
    local serial="$logdir/$name.serial.log" hostlog="$logdir/$name.host.log"
    local -a params=(quiet loglevel=3 "ipn.ip=$ip" "ipn.peer=$peer" "ipn.tries=$tries")
    # shellcheck disable=SC2206  # words on purpose: several parameters
    params+=(${extra[$name]})
    : >"$serial"
    case "${kind[$name]}" in
        qemu)
            qemu_net_args "$u" "$mac" "$mem" "$accel" "$nic_model"
            setsid "$qemu" -nodefaults -no-user-config -display none -no-reboot \
                "${accel_args[@]}" -smp 1 -m "$mem" \
                -kernel "$imagedir/vmlinuz" -initrd "$imagedir/initramfs.cpio.gz" \
                -append "console=ttyS0 panic=-1 ${params[*]}" \
                -serial "file:$serial" -monitor none \
                "${qemu_net[@]}" \
                </dev/null >"$hostlog" 2>&1 &
            ;;
        uml)
            # UML backs guest memory with a file in TMPDIR: prefer tmpfs.
            local umltmp=$logdir
            if [ -d /dev/shm ] && [ -w /dev/shm ]; then umltmp=/dev/shm; fi
            TMPDIR=$umltmp setsid "$uml" umid="ipn-$name-$$" uml_dir="$logdir" \
                mem="${mem}M" initrd="$imagedir/initramfs.cpio.gz" \
                "eth0=vde,$u,$mac" con0=fd:0,fd:1 con=null "${params[@]}" \
                </dev/null >"$serial" 2>"$hostlog" &
            ;;
    esac
    pid[$name]=$!
    log "VM $name (${kind[$name]}): pid ${pid[$name]}, $ip -> $peer, mac $mac, url $u${extra[$name]:+, ${extra[$name]}}"
}

log "booting 2 VMs (A=${kind[A]}, B=${kind[B]}, accel=$accel, nic=$nic_model, timeout ${timeout_s}s, logs in $logdir)..."
start=$SECONDS
start_vm A 10.0.0.1/24 10.0.0.2 52:54:00:49:50:0a
start_vm B 10.0.0.2/24 10.0.0.1 52:54:00:49:50:0b

# --- wait ---------------------------------------------------------------------------------
declare -A state=() took=()
vm_state() { # prints: OK FAIL DEAD NOLINK pinging init booting
    local name=$1 serial="$logdir/$1.serial.log" hostlog="$logdir/$1.host.log"
    if grep -q 'IPN-PING-OK' "$serial"; then echo OK
    elif grep -q 'IPN-PING-FAIL' "$serial"; then echo FAIL
    elif ! kill -0 "${pid[$name]}" 2>/dev/null; then echo DEAD
    # UML does not fail when its vde_plug helper cannot open the URL; the
    # helper's error ("vde_open URL: reason") only shows up on stderr.
    elif [ "${kind[$name]}" = uml ] && grep -q '^vde_open ' "$hostlog"; then echo NOLINK
    elif grep -q 'IPN-NET-UP' "$serial"; then echo pinging
    elif grep -q 'IPN-INIT-START' "$serial"; then echo init
    else echo booting
    fi
}
final() { case "$1" in OK | FAIL | DEAD | NOLINK) return 0 ;; *) return 1 ;; esac; }

last_report=$SECONDS
aborted=0
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
    # A VM that died or has no link makes the other one's result moot.
    case " ${state[A]} ${state[B]} " in
        *" DEAD "* | *" NOLINK "*)
            log "a VM cannot take part any more; not waiting for the other"
            aborted=1
            break
            ;;
    esac
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
            log "RESULT VM $name: FAIL ${kind[$name]} exited before a result (see its output below) [${took[$name]}s]"
            rc=1
            ;;
        NOLINK)
            detail=$(grep -m1 '^vde_open ' "$logdir/$name.host.log")
            log "RESULT VM $name: FAIL vde_plug helper could not connect: $detail [${took[$name]}s]"
            rc=1
            ;;
        *)
            if [ "$aborted" = 1 ]; then
                log "RESULT VM $name: FAIL aborted after $((SECONDS - start))s because the other VM failed (last state: ${state[$name]})"
            else
                log "RESULT VM $name: FAIL no result within ${timeout_s}s (last state: ${state[$name]})"
            fi
            rc=1
            ;;
    esac
done

if [ "$rc" -ne 0 ]; then
    keep_logs=1
    for name in A B; do
        echo "----- VM $name: ${kind[$name]} output ($logdir/$name.host.log) -----" >&2
        tail -n 20 "$logdir/$name.host.log" >&2 || true
        echo "----- VM $name: serial console, last 40 lines ($logdir/$name.serial.log) -----" >&2
        tail -n 40 "$logdir/$name.serial.log" | tr -d '\r' >&2 || true
    done
    log "PING TEST FAILED (A: ${kind[A]} $url_a, B: ${kind[B]} $url_b); logs kept in $logdir"
else
    log "PING TEST PASSED in $((SECONDS - start))s (A: ${kind[A]} $url_a, B: ${kind[B]} $url_b)"
fi
exit "$rc"
