//! Who is alive: one open-file-description (OFD) byte-range lock per port
//! slot on the shared file.
//!
//! A port holds a write lock on byte `LOCK_BASE + index` of `PATH/shm` for
//! as long as it lives. The kernel releases the lock when the last
//! descriptor of that open file description closes, which includes death
//! by `kill -9`; so "the lock is free" is exactly "the owner is gone", with
//! no heartbeat and no timeout. Locks are placed beyond the end of the file
//! (allowed by POSIX) so they never interact with the mapped bytes.
//!
//! OFD locks do not conflict with locks of the *same* open file description:
//! a port must not probe its own slot, and every `Port` opens the file
//! itself so that two ports of one process see each other's locks.

use std::fs::File;
use std::io;

use nix::fcntl::{fcntl, FcntlArg};

const LOCK_BASE: i64 = 1 << 40;

fn lock_request(index: u32, kind: libc::c_short) -> libc::flock {
    let mut lock = libc::flock {
        l_type: 0,
        l_whence: 0,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = LOCK_BASE + i64::from(index);
    lock.l_len = 1;
    lock
}

/// Takes the lock of slot `index` without waiting. `Ok(false)`: a live
/// process holds it.
pub fn try_lock(file: &File, index: u32) -> io::Result<bool> {
    let lock = lock_request(index, libc::F_WRLCK as libc::c_short);
    match fcntl(file, FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether some process (other than through `file` itself) holds the lock
/// of slot `index`, i.e. whether that slot's owner is alive.
pub fn is_held(file: &File, index: u32) -> io::Result<bool> {
    let mut lock = lock_request(index, libc::F_WRLCK as libc::c_short);
    fcntl(file, FcntlArg::F_OFD_GETLK(&mut lock))?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}
