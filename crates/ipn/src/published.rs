//! What a port's program publishes about itself for `ipn status`: one
//! file per port, `PATH/stats.N` (N the port's slot), that the program
//! rewrites whole (a [`Publisher`]) and anyone who may open the network
//! reads ([`Network::published`](crate::Network::published)). `ipn vxlan`
//! publishes its per-remote counters there; the contents are the
//! program's, and opaque here.
//!
//! Why a file and not the shared file: what is published has no bound
//! known when the network is made (one entry per remote and per learned
//! address), it changes about once a second, and only its own program
//! writes it; a file costs the network nothing while nobody publishes.
//!
//! Threat: the directory is member-writable, so the name may be a link, a
//! FIFO, a directory or a huge file by the time anyone reads it, and its
//! contents may be anything. The invariants:
//! - a publisher writes a new file under a fresh `O_EXCL` name, then
//!   renames it over `stats.N` (`NetDir::replace_file`): a reader never
//!   sees half a file, and the publisher never writes through a name
//!   someone planted;
//! - a reader opens the name only as a path, checks it is a regular file
//!   of at most [`MAX_PUBLISHED`] bytes, and reads no more than that
//!   (`NetDir::read_regular`): no link is followed, no FIFO or device
//!   opened, no unbounded read;
//! - what is read is input: the caller parses it strictly and checks it
//!   names the port and the pid the port slot records (a member can still
//!   write a well-formed file, as it can scribble the counters of the
//!   shared file: the numbers are as trustworthy as those);
//! - a publisher removes the file when it is dropped, if the name is still
//!   its file; one left by a process that died is replaced by the slot's
//!   next publisher, and removed by `ipn rm`.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::files::{self, NetDir, PlaceError, ReadRefused};
use crate::port::Port;

/// Largest file [`Network::published`](crate::Network::published) reads,
/// and [`Publisher::publish`] writes: 1 MiB.
pub const MAX_PUBLISHED: usize = 1 << 20;

/// The name of port `index`'s published file in its network directory.
pub fn published_name(index: u32) -> String {
    format!("{}{index}", files::STATS_PREFIX)
}

/// Why a port's published file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PublishedError {
    /// The name is not a regular file (a member replaced it); it was
    /// neither followed nor opened.
    #[error("{path} is {kind}, not the regular file a port publishes; not followed")]
    NotRegular {
        /// The file's path.
        path: PathBuf,
        /// What it is: "a symbolic link", "a FIFO"...
        kind: &'static str,
    },
    /// Larger than [`MAX_PUBLISHED`]; not read.
    #[error("{path} is {size} bytes, more than the {MAX_PUBLISHED} a port publishes; not read")]
    TooBig {
        /// The file's path.
        path: PathBuf,
        /// Its size (at least).
        size: u64,
    },
    /// Opening or reading it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file's path.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// Reads port `index`'s published file from `dir`: `None` if there is none.
pub(crate) fn read(dir: &NetDir, index: u32) -> Result<Option<Vec<u8>>, PublishedError> {
    let name = published_name(index);
    let path = || dir.display_path(&name);
    dir.read_regular(&name, MAX_PUBLISHED as u64)
        .map_err(|refused| match refused {
            ReadRefused::NotRegular(kind) => PublishedError::NotRegular { path: path(), kind },
            ReadRefused::TooBig(size) => PublishedError::TooBig { path: path(), size },
            ReadRefused::Io(source) => PublishedError::Io {
                path: path(),
                source,
            },
        })
}

/// Publishes what a port's program says about itself, as `PATH/stats.N`
/// (see the module doc). Dropping it removes the file.
#[derive(Debug)]
pub struct Publisher {
    dir: NetDir,
    name: String,
    /// `(dev, ino)` of the file last published: what the drop may remove.
    written: Option<(u64, u64)>,
}

impl Publisher {
    /// A publisher for `port`, in the directory of the network it joined:
    /// the directory at the port's path is opened again, and refused if
    /// its shared file is not the port's (the path was given to another
    /// network since).
    pub fn new(port: &Port) -> io::Result<Publisher> {
        let dir = NetDir::open(port.path()).map_err(io::Error::other)?;
        let shm = dir.open_shm(false).map_err(io::Error::other)?;
        let (ours, theirs) = (port.shm_file().metadata()?, shm.metadata()?);
        if (ours.dev(), ours.ino()) != (theirs.dev(), theirs.ino()) {
            return Err(io::Error::other(format!(
                "{} is no longer the network this port joined",
                port.path().display()
            )));
        }
        Ok(Publisher {
            dir,
            name: published_name(port.index()),
            written: None,
        })
    }

    /// Where the file is, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.display_path(&self.name)
    }

    /// Replaces the published file with `contents` (at most
    /// [`MAX_PUBLISHED`] bytes), atomically.
    pub fn publish(&mut self, contents: &[u8]) -> io::Result<()> {
        if contents.len() > MAX_PUBLISHED {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes to publish, more than the {MAX_PUBLISHED} readers take",
                    contents.len()
                ),
            ));
        }
        match self.dir.replace_file(&self.name, contents) {
            Ok(identity) => {
                self.written = Some(identity);
                Ok(())
            }
            Err(PlaceError::Occupied) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is another user's file, which we may not replace in this sticky \
                     directory; remove it",
                    self.path().display()
                ),
            )),
            Err(PlaceError::Io(e)) => Err(e),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some((dev, ino)) = self.written {
            self.dir.remove_if_same(&self.name, dev, ino);
        }
    }
}
