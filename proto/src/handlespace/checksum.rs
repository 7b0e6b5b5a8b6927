//! The ENRP PE checksum (RFC 5353, rsplib `poolhandlespacechecksum.c`): a 16-bit one's-complement
//! sum, per owning registrar, over the pool handle bytes and the PE identifier of every element
//! the registrar owns.
//!
//! Each element contributes the 16-bit words of its pool handle (an odd last byte padded with a
//! zero byte) and the two words of its identifier in network byte order. The words are read
//! big-endian here (the Internet checksum convention, RFC 1071); rsplib reads them in host order,
//! which on a little-endian host gives the byte-swapped sum (RFC 1071 2(B): the one's-complement
//! sum is byte-order independent up to that swap). Whoever puts the value on the wire compares it
//! with rsplib's bytes.
//!
//! Sums are kept unfolded in a `u64` (no overflow below 2^47 elements), so adding an element on
//! insert and subtracting it on removal is exact; [`finish`] folds the carries and complements.

use crate::types::{PeId, PoolHandle};

/// Unfolded contribution of one element: the sum of its 16-bit words.
pub fn element_sum(handle: &PoolHandle, id: PeId) -> u64 {
    words_sum(handle.as_bytes()) + words_sum(&id.0.to_be_bytes())
}

fn words_sum(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    let mut sum: u64 = chunks
        .by_ref()
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds an unfolded sum to 16 bits (end-around carry) and complements it. The checksum of no
/// elements is 0xffff, as in rsplib.
pub fn finish(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The checksum computed from scratch over `(handle, id)` pairs.
pub fn compute<'a>(elements: impl IntoIterator<Item = (&'a PoolHandle, PeId)>) -> u16 {
    finish(elements.into_iter().map(|(h, id)| element_sum(h, id)).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value() {
        // "ab" = 0x6162, "c" padded = 0x6300, id 0x00010002 = 0x0001 + 0x0002.
        let h: PoolHandle = "abc".parse().unwrap();
        let sum = 0x6162 + 0x6300 + 0x0001 + 0x0002;
        assert_eq!(element_sum(&h, PeId(0x0001_0002)), sum);
        assert_eq!(finish(sum), !(sum as u16));
        assert_eq!(finish(0), 0xffff);
    }

    #[test]
    fn folding_carries() {
        // 0xffff + 0x0001 = 0x10000 -> folds to 0x0001 -> complement 0xfffe.
        assert_eq!(finish(0x1_0000), 0xfffe);
    }
}
