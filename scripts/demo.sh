#!/usr/bin/env bash
# ipn end to end: one publisher, several subscribers, one of them killed
# with -9 mid-stream, a late joiner, and `ipn status` showing it all; then
# two QEMU virtual machines plugged into an ipn network ping each other;
# then a network reaches the host with no privileges: `vde_plug ipn://...
# slirp://`, run by an ordinary user, gives a VM a DHCP lease, and the VM
# fetches a page the host serves on 127.0.0.1.
# No server process is involved at any point: the network is a directory.
#
# Usage: scripts/demo.sh [--no-vm]
#   Needs cargo. The VM part installs QEMU and friends with apt-get when
#   missing (root), and builds a tiny VM image from Debian packages (cached
#   in /var/tmp/ipn-vm); --no-vm stops after the publish/subscribe part.
#   Run as root, the slirp part runs as the user nobody.
set -euo pipefail

cd "$(dirname "$0")/.."

with_vms=1
case "${1:-}" in
    --no-vm) with_vms=0 ;;
    "") ;;
    *) echo "usage: scripts/demo.sh [--no-vm]" >&2; exit 2 ;;
esac

if [[ -t 1 ]]; then
    bold=$'\e[1m' dim=$'\e[2m' green=$'\e[32m' red=$'\e[31m' off=$'\e[0m'
else
    bold='' dim='' green='' red='' off=''
fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
say() { printf '   %s\n' "$*"; }
run() { printf '%s$ %s%s\n' "$dim" "$*" "$off"; "$@"; }

step "Building ipn (cargo build --release -q -p ipn-cli)"
cargo build --release -q -p ipn-cli
ipn=$PWD/target/release/ipn
# Show commands as `ipn ...` rather than with the full path.
ipn() { "$ipn" "$@"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ipn-demo.XXXXXX")
net=$work/net
declare -A pid=()

cleanup() {
    local name
    for name in "${!pid[@]}"; do
        kill "${pid[$name]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    "$ipn" rm --force "$net" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until the network has $1 readers.
wait_for_readers() {
    local tries=0
    until "$ipn" status "$net" --json | grep "\"readers\": $1," >/dev/null; do
        (( ++tries < 200 )) || { echo "demo: never saw $1 readers" >&2; exit 1; }
        sleep 0.02
    done
}

step "1. Create a network. It is just a directory; whoever may open it may join."
run ipn create "$net" --ports 16
run ls -l "$net"

step "2. Three subscribers join: alice, bob and carol. Each writes what it receives to a file."
for name in alice bob carol; do
    "$ipn" sub "$net" --description "$name" >"$work/$name.txt" &
    pid[$name]=$!
    say "ipn sub $net --description $name > $name.txt &    (pid ${pid[$name]})"
done
wait_for_readers 3

frames=300
step "3. A publisher sends $frames numbered lines, 100 per second: each line is one frame."
say "for i in \$(seq $frames); do echo \"frame \$i\"; sleep 0.01; done | ipn pub $net &"
for ((i = 1; i <= frames; i++)); do
    echo "frame $i"
    sleep 0.01
done | "$ipn" pub "$net" --description publisher &
pid[publisher]=$!

sleep 1
step "4. bob is killed with SIGKILL mid-stream: no chance to say goodbye."
disown "${pid[bob]}" # so that bash prints no "Killed" notice of its own
run kill -9 "${pid[bob]}"
while kill -0 "${pid[bob]}" 2>/dev/null; do sleep 0.01; done
unset 'pid[bob]'
say "The others do not notice; ipn status reports bob's port as dead:"
run ipn status "$net"

sleep 0.5
step "5. dave joins late: he receives what is sent from now on (and may reuse bob's dead slot)."
"$ipn" sub "$net" --description dave >"$work/dave.txt" &
pid[dave]=$!
say "ipn sub $net --description dave > dave.txt &    (pid ${pid[dave]})"

wait "${pid[publisher]}"
unset 'pid[publisher]'
sleep 0.3 # let the subscribers print the last frames

step "6. The publisher is done. Status: every frame counted, per port (TX sent, RX received)."
run ipn status "$net"

step "7. The subscribers are stopped with Ctrl-C (SIGINT); each leaves and frees its slot."
for name in alice carol dave; do
    kill -INT "${pid[$name]}"
    status=0
    wait "${pid[$name]}" || status=$?
    unset "pid[$name]"
    say "$name exited with status $status (130 = stopped by SIGINT, after leaving cleanly)"
done
run ipn status "$net"

step "8. What each subscriber received"
printf '   %-6s %8s   %-12s %s\n' "" frames first last
for name in alice bob carol dave; do
    file=$work/$name.txt
    count=$(wc -l <"$file")
    first=$(head -n 1 "$file")
    last=$(tail -n 1 "$file")
    case $name in
        bob) verdict="${red}killed -9 after ~1 s${off}" ;;
        dave) verdict="joined late, got the rest" ;;
        *) if ((count == frames)); then
               verdict="${green}all $frames${off}"
           else
               verdict="${red}missed $((frames - count))${off}"
           fi ;;
    esac
    printf '   %-6s %8d   %-12s %-12s %s\n' "$name" "$count" "${first:--}" "${last:--}" "$verdict"
done

if ((with_vms)); then
    step "9. Two virtual machines join an ipn network: -netdev vde,sock=ipn://$work/vms"
    say "QEMU reaches ipn through libvdeplug and our plugin, libvdeplug_ipn.so."
    say "Checking the Debian packages (qemu-system-x86, vde2, vdeplug, ...):"
    scripts/deps.sh
    say "Building the plugin (cargo build --release -p vdeplug-ipn)..."
    cargo build --release -q -p vdeplug-ipn
    export LD_LIBRARY_PATH=$PWD/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    vms=$work/vms
    scripts/vm/ping-test.sh "ipn://$vms" "ipn://$vms" &
    pid[vms]=$!
    # Show the network as soon as both VMs are on it, and keep the last
    # status taken while they were, to show what they exchanged.
    shown=0
    while kill -0 "${pid[vms]}" 2>/dev/null; do
        if "$ipn" status "$vms" >"$work/vms.status" 2>/dev/null &&
            grep -q 'readers 2,' "$work/vms.status"; then
            cp "$work/vms.status" "$work/vms.last"
            if ((!shown)); then
                shown=1
                step "10. While they boot: both QEMU processes are ports of the network"
                printf '%s$ ipn status %s%s\n' "$dim" "$vms" "$off"
                cat "$work/vms.status"
            fi
        fi
        sleep 0.1
    done
    status=0
    wait "${pid[vms]}" || status=$?
    unset 'pid[vms]'
    "$ipn" rm --force "$vms" 2>/dev/null || true
    if ((status != 0)); then
        echo "demo: the VMs did not ping each other (see the log above)" >&2
        exit 1
    fi
    say "${green}The two VMs pinged each other over ipn://, with no switch process.${off}"
    if [[ -f $work/vms.last ]]; then
        say "The last status taken while both were joined (frames are Ethernet frames: ARP, ICMP):"
        cat "$work/vms.last"
    fi

    # The world without root. As root, the unprivileged part runs as
    # nobody, in a directory of its own, with its own copies of the plugin
    # and of the VM script (the checkout may be where nobody cannot go).
    world=$work/world
    mkdir -p "$world/plugin" "$world/www" "$world/user"
    chmod 0755 "$work"
    cp target/release/libvdeplug_ipn.so "$world/plugin/"
    cp scripts/vm/dhcp-fetch-test.sh "$world/"
    chmod -R a+rX "$world"
    unpriv=()
    who=$(id -un)
    if ((EUID == 0)); then
        who=nobody
        chown nobody:nogroup "$world/user"
        unpriv=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all --)
    fi
    port=$((20000 + RANDOM % 30000))
    while [[ -n $(ss -Htln "sport = :$port") ]]; do port=$((20000 + RANDOM % 30000)); done
    printf 'Hello from the host! This page is served on 127.0.0.1:%s only; you are in a VM on ipn://%s.\n' \
        "$port" "$world/user/net" >"$world/www/index.html"

    step "11. The world, without root: vdeplug4's slirp module on an ipn network"
    say "libvdeplug-slirp is a user-mode TCP/IP host: DHCP, NAT, DNS. vde_plug plugs it into"
    say "an ipn network, run by an ordinary user ($who): no TAP, no bridge, no firewall rule."
    say "Its 10.0.2.2 is the host's loopback: a page served on 127.0.0.1:$port is http://10.0.2.2:$port/."
    printf '%s$ busybox httpd -f -p 127.0.0.1:%s -h www &%s\n' "$dim" "$port" "$off"
    "${unpriv[@]}" busybox httpd -f -p "127.0.0.1:$port" -h "$world/www" &
    pid[httpd]=$!
    printf '%s$ vde_plug ipn://%s slirp:// &%s\n' "$dim" "$world/user/net" "$off"
    "${unpriv[@]}" env LD_LIBRARY_PATH="$world/plugin" \
        vde_plug "ipn://$world/user/net" slirp:// &
    pid[slirp]=$!
    for _ in $(seq 100); do
        "$ipn" status "$world/user/net" --json 2>/dev/null | grep '"readers": 1,' >/dev/null && break
        sleep 0.05
    done

    step "12. A VM joins ipn://$world/user/net, asks for a lease and fetches http://10.0.2.2:$port/"
    status=0
    page=$("${unpriv[@]}" env LD_LIBRARY_PATH="$world/plugin" TMPDIR="$world/user" \
        bash "$world/dhcp-fetch-test.sh" "ipn://$world/user/net" \
        "http://10.0.2.2:$port/index.html" "${IPN_VM_CACHE:-/var/tmp/ipn-vm}") || status=$?
    if ((status != 0)); then
        echo "demo: the VM did not fetch the host's page (see the log above)" >&2
        exit 1
    fi
    say "The VM printed the page it fetched:"
    say "  ${green}${page}${off}"
    say "Both vde_plug and QEMU ran as $who; so can any user's VMs. More: man libvdeplug_slirp"
    say "(tcpfwd= forwards host ports into the network), README.md, ipn(1)."
    kill "${pid[slirp]}" "${pid[httpd]}" 2>/dev/null || true
    wait "${pid[slirp]}" "${pid[httpd]}" 2>/dev/null || true
    unset 'pid[slirp]' 'pid[httpd]'
fi

step "Done: the networks are removed on exit (ipn rm --force)."
say "Next: ipn --help, man -l crates/ipn-cli/ipn.1, ipn bench, crates/vdeplug-ipn/README.md,"
say "      scripts/package.sh (the Debian package: ipn, the plugin, libipn and ipn.h)."
