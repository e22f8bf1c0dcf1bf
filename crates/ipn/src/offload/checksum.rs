//! The Internet checksum (RFC 1071): ones' complement sums of big-endian
//! 16-bit words, kept wide while they are added up and folded to 16 bits
//! at the end.
//!
//! Invariants: [`add`] takes and returns a partial sum below 2^40, so that
//! any number of calls, over any lengths, never overflows; a sum of parts
//! equals the sum of their concatenation when every part but the last has
//! an even length.

/// Adds `bytes`, as big-endian 16-bit words (an odd last byte padded with
/// zero), to `acc` (below 2^40), without folding all the way: the result
/// is below 2^40 again, whatever the length.
pub(crate) fn add(bytes: &[u8], acc: u64) -> u64 {
    // A block of 1 MiB sums to less than 2^18; fold the carries back in
    // after each, so that no length can overflow.
    bytes.chunks(1 << 20).fold(acc, |acc, block| {
        let sum = acc + sum_block(block);
        (sum & 0xffff_ffff) + (sum >> 32)
    })
}

/// The sum of a block of at most 1 MiB as big-endian 16-bit words.
fn sum_block(bytes: &[u8]) -> u64 {
    // Four bytes at a time in the host's byte order, which the compiler
    // turns into wide vector adds (three times faster than big-endian
    // loads on x86): a ones' complement sum of byte-swapped words is the
    // byte-swapped sum (RFC 1071, 2.(B)), so the folded result is swapped
    // back on a little-endian host.
    let mut native = 0u64;
    let mut wide = bytes.chunks_exact(4);
    for c in &mut wide {
        native += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    let folded = fold(native);
    let mut acc = u64::from(if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    });
    let mut words = wide.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// The ones' complement sum (RFC 1071) of `parts`, one after the other,
/// as big-endian 16-bit words, folded to 16 bits (not inverted). Every
/// part but the last must have an even length. A packet whose checksum
/// field is right sums, with its pseudo-header, to `0xffff`.
pub fn ones_complement_sum(parts: &[&[u8]]) -> u16 {
    fold(parts.iter().fold(0, |acc, part| add(part, acc)))
}

/// Folds a sum into 16 bits, carries added back in.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field's value for a sum taken with the field at zero.
pub(crate) fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The sum of a TCP or UDP pseudo-header: the addresses (both, as they
/// lie in the IP header), the protocol and the L4 length.
pub(crate) fn pseudo_header(addresses: &[u8], protocol: u8, l4_len: usize) -> u64 {
    add(addresses, u64::from(protocol) + l4_len as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The checksum check of RFC 1071's reference loop, written apart from
    /// the module's: 16 bits at a time into 32, carries folded at the end.
    /// A correct header or segment sums to 0xffff.
    pub(crate) fn reference_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u32::from(b));
            sum += hi | lo;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn checksums_match_known_values() {
        // RFC 1071, section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let rfc = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(&rfc, 0)), 0xddf2);
        // Every split, as long as the first parts stay word-aligned.
        assert_eq!(fold(add(&rfc[4..], add(&rfc[..4], 0))), 0xddf2);
        assert_eq!(
            fold(add(&[0xab], 0)),
            0xab00,
            "an odd byte is the high half"
        );
        // The IPv4 header of the classic worked example: checksum b861.
        let mut ip = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(add(&ip, 0)), 0xb861);
        ip[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(reference_sum(&[&ip]), 0xffff);
        // Long inputs fold their carries: 3 MiB of 0xff sums to 0xffff.
        assert_eq!(fold(add(&vec![0xff; 3 << 20], 0)), 0xffff);
        assert_eq!(fold(add(&[], 0)), 0);
        // Sums of every length agree with the reference loop.
        let bytes: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..bytes.len() {
            assert_eq!(fold(add(&bytes[..len], 0)), reference_sum(&[&bytes[..len]]));
        }
    }
}
