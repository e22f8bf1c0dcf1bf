//! Switch mode: where a unicast frame goes.
//!
//! Every port learns, from the frames it reads in the other rings
//! (delivered to it or not), behind which port each Ethernet source address
//! lives, in each VLAN: the table is keyed by (VLAN, address), as on a
//! switch with per-VLAN learning, so the same address may live behind
//! different ports in different VLANs. When it sends a unicast frame to a
//! learned address of the frame's VLAN, and that port is still the same
//! occupant (same generation), active and reading, the frame is tagged with
//! that port's number and only that port reads it. Broadcast, multicast and
//! unknown destinations are flooded to every port, as a learning switch
//! does.
//!
//! The table is private to each port: there is no shared table to corrupt
//! or to lock, and a wrong entry (a peer lying about its source address)
//! misdirects only that peer's own traffic — the same trust as on a real
//! Ethernet segment (docs/THREAT-MODEL.md). The table is bounded; when full
//! it is cleared and relearned, so a flood of invented source addresses
//! costs memory no more than [`MAX_ENTRIES`] entries.

use std::collections::HashMap;

use crate::ethernet::{is_group, Mac, Tci};
use crate::membership;
use crate::shm::layout::{CAP_READ, DST_ALL, STATE_ACTIVE};
use crate::shm::SharedFile;
use crate::sync::Ordering;

/// Most addresses a port remembers.
pub const MAX_ENTRIES: usize = 4096;

/// The VLAN part of a table key: the VLAN ID, or [`UNTAGGED`].
pub type VlanKey = u16;
/// The key of frames without an 802.1Q tag.
pub const UNTAGGED: VlanKey = 0xffff;

/// The table key of a frame's VLAN.
pub fn vlan_key(tag: Option<Tci>) -> VlanKey {
    tag.map_or(UNTAGGED, Tci::vid)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    port: u32,
    /// The port slot's state word when learned: names the occupant.
    state: u64,
}

/// One port's view of which address lives behind which port, per VLAN.
#[derive(Debug, Default)]
pub struct MacTable {
    entries: HashMap<(VlanKey, Mac), Location>,
}

impl MacTable {
    /// Records that `source` sent from port `port` in VLAN `vlan`.
    pub fn learn(&mut self, shm: &SharedFile, vlan: VlanKey, source: Mac, port: u32) {
        if is_group(&source) {
            return; // group addresses are never sources; ignore forgeries
        }
        let state = shm.port(port).state.load(Ordering::Acquire);
        let location = Location { port, state };
        let key = (vlan, source);
        if self.entries.get(&key) == Some(&location) {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&key) {
            self.entries.clear();
        }
        self.entries.insert(key, location);
    }

    /// The port a frame to `dst` in VLAN `vlan` goes to, or [`DST_ALL`] to
    /// flood it.
    pub fn destination(&self, shm: &SharedFile, vlan: VlanKey, dst: &Mac) -> u32 {
        if is_group(dst) {
            return DST_ALL;
        }
        match self.entries.get(&(vlan, *dst)) {
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
