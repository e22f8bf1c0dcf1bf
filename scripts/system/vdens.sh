#!/usr/bin/env bash
# System test: rootless network namespaces on an ipn network, with vdens
# (Debian package vdens) and the ipn:// plugin, as an unprivileged user.
#
# The user (nobody, no capabilities) creates a network and runs
#     vdens ipn://NET CMD
# which makes a user and network namespace whose interface vde0 is a TAP
# bridged to the network by vdens itself (outside the namespace, as the
# user): the only process besides CMD, and the network's port. Then:
#   1. two such namespaces ping each other;
#   2. with `vde_plug ipn://NET slirp://` beside them, run by the same user,
#      a third gets a DHCP lease from slirp and fetches a file that an HTTP
#      server serves on the host's 127.0.0.1 only (slirp's 10.0.2.2).
#
# vdens opens /dev/net/tun inside its namespace as the user, so the device
# must be usable by everyone: Debian's default mode, 0666. Machines without
# udev may have it 0600: then the test sets 0666 and puts the mode back
# when it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '[vdens] %s\n' "$*" >&2; }
die() { printf '[vdens] FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "this test needs root (setpriv to another user, /dev/net/tun's mode)"
for tool in vdens vde_plug setpriv busybox ip ss; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh installs what the tests need)"
done
slirp_module=$(ls /usr/lib/*/vdeplug/libvdeplug_slirp.so /usr/lib/vdeplug/libvdeplug_slirp.so 2>/dev/null || true)
[ -n "$slirp_module" ] || die "libvdeplug_slirp.so not found: apt-get install libvdeplug-slirp"
if [ "$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo 1)" != 1 ]; then
  die "unprivileged user namespaces are off, and vdens needs them: sysctl kernel.unprivileged_userns_clone=1"
fi
user=nobody
group=nogroup
as_user=(setpriv --reuid="$user" --regid="$group" --clear-groups --inh-caps=-all --)

cargo build --release -q -p vdeplug-ipn -p ipn-cli
ipn=$PWD/target/release/ipn

# $work is root's; the user gets its own directory in it, and copies of
# what it runs (the checkout may be in a directory it cannot enter).
work=$(mktemp -d /tmp/ipn-vdens.XXXXXX)
chmod 0755 "$work"
mkdir -p "$work/plugin" "$work/www" "$work/user"
cp target/release/libvdeplug_ipn.so "$work/plugin/"
cp "$ipn" "$work/ipn"
cat >"$work/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "lease $ip/${mask:-24} router ${router:-none}"
    ;;
esac
EOF
chmod 0755 "$work/udhcpc.sh"
token="from the host's loopback: $RANDOM$RANDOM"
echo "$token" >"$work/www/hello.txt"
chmod -R a+rX "$work"
chown "$user:$group" "$work/user"
net=$work/user/net
tun_mode=$(stat -c %a /dev/net/tun)

pids=()
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$(stat -c %a /dev/net/tun)" != "$tun_mode" ]; then
    chmod "$tun_mode" /dev/net/tun
    say "/dev/net/tun is back to mode $tun_mode"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$tun_mode" != 666 ]; then
  say "/dev/net/tun is mode $tun_mode (no udev?): setting Debian's 0666 for the test"
  chmod 0666 /dev/net/tun
fi

# vdens as the user, with the plugin found through LD_LIBRARY_PATH (the
# package puts it where libvdeplug looks; then nothing is needed).
# Run in the background: it becomes vdens (exec), so that $! is vdens's pid.
vdens_as_user() {
  exec "${as_user[@]}" env LD_LIBRARY_PATH="$work/plugin" HOME="$work/user" vdens "ipn://$net" "$@"
}

# Runs the shell command $2 in a new vdens namespace (named $1 in files),
# and prints what it printed; fails as it failed. vdens 0.2 may outlive its
# command: it does not block SIGCHLD before it forks, so a command that
# ends while vdens forwards a frame leaves it waiting for the signal it
# missed. So the command reports its own end, and vdens is then stopped.
in_namespace() {
  local name=$1 command=$2 pid rc
  rm -f "$work/user/$name.rc"
  vdens_as_user sh -c "($command) >'$work/user/$name.out' 2>&1; echo \$? >'$work/user/$name.rc'" \
    </dev/null >/dev/null 2>"$work/$name.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do
    [ -s "$work/user/$name.rc" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  cat "$work/user/$name.out" 2>/dev/null || true
  [ -s "$work/user/$name.rc" ] || { echo "vdens ended without running the command: $(cat "$work/$name.err")"; return 1; }
  rc=$(cat "$work/user/$name.rc")
  return "$rc"
}

say "as $user: ipn create $net"
"${as_user[@]}" "$work/ipn" create "$net" >/dev/null

say "as $user: namespace A, vdens ipn://$net, 10.0.7.1 on vde0"
vdens_as_user sh -c "ip addr add 10.0.7.1/24 dev vde0 && ip link set vde0 up && touch '$work/user/a.ready' && exec sleep 300" \
  </dev/null >/dev/null 2>"$work/a.err" &
a=$!
pids+=("$a")
for _ in $(seq 100); do
  [ -e "$work/user/a.ready" ] && break
  kill -0 "$a" 2>/dev/null || die "vdens (namespace A) exited: $(cat "$work/a.err")"
  sleep 0.1
done
[ -e "$work/user/a.ready" ] || die "namespace A did not come up: $(cat "$work/a.err")"

say "as $user: namespace B, 10.0.7.2, pings A"
out=$(in_namespace b "ip addr add 10.0.7.2/24 dev vde0 && ip link set vde0 up && ping -c 3 -w 20 10.0.7.1") \
  || die "namespace B could not ping A: $out"
grep -q '3 packets transmitted, 3 received' <<<"$out" || die "pings lost: $out"

# A's port: vdens itself, the user's.
port_pid=$("$ipn" status "$net" --json | sed -n 's/.*"pid": \([0-9]*\),.*/\1/p' | head -n 1)
[ -n "$port_pid" ] || die "no port on $net: $("$ipn" status "$net")"
[ "$(ps -o user= -p "$port_pid" | tr -d ' ')" = "$user" ] || die "the port's process is not $user's"
[ "$(ps -o comm= -p "$port_pid")" = vdens ] || die "the port's process is $(ps -o comm= -p "$port_pid"), not vdens"
# Its capabilities are those of its own user namespace, none of the host's.
[ "$(readlink "/proc/$port_pid/ns/user")" != "$(readlink /proc/1/ns/user)" ] \
  || die "vdens runs in the host's user namespace"

say "as $user: an HTTP server on the host's 127.0.0.1 only, and vde_plug ipn://$net slirp://"
port=""
for _ in $(seq 100); do
  port=$((20000 + RANDOM % 30000))
  [ -z "$(ss -Htln "sport = :$port")" ] && break
done
"${as_user[@]}" busybox httpd -f -p "127.0.0.1:$port" -h "$work/www" &
pids+=($!)
"${as_user[@]}" env LD_LIBRARY_PATH="$work/plugin" vde_plug "ipn://$net" slirp:// 2>"$work/slirp.err" &
slirp=$!
pids+=("$slirp")
for _ in $(seq 100); do
  [ -n "$(ss -Htln "sport = :$port")" ] && "$ipn" status "$net" --json | grep '"readers": 2,' >/dev/null && break
  kill -0 "$slirp" 2>/dev/null || die "vde_plug slirp:// exited: $(cat "$work/slirp.err")"
  sleep 0.1
done

say "as $user: namespace C gets a lease from slirp and fetches http://10.0.2.2:$port/hello.txt"
out=$(in_namespace c "ip link set vde0 up && busybox udhcpc -i vde0 -n -q -f -t 10 -T 2 -s '$work/udhcpc.sh' \
  && busybox wget -q -O - http://10.0.2.2:$port/hello.txt") \
  || die "namespace C: no lease or no page: $out"
say "namespace C: $(grep '^lease' <<<"$out")"
grep -q '^lease 10\.0\.2\.[0-9]*/24 router 10\.0\.2\.2$' <<<"$out" || die "no lease from slirp: $out"
grep -qxF "$token" <<<"$out" || die "namespace C got '$out', not the host's file"

say "ok: rootless namespaces on ipn://, with vdens: they ping; slirp gives a lease and the host's loopback"
