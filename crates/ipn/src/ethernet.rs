//! Ethernet frames as ipn sees them: addresses, the 802.1Q tag, and VLAN
//! membership.
//!
//! [`Frame`] is a checked view of a frame's bytes: one place knows where
//! the addresses and the tag are, so that switching, VLANs, VXLAN and grab
//! ask it instead of repeating byte offsets. Like smoltcp's wire types, a
//! view is made with [`Frame::new_checked`], which refuses a frame too
//! short for its header, and its accessors never panic.
//!
//! [`Vlan`] is a port's 802.1Q membership: transparent (every frame as on
//! the wire), access (untagged at the port, one VLAN on the network) or
//! trunk (tagged frames of a set of VLANs, and optionally one native VLAN
//! untagged).

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];

/// The broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

/// Bytes of the Ethernet header: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;
/// Bytes of an 802.1Q tag: TPID 0x8100 and the TCI.
pub const TAG_LEN: usize = 4;
/// The EtherType (TPID) of an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// Lowest and highest VLAN IDs a port can belong to (0 means "no VLAN"
/// in a priority tag, 4095 is reserved).
pub const VLAN_MIN: u16 = 1;
/// See [`VLAN_MIN`].
pub const VLAN_MAX: u16 = 4094;

/// Whether `mac` is a group (broadcast or multicast) address.
pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 != 0
}

/// A checked view of an Ethernet frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// A view of `bytes`, if they hold at least an Ethernet header (and a
    /// whole tag, if the frame says it is tagged).
    pub fn new_checked(bytes: &'a [u8]) -> Option<Frame<'a>> {
        let frame = Frame { bytes };
        if bytes.len() < HEADER_LEN
            || (frame.outer_ethertype() == ETHERTYPE_VLAN && bytes.len() < HEADER_LEN + TAG_LEN)
        {
            return None;
        }
        Some(frame)
    }

    /// The whole frame.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Destination address.
    pub fn dst(&self) -> Mac {
        self.mac(0)
    }

    /// Source address.
    pub fn src(&self) -> Mac {
        self.mac(6)
    }

    fn mac(&self, at: usize) -> Mac {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.bytes[at..at + 6]);
        mac
    }

    fn outer_ethertype(&self) -> u16 {
        u16::from_be_bytes([self.bytes[12], self.bytes[13]])
    }

    /// The 802.1Q tag, if the frame carries one.
    pub fn tag(&self) -> Option<Tci> {
        (self.outer_ethertype() == ETHERTYPE_VLAN)
            .then(|| Tci(u16::from_be_bytes([self.bytes[14], self.bytes[15]])))
    }

    /// The EtherType after the tag, if any.
    pub fn ethertype(&self) -> u16 {
        match self.tag() {
            Some(_) => u16::from_be_bytes([self.bytes[16], self.bytes[17]]),
            None => self.outer_ethertype(),
        }
    }

    /// The frame without its tag, as two pieces (addresses; the rest from
    /// the inner EtherType on), so that it can be copied without the tag
    /// and without an allocation. Untagged: the whole frame and nothing.
    pub fn untagged_parts(&self) -> (&'a [u8], &'a [u8]) {
        match self.tag() {
            Some(_) => (
                &self.bytes[..ADDRESSES_LEN],
                &self.bytes[ADDRESSES_LEN + TAG_LEN..],
            ),
            None => (self.bytes, &[]),
        }
    }
}

/// A checked, writable view of an Ethernet frame: [`Frame`]'s getters
/// (through [`FrameMut::frame`]) and setters for what a frame's length
/// does not depend on.
#[derive(Debug)]
pub struct FrameMut<'a> {
    bytes: &'a mut [u8],
}

impl<'a> FrameMut<'a> {
    /// A view of `bytes`, on the terms of [`Frame::new_checked`].
    pub fn new_checked(bytes: &'a mut [u8]) -> Option<FrameMut<'a>> {
        Frame::new_checked(bytes)?;
        Some(FrameMut { bytes })
    }

    /// The read-only view.
    pub fn frame(&self) -> Frame<'_> {
        Frame { bytes: self.bytes }
    }

    /// Sets the destination address.
    pub fn set_dst(&mut self, mac: Mac) {
        self.bytes[..6].copy_from_slice(&mac);
    }

    /// Sets the source address.
    pub fn set_src(&mut self, mac: Mac) {
        self.bytes[6..ADDRESSES_LEN].copy_from_slice(&mac);
    }

    /// Sets the tag's TCI; false (and nothing changed) if the frame is
    /// untagged: a tag changes its length ([`insert_tag`]).
    pub fn set_tci(&mut self, tci: Tci) -> bool {
        if self.frame().tag().is_none() {
            return false;
        }
        self.bytes[ADDRESSES_LEN + 2..ADDRESSES_LEN + TAG_LEN]
            .copy_from_slice(&tci.0.to_be_bytes());
        true
    }
}

/// Bytes of the two addresses at the start of a frame, where a tag goes.
pub const ADDRESSES_LEN: usize = 12;

/// Puts an 802.1Q tag (`tpid`, `tci`) after the addresses of the frame in
/// `buf[..len]`, moving the rest on by [`TAG_LEN`]; returns the frame's new
/// length. `None`, and nothing moved, if `len` holds no addresses or `buf`
/// has no room for the tag.
pub fn insert_tag(buf: &mut [u8], len: usize, tpid: u16, tci: Tci) -> Option<usize> {
    if len < ADDRESSES_LEN || len.checked_add(TAG_LEN)? > buf.len() {
        return None;
    }
    buf.copy_within(ADDRESSES_LEN..len, ADDRESSES_LEN + TAG_LEN);
    buf[ADDRESSES_LEN..ADDRESSES_LEN + 2].copy_from_slice(&tpid.to_be_bytes());
    buf[ADDRESSES_LEN + 2..ADDRESSES_LEN + TAG_LEN].copy_from_slice(&tci.0.to_be_bytes());
    Some(len + TAG_LEN)
}

/// An 802.1Q tag control information word: priority (3 bits), drop
/// eligible (1 bit), VLAN ID (12 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tci(pub u16);

impl Tci {
    /// A tag for VLAN `vid`, priority 0.
    pub fn for_vlan(vid: u16) -> Tci {
        Tci(vid & 0x0fff)
    }

    /// The VLAN ID.
    pub fn vid(self) -> u16 {
        self.0 & 0x0fff
    }

    /// The tag's four bytes on the wire: TPID, TCI.
    pub fn to_bytes(self) -> [u8; TAG_LEN] {
        let [a, b] = ETHERTYPE_VLAN.to_be_bytes();
        let [c, d] = self.0.to_be_bytes();
        [a, b, c, d]
    }
}

/// A set of VLAN IDs (0..=4095): 512 bytes, boxed so that a [`Vlan`]
/// stays small.
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet {
    bits: Box<[u64; 64]>,
}

impl VlanSet {
    /// The empty set.
    pub fn new() -> VlanSet {
        VlanSet {
            bits: Box::new([0; 64]),
        }
    }

    /// Adds `vid`.
    pub fn insert(&mut self, vid: u16) {
        let vid = usize::from(vid & 0x0fff);
        self.bits[vid / 64] |= 1 << (vid % 64);
    }

    /// Whether `vid` is in the set.
    pub fn contains(&self, vid: u16) -> bool {
        let vid = usize::from(vid & 0x0fff);
        self.bits[vid / 64] & (1 << (vid % 64)) != 0
    }

    /// The IDs in the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..4096u16).filter(|&v| self.contains(v))
    }

    /// The set as 64 words (bit `v % 64` of word `v / 64`).
    pub fn words(&self) -> &[u64; 64] {
        &self.bits
    }

    /// A set from 64 words.
    pub fn from_words(bits: [u64; 64]) -> VlanSet {
        VlanSet {
            bits: Box::new(bits),
        }
    }
}

impl Default for VlanSet {
    fn default() -> Self {
        VlanSet::new()
    }
}

impl std::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<u16> for VlanSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut set = VlanSet::new();
        for vid in iter {
            set.insert(vid);
        }
        set
    }
}

/// A port's 802.1Q membership.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Vlan {
    /// Every frame as it is on the wire, tagged or not, both ways (the
    /// default: `ipn dump` and every existing user see everything).
    #[default]
    Transparent,
    /// An access port of VLAN `vid`: untagged at the port. What it sends
    /// belongs to that VLAN; it receives that VLAN's frames only,
    /// untagged. Tagged frames it sends are dropped (and counted).
    Access(u16),
    /// A trunk: frames of `vlans` arrive tagged; tagged frames it sends must
    /// belong to them. With `native`, untagged frames it sends belong to
    /// that VLAN and that VLAN's frames arrive untagged; without, untagged
    /// frames it sends are dropped. Dropped frames are counted.
    Trunk {
        /// The VLANs it carries tagged.
        vlans: VlanSet,
        /// The VLAN it carries untagged, if any.
        native: Option<u16>,
    },
}

/// What a port does with a frame it sends, by its membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// Goes on the network with this tag (`None`: untagged).
    Accept(Option<Tci>),
    /// Does not belong to the port's VLANs: dropped, counted.
    Drop,
}

/// How a frame on the network reaches a port, by its membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Delivered as it is on the network: with its tag, if any.
    AsIs,
    /// Delivered without its tag.
    Untagged,
    /// Not for this port (another VLAN).
    Skip,
}

impl Vlan {
    /// Checks the IDs: 1..=4094 everywhere.
    pub fn validate(&self) -> Result<(), String> {
        let check = |vid: u16| {
            if (VLAN_MIN..=VLAN_MAX).contains(&vid) {
                Ok(())
            } else {
                Err(format!(
                    "VLAN {vid} is out of range: IDs go from {VLAN_MIN} to {VLAN_MAX}"
                ))
            }
        };
        match self {
            Vlan::Transparent => Ok(()),
            Vlan::Access(vid) => check(*vid),
            Vlan::Trunk { vlans, native } => {
                if vlans.contains(0) || vlans.contains(4095) {
                    return Err(format!(
                        "VLANs 0 and 4095 are reserved: IDs go from {VLAN_MIN} to {VLAN_MAX}"
                    ));
                }
                if vlans.iter().next().is_none() && native.is_none() {
                    return Err("a trunk needs at least one VLAN".into());
                }
                native.map_or(Ok(()), check)
            }
        }
    }

    /// A frame this port sends, with tag `tag` (as the port gave it).
    ///
    /// A priority tag (VLAN ID 0) from an access port or a trunk carries
    /// only the frame's priority: for membership the frame is untagged
    /// (802.1Q §6.9), so it belongs to the access VLAN or the native one,
    /// and keeps its priority bits. A transparent port's frames go as
    /// they are.
    pub fn ingress(&self, tag: Option<Tci>) -> Ingress {
        let (tag, priority) = match tag {
            Some(tci) if tci.vid() == 0 && !matches!(self, Vlan::Transparent) => {
                (None, tci.0 & !0x0fff)
            }
            tag => (tag, 0),
        };
        let into = |vid: u16| Ingress::Accept(Some(Tci(priority | Tci::for_vlan(vid).0)));
        match (self, tag) {
            (Vlan::Transparent, tag) => Ingress::Accept(tag),
            (Vlan::Access(vid), None) => into(*vid),
            (Vlan::Access(_), Some(_)) => Ingress::Drop,
            (Vlan::Trunk { vlans, native }, Some(tci)) => {
                if vlans.contains(tci.vid()) || *native == Some(tci.vid()) {
                    Ingress::Accept(Some(tci))
                } else {
                    Ingress::Drop
                }
            }
            (Vlan::Trunk { native, .. }, None) => match native {
                Some(vid) => into(*vid),
                None => Ingress::Drop,
            },
        }
    }

    /// A frame on the network with tag `tag`, offered to this port.
    pub fn egress(&self, tag: Option<Tci>) -> Egress {
        match (self, tag) {
            (Vlan::Transparent, _) => Egress::AsIs,
            (_, None) => Egress::Skip,
            (Vlan::Access(vid), Some(tci)) if tci.vid() == *vid => Egress::Untagged,
            (Vlan::Access(_), Some(_)) => Egress::Skip,
            (Vlan::Trunk { native, .. }, Some(tci)) if *native == Some(tci.vid()) => {
                Egress::Untagged
            }
            (Vlan::Trunk { vlans, .. }, Some(tci)) if vlans.contains(tci.vid()) => Egress::AsIs,
            (Vlan::Trunk { .. }, Some(_)) => Egress::Skip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(vid: u16) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(&BROADCAST);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..16].copy_from_slice(&Tci::for_vlan(vid).to_bytes());
        f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
        f
    }

    #[test]
    fn a_view_finds_addresses_tag_and_ethertype_and_refuses_short_frames() {
        let f = tagged(4000);
        let view = Frame::new_checked(&f).unwrap();
        assert_eq!(view.dst(), BROADCAST);
        assert_eq!(view.src(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(
            view.tag().map(Tci::vid),
            Some(4000),
            "all 12 bits, not & 0x3ff"
        );
        assert_eq!(view.ethertype(), 0x0800);
        let (a, b) = view.untagged_parts();
        assert_eq!(a.len() + b.len(), 60);
        assert_eq!(&b[..2], &[0x08, 0x00]);
        assert!(Frame::new_checked(&f[..13]).is_none());
        assert!(Frame::new_checked(&f[..15]).is_none(), "tag cut short");
        assert!(Frame::new_checked(&f[..14]).is_none());
    }

    #[test]
    fn a_mutable_view_sets_addresses_and_tci_and_a_tag_goes_in_after_the_addresses() {
        let mut f = tagged(10);
        let mut view = FrameMut::new_checked(&mut f).unwrap();
        view.set_dst([2, 0, 0, 0, 0, 9]);
        view.set_src([2, 0, 0, 0, 0, 8]);
        assert!(view.set_tci(Tci::for_vlan(20)));
        let read = view.frame();
        assert_eq!(read.dst(), [2, 0, 0, 0, 0, 9]);
        assert_eq!(read.src(), [2, 0, 0, 0, 0, 8]);
        assert_eq!(read.tag(), Some(Tci::for_vlan(20)));
        assert_eq!(read.ethertype(), 0x0800, "the rest untouched");
        assert!(FrameMut::new_checked(&mut f[..15]).is_none());

        // Untagged: no TCI to set; a tag put in moves the rest on.
        let mut buf = vec![0u8; 64];
        let (addresses, rest) = Frame::new_checked(&f).unwrap().untagged_parts();
        let untagged = [addresses, rest].concat();
        buf[..60].copy_from_slice(&untagged);
        assert!(!FrameMut::new_checked(&mut buf[..60])
            .unwrap()
            .set_tci(Tci(1)));
        assert_eq!(
            insert_tag(&mut buf, 60, ETHERTYPE_VLAN, Tci::for_vlan(20)),
            Some(64)
        );
        assert_eq!(buf, f, "the tag back where it was");
        // No room, or no addresses: nothing moves.
        let before = buf.clone();
        assert_eq!(insert_tag(&mut buf, 61, ETHERTYPE_VLAN, Tci(1)), None);
        assert_eq!(insert_tag(&mut buf, 11, ETHERTYPE_VLAN, Tci(1)), None);
        assert_eq!(buf, before);
    }

    #[test]
    fn frames_never_cross_vlans() {
        let access10 = Vlan::Access(10);
        let trunk = Vlan::Trunk {
            vlans: [10, 20].into_iter().collect(),
            native: Some(1),
        };
        let t = |v| Some(Tci::for_vlan(v));
        assert_eq!(access10.ingress(None), Ingress::Accept(t(10)));
        assert_eq!(access10.ingress(t(10)), Ingress::Drop);
        assert_eq!(access10.egress(t(10)), Egress::Untagged);
        assert_eq!(access10.egress(t(20)), Egress::Skip);
        assert_eq!(access10.egress(None), Egress::Skip);
        assert_eq!(trunk.ingress(t(20)), Ingress::Accept(t(20)));
        assert_eq!(trunk.ingress(t(30)), Ingress::Drop);
        assert_eq!(trunk.ingress(None), Ingress::Accept(t(1)));
        assert_eq!(trunk.egress(t(20)), Egress::AsIs);
        assert_eq!(trunk.egress(t(1)), Egress::Untagged);
        assert_eq!(trunk.egress(t(30)), Egress::Skip);
        assert_eq!(Vlan::Transparent.egress(t(30)), Egress::AsIs);
        assert_eq!(Vlan::Transparent.ingress(None), Ingress::Accept(None));
    }

    #[test]
    fn a_priority_tag_counts_as_untagged_and_keeps_its_priority() {
        let priority5 = Some(Tci(0xa000));
        assert_eq!(
            Vlan::Access(10).ingress(priority5),
            Ingress::Accept(Some(Tci(0xa00a)))
        );
        let trunk = |native| Vlan::Trunk {
            vlans: [10].into_iter().collect(),
            native,
        };
        assert_eq!(
            trunk(Some(1)).ingress(priority5),
            Ingress::Accept(Some(Tci(0xa001)))
        );
        assert_eq!(trunk(None).ingress(priority5), Ingress::Drop);
        assert_eq!(
            Vlan::Transparent.ingress(priority5),
            Ingress::Accept(priority5)
        );
    }

    #[test]
    fn vlan_ids_are_checked() {
        assert!(Vlan::Access(0).validate().is_err());
        assert!(Vlan::Access(4095).validate().is_err());
        assert!(Vlan::Access(4094).validate().is_ok());
    }
}
