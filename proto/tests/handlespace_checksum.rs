//! The incremental per-owner PE checksum equals a from-scratch computation after any sequence of
//! operations (a property test driven by a seeded RNG), and both equal an independent model.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rserpool_proto::handlespace::{Handlespace, Limits, RegistratorId};
use rserpool_proto::types::{
    PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress, TransportUse,
};

const OWNERS: [RegistrarId; 3] = [RegistrarId(1), RegistrarId(0xdead_beef), RegistrarId(7)];
const HANDLES: [&str; 5] = ["a", "abc", "EchoPool", "x-odd-lengthy", "\u{7f}\u{1}\u{2}"];

/// An independent reference: Internet checksum of big-endian words per element, written
/// without the library's helpers.
fn model_checksum(model: &BTreeMap<(String, u32), (RegistrarId, u64)>, owner: RegistrarId) -> u16 {
    let mut sum: u64 = 0;
    for ((h, id), (o, _)) in model {
        if *o != owner {
            continue;
        }
        let mut bytes = h.as_bytes().to_vec();
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        for w in bytes.chunks(2) {
            sum += u64::from(w[0]) << 8 | u64::from(w[1]);
        }
        sum += u64::from(id >> 16) + u64::from(id & 0xffff);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn element(id: u32, life_ms: i32) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(0),
        registration_life_ms: life_ms,
        user_transport: TransportAddress::Tcp {
            port: 80,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 2, 1)),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

#[test]
fn incremental_checksum_matches_scratch_under_random_operations() {
    let mut rng = StdRng::seed_from_u64(5353);
    let mut hs = Handlespace::new(Limits::default());
    // (handle, id) -> (owner, registrator)
    let mut model: BTreeMap<(String, u32), (RegistrarId, u64)> = BTreeMap::new();
    let t0 = Instant::now();
    let mut now = t0;
    for step in 0..4000 {
        now += Duration::from_millis(1);
        let h = HANDLES[rng.random_range(0..HANDLES.len())];
        let ph: PoolHandle = h.parse().unwrap();
        // A wide id range (high words with carries) but collisions happen.
        let id = rng.random_range(1..40u32).wrapping_mul(0x0fff_1111) | 1;
        match rng.random_range(0..100) {
            0..55 => {
                let owner = OWNERS[rng.random_range(0..OWNERS.len())];
                let reg = rng.random_range(0..4u64);
                let life = rng.random_range(50..5000);
                let res = hs.register(&ph, element(id, life), owner, RegistratorId::Asap(reg), now);
                let key = (h.to_string(), id);
                match model.get(&key) {
                    Some((_, r)) if *r != reg => assert!(res.is_err(), "step {step}"),
                    _ => {
                        assert!(res.is_ok(), "step {step}: {res:?}");
                        model.insert(key, (owner, reg));
                    }
                }
            }
            55..80 => {
                let removed = hs.deregister(&ph, PeId(id)).is_some();
                assert_eq!(removed, model.remove(&(h.to_string(), id)).is_some());
            }
            80..85 => {
                let from = OWNERS[rng.random_range(0..OWNERS.len())];
                let to = OWNERS[rng.random_range(0..OWNERS.len())];
                hs.take_over(from, to);
                for (o, _) in model.values_mut() {
                    if *o == from {
                        *o = to;
                    }
                }
            }
            85..88 => {
                let reg = rng.random_range(0..4u64);
                hs.remove_by_registrator(RegistratorId::Asap(reg));
                model.retain(|_, (_, r)| *r != reg);
            }
            _ => {
                for (handle, pe) in hs.expire(now) {
                    assert!(
                        model
                            .remove(&(
                                String::from_utf8(handle.as_bytes().to_vec()).unwrap(),
                                pe.id.0
                            ))
                            .is_some(),
                        "expired twice"
                    );
                }
            }
        }
        assert_eq!(hs.len(), model.len(), "step {step}");
        for owner in OWNERS {
            let inc = hs.checksum(owner);
            assert_eq!(inc, hs.checksum_from_scratch(owner), "step {step} {owner}");
            assert_eq!(inc, model_checksum(&model, owner), "step {step} {owner}");
        }
    }
}
