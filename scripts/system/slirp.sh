#!/usr/bin/env bash
# System test: an ipn network reaches the host (and the world) with no
# privileges, through vdeplug4's slirp module (libvdeplug-slirp).
#
# An unprivileged user (nobody, no capabilities) runs
#     vde_plug ipn://NET 'slirp:///tcpfwd=127.0.0.1:FWD:10.0.2.15:80'
# which creates the network NET, owned by that user, and an HTTP server
# listening on the host's 127.0.0.1 only. Then:
#   1. a network namespace, attached by root with `ipn tap` (the TAP is the
#      only privileged part), gets 10.0.2.15 from slirp's DHCP server
#      (busybox udhcpc) and fetches the host's file at 10.0.2.2, slirp's
#      name for the host's loopback;
#   2. the host fetches a file from an HTTP server in the namespace through
#      the forwarded port, 127.0.0.1:FWD -> 10.0.2.15:80;
#   3. a QEMU VM, run by the same unprivileged user, gets the next lease
#      and fetches the host's file too (scripts/vm/dhcp-fetch-test.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '[slirp] %s\n' "$*" >&2; }
die() { printf '[slirp] FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "this test needs root (a network namespace, a TAP, setpriv to another user)"
for tool in vde_plug setpriv busybox ip ss qemu-system-x86_64; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh installs what the tests need)"
done
slirp_module=$(ls /usr/lib/*/vdeplug/libvdeplug_slirp.so /usr/lib/vdeplug/libvdeplug_slirp.so 2>/dev/null || true)
[ -n "$slirp_module" ] || die "libvdeplug_slirp.so not found: apt-get install libvdeplug-slirp"
user=nobody
group=nogroup
as_user=(setpriv --reuid="$user" --regid="$group" --clear-groups --inh-caps=-all --)

cargo build --release -q -p vdeplug-ipn -p ipn-cli
ipn=$PWD/target/release/ipn
imagedir=${IPN_VM_CACHE:-/var/tmp/ipn-vm}
scripts/vm/build-image.sh "$imagedir"

# $work is root's; the user gets its own directory in it, and copies of
# what it runs (the checkout may be in a directory it cannot enter).
work=$(mktemp -d /tmp/ipn-slirp.XXXXXX)
chmod 0755 "$work"
mkdir -p "$work/plugin" "$work/host-www" "$work/ns-www" "$work/user"
cp target/release/libvdeplug_ipn.so "$work/plugin/"
cp scripts/vm/dhcp-fetch-test.sh "$work/"
chmod -R a+rX "$work"
chown "$user:$group" "$work/user"
net=$work/user/net
ns=ipn-slirp-$$
host_token="from the host's loopback: $RANDOM$RANDOM"
ns_token="from the namespace, forwarded: $RANDOM$RANDOM"
echo "$host_token" >"$work/host-www/hello.txt"
echo "$ns_token" >"$work/ns-www/index.html"
cat >"$work/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "lease $ip/${mask:-24} router ${router:-none} dns ${dns:-none}"
    ;;
esac
EOF
chmod 0755 "$work/udhcpc.sh"

pids=()
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port nothing listens on.
free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 30000))
    if [ -z "$(ss -Htln "sport = :$port")" ]; then
      echo "$port"
      return
    fi
  done
  die "no free TCP port found"
}
# Waits until `ss ARGS` lists a listening socket.
wait_listening() {
  for _ in $(seq 100); do
    [ -n "$("$@")" ] && return 0
    sleep 0.05
  done
  return 1
}
http_port=$(free_port)
fwd_port=$(free_port)
[ "$http_port" != "$fwd_port" ] || fwd_port=$((http_port + 1))

say "as $user: an HTTP server on the host's 127.0.0.1:$http_port only"
"${as_user[@]}" busybox httpd -f -p "127.0.0.1:$http_port" -h "$work/host-www" &
pids+=($!)
wait_listening ss -Htln "sport = :$http_port" || die "busybox httpd did not listen on 127.0.0.1:$http_port"

say "as $user: vde_plug ipn://$net 'slirp:///tcpfwd=127.0.0.1:$fwd_port:10.0.2.15:80'"
"${as_user[@]}" env LD_LIBRARY_PATH="$work/plugin" \
  vde_plug "ipn://$net" "slirp:///tcpfwd=127.0.0.1:$fwd_port:10.0.2.15:80" \
  2>"$work/vde_plug.err" &
slirp_pid=$!
pids+=("$slirp_pid")
for _ in $(seq 200); do
  "$ipn" status "$net" --json 2>/dev/null | grep '"readers": 1,' >/dev/null && break
  kill -0 "$slirp_pid" 2>/dev/null || die "vde_plug exited: $(cat "$work/vde_plug.err")"
  sleep 0.05
done
"$ipn" status "$net" --json | grep '"readers": 1,' >/dev/null \
  || die "vde_plug did not join $net: $(cat "$work/vde_plug.err")"
wait_listening ss -Htln "sport = :$fwd_port" || die "slirp did not listen on 127.0.0.1:$fwd_port"
# The slirp side is the user's, without any capability.
[ "$(stat -c %U "$net")" = "$user" ] || die "$net belongs to $(stat -c %U "$net"), not $user"
slirp_user=$(ps -o user= -p "$slirp_pid" | tr -d " ")
[ "$slirp_user" = "$user" ] || die "vde_plug runs as $slirp_user, not $user"
grep -q '^CapEff:[[:space:]]*0*$' "/proc/$slirp_pid/status" \
  || die "vde_plug has capabilities: $(grep CapEff "/proc/$slirp_pid/status")"

say "as root: a namespace joins through ipn tap and asks for a lease"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" "$ipn" tap "$net" --name slirp0 --up 2>"$work/tap.err" &
pids+=($!)
for _ in $(seq 100); do
  ip -n "$ns" link show slirp0 >/dev/null 2>&1 && break
  sleep 0.05
done
ip -n "$ns" link show slirp0 >/dev/null 2>&1 || die "ipn tap made no slirp0: $(cat "$work/tap.err")"
lease=$(ip netns exec "$ns" timeout 60 busybox udhcpc -i slirp0 -n -q -f -t 10 -T 2 \
  -s "$work/udhcpc.sh" 2>"$work/udhcpc.err") || die "no DHCP lease from slirp: $(cat "$work/udhcpc.err")"
say "namespace: $lease"
case "$lease" in
  "lease 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3") ;;
  *) die "unexpected lease (slirp's first is 10.0.2.15/24, router 10.0.2.2, dns 10.0.2.3): $lease" ;;
esac

say "namespace: fetch http://10.0.2.2:$http_port/hello.txt (the host's 127.0.0.1)"
got=$(ip netns exec "$ns" timeout 30 busybox wget -q -O - "http://10.0.2.2:$http_port/hello.txt") \
  || die "the namespace could not fetch the host's file through slirp"
[ "$got" = "$host_token" ] || die "the namespace got '$got', not '$host_token'"

say "host: fetch http://127.0.0.1:$fwd_port/ (forwarded to the namespace's 10.0.2.15:80)"
ip netns exec "$ns" busybox httpd -f -p 10.0.2.15:80 -h "$work/ns-www" &
pids+=($!)
wait_listening ip netns exec "$ns" ss -Htln "sport = :80" || die "no HTTP server in the namespace"
got=$(timeout 30 busybox wget -q -O - "http://127.0.0.1:$fwd_port/index.html") \
  || die "the host could not fetch through the forwarded port $fwd_port"
[ "$got" = "$ns_token" ] || die "the host got '$got', not '$ns_token'"

say "as $user: a QEMU VM on ipn://$net gets a lease and fetches the host's file"
got=$("${as_user[@]}" env LD_LIBRARY_PATH="$work/plugin" HOME="$work/user" TMPDIR="$work/user" \
  bash "$work/dhcp-fetch-test.sh" "ipn://$net" "http://10.0.2.2:$http_port/hello.txt" "$imagedir") \
  || die "the VM did not fetch the host's file"
grep -qxF "$host_token" <<<"$got" || die "the VM got '$got', not '$host_token'"

say "ok: DHCP, the host's loopback and a forwarded port through slirp, run by $user"
