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

pub const LOCK_BASE: i64 = 1 << 40;

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

/// Gives up the lock of slot `index` (taken by [`try_lock`] through the
/// same open file description).
pub fn unlock(file: &File, index: u32) -> io::Result<()> {
    let lock = lock_request(index, libc::F_UNLCK as libc::c_short);
    fcntl(file, FcntlArg::F_OFD_SETLK(&lock))?;
    Ok(())
}

/// Which processes hold slot locks on `file`: `(slot, pid)` pairs.
///
/// OFD locks carry no owner (`F_OFD_GETLK` says pid -1), but every
/// process's `/proc/PID/fdinfo/FD` lists the locks of that descriptor's
/// open file description. Only processes the caller may inspect (its own
/// user's, or all for root) are seen. Meant for status and error messages:
/// it reads every descriptor of every visible process.
pub fn holders(file: &File, max_ports: u32) -> Vec<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = file.metadata() else {
        return Vec::new();
    };
    let dev = meta.dev();
    let key = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        meta.ino()
    );
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            for index in slots_locked_in(&info, &key, max_ports) {
                if !found.iter().any(|&(slot, _)| slot == index) {
                    found.push((index, pid));
                }
            }
        }
    }
    found.sort_unstable();
    found
}

/// Slot numbers of the OFD write locks on file `key` (`MAJ:MIN:INO`) in
/// the text of one fdinfo file, whose lock lines read
/// `lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:1234 START END`, an
/// inclusive byte range: the kernel merges adjacent locks of one open file
/// description into one range.
fn slots_locked_in<'a>(
    info: &'a str,
    key: &'a str,
    max_ports: u32,
) -> impl Iterator<Item = u32> + 'a {
    info.lines()
        .filter_map(move |line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.first() != Some(&"lock:") || !fields.contains(&"OFDLCK") {
                return None;
            }
            let at = fields.iter().position(|f| *f == key)?;
            let slot = |field: Option<&&str>| -> Option<i64> {
                let byte: i64 = field?.parse().ok()?;
                byte.checked_sub(LOCK_BASE).filter(|s| *s >= 0)
            };
            let first = slot(fields.get(at + 1))?;
            let last = slot(fields.get(at + 2))?.min(i64::from(max_ports) - 1);
            Some((first..=last).filter_map(|s| u32::try_from(s).ok()))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lock_lines_name_the_slots_of_our_file_only() {
        let base = LOCK_BASE;
        let info = format!(
            "pos:\t0\nflags:\t02\nlock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:77 {} {}\n\
             lock:\t2: OFDLCK ADVISORY  WRITE -1 fe:00:78 {} {}\n\
             lock:\t3: POSIX  ADVISORY  WRITE 12 fe:00:77 {} {}\n\
             lock:\t4: OFDLCK ADVISORY  WRITE -1 fe:00:77 {} {}\n\
             lock:\t5: OFDLCK ADVISORY  WRITE -1 fe:00:77 {} {}\n",
            base + 3,
            base + 3,
            base + 5,
            base + 5,
            base + 6,
            base + 6,
            base + 9999,
            base + 9999,
            base + 10,
            base + 12,
        );
        let slots: Vec<u32> = slots_locked_in(&info, "fe:00:77", 64).collect();
        assert_eq!(slots, vec![3, 10, 11, 12]);
    }

    #[test]
    fn holders_finds_our_own_lock() {
        let path = std::env::temp_dir().join(format!("ipn-liveness-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        assert!(try_lock(&file, 7).unwrap());
        let found = holders(&file, 64);
        unlock(&file, 7).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(found, vec![(7, std::process::id())]);
    }
}
