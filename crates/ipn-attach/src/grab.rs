//! `grab`: an existing interface (say `eth1`, or one end of a veth pair),
//! through an `AF_PACKET` raw socket, so the virtual network reaches the
//! wire.
//!
//! The socket is made with protocol 0 (it receives nothing yet) and then
//! bound to the interface with `ETH_P_ALL`, so no frame of another
//! interface is ever queued on it. Frames arriving on the interface go into
//! the network; frames from the network leave through the interface.
//!
//! The socket also sees the frames that leave the interface
//! (`sll_pkttype == PACKET_OUTGOING`), except the ones it sent itself
//! (the kernel skips the sending socket): the host's, another grab's or a
//! packet capture tool's injections. [`Grab`] drops all of them on
//! receive: the network only gets what arrives from the wire, and a frame
//! another grab of the same interface sends out does not come back in.
//! The consequence: frames the host itself sends out of the grabbed
//! interface do not reach the network (the host joins through a TAP).
//!
//! 802.1Q tags: a NIC (or veth) that strips VLAN tags on receive, as most
//! do (`rx-vlan-offload`), hands the kernel frames whose tag lives beside
//! the bytes, and an `AF_PACKET` socket then reads them untagged. The
//! socket asks for each frame's `PACKET_AUXDATA`, and [`Grab`] puts a tag
//! the kernel took out back in its place after the addresses, as libpcap
//! does: a trunk on the wire stays a trunk in the network. Frames sent
//! into the interface carry their tag in their bytes, which every driver
//! takes.
//!
//! Offloads: the socket asks for `PACKET_VNET_HDR`, so every frame comes
//! with a virtio-net header, as from a TAP with `IFF_VNET_HDR`: a veth or
//! a NIC with GRO hands the socket 64 KiB GSO frames and frames whose
//! checksum is left to complete, and the header says so (without it they
//! would arrive as oversize frames with wrong checksums). The bridge moves
//! header and frame into a port that takes offloads ([`Link::offloads`]);
//! [`Link::recv`] without headers cuts such frames and completes their
//! checksums. Frames sent carry a header too (an empty one for plain
//! frames), so the kernel cuts or completes what the network's offload
//! ports sent.
//!
//! Promiscuous mode (`promisc`) is a `PACKET_ADD_MEMBERSHIP` of type
//! `PACKET_MR_PROMISC` on the socket, not the interface flag: the kernel
//! counts it per socket and takes it back when the socket is closed, even
//! when the process is killed, so nothing needs restoring.
//!
//! An interface deleted under the socket (`ip link del`) ends the grab:
//! the socket then says `ENETDOWN` once (as it does when the interface is
//! merely set down, which is not fatal), or nothing at all if the
//! interface was already down. [`Grab`] tells the two apart by asking
//! whether its interface index still exists, on `ENETDOWN` and, from
//! [`Link::check`], at most once a second; a deleted interface is an
//! `ENODEV` error.
//!
//! The `unsafe` calls (bind, setsockopt, recvmsg with a `sockaddr_ll` and
//! control messages) are in `sys::packet` (private).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use ipn::ethernet::{self, Tci, TAG_LEN};
use ipn::offload::{HdrLayout, Segments, VirtioNetHdr, MAX_GSO_FRAME};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::sys::packet as sys;
use crate::Link;

/// Why an interface could not be grabbed, each naming it.
#[derive(Debug, thiserror::Error)]
pub enum GrabError {
    /// No interface of that name (in this network namespace).
    #[error("grab {name}: no such network interface; see `ip link` for the ones there are")]
    NoSuchInterface {
        /// The interface asked for.
        name: String,
    },
    /// Raw sockets need CAP_NET_RAW (their promiscuous membership too).
    #[error(
        "grab {name}: permission denied ({what}); grabbing an interface needs CAP_NET_RAW \
         (--promisc too): run as root, or `setcap cap_net_raw+ep` the ipn binary"
    )]
    PermissionDenied {
        /// The interface asked for.
        name: String,
        /// Which step was refused.
        what: &'static str,
    },
    /// Anything else the system said.
    #[error("grab {name}: {what}: {source}")]
    Io {
        /// The interface asked for.
        name: String,
        /// The step that failed.
        what: &'static str,
        /// What the system said.
        source: io::Error,
    },
}

/// How often [`Link::check`] looks whether the interface still exists.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// An interface grabbed through an `AF_PACKET` socket: a [`Link`].
#[derive(Debug)]
pub struct Grab {
    socket: OwnedFd,
    name: String,
    ifindex: libc::c_uint,
    /// When [`Link::check`] last looked for the interface.
    last_check: Instant,
    /// Frames that left the interface, seen and dropped on receive.
    outgoing_skipped: u64,
    /// Plain receives: a frame with a header, read whole, and the wire
    /// frames cut from it still to give (`scratch` is not read into while
    /// one waits).
    scratch: Vec<u8>,
    waiting: Segments,
}

/// Bytes of the virtio-net header before every frame on the socket.
const VNET_HDR_LEN: usize = 10;

impl Grab {
    /// Opens a raw packet socket bound to interface `name` for every
    /// protocol, non-blocking; with `promisc`, in promiscuous mode for as
    /// long as the socket is open.
    pub fn open(name: &str, promisc: bool) -> Result<Grab, GrabError> {
        let io_err = |what: &'static str| {
            move |source: io::Error| match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => GrabError::PermissionDenied {
                    name: name.into(),
                    what,
                },
                Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    GrabError::NoSuchInterface { name: name.into() }
                }
                _ => GrabError::Io {
                    name: name.into(),
                    what,
                    source,
                },
            }
        };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(GrabError::NoSuchInterface { name: name.into() });
        }
        let ifindex = nix::net::if_::if_nametoindex(name).map_err(|errno| {
            if errno == nix::errno::Errno::ENODEV {
                GrabError::NoSuchInterface { name: name.into() }
            } else {
                io_err("looking up its index")(errno.into())
            }
        })?;
        let bound = libc::c_int::try_from(ifindex)
            .map_err(|_| io_err("its index")(io::Error::from_raw_os_error(libc::EINVAL)))?;
        // Protocol 0: nothing is queued before bind() picks the interface.
        let socket = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| io_err("opening an AF_PACKET socket")(e.into()))?;
        sys::bind_all_protocols(socket.as_fd(), bound).map_err(io_err("binding to it"))?;
        sys::enable(socket.as_fd(), libc::PACKET_AUXDATA)
            .map_err(io_err("asking for PACKET_AUXDATA"))?;
        sys::enable(socket.as_fd(), sys::PACKET_VNET_HDR)
            .map_err(io_err("asking for PACKET_VNET_HDR"))?;
        if promisc {
            sys::add_promisc_membership(socket.as_fd(), bound)
                .map_err(io_err("setting promiscuous mode"))?;
        }
        Ok(Grab {
            socket,
            name: name.into(),
            ifindex,
            last_check: Instant::now(),
            outgoing_skipped: 0,
            scratch: Vec::new(),
            waiting: Segments::new(),
        })
    }

    /// Whether the interface we bound to is gone from this network
    /// namespace (deleted, or moved to another). By index, not by name: a
    /// renamed interface is still ours, and a new one of the same name
    /// is not (the socket stays bound to the old index).
    fn deleted(&self) -> bool {
        matches!(
            sys::index_exists(self.ifindex).map_err(|e| e.raw_os_error()),
            Err(Some(libc::ENXIO | libc::ENODEV))
        )
    }

    fn deleted_error(&self) -> io::Error {
        io::Error::from_raw_os_error(libc::ENODEV)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Frames seen leaving the interface (ours and the host's), dropped.
    pub fn outgoing_skipped(&self) -> u64 {
        self.outgoing_skipped
    }
}

impl Link for Grab {
    fn describe(&self) -> String {
        format!("grab {}", self.name)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let read = self.scratch.get(VNET_HDR_LEN..).unwrap_or_default();
            if let Some(len) = self.waiting.pop_into(read, buf) {
                return Ok(Some(len.min(buf.len())));
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            // Once: the buffer keeps its size.
            scratch.resize(VNET_HDR_LEN + MAX_GSO_FRAME + TAG_LEN, 0);
            let got = self.recv_vnet(&mut scratch);
            if let Ok(Some(len)) = got {
                self.cut(&scratch[..len], buf.len());
            }
            self.scratch = scratch;
            match got {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn offloads(&self) -> bool {
        true
    }

    fn recv_vnet(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // Room to put back a tag the kernel took out.
        let room = buf.len().saturating_sub(TAG_LEN);
        loop {
            match sys::recv_frame(self.socket.as_fd(), &mut buf[..room]) {
                Ok(got) if got.pkttype == libc::PACKET_OUTGOING => self.outgoing_skipped += 1,
                Ok(got) if got.len < VNET_HDR_LEN => {} // never from the kernel
                Ok(got) => {
                    let (hdr, frame) = buf.split_at_mut(VNET_HDR_LEN);
                    let len = got.len - VNET_HDR_LEN;
                    let tagged = put_back_tag(frame, len, got.tag);
                    if tagged > len {
                        // The header's offsets move past the tag.
                        if let Ok(mut h) = VirtioNetHdr::parse(hdr, HdrLayout::Basic) {
                            h.shift_offsets(TAG_LEN as i32);
                            let _ = h.write(hdr, HdrLayout::Basic);
                        }
                    }
                    return Ok(Some(VNET_HDR_LEN + tagged));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Said once when the interface goes down (not fatal: the
                // socket resumes when it comes up) or is deleted.
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                    return if self.deleted() {
                        Err(self.deleted_error())
                    } else {
                        Ok(None)
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn send_vnet(&mut self, buf: &[u8]) -> io::Result<()> {
        // Bound sockets send out of their interface without an address.
        socket::send(self.socket.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)
            .map(|_| ())
            .map_err(io::Error::from)
    }

    fn check(&mut self) -> io::Result<()> {
        // A deletion while the interface was down leaves the socket
        // silent: look for the interface now and then.
        if self.last_check.elapsed() < CHECK_EVERY {
            return Ok(());
        }
        self.last_check = Instant::now();
        if self.deleted() {
            return Err(self.deleted_error());
        }
        Ok(())
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        // An empty header: a plain frame.
        let mut with_hdr = Vec::with_capacity(VNET_HDR_LEN + frame.len());
        with_hdr.extend_from_slice(&[0u8; VNET_HDR_LEN]);
        with_hdr.extend_from_slice(frame);
        self.send_vnet(&with_hdr)
    }
}

impl Grab {
    /// [`Link::recv`] without headers: `read` is a header and a frame,
    /// whose wire frames are made to wait: a plain frame as it is (longer
    /// than `room`, it is truncated as any frame is), a frame with offloads
    /// cut into wire frames of at most `room` bytes. A header that does not
    /// describe its frame (never from the kernel): nothing waits.
    fn cut(&mut self, read: &[u8], room: usize) {
        let (hdr, frame) = read.split_at(VNET_HDR_LEN.min(read.len()));
        let Ok(hdr) = VirtioNetHdr::parse(hdr, HdrLayout::Basic) else {
            return;
        };
        let mtu = if hdr.is_gso() { room } else { usize::MAX };
        let _ = self.waiting.start(&hdr, frame, mtu);
    }
}

/// Puts the 802.1Q tag (TPID, TCI) the kernel took out of the frame in
/// `buf[..len]` back after its addresses; returns the frame's new length.
/// `buf` has room for it (see `recv`); a frame without room or addresses
/// (never from the kernel) is left as it is.
fn put_back_tag(buf: &mut [u8], len: usize, tag: Option<(u16, u16)>) -> usize {
    tag.and_then(|(tpid, tci)| ethernet::insert_tag(buf, len, tpid, Tci(tci)))
        .unwrap_or(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipn::ethernet::{Frame, Tci};

    #[test]
    fn a_tag_the_kernel_took_out_is_put_back_after_the_addresses() {
        let mut untagged = vec![0xffu8; 6];
        untagged.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        untagged.extend_from_slice(&[0x08, 0x06]);
        untagged.extend_from_slice(b"payload");
        let mut buf = vec![0u8; untagged.len() + TAG_LEN];
        buf[..untagged.len()].copy_from_slice(&untagged);
        assert_eq!(put_back_tag(&mut buf, untagged.len(), None), untagged.len());
        let tci = Tci(0xa000 | 4000); // priority 5, VLAN 4000
        let len = put_back_tag(&mut buf, untagged.len(), Some((0x8100, tci.0)));
        assert_eq!(len, untagged.len() + TAG_LEN);
        let view = Frame::new_checked(&buf[..len]).unwrap();
        assert_eq!(view.tag(), Some(tci));
        assert_eq!(view.src(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(view.ethertype(), 0x0806);
        let (addresses, rest) = view.untagged_parts();
        assert_eq!([addresses, rest].concat(), untagged);
        // No room, or no frame: left as it is.
        let mut short = untagged.clone();
        let n = short.len();
        assert_eq!(put_back_tag(&mut short, n, Some((0x8100, 10))), n);
        assert_eq!(short, untagged);
    }
}
