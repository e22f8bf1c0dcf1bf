//! The Internet checksum (RFC 1071) as the tests compute it themselves,
//! to check the library's arithmetic rather than trust it: the reference
//! loop, byte by byte, with nothing shared with `ipn::offload`.
//!
//! `parts` are read as one byte string (a pseudo-header, then a segment):
//! 16-bit big-endian words, an odd last byte padded with a zero.

/// RFC 1071's reference loop over `parts`: the words summed, carries
/// folded back in; not complemented. Over a header or a pseudo-header and
/// segment whose checksum is right, 0xffff.
pub fn reference_fold(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut high: Option<u8> = None;
    for &byte in parts.iter().flat_map(|p| p.iter()) {
        match high.take() {
            None => high = Some(byte),
            Some(hi) => sum += u32::from(hi) << 8 | u32::from(byte),
        }
        // Folded as it goes: no length of input can overflow.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let Some(hi) = high {
        sum += u32::from(hi) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum to write into a header whose checksum field is zero in
/// `parts`: the complement of [`reference_fold`]. Over a header whose
/// checksum is right, 0.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    !reference_fold(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1071s_example_and_a_checked_ipv4_header() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(reference_fold(&[&bytes]), 0xddf2);
        // Split anywhere, even mid-word: the same string, the same sum.
        assert_eq!(reference_fold(&[&bytes[..3], &bytes[3..]]), 0xddf2);
        // An odd length: the last byte is the high half of a word.
        assert_eq!(reference_fold(&[&[0x12, 0x34, 0x56]]), 0x1234 + 0x5600);
        let mut header = [
            0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0,
            0xc7,
        ];
        let check = internet_checksum(&[&header]);
        assert_eq!(check, 0xb861);
        header[10..12].copy_from_slice(&check.to_be_bytes());
        assert_eq!(reference_fold(&[&header]), 0xffff);
        assert_eq!(internet_checksum(&[&header]), 0);
    }
}
