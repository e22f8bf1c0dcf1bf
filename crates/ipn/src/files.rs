//! The files of a network directory, reached only through a descriptor of
//! the directory, and the translation of file-system errors into errors
//! that name the fix.
//!
//! ```text
//! PATH/             directory: its mode and group are the access control;
//!                   sticky (as /tmp) when members may write to it
//! PATH/shm          the shared file (see `shm::layout`)
//! PATH/bell.N       doorbell socket of port N (see `doorbell`)
//! PATH/.join.*      a joiner's private staging directory (mode 0700), where
//!                   it binds its doorbell before moving it into place
//! PATH/stats.N      what port N's program publishes about itself for
//!                   `ipn status` (see `published`), written as
//! PATH/.stats.*     a temporary file, then renamed into place
//! ```
//!
//! Threat: every member may write to `PATH`, so every name in it can be
//! swapped for a symbolic link, a FIFO, a directory or another file at any
//! moment, including between two system calls of a root process (`ipn tap`,
//! QEMU). The invariants that make this harmless:
//!
//! - `PATH` itself is opened once, with `O_DIRECTORY | O_NOFOLLOW`
//!   ([`NetDir`]); every later operation is relative to that descriptor
//!   (`openat`, `mkdirat`, `linkat`, `renameat`, `unlinkat`) and none of them
//!   follows a symbolic link inside the directory.
//! - What is opened is checked for its type on the opened descriptor
//!   (`fstat`), never by a separate `stat` of the name.
//! - Modes and groups are set on descriptors, or on names inside a private
//!   0700 directory of the caller that no one else can enter, never on names
//!   that others can swap.
//! - A new directory is adopted only if the caller made it, or it is empty
//!   and the caller owns it.
//! - The sticky bit means a member can remove or rename only its own
//!   files: not `shm`, not another member's doorbell.

#![cfg_attr(loom, allow(dead_code))] // joining (files) is not modelled

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fchmod, fchmodat, fstat, fstatat, FchmodatFlags, FileStat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, linkat, unlinkat, Gid, UnlinkatFlags};

use crate::error::OpenError;

pub const SHM_NAME: &str = "shm";
pub const BELL_PREFIX: &str = "bell.";
/// Prefix of a joiner's private staging directory.
pub const STAGING_PREFIX: &str = ".join.";
/// Prefix of a creator's temporary shared file, where `O_TMPFILE` is not
/// supported by the file system.
pub const TEMP_SHM_PREFIX: &str = ".shm.";
/// Prefix of the file a port's program publishes (`stats.N`).
pub const STATS_PREFIX: &str = "stats.";
/// Prefix of a publisher's temporary file, renamed to `stats.N`.
pub const TEMP_STATS_PREFIX: &str = ".stats.";

pub fn bell_name(index: u32) -> String {
    format!("{BELL_PREFIX}{index}")
}

/// Mode of the regular and socket files for a directory mode: the same
/// read/write bits, no execute bits.
pub fn file_mode(dir_mode: u32) -> u32 {
    dir_mode & 0o666
}

/// The mode a network directory gets for the `mode` asked for: sticky
/// whenever someone other than the owner may write to it, so that members
/// cannot remove or replace each other's files (or the creator's `shm`).
/// (Public as `Config::directory_mode`.)
pub fn dir_mode(mode: u32) -> u32 {
    if mode & 0o022 != 0 {
        mode | 0o1000
    } else {
        mode
    }
}

/// `/proc/self/fd/N`: a name for exactly the file behind `fd`, that no one
/// can swap. Used where the kernel wants a path (bind, connect, linkat).
pub fn proc_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// An open network directory: the one descriptor every operation on the
/// network's files goes through.
#[derive(Debug)]
pub struct NetDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Why a name in the directory cannot be given to us.
#[derive(Debug)]
pub enum PlaceError {
    /// Something we may not remove holds the name (sticky directory, another
    /// member's file): the caller should use another name.
    Occupied,
    /// Any other failure.
    Io(io::Error),
}

impl NetDir {
    /// Opens the network directory at `path` (which must not be a symbolic
    /// link) to use an existing network.
    pub fn open(path: &Path) -> Result<NetDir, OpenError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match nix::fcntl::open(path, flags, Mode::empty()) {
            Ok(fd) => Ok(NetDir {
                fd,
                path: path.into(),
            }),
            Err(Errno::ENOENT) => Err(OpenError::NotFound { path: path.into() }),
            Err(Errno::ENOTDIR | Errno::ELOOP) => Err(not_a_directory(path)),
            Err(e) => Err(io_error(path, e.into())),
        }
    }

    /// Makes the directory of a new network at `path` with `mode` (made
    /// sticky by [`dir_mode`]) and `group`. An existing directory is
    /// adopted only if it is empty and ours (an administrator may prepare
    /// one; a creator may have died before finishing). Also says whether
    /// the directory was made by this call.
    pub fn create(path: &Path, mode: u32, group: Option<u32>) -> Result<(NetDir, bool), OpenError> {
        let made = match nix::unistd::mkdir(path, Mode::S_IRWXU) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(io_error(path, e.into())),
        };
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOTDIR | Errno::ELOOP) if !made => {
                return Err(match not_a_directory(path) {
                    // A link: say so. A file: it simply exists.
                    OpenError::NotANetwork { reason, .. } if reason.contains("symbolic link") => {
                        OpenError::NotANetwork {
                            path: path.into(),
                            reason,
                        }
                    }
                    _ => OpenError::AlreadyExists { path: path.into() },
                });
            }
            Err(e) => return Err(io_error(path, e.into())),
        };
        let dir = NetDir {
            fd,
            path: path.into(),
        };
        if !made {
            dir.check_adoptable()?;
        }
        if let Some(gid) = group {
            fchown(&dir.fd, None, Some(Gid::from_raw(gid)))
                .map_err(|e| group_error(path, gid, e))?;
        }
        fchmod(&dir.fd, Mode::from_bits_truncate(dir_mode(mode)))
            .map_err(|e| io_error(path, e.into()))?;
        Ok((dir, made))
    }

    /// An existing directory may become a network only if it is ours and
    /// empty: otherwise its owner, or whatever it holds, would control
    /// the network we are asked to make.
    fn check_adoptable(&self) -> Result<(), OpenError> {
        let st = fstat(&self.fd).map_err(|e| io_error(&self.path, e.into()))?;
        let names = self.names()?;
        if names.iter().any(|n| n == SHM_NAME) {
            return Err(OpenError::AlreadyExists {
                path: self.path.clone(),
            });
        }
        let euid = nix::unistd::geteuid().as_raw();
        if st.st_uid != euid {
            return Err(OpenError::NotANetwork {
                path: self.path.clone(),
                reason: format!(
                    "the directory exists and belongs to {}, not to you; ipn makes a network \
                     only in a new directory or an empty one of your own: choose another path",
                    user_name(st.st_uid)
                ),
            });
        }
        if !names.is_empty() {
            return Err(OpenError::NotANetwork {
                path: self.path.clone(),
                reason: format!(
                    "the directory exists and is not empty ({} entries); ipn makes a network \
                     only in a new or empty directory: choose another path or empty it",
                    names.len()
                ),
            });
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Another descriptor of the same directory.
    pub fn try_clone(&self) -> io::Result<NetDir> {
        Ok(NetDir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// The directory's own status (mode, group), from its descriptor.
    pub fn stat(&self) -> io::Result<FileStat> {
        Ok(fstat(&self.fd)?)
    }

    /// `PATH/NAME`, for messages.
    pub fn display_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Every name in the directory but `.` and `..`.
    pub fn names(&self) -> Result<Vec<String>, OpenError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut dir = nix::dir::Dir::openat(&self.fd, ".", flags, Mode::empty())
            .map_err(|e| io_error(&self.path, e.into()))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| io_error(&self.path, e.into()))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    /// Opens `PATH/shm`, refusing anything but a regular file (a symbolic
    /// link, a FIFO that would block, a directory, a device).
    pub fn open_shm(&self, writable: bool) -> Result<File, OpenError> {
        let access = if writable {
            OFlag::O_RDWR
        } else {
            OFlag::O_RDONLY
        };
        let flags = access | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        let shm = self.display_path(SHM_NAME);
        let fd = match openat(&self.fd, SHM_NAME, flags | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                return Err(OpenError::NotANetwork {
                    path: self.path.clone(),
                    reason: "the directory has no shared file `shm`; it is not an ipn network \
                             (or its creator died while creating it: remove it and create again)"
                        .into(),
                })
            }
            Err(Errno::ELOOP) => return Err(not_regular(&self.path, "a symbolic link")),
            Err(Errno::EISDIR) => return Err(not_regular(&self.path, "a directory")),
            Err(Errno::ENXIO) => return Err(not_regular(&self.path, "a socket")),
            Err(e) => return Err(io_error(&shm, e.into())),
        };
        let st = fstat(&fd).map_err(|e| io_error(&shm, e.into()))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind != SFlag::S_IFREG {
            return Err(not_regular(&self.path, type_name(kind)));
        }
        Ok(File::from(fd))
    }

    /// Creates the shared file: `build` sizes and fills a new file that
    /// nobody else can reach yet, which is then linked in as `PATH/shm`, so
    /// that a joiner never sees a half-made network and of two concurrent
    /// creators exactly one link succeeds.
    pub fn create_shm<T>(
        &self,
        mode: u32,
        group: Option<u32>,
        build: impl FnOnce(File) -> io::Result<T>,
    ) -> Result<T, OpenError> {
        let shm = self.display_path(SHM_NAME);
        let (file, temp_name) = self.new_private_file()?;
        let result = (|| {
            if let Some(gid) = group {
                fchown(&file, None, Some(Gid::from_raw(gid)))
                    .map_err(|e| group_error(&shm, gid, e))?;
            }
            fchmod(&file, Mode::from_bits_truncate(file_mode(mode)))
                .map_err(|e| io_error(&shm, e.into()))?;
            let link_source = file.try_clone().map_err(|e| io_error(&shm, e))?;
            let built = build(file).map_err(|e| space_error(&shm, e))?;
            let linked = match &temp_name {
                // The temporary name is ours alone (O_EXCL, never followed).
                Some(name) => linkat(
                    &self.fd,
                    name.as_str(),
                    &self.fd,
                    SHM_NAME,
                    AtFlags::empty(),
                ),
                None => linkat(
                    nix::fcntl::AT_FDCWD,
                    &proc_path(link_source.as_fd()),
                    &self.fd,
                    SHM_NAME,
                    AtFlags::AT_SYMLINK_FOLLOW,
                ),
            };
            match linked {
                Ok(()) => Ok(built),
                Err(Errno::EEXIST) => Err(OpenError::AlreadyExists {
                    path: self.path.clone(),
                }),
                Err(e) => Err(io_error(&shm, e.into())),
            }
        })();
        if let Some(name) = temp_name {
            let _ = unlinkat(&self.fd, name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// A new file in the directory, readable and writable by us only: an
    /// unnamed one (`O_TMPFILE`) where the file system can, else one under a
    /// fresh name created with `O_EXCL` (which never follows a link).
    fn new_private_file(&self) -> Result<(File, Option<String>), OpenError> {
        let mode = Mode::S_IRUSR | Mode::S_IWUSR;
        let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC;
        match openat(&self.fd, ".", flags | OFlag::O_TMPFILE, mode) {
            Ok(fd) => return Ok((File::from(fd), None)),
            Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {}
            Err(e) => return Err(io_error(&self.path, e.into())),
        }
        let flags = flags | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        loop {
            let name = unique_name(TEMP_SHM_PREFIX);
            match openat(&self.fd, name.as_str(), flags, mode) {
                Ok(fd) => return Ok((File::from(fd), Some(name))),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(io_error(&self.path, e.into())),
            }
        }
    }

    /// Makes a private staging directory (mode 0700, ours, empty) and opens
    /// it. Names inside it cannot be touched by anyone but us.
    pub fn make_staging(&self) -> io::Result<Staging> {
        loop {
            let name = unique_name(STAGING_PREFIX);
            match nix::sys::stat::mkdirat(&self.fd, name.as_str(), Mode::S_IRWXU) {
                Ok(()) => {}
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let staging = Staging {
                fd: openat(&self.fd, name.as_str(), flags, Mode::empty())?,
                name,
            };
            // Swapped for someone else's directory between the two calls?
            let st = fstat(&staging.fd)?;
            if st.st_uid != nix::unistd::geteuid().as_raw() || st.st_mode & 0o7777 != 0o700 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "a staging directory was replaced under us",
                ));
            }
            return Ok(staging);
        }
    }

    /// Moves `name` from `staging` to the same name in this directory,
    /// replacing what is there if we may. A directory at that name is
    /// swapped into the staging directory (removed with it).
    pub fn move_into_place(&self, staging: &Staging, name: &str) -> Result<(), PlaceError> {
        let renamed = nix::fcntl::renameat(&staging.fd, name, &self.fd, name);
        let swapped = match renamed {
            Ok(()) => return Ok(()),
            Err(Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST) => nix::fcntl::renameat2(
                &staging.fd,
                name,
                &self.fd,
                name,
                RenameFlags::RENAME_EXCHANGE,
            ),
            Err(e) => Err(e),
        };
        match swapped {
            Ok(()) => Ok(()),
            Err(Errno::EPERM | Errno::EACCES) => Err(PlaceError::Occupied),
            Err(e) => Err(PlaceError::Io(e.into())),
        }
    }

    /// Removes a staging directory and whatever ended up in it.
    pub fn remove_staging(&self, staging: Staging) {
        let _ = self.remove_tree(&staging.name);
    }

    /// Removes `name` (a file, or a directory tree) from this directory,
    /// following no symbolic link.
    fn remove_tree(&self, name: &str) -> io::Result<()> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(()),
            Err(Errno::EISDIR) => {
                // std's remove_dir_all walks with openat(O_NOFOLLOW) and
                // unlinkat; the path starts at our descriptor.
                std::fs::remove_dir_all(proc_path(self.fd()).join(name))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The socket at `name`, opened as a path (`O_PATH`) without following
    /// a link, and checked to be a socket: connect to it through
    /// [`proc_path`], and no one can redirect the connection.
    pub fn open_socket(&self, name: &str) -> io::Result<OwnedFd> {
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, name, flags, Mode::empty())?;
        let st = fstat(&fd)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is not a socket"),
            ));
        }
        Ok(fd)
    }

    /// Removes `name` if it is still the file `(dev, ino)`.
    pub fn remove_if_same(&self, name: &str, dev: u64, ino: u64) {
        if let Ok(st) = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            if st.st_dev == dev && st.st_ino == ino {
                let _ = unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir);
            }
        }
    }

    /// Puts a new regular file holding `contents` at `name`, replacing
    /// what is there in one `renameat`: a reader sees the old file or the
    /// new one, never a part. The file is written under a fresh temporary
    /// name (`O_EXCL`, never followed) with the directory's read/write
    /// bits and group, set on its descriptor. A directory a member put at
    /// `name` is swapped out and removed; a file we may not replace
    /// (another user's, in a sticky directory) is [`PlaceError::Occupied`].
    /// Returns the new file's `(dev, ino)`.
    pub fn replace_file(&self, name: &str, contents: &[u8]) -> Result<(u64, u64), PlaceError> {
        use std::io::Write;
        let dir = self.stat().map_err(PlaceError::Io)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::S_IRUSR | Mode::S_IWUSR;
        let (mut file, temp) = loop {
            let temp = unique_name(TEMP_STATS_PREFIX);
            match openat(&self.fd, temp.as_str(), flags, mode) {
                Ok(fd) => break (File::from(fd), temp),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(PlaceError::Io(e.into())),
            }
        };
        let result = (|| {
            fchmod(&file, Mode::from_bits_truncate(file_mode(dir.st_mode)))?;
            // Best effort, as for doorbells: the directory's other bits
            // still let members read it.
            let _ = fchown(&file, None, Some(Gid::from_raw(dir.st_gid)));
            file.write_all(contents)?;
            let st = fstat(&file)?;
            Ok::<_, io::Error>((st.st_dev, st.st_ino))
        })()
        .map_err(PlaceError::Io)
        .and_then(|identity| {
            self.rename_over(&temp, name)
                .map(|swapped| (identity, swapped))
        });
        match result {
            Ok((identity, swapped)) => {
                if swapped {
                    // The directory a member had put at `name`.
                    let _ = self.remove_tree(&temp);
                }
                Ok(identity)
            }
            Err(e) => {
                let _ = unlinkat(&self.fd, temp.as_str(), UnlinkatFlags::NoRemoveDir);
                Err(e)
            }
        }
    }

    /// Renames `from` to `to`, both in this directory, replacing `to`;
    /// true if `to` was a directory, now at `from`.
    fn rename_over(&self, from: &str, to: &str) -> Result<bool, PlaceError> {
        let renamed = nix::fcntl::renameat(&self.fd, from, &self.fd, to);
        let swapped = match renamed {
            Ok(()) => return Ok(false),
            Err(Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST) => {
                nix::fcntl::renameat2(&self.fd, from, &self.fd, to, RenameFlags::RENAME_EXCHANGE)
            }
            Err(e) => Err(e),
        };
        match swapped {
            Ok(()) => Ok(true),
            Err(Errno::EPERM | Errno::EACCES) => Err(PlaceError::Occupied),
            Err(e) => Err(PlaceError::Io(e.into())),
        }
    }

    /// The contents of the regular file `name`, if there is one, read
    /// without following a link and without opening anything else: the
    /// name is opened as a path (`O_PATH | O_NOFOLLOW`), its type and size
    /// checked on that descriptor, and only then is exactly that file
    /// opened for reading (through [`proc_path`]), so a FIFO, a device, a
    /// directory or a link is never opened. At most `max` bytes are read:
    /// a longer file, even one growing while it is read, is refused.
    pub fn read_regular(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, ReadRefused> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let path = match openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(ReadRefused::Io(e.into())),
        };
        let st = fstat(&path).map_err(|e| ReadRefused::Io(e.into()))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind != SFlag::S_IFREG {
            return Err(ReadRefused::NotRegular(type_name(kind)));
        }
        let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
        if size > max {
            return Err(ReadRefused::TooBig(size));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(proc_path(path.as_fd()))
            .map_err(ReadRefused::Io)?;
        let mut contents = Vec::new();
        file.take(max + 1)
            .read_to_end(&mut contents)
            .map_err(ReadRefused::Io)?;
        if contents.len() as u64 > max {
            return Err(ReadRefused::TooBig(contents.len() as u64));
        }
        Ok(Some(contents))
    }

    /// Removes every file ipn puts in a network directory (`shm`, doorbells,
    /// staging directories, temporary files), whatever type a member made
    /// them, then the directory itself. Other names are left, and named.
    pub fn remove_network(self) -> Result<(), OpenError> {
        let mut foreign = Vec::new();
        for name in self.names()? {
            let ours = name == SHM_NAME
                || name.starts_with(BELL_PREFIX)
                || name.starts_with(STAGING_PREFIX)
                || name.starts_with(TEMP_SHM_PREFIX)
                || name.starts_with(STATS_PREFIX)
                || name.starts_with(TEMP_STATS_PREFIX);
            if !ours {
                foreign.push(name);
                continue;
            }
            self.remove_tree(&name)
                .map_err(|e| io_error(&self.display_path(&name), e))?;
        }
        if !foreign.is_empty() {
            foreign.sort();
            return Err(OpenError::NotANetwork {
                path: self.path.clone(),
                reason: format!(
                    "removed the network's files, but the directory also holds files ipn did \
                     not make ({}); remove them yourself, then the directory",
                    foreign.join(", ")
                ),
            });
        }
        let path = self.path.clone();
        drop(self);
        std::fs::remove_dir(&path).map_err(|e| io_error(&path, e))
    }
}

/// Why [`NetDir::read_regular`] read nothing.
#[derive(Debug)]
pub enum ReadRefused {
    /// The name is not a regular file: what it is (a symbolic link...).
    NotRegular(&'static str),
    /// The file is larger than the caller's limit: its size.
    TooBig(u64),
    /// Opening or reading it failed.
    Io(io::Error),
}

/// A private staging directory inside the network directory.
#[derive(Debug)]
pub struct Staging {
    fd: OwnedFd,
    name: String,
}

impl Staging {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Sets the mode and group of `name` inside the staging directory: no
    /// one else can enter it, so the name cannot have been swapped.
    pub fn set_mode_and_group(&self, name: &str, mode: u32, gid: u32) -> io::Result<()> {
        fchmodat(
            &self.fd,
            name,
            Mode::from_bits_truncate(mode),
            FchmodatFlags::FollowSymlink,
        )?;
        // Best effort: only members of that group may give it to the group,
        // and one who cannot still has the directory's "other" bits.
        let _ = fchownat(
            &self.fd,
            name,
            None,
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        Ok(())
    }

    /// `(dev, ino)` of `name` inside the staging directory.
    pub fn identity(&self, name: &str) -> io::Result<(u64, u64)> {
        let st = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok((st.st_dev, st.st_ino))
    }
}

/// A name no other process or thread will pick at the same moment (and if
/// one does, `O_EXCL`/`mkdirat` fails and the caller picks another).
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}.{}.{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn type_name(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR | SFlag::S_IFBLK => "a device",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "not a regular file",
    }
}

fn not_regular(dir: &Path, what: &str) -> OpenError {
    OpenError::NotANetwork {
        path: dir.into(),
        reason: format!(
            "its `shm` is {what}, not the regular file ipn made (someone replaced it); \
             remove the network with `ipn rm --force` and create it again"
        ),
    }
}

fn not_a_directory(path: &Path) -> OpenError {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let reason = if link {
        "a symbolic link; ipn opens a network only by its real path, so that no link can \
         redirect it: give the path it points to (`realpath`)"
    } else {
        "not a directory; an ipn network is a directory made by `ipn create`"
    };
    OpenError::NotANetwork {
        path: path.into(),
        reason: reason.into(),
    }
}

fn group_error(path: &Path, gid: u32, e: Errno) -> OpenError {
    match e {
        Errno::EPERM | Errno::EACCES => OpenError::PermissionDenied {
            path: path.into(),
            hint: format!(
                "cannot give it to group {}: you must own it and be a member of that group",
                group_name(gid)
            ),
        },
        e => io_error(path, e.into()),
    }
}

/// Errors while sizing the shared file: no space is worth its own words.
fn space_error(shm: &Path, e: io::Error) -> OpenError {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EFBIG) {
        OpenError::NoSpace {
            path: shm.into(),
            source: e,
        }
    } else {
        io_error(shm, e)
    }
}

/// An I/O error about `path`, with a permission hint when that is the cause.
pub fn io_error(path: &Path, e: io::Error) -> OpenError {
    if e.kind() == io::ErrorKind::PermissionDenied {
        OpenError::PermissionDenied {
            path: path.into(),
            hint: permission_hint(path),
        }
    } else {
        OpenError::Io {
            path: path.into(),
            source: e,
        }
    }
}

/// Says who may enter the nearest existing directory at or above `path`,
/// e.g. `mode 0750, owner alice, group vm; ask to be added to group 'vm'`.
/// (Only looks: it changes nothing, so following links here is harmless.)
pub fn permission_hint(path: &Path) -> String {
    let dir = path
        .ancestors()
        .find(|p| p.is_dir() && p.join(SHM_NAME).exists())
        .or_else(|| path.ancestors().find(|p| p.metadata().is_ok()));
    let Some(dir) = dir else {
        return "no part of the path is visible".into();
    };
    let Ok(meta) = dir.metadata() else {
        return format!("{} cannot be read", dir.display());
    };
    let mode = meta.mode() & 0o7777;
    let owner = user_name(meta.uid());
    let group = group_name(meta.gid());
    let advice = if mode & 0o060 == 0o060 {
        format!("ask to be added to group '{group}'")
    } else if mode & 0o006 == 0o006 {
        "check the directories above it".into()
    } else {
        format!("ask {owner} to run `chmod g+rwx` on it and add you to group '{group}'")
    };
    // The error already names `path`; name the directory only if another.
    let place = if dir == path {
        String::new()
    } else {
        format!("{}: ", dir.display())
    };
    format!("{place}mode {mode:04o}, owner {owner}, group {group}; {advice}")
}

pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

pub fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

/// Looks a group up by name or number.
pub fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}
