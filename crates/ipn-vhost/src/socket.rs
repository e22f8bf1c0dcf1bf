//! The vhost-user socket: a listening Unix stream socket at a path QEMU
//! connects to (`-chardev socket,path=SOCK`).
//!
//! [`VhostSocket::bind`] refuses to take a path another backend listens
//! on (it connects to it first: an answer means in use), replaces a stale
//! socket a dead backend left, and never removes anything that is not a
//! socket. Dropping it removes the socket file, but only if it is still
//! ours (same device and inode): a successor's socket at the same path is
//! left alone.
//!
//! Who may connect is who may join the network ([`ipn::Access`]): the
//! socket gets the network's group and permission bits whatever the
//! umask. It is bound in a private directory (mode 0700, beside the
//! final path), given its owner and mode there, where nobody else can
//! reach or swap it, and only then renamed into place (never over an
//! existing name): no moment exists when it is reachable with wider
//! permissions.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use ipn::Access;
use nix::fcntl::{open, renameat2, OFlag, RenameFlags, AT_FDCWD};
use nix::sys::stat::{fchmodat, FchmodatFlags, Mode};
use nix::unistd::{fchownat, FchownatFlags, Gid, Uid};

/// The socket's name in its private staging directory.
const STAGED: &str = "s";

/// Longest socket path Linux takes (`sun_path` is 108 bytes with its NUL).
pub const MAX_PATH: usize = 107;

/// Why the socket could not be made, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Longer than a Unix socket address can hold.
    #[error("{path}: {len} bytes long; a Unix socket path has at most {MAX_PATH} bytes: choose a shorter path", path = .path.display())]
    TooLong {
        /// The path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The directory it would be in does not exist.
    #[error("{path}: the directory {dir} does not exist", path = .path.display(), dir = .dir.display())]
    NoDirectory {
        /// The path.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// Something that is not a socket is there.
    #[error("{path}: exists and is not a socket; refusing to replace it: remove it or choose another --socket", path = .path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A live process listens on it.
    #[error("{path}: in use: another process listens on this socket (another `ipn vhost-user`?); stop it or choose another --socket", path = .path.display())]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// The socket could not be given the network's group or mode.
    #[error("{path}: giving the socket the network's group {gid} and mode {mode:04o}: {source}; run as a member of that group (or root)", path = .path.display())]
    Access {
        /// The path.
        path: PathBuf,
        /// The network's group.
        gid: u32,
        /// The network's mode.
        mode: u32,
        /// What the system said.
        source: io::Error,
    },
    /// Anything else the system said.
    #[error("{path}: {what}: {source}", path = .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The step that failed.
        what: &'static str,
        /// What the system said.
        source: io::Error,
    },
}

/// A listening socket at a path, removed when dropped if still ours.
#[derive(Debug)]
pub struct VhostSocket {
    path: PathBuf,
    listener: Option<UnixListener>,
    /// Device and inode of the socket file we made.
    id: (u64, u64),
}

impl VhostSocket {
    /// Listens at `path` with `access` (the network's group and mode),
    /// replacing a stale socket (nobody answers) but nothing else.
    pub fn bind(path: &Path, access: Access) -> Result<VhostSocket, SocketError> {
        let len = path.as_os_str().len();
        if len > MAX_PATH {
            return Err(SocketError::TooLong {
                path: path.into(),
                len,
            });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(SocketError::NoDirectory {
                path: path.into(),
                dir: dir.into(),
            });
        }
        match fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(SocketError::NotASocket { path: path.into() })
            }
            Ok(_) => match UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse { path: path.into() }),
                // Nobody listens: a dead backend's socket.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    fs::remove_file(path).map_err(|source| SocketError::Io {
                        path: path.into(),
                        what: "removing the stale socket",
                        source,
                    })?;
                }
                Err(source) => {
                    return Err(SocketError::Io {
                        path: path.into(),
                        what: "checking whether the existing socket is in use",
                        source,
                    })
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SocketError::Io {
                    path: path.into(),
                    what: "looking at the path",
                    source,
                })
            }
        }
        let listener = bind_private(path, dir, access)?;
        let meta = fs::symlink_metadata(path).map_err(|source| SocketError::Io {
            path: path.into(),
            what: "looking at the new socket",
            source,
        })?;
        Ok(VhostSocket {
            path: path.into(),
            listener: Some(listener),
            id: (meta.dev(), meta.ino()),
        })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket.
    pub fn listener(&self) -> &UnixListener {
        self.listener
            .as_ref()
            .expect("the listener is only taken when dropped")
    }
}

impl Drop for VhostSocket {
    fn drop(&mut self) {
        drop(self.listener.take());
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.id {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds a socket in a private directory beside `path`, gives it
/// `access`, and renames it to `path` (failing if anything took that
/// name meanwhile).
fn bind_private(path: &Path, dir: &Path, access: Access) -> Result<UnixListener, SocketError> {
    let io_error = |what: &'static str| {
        move |source: io::Error| SocketError::Io {
            path: path.into(),
            what,
            source,
        }
    };
    let private = nix::unistd::mkdtemp(&dir.join(".ipn-vhost-user.XXXXXX"))
        .map_err(|e| io_error("making a private directory beside the socket")(e.into()))?;
    let result = (|| {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let staging = open(&private, flags, Mode::empty())
            .map_err(|e| io_error("opening the private directory")(e.into()))?;
        // Bound through /proc/self/fd: the address stays short whatever
        // the directory's path.
        let address = format!("/proc/self/fd/{}/{STAGED}", staging.as_raw_fd());
        let listener = UnixListener::bind(&address).map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => SocketError::InUse { path: path.into() },
            _ => io_error("binding the socket")(source),
        })?;
        // Only we can write in `private` (0700): the name cannot be
        // swapped between these calls.
        let access_error = |e: nix::errno::Errno| SocketError::Access {
            path: path.into(),
            gid: access.gid,
            mode: access.mode,
            source: e.into(),
        };
        let owner = Uid::effective()
            .is_root()
            .then(|| Uid::from_raw(access.uid));
        let no_follow = FchownatFlags::AT_SYMLINK_NOFOLLOW;
        fchownat(
            &staging,
            STAGED,
            owner,
            Some(Gid::from_raw(access.gid)),
            no_follow,
        )
        .map_err(access_error)?;
        let mode = Mode::from_bits_truncate(access.mode & 0o666);
        fchmodat(&staging, STAGED, mode, FchmodatFlags::FollowSymlink).map_err(access_error)?;
        renameat2(
            &staging,
            STAGED,
            AT_FDCWD,
            path,
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EEXIST => SocketError::InUse { path: path.into() },
            e => io_error("moving the socket into place")(e.into()),
        })?;
        Ok(listener)
    })();
    let _ = fs::remove_file(private.join(STAGED));
    let _ = fs::remove_dir(&private);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ipn-vhost-socket-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn ours(mode: u32) -> Access {
        Access {
            uid: Uid::effective().as_raw(),
            gid: Gid::effective().as_raw(),
            mode,
        }
    }

    #[test]
    fn the_socket_takes_the_networks_mode_whatever_the_umask() {
        let d = dir();
        let path = d.join("sock");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let socket = VhostSocket::bind(&path, ours(0o660));
        nix::sys::stat::umask(old);
        let socket = socket.unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o660, "not the umask's 0777");
        assert_eq!(meta.gid(), Gid::effective().as_raw());
        drop(socket);
        let names: Vec<_> = fs::read_dir(&d).unwrap().collect();
        assert!(names.is_empty(), "no staging directory left: {names:?}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_listening_socket_is_in_use_a_stale_one_is_replaced() {
        let d = dir();
        let path = d.join("sock");
        let first = VhostSocket::bind(&path, ours(0o600)).unwrap();
        let err = VhostSocket::bind(&path, ours(0o600)).unwrap_err();
        assert!(matches!(err, SocketError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("in use"));
        drop(first);
        assert!(!path.exists(), "dropping removes our socket");
        // A dead backend's socket: bound, never listened to again.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let again = VhostSocket::bind(&path, ours(0o600)).unwrap();
        drop(again);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn other_files_missing_directories_and_long_paths_are_refused() {
        let d = dir();
        let file = d.join("file");
        fs::write(&file, b"keep me").unwrap();
        let err = VhostSocket::bind(&file, ours(0o600)).unwrap_err();
        assert!(matches!(err, SocketError::NotASocket { .. }), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"keep me");
        let err = VhostSocket::bind(&d.join("nowhere/sock"), ours(0o600)).unwrap_err();
        assert!(matches!(err, SocketError::NoDirectory { .. }), "{err}");
        let long = d.join("x".repeat(120));
        let err = VhostSocket::bind(&long, ours(0o600)).unwrap_err();
        assert!(matches!(err, SocketError::TooLong { .. }), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_successors_socket_is_not_removed() {
        let d = dir();
        let path = d.join("sock");
        let ours = VhostSocket::bind(&path, ours(0o600)).unwrap();
        fs::remove_file(&path).unwrap();
        let theirs = UnixListener::bind(&path).unwrap();
        drop(ours);
        assert!(path.exists(), "the other socket stays");
        drop(theirs);
        fs::remove_dir_all(&d).unwrap();
    }
}
