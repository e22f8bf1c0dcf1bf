//! The vhost-user socket: a listening Unix stream socket at a path QEMU
//! connects to (`-chardev socket,path=SOCK`).
//!
//! [`VhostSocket::bind`] refuses to take a path another backend listens
//! on (it connects to it first: an answer means in use), replaces a stale
//! socket a dead backend left, and never removes anything that is not a
//! socket. Dropping it removes the socket file, but only if it is still
//! ours (same device and inode): a successor's socket at the same path is
//! left alone.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

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
    /// Listens at `path`, replacing a stale socket (nobody answers)
    /// but nothing else.
    pub fn bind(path: &Path) -> Result<VhostSocket, SocketError> {
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
        let listener = UnixListener::bind(path).map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => SocketError::InUse { path: path.into() },
            _ => SocketError::Io {
                path: path.into(),
                what: "binding the socket",
                source,
            },
        })?;
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

    #[test]
    fn a_listening_socket_is_in_use_a_stale_one_is_replaced() {
        let d = dir();
        let path = d.join("sock");
        let first = VhostSocket::bind(&path).unwrap();
        let err = VhostSocket::bind(&path).unwrap_err();
        assert!(matches!(err, SocketError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("in use"));
        drop(first);
        assert!(!path.exists(), "dropping removes our socket");
        // A dead backend's socket: bound, never listened to again.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let again = VhostSocket::bind(&path).unwrap();
        drop(again);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn other_files_missing_directories_and_long_paths_are_refused() {
        let d = dir();
        let file = d.join("file");
        fs::write(&file, b"keep me").unwrap();
        let err = VhostSocket::bind(&file).unwrap_err();
        assert!(matches!(err, SocketError::NotASocket { .. }), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"keep me");
        let err = VhostSocket::bind(&d.join("nowhere/sock")).unwrap_err();
        assert!(matches!(err, SocketError::NoDirectory { .. }), "{err}");
        let long = d.join("x".repeat(120));
        let err = VhostSocket::bind(&long).unwrap_err();
        assert!(matches!(err, SocketError::TooLong { .. }), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_successors_socket_is_not_removed() {
        let d = dir();
        let path = d.join("sock");
        let ours = VhostSocket::bind(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let theirs = UnixListener::bind(&path).unwrap();
        drop(ours);
        assert!(path.exists(), "the other socket stays");
        drop(theirs);
        fs::remove_dir_all(&d).unwrap();
    }
}
