#!/usr/bin/env bash
# ipn end to end: one publisher, several subscribers, one of them killed
# with -9 mid-stream, a late joiner, and `ipn status` showing it all; then
# two QEMU virtual machines plugged into an ipn network ping each other.
# No server process is involved at any point: the network is a directory.
#
# Usage: scripts/demo.sh [--no-vm]
#   Needs cargo. The VM part installs QEMU and friends with apt-get when
#   missing (root), and builds a tiny VM image from Debian packages (cached
#   in /var/tmp/ipn-vm); --no-vm stops after the publish/subscribe part.
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
    until "$ipn" status "$net" --json | grep -q "\"readers\": $1,"; do
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
fi

step "Done: the networks are removed on exit (ipn rm --force)."
say "Next: ipn --help, man -l crates/ipn-cli/ipn.1, ipn bench, crates/vdeplug-ipn/README.md."
