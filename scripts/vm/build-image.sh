#!/usr/bin/env bash
# Build a tiny Linux test image for the ipn VM ping test, from Debian
# packages only (nothing is installed on the host):
#   OUTDIR/vmlinuz            Debian kernel (linux-image-<ver>-amd64)
#   OUTDIR/initramfs.cpio.gz  busybox-static + NIC driver modules + iperf3
#                             (with the libraries it needs) + /init
#   OUTDIR/kernel-version     the kernel release the modules belong to
#
# Usage: build-image.sh OUTDIR
#
# Environment:
#   IPN_VM_KERNEL_PKG  kernel package to use (default: the dependency of the
#                      linux-image-amd64 metapackage, e.g.
#                      linux-image-6.1.0-56-amd64)
#   IPN_VM_NIC_MODULES space separated root modules to include (default:
#                      "virtio_pci virtio_net e1000"); dependencies are added
#   IPN_VM_FORCE=1     rebuild even if OUTDIR is up to date
#
# iperf3 comes from Debian's iperf3 and libiperf0 packages, with the shared
# libraries it needs (found through their DT_NEEDED entries) from the
# packages that ship them (libc6, libssl3, libsctp1), so the guest runs the
# same iperf3 3.x as the host.
set -euo pipefail

log() { printf '[vm] %s\n' "$*" >&2; }
die() { printf '[vm] ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
outdir=$1
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$script_dir/$(basename "${BASH_SOURCE[0]}")"
init_src="$script_dir/init.sh"
[ -r "$init_src" ] || die "missing $init_src"

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

# --- cache check -------------------------------------------------------------
if [ "${IPN_VM_FORCE:-0}" != 1 ] \
    && [ -s "$outdir/vmlinuz" ] && [ -s "$outdir/initramfs.cpio.gz" ] \
    && [ "$outdir/vmlinuz" -nt "$self" ] && [ "$outdir/vmlinuz" -nt "$init_src" ] \
    && [ "$outdir/initramfs.cpio.gz" -nt "$self" ] \
    && [ "$outdir/initramfs.cpio.gz" -nt "$init_src" ]; then
    log "reusing image in $outdir ($(cat "$outdir/kernel-version" 2>/dev/null || echo '?'))"
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb cpio gzip depmod readelf; do
    command -v "$tool" >/dev/null || die "required tool '$tool' not found"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ipn-vm-build.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
# apt-get download as root drops privileges to _apt, which cannot write to a
# private mktemp directory; download as root instead of opening the directory.
apt_opts=(-q=2)
if [ "$(id -u)" -eq 0 ]; then
    apt_opts+=(-o APT::Sandbox::User=root)
fi

# --- kernel package name -----------------------------------------------------
kernel_pkg_from_meta() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
kpkg=${IPN_VM_KERNEL_PKG:-}
if [ -z "$kpkg" ]; then
    log "resolving kernel package via linux-image-amd64..."
    kpkg=$(kernel_pkg_from_meta || true)
    if [ -z "$kpkg" ]; then
        log "apt-cache does not know linux-image-amd64; running apt-get update..."
        apt-get update -qq || die "apt-get update failed"
        kpkg=$(kernel_pkg_from_meta || true)
    fi
    [ -n "$kpkg" ] || die "cannot find the kernel package behind linux-image-amd64"
fi
kver=${kpkg#linux-image-}
kver=${kver%-unsigned}
log "kernel package: $kpkg (release $kver)"

# --- download + extract --------------------------------------------------------
log "downloading kernel package $kpkg..."
(cd "$work" && apt-get download "${apt_opts[@]}" "$kpkg") || die "apt-get download $kpkg failed"
deb=$(find "$work" -maxdepth 1 -name "${kpkg}_*.deb" | head -n1)
[ -n "$deb" ] || die "downloaded .deb for $kpkg not found"

log "extracting kernel and modules..."
kx="$work/kernel"
mkdir -p "$kx"
dpkg-deb -x "$deb" "$kx"
rm -f "$deb"
[ -f "$kx/boot/vmlinuz-$kver" ] || die "no boot/vmlinuz-$kver in $kpkg"

# usr-merged packages (trixie and later) ship /usr/lib/modules.
if [ -d "$kx/lib/modules/$kver" ]; then
    modbase="$kx"
elif [ -d "$kx/usr/lib/modules/$kver" ]; then
    modbase="$kx/usr"
else
    die "no lib/modules/$kver in $kpkg"
fi
moddir="$modbase/lib/modules/$kver"

# The package does not ship modules.dep (the postinst runs depmod); build it.
if [ ! -s "$moddir/modules.dep" ]; then
    log "generating modules.dep (depmod -b)..."
    depmod -b "$modbase" "$kver" || die "depmod failed"
fi

# --- busybox -------------------------------------------------------------------
if dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep 'install ok installed' >/dev/null \
    && [ -x /bin/busybox ]; then
    busybox=/bin/busybox
    log "using busybox from the installed busybox-static package"
else
    log "downloading busybox-static..."
    (cd "$work" && apt-get download "${apt_opts[@]}" busybox-static) || die "apt-get download busybox-static failed"
    mkdir -p "$work/bb"
    dpkg-deb -x "$work"/busybox-static_*.deb "$work/bb"
    busybox="$work/bb/bin/busybox"
    [ -x "$busybox" ] || die "no bin/busybox in busybox-static"
fi

# --- iperf3 ---------------------------------------------------------------------
# The binary and, recursively, the libraries named by DT_NEEDED, found in the
# extracted packages; the dynamic loader from libc6 at its usual path.
log "downloading iperf3 and its libraries..."
ipx="$work/iperf"
mkdir -p "$ipx"
iperf_pkgs=(iperf3 libiperf0 libsctp1 libssl3 libc6)
(cd "$work" && apt-get download "${apt_opts[@]}" "${iperf_pkgs[@]}") \
    || die "apt-get download ${iperf_pkgs[*]} failed"
for p in "${iperf_pkgs[@]}"; do
    deb=$(find "$work" -maxdepth 1 -name "${p}_*.deb" | head -n1)
    [ -n "$deb" ] || die "downloaded .deb for $p not found"
    dpkg-deb -x "$deb" "$ipx"
    rm -f "$deb"
done
[ -x "$ipx/usr/bin/iperf3" ] || die "no usr/bin/iperf3 in the iperf3 package"
find_lib() { # soname -> path in the extracted tree
    find "$ipx" -name "$1" \( -type f -o -type l \) | head -n1
}
declare -A libs=()
add_libs() { # elf
    local soname path
    for soname in $(readelf -d "$1" | awk '/NEEDED/ { gsub(/[][]/, "", $5); print $5 }'); do
        [ -n "${libs[$soname]:-}" ] && continue
        path=$(find_lib "$soname")
        [ -n "$path" ] || die "iperf3 needs $soname, which none of ${iperf_pkgs[*]} ships"
        libs[$soname]=$path
        add_libs "$(readlink -f "$path")"
    done
}
add_libs "$ipx/usr/bin/iperf3"
loader=$(find_lib ld-linux-x86-64.so.2)
[ -n "$loader" ] || die "no ld-linux-x86-64.so.2 in libc6"

# --- initramfs tree --------------------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc,lib/ipn-modules,lib/x86_64-linux-gnu,lib64}
cp "$busybox" "$root/bin/busybox"
cp "$ipx/usr/bin/iperf3" "$root/bin/iperf3"
for soname in "${!libs[@]}"; do
    cp "$(readlink -f "${libs[$soname]}")" "$root/lib/x86_64-linux-gnu/$soname"
done
cp "$(readlink -f "$loader")" "$root/lib64/ld-linux-x86-64.so.2"
log "  iperf3 with ${!libs[*]}"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] && continue
    ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$init_src" "$root/init"

# Resolve the module list in load order using modules.dep. A line is
#   path/mod.ko: dep1.ko dep2.ko ...
# with the transitive dependencies; modprobe loads them from the last one.
declare -A seen=()
ordered=()
add_module() { # $1 = path relative to moddir
    local rel=$1 deps i
    local -a deparr
    [ -n "${seen[$rel]:-}" ] && return 0
    deps=$(awk -F': *' -v m="$rel" '$1 == m { print $2; exit }' "$moddir/modules.dep")
    read -r -a deparr <<<"$deps"
    for ((i = ${#deparr[@]} - 1; i >= 0; i--)); do
        add_module "${deparr[$i]}"
    done
    seen[$rel]=1
    ordered+=("$rel")
}
modules=${IPN_VM_NIC_MODULES:-virtio_pci virtio_net e1000}
for name in $modules; do
    rel=$(awk -F: -v n="$name" '{
            f = $1; sub(/.*\//, "", f); sub(/\.ko(\.(xz|gz|zst))?$/, "", f);
            gsub(/-/, "_", f); if (f == n) { print $1; exit } }' "$moddir/modules.dep")
    if [ -z "$rel" ]; then
        if grep -q "/$name.ko" "$moddir/modules.builtin" 2>/dev/null; then
            log "module $name is built into the kernel"
            continue
        fi
        die "module $name not found in $kpkg"
    fi
    add_module "$rel"
done

n=0
for rel in "${ordered[@]}"; do
    n=$((n + 1))
    base=$(basename "$rel")
    dest="$root/lib/ipn-modules/$(printf '%02d' "$n")-${base%%.ko*}.ko"
    case "$rel" in
        *.ko) cp "$moddir/$rel" "$dest" ;;
        *.ko.xz) xz -dc "$moddir/$rel" >"$dest" ;;
        *.ko.gz) gzip -dc "$moddir/$rel" >"$dest" ;;
        *.ko.zst) zstd -qdc "$moddir/$rel" >"$dest" ;;
        *) die "unexpected module file $rel" ;;
    esac
    log "  module $(basename "$dest")"
done

# --- pack ------------------------------------------------------------------------
log "packing initramfs..."
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z \
    | cpio --null --quiet -o -H newc -R 0:0 --reproducible) \
    | gzip -9n >"$work/initramfs.cpio.gz"

cp "$kx/boot/vmlinuz-$kver" "$work/vmlinuz"
echo "$kver" >"$work/kernel-version"
mv -f "$work/kernel-version" "$outdir/kernel-version"
mv -f "$work/vmlinuz" "$outdir/vmlinuz"
mv -f "$work/initramfs.cpio.gz" "$outdir/initramfs.cpio.gz"
log "image ready in $outdir: vmlinuz ($(du -h "$outdir/vmlinuz" | cut -f1)), initramfs.cpio.gz ($(du -h "$outdir/initramfs.cpio.gz" | cut -f1)), kernel $kver"
