//! The fuzz target's property, run by plain `cargo test` over the seed corpus (the 40 oracle
//! vectors in `fuzz/seeds`) and a bounded number of deterministic mutations of each seed:
//! the decoder never panics, and whatever it accepts re-encodes to bytes that decode to the same
//! message and re-encode to themselves (canonical form). The same check is
//! `fuzz/fuzz_targets/decode.rs` for `cargo fuzz run decode`.

use std::path::Path;

use rserpool_proto::wire::{self, EncodeError, Protocol};

const MUTATIONS_PER_SEED: usize = 10_000;

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fuzz/seeds exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The property, for one input and one protocol. Returns whether the input was accepted.
fn check(protocol: Protocol, input: &[u8]) -> bool {
    let Ok(decoded) = wire::decode(protocol, input) else {
        return false;
    };
    let bytes = match wire::encode(&decoded.message) {
        Ok(b) => b,
        // Only an input whose Length left out its last padding can grow past the limit.
        Err(EncodeError::TooBig { .. }) if input.len() > 65_532 => return true,
        Err(e) => panic!("accepted input does not re-encode: {e}\ninput {input:02x?}"),
    };
    let again = wire::decode(protocol, &bytes)
        .unwrap_or_else(|e| panic!("re-encoded message does not decode: {e}\n{bytes:02x?}"));
    assert_eq!(again.message, decoded.message, "input {input:02x?}");
    assert!(again.reports.is_empty());
    assert_eq!(wire::encode(&again.message).unwrap(), bytes);
    true
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(3) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0x00, 0xff, 0x01, 0x80, 0x7f, 0x40, 0xc0][rng.below(7)];
            }
            2 => v.truncate(rng.below(len + 1)),
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                v.splice(i..i, std::iter::repeat_n(rng.next() as u8, n));
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i + 1);
                v.drain(i..i + n);
            }
            // A 16-bit length or type field (header or TLV) set to an interesting value.
            5 if len >= 4 => {
                let i = rng.below(len / 2) * 2;
                let i = i.min(len - 2);
                let val: u16 = [
                    0,
                    3,
                    4,
                    5,
                    8,
                    len as u16,
                    len as u16 + 1,
                    len as u16 - 1,
                    0xffff,
                    0x8000,
                    0x4000,
                    0xc000,
                ][rng.below(12)];
                v[i..i + 2].copy_from_slice(&val.to_be_bytes());
            }
            // Duplicate a 4-aligned slice (repeats parameters).
            6 if len >= 8 => {
                let i = rng.below(len / 4) * 4;
                let n = (1 + rng.below(6)) * 4;
                let end = (i + n).min(len);
                let dup = v[i..end].to_vec();
                v.splice(end..end, dup);
            }
            // Splice in a piece of another seed.
            7 if !other.is_empty() => {
                let i = rng.below(other.len());
                let n = rng.below(other.len() - i + 1);
                let at = rng.below(len + 1);
                v.splice(at..at, other[i..i + n].iter().copied());
            }
            // Fix the message Length to the new size (so mutations reach the parameters).
            _ if len >= 4 => {
                let l = len as u16;
                v[2..4].copy_from_slice(&l.to_be_bytes());
            }
            _ => {}
        }
    }
    if rng.below(2) == 0 && v.len() >= 4 {
        let l = v.len().min(0xffff) as u16;
        v[2..4].copy_from_slice(&l.to_be_bytes());
    }
    v
}

#[test]
fn every_seed_satisfies_the_property() {
    let seeds = seeds();
    assert_eq!(seeds.len(), 40);
    let accepted = seeds
        .iter()
        .filter(|s| check(Protocol::Asap, s) || check(Protocol::Enrp, s))
        .count();
    assert_eq!(accepted, 40, "every oracle vector decodes");
}

#[test]
fn deterministic_mutations_never_panic_and_round_trip() {
    let seeds = seeds();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut rejected) = (0usize, 0usize);
    for (i, seed) in seeds.iter().enumerate() {
        let other = &seeds[(i * 7 + 3) % seeds.len()];
        for _ in 0..MUTATIONS_PER_SEED {
            let input = mutate(&mut rng, seed, other);
            for p in [Protocol::Asap, Protocol::Enrp] {
                if check(p, &input) {
                    ok += 1;
                } else {
                    rejected += 1;
                }
            }
        }
    }
    eprintln!("mutations: {ok} accepted, {rejected} rejected");
    // The mutations must reach both outcomes, or this test checks nothing.
    assert!(
        ok > 1_000 && rejected > 1_000,
        "{ok} accepted, {rejected} rejected"
    );
}
