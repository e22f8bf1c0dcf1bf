# shellcheck shell=bash
# Sourced by scripts that boot the test image themselves (the vhost-user
# system test, bench-vm.sh): start a QEMU VM on any NIC URL and wait for
# its console markers (init.sh). Set before use:
#   vm_work    directory for the logs (NAME.serial.log, NAME.qemu.log) and
#              the monitors' FIFOs (NAME.monitor.in, NAME.monitor.out)
#   vm_image   directory with vmlinuz and initramfs.cpio.gz (build-image.sh)
#   vm_accel   tcg or kvm
#   vm_mem     guest memory in MiB (default 256)
# and `declare -A vm_pid=()`; vm_stop_all ends them (each in its own
# process group).

# shellcheck source=qemu-net.sh
. "$(dirname "${BASH_SOURCE[0]}")/qemu-net.sh"

# vm_start NAME URL IP/CIDR PEER MAC KERNEL_PARAMS...
vm_start() {
    local name=$1 url=$2 ip=$3 peer=$4 mac=$5 mem=${vm_mem:-256}
    shift 5
    local -a accel=(-accel tcg -cpu max)
    [ "$vm_accel" = kvm ] && accel=(-accel kvm -cpu host)
    qemu_net_args "$url" "$mac" "$mem" "$vm_accel"
    : >"$vm_work/$name.serial.log"
    rm -f "$vm_work/$name.monitor.in" "$vm_work/$name.monitor.out"
    mkfifo "$vm_work/$name.monitor.in" "$vm_work/$name.monitor.out"
    setsid qemu-system-x86_64 -nodefaults -no-user-config -display none \
        "${accel[@]}" -smp 1 -m "$mem" \
        -kernel "$vm_image/vmlinuz" -initrd "$vm_image/initramfs.cpio.gz" \
        -append "console=ttyS0 panic=-1 quiet ipn.ip=$ip ipn.peer=$peer $*" \
        -serial "file:$vm_work/$name.serial.log" \
        -monitor "pipe:$vm_work/$name.monitor" \
        "${qemu_net[@]}" </dev/null >"$vm_work/$name.qemu.log" 2>&1 &
    vm_pid[$name]=$!
}

# vm_wait_for NAME PATTERN SECONDS [COUNT]: returns 0 once VM NAME's console
# has COUNT (default 1) lines matching PATTERN; 1 (with the console's tail
# and a reason on stderr) on a *-FAIL marker, QEMU's exit, or the timeout.
vm_wait_for() {
    local name=$1 pattern=$2 secs=$3 count=${4:-1} start=$SECONDS
    local serial=$vm_work/$name.serial.log
    while [ "$(grep -c -- "$pattern" "$serial" || true)" -lt "$count" ]; do
        if grep -q 'IPN-PING-FAIL\|IPN-IPERF-FAIL' "$serial"; then
            tail -n 30 "$serial" >&2
            echo "VM $name: $(grep -m1 -o 'IPN-[A-Z]*-FAIL.*' "$serial")" >&2
            return 1
        fi
        if ! kill -0 "${vm_pid[$name]}" 2>/dev/null; then
            cat "$vm_work/$name.qemu.log" >&2
            echo "VM $name: QEMU exited while waiting for '$pattern'" >&2
            return 1
        fi
        if [ $((SECONDS - start)) -ge "$secs" ]; then
            tail -n 30 "$serial" >&2
            echo "VM $name: no '$pattern' (x$count) within ${secs}s" >&2
            return 1
        fi
        sleep 0.5
    done
}

# vm_monitor NAME COMMAND: one command on VM NAME's QEMU monitor (QEMU
# holds both FIFOs open read-write, so neither open blocks; its replies
# stay in the .out FIFO).
vm_monitor() {
    echo "$2" >"$vm_work/$1.monitor.in"
}

# vm_stop NAME / vm_stop_all: TERM the VM's process group and wait.
vm_stop() {
    local p=${vm_pid[$1]:-}
    [ -n "$p" ] || return 0
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "vm_pid[$1]"
}
vm_stop_all() {
    local name
    for name in "${!vm_pid[@]}"; do vm_stop "$name"; done
}
