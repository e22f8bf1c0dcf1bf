#!/bin/sh
# /init of the ipn test VM initramfs (busybox ash). Copied into the image by
# build-image.sh; not meant to run on the host.
#
# Kernel command line parameters (all optional except ipn.ip / ipn.peer):
#   ipn.ip=10.0.0.1/24   address of eth0 (CIDR)
#   ipn.peer=10.0.0.2    address to ping
#   ipn.tries=60         ping attempts (about 1 s each)
#   ipn.linger=15        seconds to stay up (answering pings) after the result
#   ipn.dev=eth0         interface to configure
#   ipn.vlan=N           configure VLAN device DEV.N (802.1Q, VLAN N) on it
#                        instead: the NIC is then a trunk (the image needs
#                        the 8021q module, see build-image.sh)
#   ipn.probe            print IPN-PROBE-OK and power off at once
#   ipn.iperf=server     run an iperf3 server (in the background) once the
#                        network is up
#   ipn.iperf=SECONDS    after the first ping reply, measure TCP to the peer
#                        with iperf3 for SECONDS (the peer runs the server)
#   ipn.watch=N          after the first ping reply, ping the peer once a
#                        second N more times, one line each
#
# Serial console markers (grepped by ping-test.sh):
#   IPN-INIT-START, IPN-NET-UP, IPN-PING-OK <ip> -> <peer>,
#   IPN-PING-FAIL <reason>, IPN-IPERF-OK <Mbit/s> (receiver side),
#   IPN-IPERF-FAIL <reason>, IPN-WATCH <i> ok|lost

# shellcheck shell=sh

PATH=/bin:/sbin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

echo "IPN-INIT-START kernel $(uname -r)"

# ipn.probe: used by ping-test.sh to check that an accelerator (KVM) works.
case " $(cat /proc/cmdline) " in
    *" ipn.probe "*) echo "IPN-PROBE-OK"; poweroff -f ;;
esac

finish() {
    linger=$1
    if [ "$linger" -gt 0 ]; then
        echo "ipn-init: staying up ${linger}s so the peer can finish"
        sleep "$linger"
    fi
    echo "ipn-init: powering off"
    sync
    poweroff -f
    # poweroff -f should not return; avoid a kernel panic loop if it does
    while :; do sleep 60; done
}

fail() {
    echo "IPN-PING-FAIL $*"
    echo "--- ip addr ---"; ip addr
    echo "--- ip neigh ---"; ip neigh
    echo "--- /proc/net/dev ---"; cat /proc/net/dev
    finish "${linger:-15}"
}

ip_addr=""
peer=""
tries=60
linger=15
dev=eth0
vlan=""
iperf=""
watch=0
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    case "$arg" in
        ipn.ip=*) ip_addr=${arg#ipn.ip=} ;;
        ipn.peer=*) peer=${arg#ipn.peer=} ;;
        ipn.tries=*) tries=${arg#ipn.tries=} ;;
        ipn.linger=*) linger=${arg#ipn.linger=} ;;
        ipn.dev=*) dev=${arg#ipn.dev=} ;;
        ipn.vlan=*) vlan=${arg#ipn.vlan=} ;;
        ipn.iperf=*) iperf=${arg#ipn.iperf=} ;;
        ipn.watch=*) watch=${arg#ipn.watch=} ;;
    esac
done

[ -n "$ip_addr" ] || fail "no ipn.ip= on the kernel command line"
[ -n "$peer" ] || fail "no ipn.peer= on the kernel command line"

# Modules are named NN-name.ko in load order (dependencies first). Skip them
# when the interface already exists (built-in driver, e.g. User-Mode Linux,
# whose kernel could not load these modules anyway).
if [ ! -e "/sys/class/net/$dev" ]; then
    for m in /lib/ipn-modules/*.ko; do
        [ -e "$m" ] || continue
        insmod "$m" || echo "ipn-init: insmod $m failed"
    done
fi

# Wait for the NIC to appear (PCI probe is asynchronous).
n=0
while [ ! -e "/sys/class/net/$dev" ]; do
    n=$((n + 1))
    [ "$n" -le 100 ] || fail "interface $dev did not appear"
    sleep 0.1
done

ip link set lo up
if [ -n "$vlan" ]; then
    ip link set "$dev" up || fail "cannot bring $dev up"
    ip link add link "$dev" name "$dev.$vlan" type vlan id "$vlan" \
        || vconfig add "$dev" "$vlan" \
        || fail "cannot make VLAN device $dev.$vlan (is 8021q in the image?)"
    dev=$dev.$vlan
fi
ip addr add "$ip_addr" dev "$dev" || fail "cannot set address $ip_addr on $dev"
ip link set "$dev" up || fail "cannot bring $dev up"
echo "IPN-NET-UP $dev $ip_addr mac $(cat "/sys/class/net/$dev/address")"
if [ "$iperf" = server ]; then
    iperf3 -s -D || echo "IPN-IPERF-FAIL the iperf3 server did not start"
fi

# After the first reply: iperf3 as a client, then watching the peer.
measure() {
    case "$iperf" in
        '' | server) return 0 ;;
    esac
    n=0
    while [ "$n" -lt 10 ]; do
        n=$((n + 1))
        if iperf3 -c "$peer" -t "$iperf" -f m >/tmp/iperf.out 2>&1; then
            cat /tmp/iperf.out
            rate=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' /tmp/iperf.out)
            echo "IPN-IPERF-OK ${rate:-?} Mbit/s"
            return 0
        fi
        sleep 1
    done
    cat /tmp/iperf.out
    echo "IPN-IPERF-FAIL iperf3 -c $peer failed 10 times"
}
watch_peer() {
    i=0
    while [ "$i" -lt "$watch" ]; do
        i=$((i + 1))
        if ping -c 1 -W 1 "$peer" >/dev/null 2>&1; then
            echo "IPN-WATCH $i ok"
            sleep 1
        else
            echo "IPN-WATCH $i lost"
        fi
    done
}

i=0
while [ "$i" -lt "$tries" ]; do
    i=$((i + 1))
    if ping -c 1 -W 1 "$peer" >/tmp/ping.out 2>&1; then
        grep -E 'bytes from|time=' /tmp/ping.out
        echo "IPN-PING-OK ${ip_addr%/*} -> $peer (attempt $i/$tries)"
        measure
        watch_peer
        finish "$linger"
    fi
    # ping -W 1 already waited ~1 s if there was no answer; only sleep when
    # it failed fast (e.g. ARP failure reported immediately).
    case "$(cat /tmp/ping.out)" in
        *"100% packet loss"*) ;;
        *) sleep 1 ;;
    esac
done
fail "no reply from $peer after $tries attempts"
