#!/usr/bin/env bash
# System test: the systemd template units the Debian package ships
# (packaging/systemd: ipn-network@, ipn-tap@, ipn-grab@, ipn-vxlan@,
# ipn-vhost-user@).
#
# 1. `systemd-analyze verify` finds nothing to say about any of them, in a
#    root holding the units, /usr/bin/ipn and systemd's own units (the
#    package test checks the man page it names, installed).
# 2. Each unit's ExecStart (and the network's ExecStop) runs as systemd
#    would run it, since no systemd runs here (scripts/unit-exec.sh): %i
#    replaced, Environment= then /etc/ipn/NAME.conf, $VAR split into
#    words, ${VAR} one word, with only the unit's capabilities
#    (CapabilityBoundingSet, no_new_privs) and with the file system
#    read-only but for ReadWritePaths and /tmp private (ProtectSystem=strict,
#    PrivateTmp). Then: the network is created, the TAP is up, the grabbed
#    veth's frames reach the network, the VXLAN endpoint and the vhost-user
#    backend are joined (its socket given the network's group); SIGTERM
#    ends each with a status the unit counts as success; ExecStop removes
#    the network.
#
# Leaves nothing behind: /etc/ipn/NAME.conf, the network, the veth pair,
# and /run/ipn and /etc/ipn if it made them.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '[units] %s\n' "$*" >&2; }
die() { printf '[units] FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "this test needs root (capabilities, mount namespaces, a TAP, a veth pair)"
for tool in systemd-analyze setpriv unshare ip ping; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh installs what the tests need)"
done

cargo build --release -q -p ipn-cli
ipn=$PWD/target/release/ipn
units=$PWD/packaging/systemd
name=ipnunit$$
tag=$(( $$ % 100000 ))
conf=/etc/ipn/$name.conf
work=$(mktemp -d /tmp/ipn-units.XXXXXX)
made_etc=0; made_run=0
[ -d /etc/ipn ] || made_etc=1
[ -d /run/ipn ] || made_run=1
pids=()

# shellcheck disable=SC2317  # invoked via trap
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  "$ipn" rm --force "/run/ipn/$name" 2>/dev/null || true
  ip link del "va$tag" 2>/dev/null || true
  rm -f "$conf"
  [ "$made_etc" = 0 ] || rmdir /etc/ipn 2>/dev/null || true
  [ "$made_run" = 0 ] || rmdir /run/ipn 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "systemd-analyze verify, in a root with the units and /usr/bin/ipn"
root=$work/root
mkdir -p "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/ipn"
cp "$ipn" "$root/usr/bin/ipn"
# systemd's own units (targets, slices) that every service depends on.
cp -a /lib/systemd/system/. "$root/lib/systemd/system/"
cp "$units"/*.service "$root/lib/systemd/system/"
for unit in network tap grab vxlan vhost-user; do
  out=$(systemd-analyze --root="$root" --man=no verify "ipn-$unit@$name.service" 2>&1) \
    || die "systemd-analyze verify ipn-$unit@$name.service failed: $out"
  [ -z "$out" ] || die "systemd-analyze verify ipn-$unit@$name.service complains: $out"
done
# The check is real: a unit naming a missing program fails it.
sed 's|/usr/bin/ipn |/usr/bin/ipn-missing |' "$units/ipn-tap@.service" >"$root/lib/systemd/system/ipn-broken@.service"
if systemd-analyze --root="$root" --man=no verify "ipn-broken@$name.service" >/dev/null 2>&1; then
  die "systemd-analyze verify accepted a unit whose program is missing"
fi

# Runs a unit's command line KEY (ExecStart, ExecStop) as systemd would.
unit_exec() {
  exec scripts/unit-exec.sh --provide "/usr/bin/ipn=$ipn" "$units/ipn-$1@.service" "$name" "$2"
}

# What `ipn status` says about the network, as JSON.
status() { "$ipn" status "/run/ipn/$name" --json; }

# Waits until the network has a port described $1.
wait_joined() {
  for _ in $(seq 100); do
    status 2>/dev/null | grep "\"description\": \"$1\"" >/dev/null && return 0
    sleep 0.1
  done
  die "no port '$1' joined: $(status 2>&1)"
}

# Sends SIGTERM to pid $1 (a unit's main process, named $2): it must exit
# with a status the unit counts as success (0, or 143: SuccessExitStatus).
stop_unit() {
  local rc=0
  kill -TERM "$1"
  wait "$1" || rc=$?
  case "$rc" in
    0|143) ;;
    *) die "$2 exited $rc after SIGTERM, which its unit counts as a failure" ;;
  esac
}

# The capabilities process $1 runs with (CapEff) must be $2 (hex).
assert_caps() {
  local eff
  eff=$(awk '/^CapEff:/ {print $2}' "/proc/$1/status")
  [ "$((16#$eff))" = "$((16#$2))" ] || die "$3 runs with capabilities $eff, not $2"
  # And in the unit's sandbox: / read-only.
  awk '$5 == "/" {print $6}' "/proc/$1/mountinfo" | grep '^ro' >/dev/null \
    || die "$3 sees / writable: $(awk '$5 == "/"' "/proc/$1/mountinfo")"
}

mkdir -p /etc/ipn
cat >"$conf" <<EOF
# One file for every unit of instance $name, as ipn(1) shows.
IPN_CREATE_OPTIONS=--switch --ports 8 --group nogroup
IPN_TAP_OPTIONS=--name tp$tag --up
IPN_GRAB_OPTIONS=va$tag --promisc
IPN_VXLAN_OPTIONS=--vni 42 --local 127.0.0.1 --port 0 --remote 127.0.0.1:47999
IPN_VHOST_USER_OPTIONS="--socket /run/ipn/$name.sock"
EOF

say "ipn-network@$name: ExecStart creates /run/ipn/$name (options from /etc/ipn/$name.conf)"
mkdir -p /run/ipn # RuntimeDirectory=ipn
(unit_exec network ExecStart)
status | grep '"protocol": "switch"' >/dev/null || die "the network is not the switch the file asked for: $(status)"
status | grep '"max_ports": 8' >/dev/null || die "the network does not have the 8 ports the file asked for: $(status)"
[ "$(stat -c %G "/run/ipn/$name")" = nogroup ] || die "the network's group is not nogroup (CAP_CHOWN)"

say "ipn-tap@$name: the TAP is made and up, with CAP_NET_ADMIN only"
unit_exec tap ExecStart 2>"$work/tap.err" &
tap=$!; pids+=("$tap")
wait_joined "tap tp$tag"
assert_caps "$tap" 1000 "ipn tap" # CAP_NET_ADMIN: bit 12
ip -o link show "tp$tag" | grep 'UP' >/dev/null || die "tp$tag is not up: $(ip -o link show "tp$tag" 2>&1)"
stop_unit "$tap" "ipn tap"
! ip link show "tp$tag" >/dev/null 2>&1 || die "tp$tag outlived its unit"

say "ipn-grab@$name: a veth's frames reach the network, with CAP_NET_RAW only (--promisc included)"
ip link add "va$tag" type veth peer name "vb$tag"
ip link set "va$tag" up
ip link set "vb$tag" up
ip addr add 10.199.77.1/24 dev "vb$tag"
unit_exec grab ExecStart 2>"$work/grab.err" &
grab=$!; pids+=("$grab")
wait_joined "grab va$tag"
assert_caps "$grab" 2000 "ipn grab" # CAP_NET_RAW: bit 13
ip -d -o link show "va$tag" | grep "promiscuity 1" >/dev/null || die "--promisc did not make va$tag promiscuous"
"$ipn" sub "/run/ipn/$name" --hex --count 1 --timeout 10 >"$work/grab.out" &
sub=$!; pids+=("$sub")
for _ in $(seq 50); do status | grep '"readers": 2' >/dev/null && break; sleep 0.1; done
ping -c 3 -W 1 -I "vb$tag" 10.199.77.2 >/dev/null 2>&1 || true # ARP requests (and IPv6 chatter)
wait "$sub" || die "no frame of va$tag reached the network: $(cat "$work/grab.err")"
vb_mac=$(tr ':' ' ' <"/sys/class/net/vb$tag/address")
[ "$(cut -d' ' -f7-12 "$work/grab.out")" = "$vb_mac" ] \
  || die "expected a frame from vb$tag ($vb_mac), got: $(cat "$work/grab.out")"
kill -0 "$grab" 2>/dev/null || die "ipn grab ended: $(cat "$work/grab.err")"
stop_unit "$grab" "ipn grab"

say "ipn-vxlan@$name: the tunnel endpoint joins, with no capability"
unit_exec vxlan ExecStart 2>"$work/vxlan.err" &
vxlan=$!; pids+=("$vxlan")
wait_joined "vxlan vni 42"
assert_caps "$vxlan" 0 "ipn vxlan"
stop_unit "$vxlan" "ipn vxlan"

say "ipn-vhost-user@$name: the backend listens on its socket, of the network's group, with CAP_CHOWN only"
unit_exec vhost-user ExecStart 2>"$work/vhost.err" &
vhost=$!; pids+=("$vhost")
for _ in $(seq 100); do [ -S "/run/ipn/$name.sock" ] && break; sleep 0.1; done
[ -S "/run/ipn/$name.sock" ] || die "no socket /run/ipn/$name.sock: $(cat "$work/vhost.err")"
assert_caps "$vhost" 1 "ipn vhost-user" # CAP_CHOWN: bit 0
[ "$(stat -c %G "/run/ipn/$name.sock")" = nogroup ] || die "the socket does not have the network's group"
stop_unit "$vhost" "ipn vhost-user"

say "ipn-network@$name: ExecStop removes the network"
(unit_exec network ExecStop)
[ ! -e "/run/ipn/$name" ] || die "/run/ipn/$name is still there after ExecStop"
say "ok: every unit verifies and runs as systemd would run it"
