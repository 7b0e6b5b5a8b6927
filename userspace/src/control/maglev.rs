//! Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016), computed in userspace only.
//!
//! Each element has a permutation of the table's slots given by `(offset, skip)`, both derived
//! from two hashes of a stable element key (its address and port), so every balancer computes
//! the same table for the same pool. Elements take turns claiming their next preferred free slot;
//! weights are honoured by giving each element credit proportional to its weight every round,
//! and a turn per full `max_weight` of credit, so an element of weight w gets w/Σw of the table.
//! The table size must be a prime so that every `skip` generates a full permutation.

use rsplb_common::NO_ELEMENT;

/// One element as Maglev sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaglevElement<'a> {
    /// Stable identity (e.g. `198.18.1.2:80`): decides the element's permutation.
    pub key: &'a [u8],
    /// 1..=65535; 0 means "takes no slots" (draining).
    pub weight: u32,
    /// Value written into the table (the element slot).
    pub id: u32,
}

/// Why a table size is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("Maglev table size {0} is not a prime (try 65537, 131071, 16381, 4093 or 251)")]
    NotPrime(u32),
    #[error("Maglev table size {0} is out of range (3..=16777213)")]
    OutOfRange(u32),
}

/// Largest accepted table size (2^24 - 3, a prime): 64 MiB per table is already huge.
pub const MAX_SIZE: u32 = 16_777_213;

pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let n = n as u64;
    let mut d = 3u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

pub fn check_size(size: u32) -> Result<(), SizeError> {
    if !(3..=MAX_SIZE).contains(&size) {
        return Err(SizeError::OutOfRange(size));
    }
    if !is_prime(size) {
        return Err(SizeError::NotPrime(size));
    }
    Ok(())
}

/// 64-bit FNV-1a with a seed, finished by the splitmix64 mixer: stable across versions and
/// machines (never `std`'s randomised hasher), and good enough to spread permutations.
fn hash(key: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Builds the lookup table of `size` entries (a prime, checked by [`check_size`]).
/// An empty pool (or one where every weight is 0) gives `NO_ELEMENT` everywhere.
/// A digest of a table as the elements it sends each entry to, by their stable keys (not by
/// element slots, which differ between hosts): two balancers whose tables send every hash value
/// to the same element have the same digest. FNV-1a 64 over the size and, entry by entry, the
/// element's key and a 0 byte (or a lone 0 byte for an empty entry).
pub fn digest<'a>(table: &[u32], key_of: impl Fn(u32) -> Option<&'a [u8]>) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    };
    for b in (table.len() as u64).to_le_bytes() {
        eat(b);
    }
    for &slot in table {
        if slot != NO_ELEMENT
            && let Some(k) = key_of(slot)
        {
            k.iter().for_each(|&b| eat(b));
        }
        eat(0);
    }
    h
}

pub fn build(elements: &[MaglevElement<'_>], size: u32) -> Vec<u32> {
    let m = size as u64;
    let mut table = vec![NO_ELEMENT; size as usize];
    // Sort by key so the result does not depend on the caller's order.
    let mut elems: Vec<&MaglevElement<'_>> = elements.iter().filter(|e| e.weight > 0).collect();
    elems.sort_by(|a, b| a.key.cmp(b.key).then(a.id.cmp(&b.id)));
    if elems.is_empty() || size == 0 {
        return table;
    }
    let max_weight = elems.iter().map(|e| e.weight as u64).max().unwrap_or(1);
    struct Perm {
        next: u64,
        skip: u64,
        credit: u64,
        weight: u64,
        id: u32,
    }
    let mut perms: Vec<Perm> = elems
        .iter()
        .map(|e| {
            let offset = hash(e.key, 0x5eed_0001) % m;
            let skip = if m > 1 {
                hash(e.key, 0x5eed_0002) % (m - 1) + 1
            } else {
                1
            };
            Perm {
                next: offset,
                skip,
                credit: 0,
                weight: e.weight as u64,
                id: e.id,
            }
        })
        .collect();
    let mut filled = 0u64;
    while filled < m {
        for p in perms.iter_mut() {
            p.credit += p.weight;
            while p.credit >= max_weight {
                p.credit -= max_weight;
                // Claim this element's next preferred slot that is still free.
                loop {
                    let slot = p.next as usize;
                    p.next += p.skip;
                    if p.next >= m {
                        p.next -= m;
                    }
                    if table[slot] == NO_ELEMENT {
                        table[slot] = p.id;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    return table;
                }
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two hosts that gave the same elements other slots build tables with the same digest; a
    /// weight change or another element changes it.
    #[test]
    fn digests_follow_the_elements_not_their_slots() {
        let keys = ["198.18.1.2:80", "198.18.1.3:80", "198.18.1.4:80"];
        let table = |slots: [u32; 3], weights: [u32; 3]| {
            let els: Vec<MaglevElement<'_>> = (0..3)
                .map(|i| MaglevElement {
                    key: keys[i].as_bytes(),
                    weight: weights[i],
                    id: slots[i],
                })
                .collect();
            let t = build(&els, 251);
            digest(&t, |s| {
                slots
                    .iter()
                    .position(|&x| x == s)
                    .map(|i| keys[i].as_bytes())
            })
        };
        let a = table([0, 1, 2], [1, 2, 3]);
        assert_eq!(a, table([7, 3, 5], [1, 2, 3]));
        assert_ne!(a, table([0, 1, 2], [1, 2, 4]));
        assert_ne!(a, table([0, 1, 2], [1, 2, 0]));
    }
    use std::collections::HashMap;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("198.18.{}.{}:80", i / 250, i % 250 + 1))
            .collect()
    }

    fn counts(table: &[u32]) -> HashMap<u32, usize> {
        let mut c = HashMap::new();
        for &e in table {
            *c.entry(e).or_insert(0) += 1;
        }
        c
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(251));
        assert!(!is_prime(65536));
        assert!(!is_prime(1));
        assert!(!is_prime(9));
        assert!(check_size(65537).is_ok());
        assert_eq!(check_size(65536), Err(SizeError::NotPrime(65536)));
        assert_eq!(check_size(2), Err(SizeError::OutOfRange(2)));
    }

    #[test]
    fn empty_pool_is_no_element_everywhere() {
        let t = build(&[], 251);
        assert_eq!(t.len(), 251);
        assert!(t.iter().all(|&e| e == NO_ELEMENT));
        let k = b"198.18.1.1:80";
        let t = build(
            &[MaglevElement {
                key: k,
                weight: 0,
                id: 3,
            }],
            251,
        );
        assert!(t.iter().all(|&e| e == NO_ELEMENT));
    }

    #[test]
    fn one_element_fills_the_table() {
        let t = build(
            &[MaglevElement {
                key: b"x",
                weight: 7,
                id: 9,
            }],
            65537,
        );
        assert!(t.iter().all(|&e| e == 9));
    }

    #[test]
    fn equal_weights_share_within_one_percent() {
        let ks = keys(10);
        let elems: Vec<_> = ks
            .iter()
            .enumerate()
            .map(|(i, k)| MaglevElement {
                key: k.as_bytes(),
                weight: 1,
                id: i as u32,
            })
            .collect();
        let t = build(&elems, 65537);
        let c = counts(&t);
        assert!(!c.contains_key(&NO_ELEMENT));
        for i in 0..10u32 {
            let share = c[&i] as f64 / 65537.0;
            assert!((share - 0.1).abs() < 0.01, "element {i}: {share}");
        }
    }

    #[test]
    fn weighted_shares_follow_weights() {
        let ks = keys(5);
        let weights = [1u32, 2, 3, 10, 65535];
        let elems: Vec<_> = ks
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (k, w))| MaglevElement {
                key: k.as_bytes(),
                weight: w,
                id: i as u32,
            })
            .collect();
        let t = build(&elems, 65537);
        let c = counts(&t);
        let total: u32 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let expected = *w as f64 / total as f64;
            let got = *c.get(&(i as u32)).unwrap_or(&0) as f64 / 65537.0;
            assert!(
                (got - expected).abs() < 0.01,
                "element {i} weight {w}: {got} vs {expected}"
            );
        }
        // Every slot is owned by exactly one element.
        assert_eq!(c.values().sum::<usize>(), 65537);
        assert!(!c.contains_key(&NO_ELEMENT));

        let elems: Vec<_> = ks
            .iter()
            .zip([1u32, 2, 3, 4, 5])
            .enumerate()
            .map(|(i, (k, w))| MaglevElement {
                key: k.as_bytes(),
                weight: w,
                id: i as u32,
            })
            .collect();
        let c = counts(&build(&elems, 65537));
        for i in 0..5u32 {
            let expected = (i + 1) as f64 / 15.0;
            let got = c[&i] as f64 / 65537.0;
            assert!((got - expected).abs() < 0.01, "{i}: {got} vs {expected}");
        }
    }

    #[test]
    fn deterministic_and_order_independent() {
        let ks = keys(20);
        let mut elems: Vec<_> = ks
            .iter()
            .enumerate()
            .map(|(i, k)| MaglevElement {
                key: k.as_bytes(),
                weight: (i as u32 % 4) + 1,
                id: i as u32,
            })
            .collect();
        let a = build(&elems, 4093);
        let b = build(&elems, 4093);
        elems.reverse();
        let c = build(&elems, 4093);
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    fn moved(a: &[u32], b: &[u32]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn removing_or_adding_one_of_n_moves_about_one_nth() {
        for n in [3usize, 10, 50] {
            let ks = keys(n + 1);
            let all: Vec<_> = ks
                .iter()
                .enumerate()
                .map(|(i, k)| MaglevElement {
                    key: k.as_bytes(),
                    weight: 1,
                    id: i as u32,
                })
                .collect();
            let m = 65537usize;
            let full = build(&all[..n], m as u32);
            // Remove element 1.
            let without: Vec<_> = all[..n].iter().filter(|e| e.id != 1).copied().collect();
            let removed = build(&without, m as u32);
            let frac = moved(&full, &removed) as f64 / m as f64;
            let bound = 1.0 / n as f64 + 0.02;
            assert!(frac <= bound, "n={n}: removal moved {frac} > {bound}");
            // The removed element's own slots must move; so at least ~1/n moves.
            assert!(frac >= 1.0 / n as f64 * 0.9, "n={n}: removal moved {frac}");
            // Add element n.
            let added = build(&all[..=n], m as u32);
            let frac = moved(&full, &added) as f64 / m as f64;
            let bound = 1.0 / (n + 1) as f64 + 0.02;
            assert!(frac <= bound, "n={n}: addition moved {frac} > {bound}");
        }
    }

    #[test]
    fn a_hundred_elements_fill_a_large_table() {
        let ks = keys(100);
        let elems: Vec<_> = ks
            .iter()
            .enumerate()
            .map(|(i, k)| MaglevElement {
                key: k.as_bytes(),
                weight: 1 + (i as u32 % 7) * 1000,
                id: i as u32,
            })
            .collect();
        let start = std::time::Instant::now();
        let t = build(&elems, 65537);
        // Informational only (a shared machine makes timing assertions flaky).
        eprintln!("maglev 65537 x 100: {:?}", start.elapsed());
        assert!(t.iter().all(|&e| e < 100));
    }
}
