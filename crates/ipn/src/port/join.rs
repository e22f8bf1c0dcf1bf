//! Joining: finding the network's files, taking a port slot (its lock
//! decides), binding the slot's doorbell. What happens in shared memory
//! once the slot is ours is `Port::activate`.

use std::path::Path;

use super::Port;
use crate::config::{Config, JoinOptions};
use crate::doorbell::Doorbell;
use crate::error::OpenError;
use crate::files::{self, NetDir, PlaceError};
use crate::liveness;
use crate::membership;
use crate::network::{open_shared, Network};
use crate::shm::SharedFile;
use crate::sync::Ordering;

impl Port {
    /// Joins the existing network at `path`.
    pub fn join(path: impl AsRef<Path>, options: &JoinOptions) -> Result<Port, OpenError> {
        options.validate()?;
        let dir = NetDir::open(path.as_ref())?;
        let file = dir.open_shm(true)?;
        let shm = open_shared(dir.path(), file, true)?;
        let (index, bell) = claim_slot(&shm, &dir)?;
        let ringer = bell.ringer();
        Ok(Port::activate(
            dir.path(),
            std::sync::Arc::new(shm),
            index,
            bell,
            ringer,
            options,
        ))
    }

    /// Joins the network at `path`, creating it with `config` first if
    /// there is none. Safe against concurrent creators.
    pub fn join_or_create(
        path: impl AsRef<Path>,
        config: &Config,
        options: &JoinOptions,
    ) -> Result<Port, OpenError> {
        let path = path.as_ref();
        for _ in 0..3 {
            match Port::join(path, options) {
                Err(OpenError::NotFound { .. }) => {}
                // A directory without `shm`: `create` decides whether it
                // may become a network (empty and ours) or says why not.
                Err(OpenError::NotANetwork { .. }) if has_no_shm(path) => {}
                // It has one now: another creator just linked it. Join
                // again (a `shm` that is not a network fails the same way
                // each time, and the last join says why).
                Err(OpenError::NotANetwork { .. }) => continue,
                other => return other,
            }
            match Network::create(path, config) {
                Ok(_) | Err(OpenError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Port::join(path, options)
    }
}

/// Whether `path` is a directory without a `shm` (as one left by a
/// creator that died before finishing).
fn has_no_shm(path: &Path) -> bool {
    NetDir::open(path)
        .and_then(|dir| dir.names())
        .is_ok_and(|names| !names.iter().any(|n| n == files::SHM_NAME))
}

/// Takes a free port slot and binds its doorbell: first a slot marked free
/// or dead, else one whose owner died without anybody noticing yet. The
/// lock decides who gets a slot; a slot whose doorbell name is held by a
/// file we may not replace (another member's, in the sticky directory) is
/// passed over.
fn claim_slot(shm: &SharedFile, dir: &NetDir) -> Result<(u32, Doorbell), OpenError> {
    let max_ports = shm.geometry().max_ports;
    let shm_error = |e| files::io_error(&dir.display_path(files::SHM_NAME), e);
    let mut occupied = Vec::new();
    for want_unclaimed in [true, false] {
        for index in 0..max_ports {
            let word = shm.port(index).state.load(Ordering::Acquire);
            if membership::claims_alive(word) == want_unclaimed {
                continue;
            }
            if !liveness::try_lock(shm.file(), index).map_err(shm_error)? {
                continue;
            }
            match Doorbell::bind(dir, index) {
                Ok(bell) => return Ok((index, bell)),
                Err(PlaceError::Occupied) => {
                    liveness::unlock(shm.file(), index).map_err(shm_error)?;
                    occupied.push(index);
                }
                Err(PlaceError::Io(e)) => {
                    let _ = liveness::unlock(shm.file(), index);
                    return Err(files::io_error(
                        &dir.display_path(&files::bell_name(index)),
                        e,
                    ));
                }
            }
        }
    }
    Err(OpenError::Full {
        path: dir.path().into(),
        max_ports,
        detail: why_full(shm, &occupied),
    })
}

/// Says who holds the slots of a full network: joined ports, processes
/// that took slot locks without joining, doorbell names we may not use.
fn why_full(shm: &SharedFile, occupied: &[u32]) -> String {
    let max_ports = shm.geometry().max_ports;
    let joined = (0..max_ports)
        .filter(|&i| membership::claims_alive(shm.port(i).state.load(Ordering::Acquire)))
        .count();
    let mut parts = vec![format!("{joined} joined")];
    let unjoined: Vec<u32> = (0..max_ports)
        .filter(|&i| {
            !membership::claims_alive(shm.port(i).state.load(Ordering::Acquire))
                && !occupied.contains(&i)
                && liveness::is_held(shm.file(), i).unwrap_or(false)
        })
        .collect();
    if !unjoined.is_empty() {
        let holders = liveness::holders(shm.file(), max_ports);
        let mut pids: Vec<u32> = holders
            .iter()
            .filter(|(slot, _)| unjoined.contains(slot))
            .map(|&(_, pid)| pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        let who = if pids.is_empty() {
            "by processes you cannot see".to_string()
        } else {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            format!("by pid {}", list.join(", "))
        };
        parts.push(format!(
            "{} locked without joining {who} (`ipn status` lists them)",
            unjoined.len()
        ));
    }
    if !occupied.is_empty() {
        let names: Vec<String> = occupied.iter().map(|&i| files::bell_name(i)).collect();
        parts.push(format!(
            "{} unusable by you: their doorbell names ({}) are held by files you may not \
             replace (the network's owner or root can remove them)",
            occupied.len(),
            names.join(", ")
        ));
    }
    format!(" ({})", parts.join("; "))
}
