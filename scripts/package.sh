#!/usr/bin/env bash
# Builds the Debian package of ipn, target/debian/ipn_VERSION_amd64.deb,
# with cargo-deb (installed with `cargo install cargo-deb --locked` when
# missing). What goes where is [package.metadata.deb] in
# crates/ipn-cli/Cargo.toml:
#
#   /usr/bin/ipn                                           the command
#   /usr/bin/ipn-bench                                     if crates/ipn-bench exists
#   /usr/lib/x86_64-linux-gnu/vdeplug/libvdeplug_ipn.so    the ipn:// plugin
#   /usr/lib/x86_64-linux-gnu/libipn.so.0, libipn.so      the C API
#   /usr/include/ipn.h, /usr/lib/x86_64-linux-gnu/pkgconfig/ipn.pc
#   /usr/share/man/man1/ipn.1.gz, libvdeplug_ipn.1.gz
#   /usr/share/doc/ipn/                                    README, docs, examples
#   /usr/share/bash-completion/completions/ipn, /usr/share/zsh/vendor-completions/_ipn,
#   /usr/share/fish/vendor_completions.d/ipn.fish          completions (ipn completions SHELL)
#   /lib/systemd/system/ipn-{network,tap,grab,vxlan,vhost-user}@.service   template units
#
# It also builds the Python package's wheel, target/wheels/
# ipn-VERSION-cp311-abi3-manylinux_2_XX_x86_64.whl, with maturin (installed
# into the virtual environment target/python-venv when missing): one wheel
# for CPython 3.11 and later (abi3). Its manylinux tag is the one maturin
# finds the extension needs: built here against Debian 12's glibc it uses
# symbols of glibc 2.34 (pthread's, which moved into libc then), so
# manylinux_2_34: Debian 12, Ubuntu 22.04, RHEL 9 and later. An older tag
# needs a build on an older glibc (a manylinux container), not done here.
#
# Usage: scripts/package.sh        prints the .deb's path on its last line
# Needs: cargo, dpkg-shlibdeps (dpkg-dev), python3-venv, an amd64 Debian or
# Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[package] %s\n' "$*" >&2; }
die() { printf '[package] ERROR: %s\n' "$*" >&2; exit 1; }

arch=$(dpkg --print-architecture 2>/dev/null) || die "dpkg not found: this builds a Debian package"
[ "$arch" = amd64 ] || die "the package's paths are Debian's for amd64 (x86_64-linux-gnu); this is $arch"
command -v dpkg-shlibdeps >/dev/null \
  || die "dpkg-shlibdeps not found (it computes the package's dependencies): apt-get install dpkg-dev, or run scripts/deps.sh"

if ! cargo deb --version >/dev/null 2>&1; then
  log "cargo-deb not found; installing it (cargo install cargo-deb --locked)..."
  cargo install cargo-deb --locked -q
fi

packages=(-p ipn-cli -p vdeplug-ipn -p ipn-capi)
variant=()
if [ -f crates/ipn-bench/Cargo.toml ]; then
  packages+=(-p ipn-bench)
  variant=(--variant with-bench)
fi
log "building (cargo build --release ${packages[*]})..."
cargo build --release -q "${packages[@]}"

# The C library is installed under its soname, libipn.so.0, which cargo-deb
# does not recognise as a library to strip: strip it here, into the name
# the package's asset list takes (next to cargo's libipn.so).
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -f "$target_dir/release/libipn.so" ] || die "no $target_dir/release/libipn.so after the build"
strip --strip-unneeded -o "$target_dir/release/libipn.so.0" "$target_dir/release/libipn.so"

# Shell completions, generated from the command's definition by the
# binary being packaged, where the asset list takes them.
mkdir -p "$target_dir/release/completions"
for shell in bash zsh fish; do
  "$target_dir/release/ipn" completions "$shell" >"$target_dir/release/completions/ipn.$shell"
done

log "packaging (cargo deb -p ipn-cli --no-build --strip ${variant[*]})..."
# cargo deb prints the path of the .deb it wrote on its last line.
deb=$(cargo deb -p ipn-cli --no-build --strip "${variant[@]}" | tail -n 1)
[ -f "$deb" ] || die "cargo deb did not say where it wrote the package (got '$deb')"
log "built $deb ($(du -h "$deb" | cut -f1)):"
dpkg-deb --field "$deb" Package Version Architecture Depends Recommends | sed 's/^/[package]   /' >&2

venv=target/python-venv
if [ ! -x "$venv/bin/maturin" ]; then
  log "maturin not found; installing it into $venv..."
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv" \
    || die "could not make a venv: apt-get install python3-venv, or run scripts/deps.sh"
  "$venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.5,<2"
fi
log "building the Python wheel (maturin build --release -m crates/ipn-py/Cargo.toml)..."
rm -f "$target_dir"/wheels/ipn-*.whl
PATH=$PWD/$venv/bin:$PATH "$venv/bin/maturin" build --release -q \
  -m crates/ipn-py/Cargo.toml --interpreter "$venv/bin/python" --out "$target_dir/wheels" >&2
wheel=$(ls "$target_dir"/wheels/ipn-*.whl 2>/dev/null | head -n 1)
[ -f "$wheel" ] || die "maturin did not write a wheel into $target_dir/wheels"
log "built $wheel ($(du -h "$wheel" | cut -f1))"
echo "$deb"
