# shellcheck shell=bash
# Sourced by the VM scripts: QEMU's network arguments for one NIC.
#
#   qemu_net_args URL MAC MEM ACCEL [MODEL]
#
# sets the array qemu_net to the arguments that put a NIC (MODEL, default
# virtio-net-pci) with MAC on URL:
#   vhost-user://SOCK  a vhost-user backend listening on SOCK (`ipn
#                      vhost-user NET --socket SOCK`): the guest's memory
#                      (MEM MiB) is shared (memfd), the chardev reconnects
#                      every second when the backend goes away. Under TCG
#                      the device gets vectors=0: QEMU 7.2 segfaults in
#                      vhost_net_start -> msix_set_vector_notifiers when a
#                      vhost-user virtio-net with MSI-X starts without KVM.
#   vhost-user-server://SOCK
#                      the same, but QEMU listens on SOCK (server=on,
#                      wait=off; libvirt's mode='server') and the backend
#                      connects (`ipn vhost-user NET --connect SOCK`).
#   anything else      a libvdeplug URL (vde:///..., ipn:///...), commas
#                      doubled for QEMU's option parser.
qemu_net_args() {
    local url=$1 mac=$2 mem=$3 accel=$4 model=${5:-virtio-net-pci}
    case "$url" in
        vhost-user://* | vhost-user-server://*)
            local sock=${url#*://} vectors="" mode=reconnect=1
            [ "$accel" = kvm ] || vectors=",vectors=0"
            case "$url" in vhost-user-server://*) mode=server=on,wait=off ;; esac
            qemu_net=(
                -object "memory-backend-memfd,id=mem,size=${mem}M,share=on" -numa node,memdev=mem
                -chardev "socket,id=c0,path=${sock//,/,,},$mode"
                -netdev vhost-user,id=n0,chardev=c0
                -device "virtio-net-pci,netdev=n0,mac=$mac,romfile=$vectors"
            )
            ;;
        *)
            qemu_net=(-netdev "vde,id=n0,sock=${url//,/,,}" -device "$model,netdev=n0,mac=$mac,romfile=")
            ;;
    esac
}
