//! Between QEMU and vhost-user-backend's request handler: every message
//! and its file descriptors pass through unchanged, but one.
//!
//! QEMU 7.2 sends `SET_VRING_ENABLE` for both queues when the guest's
//! driver sets the device's features, before it starts the device (which
//! is when `SET_FEATURES` comes), and not again after:
//!
//! ```text
//! GET_FEATURES GET_PROTOCOL_FEATURES SET_PROTOCOL_FEATURES SET_OWNER
//! GET_FEATURES SET_VRING_CALL/ERR x2    (connected)
//! SET_VRING_ENABLE 0 1, 1 1 (x5)        (guest: status 11, 15)
//! SET_FEATURES SET_MEM_TABLE, then per queue NUM BASE ADDR KICK CALL
//! ```
//!
//! vhost-user-backend 0.24 (with vhost 0.18) refuses `SET_VRING_ENABLE`
//! until `SET_FEATURES` acked `VHOST_USER_F_PROTOCOL_FEATURES` ("inactive
//! feature: 1073741824") and drops the connection; QEMU reconnects and
//! does the same, forever. So [`frontend_to_backend`] holds back every
//! `SET_VRING_ENABLE` that comes before `SET_FEATURES` (acknowledging it
//! itself if QEMU asked for a reply), remembers the last state asked for
//! each queue, and sends those right after `SET_FEATURES`: the handler
//! sees what QEMU meant, in an order it takes.
//!
//! The messages are read whole: a 12-byte header (request, flags, payload
//! size) and its payload, with the descriptors that came with them
//! (`SCM_RIGHTS`), and written the same way. The other direction (the
//! handler's replies) is passed on as a byte stream with its descriptors.
//!
//! Memory tables (`SET_MEM_TABLE`, `ADD_MEM_REG`) are checked on the way:
//! each region must lie within the file its descriptor names (fstat), a
//! regular file. vm-memory maps a region past the end of its file without
//! complaint, and the first access there is a SIGBUS that kills the
//! backend; a table that fails the check ends the connection instead.
//!
//! The only `unsafe` is taking ownership of descriptors the kernel gave
//! us.

#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use vhost::vhost_user::message::{
    FrontendReq, VhostUserHeaderFlag, VhostUserMemory, VhostUserMemoryRegion, VhostUserVringState,
};
use vm_memory::ByteValued;

/// The header: request, flags, payload size, each a native-endian u32
/// (`VhostUserMsgHeader`, which the `vhost` crate keeps to itself; its
/// request codes, flags and payloads it exports, and they are used here).
const HEADER: usize = 12;
/// Protocol version 1, in the header's flags.
const VERSION_1: u32 = 0x1;
/// Longest payload passed on (the largest vhost-user message, a memory
/// table of 509 regions, is about 16 KiB).
const MAX_PAYLOAD: usize = 64 * 1024;
/// Most descriptors one message carries (vhost's limit).
const MAX_FDS: usize = 32;

/// Passes QEMU's requests to the handler until QEMU closes its end (then
/// closes the handler's, so that the daemon ends) or either side fails.
pub(crate) fn frontend_to_backend(qemu: &UnixStream, handler: &UnixStream) -> io::Result<()> {
    let result = pass_requests(qemu, handler);
    let _ = handler.shutdown(Shutdown::Both);
    result
}

/// Passes the handler's replies to QEMU until the handler closes its end
/// (then closes QEMU's, which ends the other direction too).
pub(crate) fn backend_to_frontend(handler: &UnixStream, qemu: &UnixStream) -> io::Result<()> {
    let result = pass_stream(handler, qemu);
    let _ = qemu.shutdown(Shutdown::Both);
    result
}

fn pass_requests(qemu: &UnixStream, handler: &UnixStream) -> io::Result<()> {
    let mut features_set = false;
    // (queue, enable) asked before SET_FEATURES, to send after it.
    let mut held: Vec<(u32, u32)> = Vec::new();
    let mut message = Vec::with_capacity(HEADER + 256);
    loop {
        message.resize(HEADER, 0);
        let mut fds = Vec::new();
        if !recv_exact(qemu, &mut message, &mut fds)? {
            return Ok(());
        }
        let word = |at: usize| {
            u32::from_ne_bytes([
                message[at],
                message[at + 1],
                message[at + 2],
                message[at + 3],
            ])
        };
        // A code the crate does not know is passed on unread.
        let request = FrontendReq::try_from(word(0)).ok();
        let flags = VhostUserHeaderFlag::from_bits_retain(word(4));
        let size = word(8) as usize;
        if size > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("vhost-user request {request:?} with a payload of {size} bytes"),
            ));
        }
        message.resize(HEADER + size, 0);
        if !recv_exact(qemu, &mut message[HEADER..], &mut fds)? {
            return Ok(());
        }
        if let Some(table @ (FrontendReq::SET_MEM_TABLE | FrontendReq::ADD_MEM_REG)) = request {
            check_memory_table(table, &message[HEADER..], &fds)?;
        }
        match request {
            Some(FrontendReq::SET_FEATURES) => {
                send_all(handler, &message, &fds)?;
                features_set = true;
                // What QEMU asked for before: now, in order.
                for (index, enable) in std::mem::take(&mut held) {
                    let state = VhostUserVringState::new(index, enable);
                    let message =
                        request_message(FrontendReq::SET_VRING_ENABLE, 0, state.as_slice());
                    send_all(handler, &message, &[])?;
                }
                continue;
            }
            Some(FrontendReq::RESET_OWNER) => features_set = false,
            Some(FrontendReq::SET_VRING_ENABLE) if !features_set => {
                let payload = &message[HEADER..];
                let state = payload
                    .get(..std::mem::size_of::<VhostUserVringState>())
                    .and_then(VhostUserVringState::from_slice);
                if let Some(state) = state {
                    let (index, enable) = (state.index, state.num);
                    match held.iter_mut().find(|(i, _)| *i == index) {
                        Some(slot) => slot.1 = enable,
                        None => held.push((index, enable)),
                    }
                }
                if flags.contains(VhostUserHeaderFlag::NEED_REPLY) {
                    let ack = request_message(
                        FrontendReq::SET_VRING_ENABLE,
                        VhostUserHeaderFlag::REPLY.bits(),
                        &0u64.to_le_bytes(),
                    );
                    (&*qemu).write_all(&ack)?;
                }
                continue;
            }
            _ => {}
        }
        send_all(handler, &message, &fds)?;
    }
}

/// Reads a `T` (a packed, plain-old-data payload struct of the `vhost`
/// crate) from `payload` at `at`, or says that the table is too short.
fn read_at<T: ByteValued + Default>(payload: &[u8], at: usize) -> io::Result<T> {
    let mut value = T::default();
    let bytes = payload
        .get(at..at.saturating_add(std::mem::size_of::<T>()))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("memory table: {} bytes, too short", payload.len()),
            )
        })?;
    value.as_mut_slice().copy_from_slice(bytes);
    Ok(value)
}

/// Checks that every region of a memory table lies within its file: an
/// error naming the region otherwise.
fn check_memory_table(request: FrontendReq, payload: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    // SET_MEM_TABLE: VhostUserMemory (a count, padding), then regions;
    // ADD_MEM_REG: VhostUserSingleMemoryRegion (u64 padding, one region).
    let first = std::mem::size_of::<VhostUserMemory>();
    let count = if request == FrontendReq::SET_MEM_TABLE {
        read_at::<VhostUserMemory>(payload, 0)?.num_regions as usize
    } else {
        1
    };
    if count > fds.len() {
        return Err(invalid(format!(
            "memory table: {count} regions but {} descriptors",
            fds.len()
        )));
    }
    for (i, fd) in fds.iter().enumerate().take(count) {
        let at = first + i * std::mem::size_of::<VhostUserMemoryRegion>();
        let region = read_at::<VhostUserMemoryRegion>(payload, at)?;
        let (size, offset) = (region.memory_size, region.mmap_offset);
        let stat = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
        let kind =
            nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode) & nix::sys::stat::SFlag::S_IFMT;
        if kind != nix::sys::stat::SFlag::S_IFREG {
            return Err(invalid(format!(
                "memory table: region {i}: its descriptor is not a regular file"
            )));
        }
        let file_size = u64::try_from(stat.st_size).unwrap_or(0);
        let end = offset.checked_add(size);
        if size == 0 || end.is_none_or(|end| end > file_size) {
            return Err(invalid(format!(
                "memory table: region {i}: {size} bytes at offset {offset} of a {file_size}-byte \
                 file: outside it"
            )));
        }
    }
    Ok(())
}

/// A message: header (version 1, `flags`) and payload.
fn request_message(request: FrontendReq, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER + payload.len());
    m.extend_from_slice(&u32::from(request).to_ne_bytes());
    m.extend_from_slice(&(VERSION_1 | flags).to_ne_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

fn pass_stream(from: &UnixStream, to: &UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut fds = Vec::new();
        let n = recv_some(from, &mut buf, &mut fds)?;
        if n == 0 {
            return Ok(());
        }
        send_all(to, &buf[..n], &fds)?;
    }
}

/// Fills `buf`, collecting descriptors; false at end of stream before any
/// byte (a clean close), an error if it ends in the middle.
fn recv_exact(sock: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<bool> {
    let mut have = 0;
    while have < buf.len() {
        let n = recv_some(sock, &mut buf[have..], fds)?;
        if n == 0 {
            if have == 0 {
                return Ok(false);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    Ok(true)
}

/// One `recvmsg`: bytes into `buf`, descriptors onto `fds`.
fn recv_some(sock: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                for fd in raw {
                    // SAFETY: the kernel installed `fd` in our table for
                    // this message (SCM_RIGHTS); nothing else owns it, and
                    // it is wrapped exactly once.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        return Ok(msg.bytes);
    }
}

/// Writes all of `bytes`, the descriptors with the first part.
fn send_all(sock: &UnixStream, mut bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut first = true;
    while !bytes.is_empty() {
        let iov = [IoSlice::new(bytes)];
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if first && !raw.is_empty() {
            &rights
        } else {
            &[]
        };
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => {
                bytes = &bytes[n..];
                first = false;
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads what a stream holds, for tests.
#[cfg(test)]
fn read_available(mut sock: &UnixStream, len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0; len];
    sock.read_exact(&mut buf).unwrap();
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    use FrontendReq::{SET_FEATURES, SET_VRING_ENABLE};

    const NEED_REPLY: u32 = VhostUserHeaderFlag::NEED_REPLY.bits();
    const REPLY: u32 = VhostUserHeaderFlag::REPLY.bits();

    fn message(request: FrontendReq, flags: u32, payload: &[u8]) -> Vec<u8> {
        request_message(request, flags, payload)
    }

    #[test]
    fn early_vring_enables_are_held_back_and_acked_the_rest_passes_with_fds() {
        let (mut qemu, qemu_side) = UnixStream::pair().unwrap();
        let (handler_side, handler) = UnixStream::pair().unwrap();
        let shim = std::thread::spawn(move || frontend_to_backend(&qemu_side, &handler_side));
        let enable = [0u8, 0, 0, 0, 1, 0, 0, 0];
        qemu.write_all(&message(SET_VRING_ENABLE, NEED_REPLY, &enable))
            .unwrap();
        let ack = read_available(&qemu, HEADER + 8);
        assert_eq!(ack, message(SET_VRING_ENABLE, REPLY, &[0; 8]));
        qemu.write_all(&message(SET_VRING_ENABLE, 0, &enable))
            .unwrap();
        // A request with a descriptor.
        let (fd_a, _fd_b) = UnixStream::pair().unwrap();
        let kick = message(FrontendReq::SET_VRING_KICK, 0, &[0; 8]);
        send_all(&qemu, &kick, &[OwnedFd::from(fd_a)]).unwrap();
        let disable_1 = [1u8, 0, 0, 0, 0, 0, 0, 0];
        let enable_1 = [1u8, 0, 0, 0, 1, 0, 0, 0];
        qemu.write_all(&message(SET_VRING_ENABLE, 0, &disable_1))
            .unwrap();
        qemu.write_all(&message(SET_VRING_ENABLE, 0, &enable_1))
            .unwrap();
        let features = message(SET_FEATURES, 0, &[0; 8]);
        qemu.write_all(&features).unwrap();
        qemu.write_all(&message(SET_VRING_ENABLE, 0, &disable_1))
            .unwrap();
        let mut got = vec![0u8; kick.len()];
        let mut fds = Vec::new();
        assert!(recv_exact(&handler, &mut got, &mut fds).unwrap());
        assert_eq!(got, kick, "the early enables were held back");
        assert_eq!(fds.len(), 1, "the kick's descriptor came along");
        assert_eq!(read_available(&handler, features.len()), features);
        for (what, state) in [
            ("queue 0's last state, replayed", enable),
            ("queue 1's last state, replayed", enable_1),
            ("after SET_FEATURES, enables pass", disable_1),
        ] {
            assert_eq!(
                read_available(&handler, HEADER + 8),
                message(SET_VRING_ENABLE, 0, &state),
                "{what}"
            );
        }
        drop(qemu);
        shim.join().unwrap().unwrap();
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut &handler, &mut rest).unwrap();
        assert!(rest.is_empty(), "QEMU's close closes the handler's side");
    }
}
