//! The files of a network directory, their modes and groups, and the
//! translation of file-system errors into errors that name the fix.
//!
//! ```text
//! PATH/            directory: mode and group are the access control
//! PATH/shm         the shared file (see `shm::layout`)
//! PATH/bell.N      doorbell socket of port N (see `doorbell`)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::OpenError;

pub const SHM_NAME: &str = "shm";
pub const BELL_PREFIX: &str = "bell.";

pub fn shm_path(dir: &Path) -> PathBuf {
    dir.join(SHM_NAME)
}

pub fn bell_name(index: u32) -> String {
    format!("{BELL_PREFIX}{index}")
}

/// Mode of the regular and socket files for a directory mode: the same
/// read/write bits, no execute bits.
pub fn file_mode(dir_mode: u32) -> u32 {
    dir_mode & 0o666
}

/// Creates the network directory with exactly `mode` (not filtered by the
/// umask, since the user asked for it) and `group`. An existing *empty*
/// directory is accepted (an administrator may prepare it), and so is one
/// left behind by a creator that died before finishing (no `shm` in it).
pub fn create_dir(path: &Path, mode: u32, group: Option<u32>) -> Result<(), OpenError> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !path.is_dir() || shm_path(path).exists() {
                return Err(OpenError::AlreadyExists { path: path.into() });
            }
        }
        Err(e) => return Err(io_error(path, e)),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_error(path, e))?;
    set_group(path, group)
}

/// Gives `path` to `group`, if one was asked for.
pub fn set_group(path: &Path, group: Option<u32>) -> Result<(), OpenError> {
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => OpenError::PermissionDenied {
                path: path.into(),
                hint: format!(
                    "cannot give it to group {}: you must own it and be a member of that group",
                    group_name(gid)
                ),
            },
            _ => io_error(path, e),
        })?;
    }
    Ok(())
}

/// Creates a new file that nobody else can have open yet.
pub fn create_new_file(path: &Path, mode: u32) -> Result<File, OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_error(path, e))?;
    Ok(file)
}

/// Opens `PATH/shm` of an existing network.
pub fn open_shm(dir: &Path, writable: bool) -> Result<File, OpenError> {
    let shm = shm_path(dir);
    OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_CLOEXEC)
        .open(&shm)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound if dir.is_dir() => OpenError::NotANetwork {
                path: dir.into(),
                reason: "the directory has no shared file `shm`; it is not an ipn network (or its creator died while creating it: remove it and create again)".into(),
            },
            io::ErrorKind::NotFound => OpenError::NotFound { path: dir.into() },
            io::ErrorKind::NotADirectory => OpenError::NotANetwork {
                path: dir.into(),
                reason: "not a directory; an ipn network is a directory made by `ipn create`".into(),
            },
            _ => io_error(dir, e),
        })
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
