//! The system calls of the attachments that need `unsafe`, and the only
//! `unsafe` of this crate: TAP ioctls ([`tun`]), the packet socket a grab
//! reads and writes ([`packet`]), and the options of VXLAN's UDP socket
//! ([`udp`]). What nix wraps is called through nix, outside.
//!
//! Invariants: every call is made through `syscall!`, which turns the
//! -1 of a failed call into the `io::Error` of its errno (as mio's
//! `syscall!` does), so errno is read in one place, right after the call;
//! every use has a `// SAFETY:` comment that argues its arguments (fds
//! open for the call, pointers to live objects of the sizes passed).

#![allow(unsafe_code)]

/// Calls `libc::$fn` with the arguments given; `Err` with errno's
/// `io::Error` if it returned -1, else `Ok` with what it returned.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: argued at each use, in the comment above it (see the
        // module doc): the fd is open and every pointer is to a live
        // object of the size passed with it.
        let rc = unsafe { libc::$fn($($arg),*) };
        if rc == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }};
}

/// TAP ioctls on an open `/dev/net/tun`.
pub(crate) mod tun {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd};

    // The kernel copies sizeof(struct ifreq) bytes in and out; libc's type
    // is that struct (40 bytes on 64-bit: 16 name bytes + a 24-byte union).
    #[cfg(target_pointer_width = "64")]
    const _: () = assert!(std::mem::size_of::<libc::ifreq>() == 40);
    const _: () = assert!(libc::IFNAMSIZ == 16);

    /// `ioctl(fd, TUNSETIFF, {name, IFF_TAP | IFF_NO_PI [| IFF_VNET_HDR]})`:
    /// makes `fd` (an open `/dev/net/tun`) the TAP `name`. Returns the name
    /// the kernel gave it (it expands `%d`).
    pub fn set_iff_tap(fd: BorrowedFd<'_>, name: &str, vnet_hdr: bool) -> io::Result<String> {
        let bytes = name.as_bytes();
        if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: ifreq is plain old data (arrays, integers, a union of
        // those and pointers), so all-zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        // The name stays NUL-terminated: it is shorter than IFNAMSIZ and
        // the rest of the array is zero.
        let vnet = if vnet_hdr { libc::IFF_VNET_HDR } else { 0 };
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | vnet) as libc::c_short;
        // SAFETY: `fd` is open for the call's duration (BorrowedFd);
        // TUNSETIFF reads and writes exactly sizeof(struct ifreq) bytes at
        // the pointer, which is a live, exclusively borrowed libc::ifreq of
        // that size (asserted above); the name in it is NUL-terminated.
        syscall!(ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr))?;
        // The kernel wrote back a NUL-terminated name of at most
        // IFNAMSIZ - 1 bytes; stop at the first NUL, or at the end.
        let chosen: Vec<u8> = ifr
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(String::from_utf8_lossy(&chosen).into_owned())
    }

    /// `ioctl(fd, TUNSETVNETHDRSZ, &len)`: the size of the virtio-net
    /// header before each frame (10 or 12; the kernel refuses less than 10).
    pub fn set_vnet_hdr_size(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
        let len =
            libc::c_int::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `fd` is open for the call (BorrowedFd); TUNSETVNETHDRSZ
        // reads one int at the pointer, which points to a live c_int.
        syscall!(ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &len)).map(drop)
    }

    /// `ioctl(fd, TUNSETVNETLE, &1)`: headers in little-endian order.
    pub fn set_vnet_le(fd: BorrowedFd<'_>) -> io::Result<()> {
        let le: libc::c_int = 1;
        // SAFETY: `fd` is open for the call (BorrowedFd); TUNSETVNETLE
        // reads one int at the pointer, which points to a live c_int.
        syscall!(ioctl(fd.as_raw_fd(), libc::TUNSETVNETLE, &le)).map(drop)
    }

    /// `ioctl(fd, TUNSETOFFLOAD, bits)`: the offloads of the device (the
    /// argument is the value itself, not a pointer).
    pub fn set_offload(fd: BorrowedFd<'_>, offloads: crate::tap::Offloads) -> io::Result<()> {
        let bits = libc::c_ulong::from(offloads.bits());
        // SAFETY: `fd` is open for the call (BorrowedFd); TUNSETOFFLOAD
        // takes its argument by value and dereferences nothing.
        syscall!(ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, bits)).map(drop)
    }
}

/// The `AF_PACKET` socket of a grabbed interface.
pub(crate) mod packet {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::os::fd::{AsRawFd, BorrowedFd};

    /// `ETH_P_ALL` in network byte order, as `sll_protocol` wants it.
    const ALL_PROTOCOLS: u16 = (libc::ETH_P_ALL as u16).to_be();

    /// `bind(fd, {AF_PACKET, ETH_P_ALL, ifindex})`.
    pub fn bind_all_protocols(fd: BorrowedFd<'_>, ifindex: libc::c_int) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all-zeroes is valid.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = ALL_PROTOCOLS;
        addr.sll_ifindex = ifindex;
        // SAFETY: `fd` is open for the call (BorrowedFd); the kernel reads
        // `len` bytes at the pointer, which is a live sockaddr_ll of
        // exactly that size.
        syscall!(bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ))
        .map(drop)
    }

    /// `setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, {ifindex,
    /// PACKET_MR_PROMISC})`: promiscuous while the socket is open.
    pub fn add_promisc_membership(fd: BorrowedFd<'_>, ifindex: libc::c_int) -> io::Result<()> {
        // SAFETY: packet_mreq is plain old data; all-zeroes is valid.
        let mut mreq: libc::packet_mreq = unsafe { zeroed() };
        mreq.mr_ifindex = ifindex;
        mreq.mr_type = libc::PACKET_MR_PROMISC as libc::c_ushort;
        // SAFETY: `fd` is open for the call; the kernel reads at most
        // `optlen` bytes at the pointer, a live packet_mreq of that size.
        syscall!(setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast::<libc::c_void>(),
            size_of::<libc::packet_mreq>() as libc::socklen_t,
        ))
        .map(drop)
    }

    /// `if_indextoname(ifindex)`: `Ok` if an interface of that index is in
    /// this network namespace, `ENXIO` if not. (nix 0.30's wrapper never
    /// reports the failure: it checks the returned pointer against -1, not
    /// NULL.)
    pub fn index_exists(ifindex: libc::c_uint) -> io::Result<()> {
        let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes (a name
        // and its NUL) into `name`, a live, exclusively borrowed array of
        // that size; it returns NULL and sets errno on failure.
        let rc = unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) };
        if rc.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `PACKET_VNET_HDR` from `<linux/if_packet.h>` (not in libc yet).
    pub const PACKET_VNET_HDR: libc::c_int = 15;

    /// `setsockopt(fd, SOL_PACKET, option, 1)`. `PACKET_AUXDATA`: every
    /// frame received comes with a `tpacket_auxdata` control message,
    /// which says whether the kernel took an 802.1Q tag out of it.
    /// `PACKET_VNET_HDR`: a virtio-net header before every frame, both
    /// ways.
    pub fn enable(fd: BorrowedFd<'_>, option: libc::c_int) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: `fd` is open for the call; the kernel reads at most
        // `optlen` bytes at the pointer, a live c_int of that size.
        syscall!(setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            (&on as *const libc::c_int).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ))
        .map(drop)
    }

    /// One frame read by [`recv_frame`].
    #[derive(Debug, Clone, Copy)]
    pub struct Received {
        /// Bytes written into the buffer.
        pub len: usize,
        /// `sll_pkttype`: `PACKET_HOST`, `PACKET_OUTGOING`, ...
        pub pkttype: u8,
        /// The 802.1Q tag (TPID, TCI) the kernel took out of the frame's
        /// bytes, if it did.
        pub tag: Option<(u16, u16)>,
    }

    /// Room for one `tpacket_auxdata` control message (CMSG_SPACE of 20
    /// bytes is 40 on 64-bit Linux), as 8-byte words so that the
    /// `cmsghdr`s in it are aligned.
    const CONTROL_WORDS: usize = 8;

    /// `recvmsg(fd, buf, MSG_DONTWAIT)` with a `sockaddr_ll` and room for
    /// the `PACKET_AUXDATA` control message: one frame, its packet type
    /// and the tag the kernel took out of it. A frame longer than `buf` is
    /// cut to it.
    pub fn recv_frame(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
        // SAFETY: sockaddr_ll and msghdr are plain old data; all-zeroes is
        // valid for both (null pointers, zero lengths).
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        let mut control = [0u64; CONTROL_WORDS];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast::<libc::c_void>(),
            iov_len: buf.len(),
        };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast::<libc::c_void>();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
        msg.msg_controllen = size_of::<[u64; CONTROL_WORDS]>();
        // SAFETY: `fd` is open for the call; every pointer in `msg` is to a
        // live, exclusively borrowed object of the length given with it
        // (`buf` through `iov`, `addr`, `control`), which the kernel
        // writes at most, then updates the lengths in `msg`.
        let rc = syscall!(recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT))?;
        let mut tag = None;
        // SAFETY: `msg` was filled by recvmsg: its control pointer and
        // (updated) length describe `control`, which is still alive, and
        // CMSG_FIRSTHDR / CMSG_NXTHDR return null or a header inside it.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: non-null headers from CMSG_FIRSTHDR/NXTHDR are
            // within `control`, which is 8-byte aligned as cmsghdr needs.
            let header = unsafe { &*cmsg };
            let wanted = size_of::<libc::tpacket_auxdata>();
            // SAFETY: CMSG_LEN only computes a length.
            let full = unsafe { libc::CMSG_LEN(wanted as u32) } as usize;
            if header.cmsg_level == libc::SOL_PACKET
                && header.cmsg_type == libc::PACKET_AUXDATA
                && header.cmsg_len >= full
            {
                // SAFETY: the message holds `wanted` bytes of data after
                // its header (checked just above), inside `control`;
                // tpacket_auxdata is plain old data, read unaligned.
                let aux = unsafe {
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::tpacket_auxdata>())
                };
                // libpcap's test: a tag is there if the kernel says so, or
                // (older kernels) if it has a non-zero TCI.
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 || aux.tp_vlan_tci != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        ipn::ethernet::ETHERTYPE_VLAN
                    };
                    tag = Some((tpid, aux.tp_vlan_tci));
                }
            }
            // SAFETY: `cmsg` is a header within `msg`'s control buffer.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        // The kernel fills sll_pkttype for every AF_PACKET frame; `addr`
        // was zeroed, so a short address still reads as defined bytes.
        Ok(Received {
            len: rc as usize,
            pkttype: addr.sll_pkttype,
            tag,
        })
    }
}

/// VXLAN's UDP socket: what std and nix do not offer (joining a group and
/// choosing the sending interface by interface *index*, `struct ip_mreqn`;
/// don't-fragment and the path's MTU; forced buffer sizes).
pub(crate) mod udp {
    use std::ffi::CStr;
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    pub fn if_nametoindex(name: &CStr) -> u32 {
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    }

    fn mreqn(group: Ipv4Addr, interface: Ipv4Addr, index: u32) -> libc::ip_mreqn {
        libc::ip_mreqn {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from(group).to_be(),
            },
            imr_address: libc::in_addr {
                s_addr: u32::from(interface).to_be(),
            },
            imr_ifindex: index as libc::c_int,
        }
    }

    fn set(socket: &UdpSocket, option: libc::c_int, value: &libc::ip_mreqn) -> io::Result<()> {
        // SAFETY: the fd is open (borrowed from `socket`), and `value`
        // points to a live `ip_mreqn` whose size is passed with it.
        syscall!(setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            option,
            (value as *const libc::ip_mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        ))
        .map(drop)
    }

    pub fn join_group(
        socket: &UdpSocket,
        group: Ipv4Addr,
        interface: Ipv4Addr,
        index: u32,
    ) -> io::Result<()> {
        set(
            socket,
            libc::IP_ADD_MEMBERSHIP,
            &mreqn(group, interface, index),
        )
    }

    /// Never fragments: datagrams go with don't-fragment set, and one
    /// larger than the path's MTU (the route's, or what an ICMP "too big"
    /// taught the kernel) is refused with `EMSGSIZE` (`IP_PMTUDISC_DO`),
    /// over IPv4 and, on an IPv6 socket, IPv6 too. quinn-udp's own choice
    /// (`PROBE`) would ignore what routers on the path say.
    pub fn forbid_fragments(socket: &UdpSocket, v6: bool) -> io::Result<()> {
        set_int(
            socket,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )?;
        if v6 {
            set_int(
                socket,
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
            )?;
        }
        Ok(())
    }

    /// The MTU of the path to `to` as the kernel knows it (`IP_MTU` or
    /// `IPV6_MTU` of a UDP socket connected there, from `local` if it is of
    /// the same family, through `multicast_if` for a group).
    pub fn path_mtu(
        to: SocketAddr,
        local: Option<IpAddr>,
        multicast_if: Option<(Ipv4Addr, u32)>,
    ) -> io::Result<u32> {
        let from = match (to, local) {
            (SocketAddr::V4(_), Some(ip @ IpAddr::V4(_)))
            | (SocketAddr::V6(_), Some(ip @ IpAddr::V6(_))) => ip,
            (SocketAddr::V4(_), _) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (SocketAddr::V6(_), _) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let probe = UdpSocket::bind(SocketAddr::new(from, 0))?;
        if let (Some((interface, index)), true) = (multicast_if, to.is_ipv4()) {
            set_multicast_if(&probe, interface, index)?;
        }
        probe.connect(to)?;
        let (level, option) = if to.is_ipv4() {
            (libc::IPPROTO_IP, libc::IP_MTU)
        } else {
            (libc::IPPROTO_IPV6, libc::IPV6_MTU)
        };
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the fd is open (borrowed from `probe`); the kernel writes
        // at most `len` bytes at the pointer, a live c_int of that size,
        // and the new length into `len`, a live socklen_t.
        syscall!(getsockopt(
            probe.as_raw_fd(),
            level,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        ))?;
        u32::try_from(value).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// Asks for `bytes` of receive and send buffer, forced past the
    /// system's maximum where allowed (CAP_NET_ADMIN); what cannot be had
    /// is left as it is.
    pub fn grow_buffers(socket: &UdpSocket, bytes: libc::c_int) {
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if set_int(socket, libc::SOL_SOCKET, force, bytes).is_err() {
                let _ = set_int(socket, libc::SOL_SOCKET, plain, bytes);
            }
        }
    }

    fn set_int(
        socket: &UdpSocket,
        level: libc::c_int,
        option: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: the fd is open (borrowed from `socket`), and the value
        // points to a live c_int whose size is passed with it.
        syscall!(setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))
        .map(drop)
    }

    pub fn set_multicast_if(socket: &UdpSocket, interface: Ipv4Addr, index: u32) -> io::Result<()> {
        set(
            socket,
            libc::IP_MULTICAST_IF,
            &mreqn(Ipv4Addr::UNSPECIFIED, interface, index),
        )
    }
}
