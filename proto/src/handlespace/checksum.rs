//! The ENRP PE checksum (RFC 5353, rsplib `poolhandlespacechecksum.c`): a 16-bit one's-complement
//! sum, per owning registrar, over the pool handle bytes and the PE identifier of every element
//! the registrar owns.
//!
//! Each element contributes the 16-bit words of its pool handle (an odd last byte padded with a
//! zero byte) and the two words of its identifier in network byte order. The words are read
//! big-endian here (the Internet checksum convention, RFC 1071) and the value goes on the wire
//! big-endian. rsplib (`poolelementnode-template_impl.h`, `poolhandlespacechecksum.c`) reads the
//! same bytes as host-order words, sums and complements them, and copies the host-order `u16`
//! into the parameter without `htons`. On a little-endian host its value is the byte swap of
//! ours (RFC 1071 2(B): the one's-complement sum is byte-order independent up to that swap), and
//! writing that swapped value in little-endian memory order puts exactly our big-endian bytes on
//! the wire. The test `rsplib_little_endian_host_puts_the_same_bytes_on_the_wire` replays rsplib's
//! steps on explicit little-endian words; the interop lab compares with rsplib's Presence.
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

    /// rsplib's algorithm, step by step as on x86: 16-bit loads in little-endian order, the odd
    /// last byte copied into the low-address byte of a zeroed word, end-around carry, complement,
    /// and the host-order result copied into the message.
    fn rsplib_wire_bytes(elements: &[(&[u8], u32)]) -> [u8; 2] {
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            let mut it = bytes.chunks_exact(2);
            for w in it.by_ref() {
                sum = sum.wrapping_add(u32::from(u16::from_le_bytes([w[0], w[1]])));
            }
            if let [last] = it.remainder() {
                sum = sum.wrapping_add(u32::from(u16::from_le_bytes([*last, 0])));
            }
        };
        for (handle, id) in elements {
            add(handle);
            add(&id.to_be_bytes()); // htonl(Identifier)
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        (!(sum as u16)).to_le_bytes()
    }

    #[test]
    fn rsplib_little_endian_host_puts_the_same_bytes_on_the_wire() {
        let cases: &[&[(&[u8], u32)]] = &[
            &[],
            &[(b"EchoPool", 0x1234_5678)],
            &[(b"abc", 1), (b"abc", 2), (b"web", 0xffff_ffff)],
            &[
                (b"x", 0xdead_beef),
                (b"PingPongPool", 0x0102_0304),
                (b"\xff\xfe\x00", 7),
            ],
        ];
        for case in cases {
            let ours = finish(
                case.iter()
                    .map(|(h, id)| element_sum(&PoolHandle::new(h.to_vec()).unwrap(), PeId(*id)))
                    .sum(),
            );
            assert_eq!(ours.to_be_bytes(), rsplib_wire_bytes(case), "{case:?}");
        }
    }

    #[test]
    fn folding_carries() {
        // 0xffff + 0x0001 = 0x10000 -> folds to 0x0001 -> complement 0xfffe.
        assert_eq!(finish(0x1_0000), 0xfffe);
    }
}
