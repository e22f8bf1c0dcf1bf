//! Switch mode: where a unicast frame goes.
//!
//! Every port learns, from the frames it scans in the other rings
//! (delivered to it or not), behind which port each Ethernet source address
//! lives. When it sends a unicast frame to a learned address, and that port
//! is still the same occupant (same generation), active and reading, the
//! frame is tagged with that port's number and only that port reads it.
//! Broadcast, multicast and unknown destinations are flooded to every port,
//! as a learning switch does.
//!
//! The table is private to each port: there is no shared table to corrupt
//! or to lock, and a wrong entry (a peer lying about its source address)
//! misdirects only that peer's own traffic — the same trust as on a real
//! Ethernet segment (DESIGN.md, trust model). The table is bounded; when
//! full it is cleared and relearned, so a flood of invented source addresses
//! costs memory no more than [`MAX_ENTRIES`] entries.

use std::collections::HashMap;

use crate::membership;
use crate::shm::layout::{CAP_READ, DST_ALL, STATE_ACTIVE};
use crate::shm::SharedFile;
use crate::sync::Ordering;

/// Most addresses a port remembers.
pub const MAX_ENTRIES: usize = 4096;

/// An Ethernet address.
pub type Mac = [u8; 6];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    port: u32,
    /// The port slot's state word when learned: names the occupant.
    state: u64,
}

/// One port's view of which address lives behind which port.
#[derive(Debug, Default)]
pub struct MacTable {
    entries: HashMap<Mac, Location>,
}

/// Whether an address is a group (broadcast or multicast) address.
fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

impl MacTable {
    /// Records that `source` sent from port `port`.
    pub fn learn(&mut self, shm: &SharedFile, source: Mac, port: u32) {
        if is_group(&source) {
            return; // group addresses are never sources; ignore forgeries
        }
        let state = shm.port(port).state.load(Ordering::Acquire);
        let location = Location { port, state };
        if self.entries.get(&source) == Some(&location) {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&source) {
            self.entries.clear();
        }
        self.entries.insert(source, location);
    }

    /// The port a frame goes to, or [`DST_ALL`] to flood it.
    pub fn destination(&self, shm: &SharedFile, frame: &[u8]) -> u32 {
        let Some(dst) = frame.get(..6) else {
            return DST_ALL;
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(dst);
        if is_group(&mac) {
            return DST_ALL;
        }
        match self.entries.get(&mac) {
            Some(location) if still_there(shm, location) => location.port,
            _ => DST_ALL,
        }
    }

    /// Forgets addresses behind ports that left, died or stopped reading.
    pub fn forget_departed(&mut self, shm: &SharedFile) {
        self.entries
            .retain(|_, location| still_there(shm, location));
    }
}

/// Whether the port that sent from an address is still the same, active,
/// reading occupant of its slot.
fn still_there(shm: &SharedFile, location: &Location) -> bool {
    let entry = shm.port(location.port);
    let state = entry.state.load(Ordering::Acquire);
    state == location.state
        && membership::state(state) == STATE_ACTIVE
        && entry.caps.load(Ordering::Acquire) & CAP_READ != 0
}
