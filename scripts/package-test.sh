#!/usr/bin/env bash
# Builds the Debian package (scripts/package.sh), installs it, checks that
# everything works from the installed files alone, with no LD_LIBRARY_PATH
# and no VDEPLUGIN_PATH, and removes it again, also when a check fails or
# the script is interrupted. The checks:
#
#   - /usr/bin/ipn creates, shows and removes a network;
#   - bash completes from the installed completion file; the systemd units
#     pass systemd-analyze verify where they are installed;
#   - `man ipn` and `man libvdeplug_ipn` open;
#   - vde_plug bridges two ipn networks through the installed plugin;
#   - the C example shipped in /usr/share/doc/ipn/examples is compiled with
#     `pkg-config --cflags --libs ipn` and runs, linked to libipn.so.0;
#   - two QEMU VMs on -netdev vde,sock=ipn:///... ping each other
#     (scripts/vm/ping-test.sh).
#
# The package is installed for as short a time as possible: while it is,
# libvdeplug finds its plugin before any copy on LD_LIBRARY_PATH.
#
# Usage: scripts/package-test.sh       (as root; refuses if a package named
#                                       ipn is installed already)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[package-test] %s\n' "$*" >&2; }
die() { printf '[package-test] FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "installing a package needs root"
if dpkg-query -W -f='${Status}' ipn 2>/dev/null | grep 'install ok installed' >/dev/null; then
  die "a package named ipn is installed already; this test installs its own build and \
removes it afterwards, so remove that one first (dpkg --purge ipn)"
fi

deb=$(scripts/package.sh | tail -n 1)
imagedir=${IPN_VM_CACHE:-/var/tmp/ipn-vm}
scripts/vm/build-image.sh "$imagedir" # before installing: keeps the window short

work=$(mktemp -d /tmp/ipn-package-test.XXXXXX)
chmod 0755 "$work"
installed=0
plugin=/usr/lib/x86_64-linux-gnu/vdeplug/libvdeplug_ipn.so
pids=()
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$installed" = 1 ]; then
    log "removing the package (dpkg --purge ipn)"
    if ! dpkg --purge ipn >/dev/null; then
      log "dpkg --purge ipn failed: the package is still installed"
      rc=1
    elif [ -e /usr/bin/ipn ] || [ -e "$plugin" ] || ldconfig -p | grep libipn.so >/dev/null; then
      log "files of the package are still there after dpkg --purge ipn"
      rc=1
    fi
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Everything below runs with the environment a user has after installing.
unset LD_LIBRARY_PATH VDEPLUGIN_PATH

# The control: without the package, nothing on this machine knows ipn://.
if out=$(timeout 10 vde_plug "ipn://$work/probe" </dev/null 2>&1); then
  die "vde_plug opened ipn:// before the package was installed; another libvdeplug_ipn.so is installed"
fi
case "$out" in
  *"Protocol not supported"*) ;;
  *) die "before installing, vde_plug ipn:// should say 'Protocol not supported'; it said: $out" ;;
esac

log "installing $deb"
installed=1
dpkg -i "$deb" >/dev/null

log "the files are where libvdeplug, ld.so, man and pkg-config look"
[ "$(command -v ipn)" = /usr/bin/ipn ] || die "ipn is not /usr/bin/ipn but '$(command -v ipn)'"
[ -f "$plugin" ] || die "$plugin is missing"
# (/lib is /usr/lib on merged-/usr systems: ldconfig may name either.)
ldconfig -p | grep -E 'libipn\.so\.0 \(libc6,x86-64\) => (/usr)?/lib/x86_64-linux-gnu/libipn\.so\.0$' >/dev/null \
  || die "ld.so.cache does not know libipn.so.0 (the ldconfig trigger did not run?)"
[ "$(man -w ipn)" = /usr/share/man/man1/ipn.1.gz ] || die "man -w ipn: $(man -w ipn 2>&1)"
man -P cat ipn 2>/dev/null | grep 'REACHING THE WORLD WITHOUT ROOT' >/dev/null || die "man ipn does not open"
man -P cat libvdeplug_ipn 2>/dev/null | grep 'URL SYNTAX' >/dev/null || die "man libvdeplug_ipn does not open"
[ "$(pkg-config --modversion ipn)" = "$(dpkg-deb --field "$deb" Version)" ] \
  || die "pkg-config --modversion ipn: '$(pkg-config --modversion ipn 2>&1)'"

log "shell completions are where bash, zsh and fish look; bash completes from its file"
for f in /usr/share/bash-completion/completions/ipn /usr/share/zsh/vendor-completions/_ipn \
    /usr/share/fish/vendor_completions.d/ipn.fish; do
  [ -s "$f" ] || die "$f is missing"
done
# bash-completion would source the file on the first Tab after `ipn`; so
# does this, then asks for the completions of `ipn sta` as bash would.
completed=$(bash --norc --noprofile -c '
  source /usr/share/bash-completion/completions/ipn
  read -r -a spec <<<"$(complete -p ipn)"
  fn=${spec[$(( ${#spec[@]} - 2 ))]}
  COMP_WORDS=(ipn sta); COMP_CWORD=1; COMP_LINE="ipn sta"; COMP_POINT=7
  "$fn" ipn sta ipn
  echo "${COMPREPLY[*]}"')
[ "$completed" = status ] || die "bash completes 'ipn sta' as '$completed', not 'status'"

log "systemd-analyze verify: the installed template units, with /usr/bin/ipn and man ipn"
for unit in network tap grab vxlan vhost-user; do
  [ -f "/lib/systemd/system/ipn-$unit@.service" ] || die "ipn-$unit@.service is not in /lib/systemd/system"
  out=$(systemd-analyze verify "ipn-$unit@pkgtest.service" 2>&1) || die "systemd-analyze verify ipn-$unit@: $out"
  [ -z "$out" ] || die "systemd-analyze verify ipn-$unit@ complains: $out"
done

log "ipn create, status, rm"
ipn create "$work/net" --ports 8 >/dev/null
ipn status "$work/net" | grep '8 port slots' >/dev/null || die "ipn status: $(ipn status "$work/net" 2>&1)"
ipn rm "$work/net"

log "vde_plug bridges two networks through the installed plugin"
ipn create "$work/a"
ipn create "$work/b"
ipn sub "$work/b" --count 1 --timeout 20 >"$work/b.out" &
pids+=($!)
vde_plug "ipn://$work/a" "ipn://$work/b" 2>"$work/vde_plug.err" &
pids+=($!)
for _ in $(seq 200); do
  ipn status "$work/a" --json | grep '"readers": 1,' >/dev/null \
    && ipn status "$work/b" --json | grep '"readers": 2,' >/dev/null && break
  sleep 0.05
done
ipn status "$work/a" --json | grep '"readers": 1,' >/dev/null \
  || die "vde_plug did not join ipn://$work/a: $(cat "$work/vde_plug.err")"
# vde_plug forwards frames of at least an Ethernet header (14 bytes).
echo "a frame through vde_plug, from a to b" | ipn pub "$work/a"
wait "${pids[0]}" || die "nothing reached $work/b through vde_plug: $(cat "$work/vde_plug.err")"
grep -q 'a frame through vde_plug, from a to b' "$work/b.out" || die "b got: $(cat "$work/b.out")"
kill "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
pids=()

log "the C example, built with pkg-config, linked to the installed libipn.so.0"
example=/usr/share/doc/ipn/examples/exchange.c
[ -f "$example" ] || die "$example is missing"
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
cc -Wall -Wextra -Werror -o "$work/exchange" "$example" $(pkg-config --cflags --libs ipn)
ldd "$work/exchange" | grep -E 'libipn\.so\.0 => (/usr)?/lib/x86_64-linux-gnu/libipn\.so\.0 ' >/dev/null \
  || die "the example is not linked to the installed library: $(ldd "$work/exchange")"
"$work/exchange" "$work/exchange-net" 20 | tee "$work/exchange.out"
grep -q '20 of 20 pongs' "$work/exchange.out" || die "the example did not exchange its frames"

log "two QEMU VMs on ipn://$work/vms ping each other through the installed plugin"
scripts/vm/ping-test.sh "ipn://$work/vms" "ipn://$work/vms" "$imagedir"

log "ok: the package works with no environment variables"
