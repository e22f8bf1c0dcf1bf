//! The port table: who is joined, reading, writing, dead.
//!
//! A slot's `state` word is `generation << 8 | state`. Ownership of a slot
//! is decided by its lock (see `liveness`); the state word only tells the
//! other ports what the owner is doing, so they can skip free slots without
//! a system call. The only writes to another port's state word are the
//! compare-and-swap `ACTIVE -> DEAD` of a port whose lock was found free;
//! the generation in the compared word makes that swap fail if the slot was
//! meanwhile reclaimed. Every change bumps `Header::membership_epoch`.

use crate::ethernet::{Mac, Vlan, VlanSet};
use crate::liveness;
use crate::shm::layout::*;
use crate::shm::SharedFile;
use crate::sync::Ordering;

/// Reader and writer counts: the AF_IPN "numreaders/numwriters" event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Membership {
    /// Live ports that read.
    pub readers: u32,
    /// Live ports that write.
    pub writers: u32,
}

pub fn state(word: u64) -> u64 {
    word & 0xff
}

pub fn generation(word: u64) -> u64 {
    word >> 8
}

pub fn word(generation: u64, state: u64) -> u64 {
    generation << 8 | state
}

/// Whether the slot's owner claims to be alive (joining or active).
pub fn claims_alive(word: u64) -> bool {
    matches!(state(word), STATE_JOINING | STATE_ACTIVE)
}

pub fn counts(shm: &SharedFile) -> Membership {
    let mut counts = Membership::default();
    for index in 0..shm.geometry().max_ports {
        let entry = shm.port(index);
        if state(entry.state.load(Ordering::Acquire)) == STATE_ACTIVE {
            let caps = entry.caps.load(Ordering::Acquire);
            counts.readers += u32::from(caps & CAP_READ != 0);
            counts.writers += u32::from(caps & CAP_WRITE != 0);
        }
    }
    counts
}

/// Marks as dead every port (other than `me`) that claims to be alive but
/// whose lock is free. Returns how many were found. Needs a writable map.
pub fn sweep_dead(shm: &SharedFile, me: Option<u32>) -> usize {
    if !shm.writable() {
        return 0;
    }
    let mut found = 0;
    for index in 0..shm.geometry().max_ports {
        if Some(index) == me {
            continue;
        }
        let entry = shm.port(index);
        let old = entry.state.load(Ordering::Acquire);
        if !claims_alive(old) || liveness::is_held(shm.file(), index).unwrap_or(true) {
            continue;
        }
        if mark_dead(shm, index, old) {
            found += 1;
        }
    }
    if found > 0 {
        shm.header().membership_epoch.fetch_add(1, Ordering::AcqRel);
    }
    found
}

/// Marks slot `index`, whose state word was `old` when its lock was found
/// free, as dead; `false` if the word changed since (the slot was left or
/// reclaimed). The caller then bumps the membership epoch.
pub fn mark_dead(shm: &SharedFile, index: u32, old: u64) -> bool {
    let dead = word(generation(old), STATE_DEAD);
    shm.port(index)
        .state
        .compare_exchange(old, dead, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

pub fn write_description(entry: &PortEntry, text: &str) {
    let mut bytes = [0u8; DESCRIPTION_LEN];
    let mut len = text.len().min(DESCRIPTION_LEN);
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
    for (word, chunk) in entry.description.iter().zip(bytes.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        word.store(u64::from_le_bytes(w), Ordering::Relaxed);
    }
}

pub fn read_description(entry: &PortEntry) -> String {
    let mut bytes = Vec::with_capacity(DESCRIPTION_LEN);
    for word in &entry.description {
        bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Publishes port `index`'s VLAN membership, for `status`.
pub fn write_vlan(shm: &SharedFile, index: u32, vlan: &Vlan) {
    let entry = shm.vlan(index);
    let r = Ordering::Relaxed;
    let (mode, vid, trunk) = match vlan {
        Vlan::Transparent => (VLAN_TRANSPARENT, 0, None),
        Vlan::Access(vid) => (VLAN_ACCESS, *vid, None),
        Vlan::Trunk { vlans, native } => (VLAN_TRUNK, native.unwrap_or(0), Some(vlans)),
    };
    entry.mode.store(mode, r);
    entry.vid.store(u32::from(vid), r);
    let empty = VlanSet::new();
    for (word, bits) in entry.trunk.iter().zip(trunk.unwrap_or(&empty).words()) {
        word.store(*bits, r);
    }
    entry.address_count.store(0, r);
}

/// Port `index`'s VLAN membership as it published it (a scribbled entry
/// reads as some other membership, never as an error).
pub fn read_vlan(shm: &SharedFile, index: u32) -> Vlan {
    let entry = shm.vlan(index);
    let r = Ordering::Relaxed;
    let vid = (entry.vid.load(r) & 0x0fff) as u16;
    match entry.mode.load(r) {
        VLAN_ACCESS => Vlan::Access(vid),
        VLAN_TRUNK => Vlan::Trunk {
            vlans: VlanSet::from_words(std::array::from_fn(|i| entry.trunk[i].load(r))),
            native: (vid != 0).then_some(vid),
        },
        _ => Vlan::Transparent,
    }
}

/// Publishes that port `index` sends from `source` in VLAN `vlan` (switch
/// mode, for `status`); beyond [`PUBLISHED_ADDRESSES`] the oldest goes.
pub fn publish_address(shm: &SharedFile, index: u32, vlan: u16, source: Mac) {
    let entry = shm.vlan(index);
    let count = entry.address_count.load(Ordering::Relaxed);
    let mut word = [0u8; 8];
    word[2..].copy_from_slice(&source);
    let value = u64::from(vlan) << 48 | u64::from_be_bytes(word);
    entry.addresses[(count % PUBLISHED_ADDRESSES as u64) as usize].store(value, Ordering::Relaxed);
    entry
        .address_count
        .store(count.wrapping_add(1), Ordering::Release);
}

/// The (VLAN, address) pairs port `index` published, oldest first.
pub fn read_addresses(shm: &SharedFile, index: u32) -> Vec<(u16, Mac)> {
    let entry = shm.vlan(index);
    let count = entry.address_count.load(Ordering::Acquire);
    let kept = count.min(PUBLISHED_ADDRESSES as u64);
    (count - kept..count)
        .map(|i| {
            let value =
                entry.addresses[(i % PUBLISHED_ADDRESSES as u64) as usize].load(Ordering::Relaxed);
            let bytes = value.to_be_bytes();
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&bytes[2..]);
            ((value >> 48) as u16, mac)
        })
        .collect()
}
