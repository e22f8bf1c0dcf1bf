#!/usr/bin/env bash
# Whether User-Mode Linux can run user space on this host at all: boots
# UML with an initramfs whose init is three instructions (write a marker,
# exit; no libc), and looks for the marker.
#
# Seen on an Intel Xeon with AVX-512 and AMX (Sapphire Rapids): Debian 12's
# UML (6.1) starts its kernel, then kills every first user-space
# instruction with SIGSEGV ("Attempted to kill init! exitcode=0x0000000b"),
# whatever the init; the same UML works on AMD EPYC hosts. Nothing ipn can
# mend: tests that need UML report it as BLOCKED (exit status 77) there.
#
# Usage: uml-probe.sh        (exit 0: UML runs user space; 77: it cannot)
set -euo pipefail
uml=${IPN_UML:-linux.uml}
command -v "$uml" >/dev/null || { echo "[uml-probe] $uml not found (apt-get install user-mode-linux)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "[uml-probe] gcc not found (scripts/deps.sh installs it)" >&2; exit 1; }
work=$(mktemp -d /tmp/ipn-uml-probe.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/root"
cat >"$work/init.c" <<'C'
void _start(void) {
    static const char marker[] = "IPN-UML-USERSPACE-OK\n";
    long rc;
    __asm__ volatile("syscall" : "=a"(rc) : "a"(1), "D"(1), "S"(marker), "d"(sizeof marker - 1)
                     : "rcx", "r11", "memory");
    __asm__ volatile("syscall" : : "a"(60), "D"(0));
    for (;;) {
    }
}
C
gcc -static -nostdlib -O2 -o "$work/root/init" "$work/init.c"
(cd "$work/root" && echo init | cpio -o -H newc 2>/dev/null | gzip >"$work/initrd.gz")
out=$(timeout 30 env TMPDIR="$work" "$uml" umid="ipn-probe-$$" uml_dir="$work" mem=64M \
    initrd="$work/initrd.gz" con0=fd:0,fd:1 con=null panic=-1 </dev/null 2>&1 || true)
if grep -q IPN-UML-USERSPACE-OK <<<"$out"; then
    exit 0
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "[uml-probe] BLOCKED: User-Mode Linux ($uml, $(dpkg-query -W -f='${Version}' user-mode-linux 2>/dev/null || echo '?')) cannot run user space on this host ($cpu, kernel $(uname -r)): even a three-instruction init dies: $(grep -m1 -o 'Kernel panic.*' <<<"$out" || echo 'no marker')" >&2
exit 77
