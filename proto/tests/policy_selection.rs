//! Handle resolution by every pool policy: order, distribution, tie-breaking, MaxIncrement,
//! duplicates, item counts. Random policies run on a seeded StdRng; their tolerances are 5
//! standard deviations of the binomial count, so a correct implementation fails with
//! probability below 1e-6 per check, and a wrong proportion (off by a few percent) fails.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rserpool_proto::handlespace::{Handlespace, Limits, RegistratorId};
use rserpool_proto::types::{
    CauseCode, PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress, TransportUse,
};

const MAX: u32 = u32::MAX;
const OWNER: RegistrarId = RegistrarId(0x100);

fn ph() -> PoolHandle {
    "pool".parse().unwrap()
}

fn element(id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(0),
        registration_life_ms: 30_000,
        user_transport: TransportAddress::Tcp {
            port: 8080,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, (id % 250) as u8 + 1)),
        },
        policy,
        asap_transport: None,
    }
}

/// A pool with one element per policy, ids 1.., each from its own connection.
fn pool(policies: &[Policy]) -> Handlespace {
    let mut hs = Handlespace::new(Limits::default());
    let now = Instant::now();
    for (i, p) in policies.iter().enumerate() {
        let id = i as u32 + 1;
        hs.register(
            &ph(),
            element(id, p.clone()),
            OWNER,
            RegistratorId::Asap(u64::from(id)),
            now,
        )
        .unwrap();
    }
    hs
}

fn ids(hs: &mut Handlespace, items: usize, max_inc: usize, rng: &mut StdRng) -> Vec<u32> {
    hs.select(&ph(), items, max_inc, rng)
        .unwrap()
        .elements
        .iter()
        .map(|e| e.id.0)
        .collect()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x5eed)
}

/// Draws `rounds` single selections and checks each id's share against `expected` weights.
fn assert_proportional(hs: &mut Handlespace, expected: &[(u32, f64)], rounds: usize) {
    let mut rng = rng();
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for _ in 0..rounds {
        for id in ids(hs, 1, 0, &mut rng) {
            *counts.entry(id).or_default() += 1;
        }
    }
    let total_w: f64 = expected.iter().map(|(_, w)| w).sum();
    for &(id, w) in expected {
        let p = w / total_w;
        let n = rounds as f64;
        let mean = n * p;
        let sigma = (n * p * (1.0 - p)).sqrt().max(1.0);
        let got = *counts.get(&id).unwrap_or(&0) as f64;
        assert!(
            (got - mean).abs() <= 5.0 * sigma,
            "element {id}: {got} selections, expected {mean:.0} ± {:.0} (counts {counts:?})",
            5.0 * sigma
        );
    }
}

fn frac(x: f64) -> u32 {
    (f64::from(MAX) * x) as u32
}

#[test]
fn round_robin_is_cyclic() {
    let mut hs = pool(&vec![Policy::RoundRobin; 4]);
    let mut r = rng();
    let seq: Vec<u32> = (0..8).flat_map(|_| ids(&mut hs, 1, 0, &mut r)).collect();
    assert_eq!(seq, [1, 2, 3, 4, 1, 2, 3, 4]);
}

#[test]
fn round_robin_max_increment() {
    // Default MaxIncrement 1: a 3-item reply advances only its first element.
    let mut hs = pool(&vec![Policy::RoundRobin; 4]);
    let mut r = rng();
    assert_eq!(ids(&mut hs, 3, 0, &mut r), [1, 2, 3]);
    assert_eq!(ids(&mut hs, 3, 0, &mut r), [2, 3, 4]);
    assert_eq!(ids(&mut hs, 3, 0, &mut r), [3, 4, 1]);
    // MaxIncrement 3: the whole reply moves to the back.
    let mut hs = pool(&vec![Policy::RoundRobin; 4]);
    assert_eq!(ids(&mut hs, 3, 3, &mut r), [1, 2, 3]);
    assert_eq!(ids(&mut hs, 3, 3, &mut r), [4, 1, 2]);
    assert_eq!(ids(&mut hs, 3, 3, &mut r), [3, 4, 1]);
}

#[test]
fn round_robin_newcomer_goes_last() {
    let mut hs = pool(&vec![Policy::RoundRobin; 3]);
    let mut r = rng();
    assert_eq!(ids(&mut hs, 1, 0, &mut r), [1]);
    hs.register(
        &ph(),
        element(9, Policy::RoundRobin),
        OWNER,
        RegistratorId::Asap(9),
        Instant::now(),
    )
    .unwrap();
    let seq: Vec<u32> = (0..5).flat_map(|_| ids(&mut hs, 1, 0, &mut r)).collect();
    assert_eq!(seq, [2, 3, 1, 9, 2]);
}

#[test]
fn weighted_round_robin_selects_weight_times_per_round() {
    let mut hs = pool(&[
        Policy::WeightedRoundRobin { weight: 1 },
        Policy::WeightedRoundRobin { weight: 2 },
        Policy::WeightedRoundRobin { weight: 3 },
    ]);
    let mut r = rng();
    for round in 0..100 {
        let mut counts = [0usize; 4];
        for _ in 0..6 {
            for id in ids(&mut hs, 1, 0, &mut r) {
                counts[id as usize] += 1;
            }
        }
        assert_eq!(counts[1..], [1, 2, 3], "round {round}");
    }
}

#[test]
fn weighted_round_robin_replies_have_no_duplicates() {
    let mut hs = pool(&[
        Policy::WeightedRoundRobin { weight: 5 },
        Policy::WeightedRoundRobin { weight: 1 },
    ]);
    let mut r = rng();
    for _ in 0..20 {
        let got = ids(&mut hs, 3, 0, &mut r);
        assert_eq!(got.len(), 2);
        assert_ne!(got[0], got[1]);
    }
}

#[test]
fn random_is_uniform() {
    let mut hs = pool(&vec![Policy::Random; 5]);
    let expected: Vec<(u32, f64)> = (1..=5).map(|i| (i, 1.0)).collect();
    assert_proportional(&mut hs, &expected, 20_000);
}

#[test]
fn weighted_random_is_proportional() {
    let mut hs = pool(&[
        Policy::WeightedRandom { weight: 1 },
        Policy::WeightedRandom { weight: 3 },
        Policy::WeightedRandom { weight: 6 },
        Policy::WeightedRandom { weight: 0 },
    ]);
    assert_proportional(&mut hs, &[(1, 1.0), (2, 3.0), (3, 6.0), (4, 0.0)], 20_000);
}

#[test]
fn weighted_random_all_zero_weights_selects_nothing() {
    let mut hs = pool(&vec![Policy::WeightedRandom { weight: 0 }; 3]);
    assert!(ids(&mut hs, 3, 0, &mut rng()).is_empty());
}

#[test]
fn weighted_random_multi_item_draws_without_replacement() {
    // Two items from weights 1:1:8: the heavy element is in almost every reply, and the second
    // is one of the light ones; never twice the same.
    let mut hs = pool(&[
        Policy::WeightedRandom { weight: 1 },
        Policy::WeightedRandom { weight: 1 },
        Policy::WeightedRandom { weight: 8 },
    ]);
    let mut r = rng();
    let mut heavy = 0;
    for _ in 0..2000 {
        let got = ids(&mut hs, 2, 0, &mut r);
        assert_eq!(got.len(), 2);
        assert_ne!(got[0], got[1]);
        heavy += got.contains(&3) as usize;
    }
    // P(3 in reply) = 0.8 + 2 * 0.1 * (8/9) ≈ 0.978.
    assert!(heavy > 1900, "heavy element in {heavy} of 2000 replies");
}

#[test]
fn priority_prefers_highest_and_round_robins_ties() {
    let mut hs = pool(&[
        Policy::Priority { priority: 5 },
        Policy::Priority { priority: 9 },
        Policy::Priority { priority: 9 },
        Policy::Priority { priority: 1 },
    ]);
    let mut r = rng();
    let seq: Vec<u32> = (0..4).flat_map(|_| ids(&mut hs, 1, 0, &mut r)).collect();
    assert_eq!(seq, [2, 3, 2, 3]);
    let all = ids(&mut hs, 10, 0, &mut r);
    assert_eq!(all, [2, 3, 1, 4]);
}

#[test]
fn least_used_prefers_lowest_load_and_round_robins_ties() {
    let mut hs = pool(&[
        Policy::LeastUsed { load: frac(0.5) },
        Policy::LeastUsed { load: frac(0.2) },
        Policy::LeastUsed { load: frac(0.2) },
        Policy::LeastUsed { load: frac(0.9) },
    ]);
    let mut r = rng();
    let seq: Vec<u32> = (0..4).flat_map(|_| ids(&mut hs, 1, 0, &mut r)).collect();
    assert_eq!(seq, [2, 3, 2, 3]);
    assert_eq!(ids(&mut hs, 4, 0, &mut r), [2, 3, 1, 4]);
    // A load report (re-registration) reorders.
    hs.register(
        &ph(),
        element(4, Policy::LeastUsed { load: 0 }),
        OWNER,
        RegistratorId::Asap(4),
        Instant::now(),
    )
    .unwrap();
    assert_eq!(ids(&mut hs, 1, 0, &mut r), [4]);
}

#[test]
fn least_used_degradation_counter_shifts_and_resets() {
    let a = Policy::LeastUsedDegradation {
        load: 0,
        degradation: frac(0.3),
    };
    let b = Policy::LeastUsedDegradation {
        load: frac(0.5),
        degradation: frac(0.3),
    };
    let mut hs = pool(&[a.clone(), b]);
    let mut r = rng();
    // A: 0 -> 0.3 -> 0.6; B (0.5) wins over A (0.6), then A (0.6) over B (0.8).
    let seq: Vec<u32> = (0..4).flat_map(|_| ids(&mut hs, 1, 0, &mut r)).collect();
    assert_eq!(seq, [1, 1, 2, 1]);
    assert!(hs.element(&ph(), PeId(1)).unwrap().degradation() > frac(0.8));
    // Re-registration resets A's counter: A is least used again.
    hs.register(
        &ph(),
        element(1, a),
        OWNER,
        RegistratorId::Asap(1),
        Instant::now(),
    )
    .unwrap();
    assert_eq!(hs.element(&ph(), PeId(1)).unwrap().degradation(), 0);
    assert_eq!(ids(&mut hs, 1, 0, &mut r), [1]);
}

#[test]
fn least_used_degradation_max_increment_degrades_that_many() {
    let p = Policy::LeastUsedDegradation {
        load: 0,
        degradation: frac(0.1),
    };
    let mut hs = pool(&[p.clone(), p.clone(), p]);
    let mut r = rng();
    ids(&mut hs, 3, 0, &mut r);
    let degraded = (1..=3)
        .filter(|&i| hs.element(&ph(), PeId(i)).unwrap().degradation() > 0)
        .count();
    assert_eq!(degraded, 1);
    ids(&mut hs, 3, 3, &mut r);
    let degraded = (1..=3)
        .filter(|&i| hs.element(&ph(), PeId(i)).unwrap().degradation() > 0)
        .count();
    assert_eq!(degraded, 3);
}

#[test]
fn priority_least_used_is_static_load_plus_degradation() {
    let mut hs = pool(&[
        Policy::PriorityLeastUsed {
            load: frac(0.4),
            degradation: frac(0.3),
        },
        Policy::PriorityLeastUsed {
            load: frac(0.5),
            degradation: frac(0.1),
        },
    ]);
    let mut r = rng();
    let seq: Vec<u32> = (0..5).flat_map(|_| ids(&mut hs, 1, 0, &mut r)).collect();
    assert_eq!(seq, [2; 5]);
}

#[test]
fn priority_least_used_degradation_adds_counter() {
    let mut hs = pool(&[
        Policy::PriorityLeastUsedDegradation {
            load: frac(0.1),
            degradation: frac(0.2),
        },
        Policy::PriorityLeastUsedDegradation {
            load: frac(0.42),
            degradation: frac(0.05),
        },
    ]);
    let mut r = rng();
    // 1: 0.3 -> 0.5 -> 0.7; 2: 0.47 -> 0.52 -> 0.57 -> 0.62.
    let seq: Vec<u32> = (0..5).flat_map(|_| ids(&mut hs, 1, 0, &mut r)).collect();
    assert_eq!(seq, [1, 2, 1, 2, 2]);
}

#[test]
fn randomized_least_used_is_proportional_to_free_capacity() {
    let mut hs = pool(&[
        Policy::RandomizedLeastUsed { load: 0 },
        Policy::RandomizedLeastUsed { load: frac(0.5) },
        Policy::RandomizedLeastUsed { load: frac(0.75) },
    ]);
    assert_proportional(&mut hs, &[(1, 4.0), (2, 2.0), (3, 1.0)], 20_000);
}

#[test]
fn randomized_priority_least_used_subtracts_load_degradation() {
    let mut hs = pool(&[
        Policy::RandomizedPriorityLeastUsed {
            load: 0,
            degradation: frac(0.5),
        },
        Policy::RandomizedPriorityLeastUsed {
            load: frac(0.25),
            degradation: 0,
        },
    ]);
    assert_proportional(&mut hs, &[(1, 2.0), (2, 3.0)], 20_000);
}

#[test]
fn randomized_lu_degradation_counter_lowers_chance_and_resets() {
    let p = Policy::RandomizedLeastUsedDegradation {
        load: 0,
        degradation: frac(0.25),
    };
    let mut hs = pool(&[p.clone(), p.clone()]);
    let mut r = rng();
    for _ in 0..8 {
        ids(&mut hs, 1, 0, &mut r);
    }
    let d1 = hs.element(&ph(), PeId(1)).unwrap().degradation();
    let d2 = hs.element(&ph(), PeId(2)).unwrap().degradation();
    assert!(d1 > 0 || d2 > 0);
    // Saturated counters leave weight 1 each: still selectable.
    assert_eq!(ids(&mut hs, 2, 0, &mut r).len(), 2);
    hs.register(
        &ph(),
        element(1, p),
        OWNER,
        RegistratorId::Asap(1),
        Instant::now(),
    )
    .unwrap();
    assert_eq!(hs.element(&ph(), PeId(1)).unwrap().degradation(), 0);
}

#[test]
fn randomized_priority_lu_degradation_uses_all_three_terms() {
    // Element 1 saturates (load + loaddeg = 100 %: weight 1); element 2 has 50 % free.
    let mut hs = pool(&[
        Policy::RandomizedPriorityLeastUsedDegradation {
            load: frac(0.5),
            degradation: frac(0.5) + 2,
        },
        Policy::RandomizedPriorityLeastUsedDegradation {
            load: frac(0.5),
            degradation: 0,
        },
    ]);
    let mut r = rng();
    let mut ones = 0;
    for _ in 0..1000 {
        ones += (ids(&mut hs, 1, 0, &mut r) == [1]) as usize;
    }
    assert!(ones < 5, "saturated element selected {ones} times");
}

#[test]
fn least_used_dpf_adds_distance_penalty() {
    let mut hs = pool(&[
        Policy::LeastUsedDpf {
            load: frac(0.1),
            load_dpf: MAX / 100, // 1 % per distance unit
            distance: 50,
        },
        Policy::LeastUsedDpf {
            load: frac(0.4),
            load_dpf: MAX / 100,
            distance: 0,
        },
    ]);
    let mut r = rng();
    assert_eq!(ids(&mut hs, 2, 0, &mut r), [2, 1]);
}

#[test]
fn least_used_degradation_dpf_adds_counter_and_penalty() {
    let mut hs = pool(&[
        Policy::LeastUsedDegradationDpf {
            load: 0,
            degradation: frac(0.3),
            load_dpf: MAX / 100,
            distance: 10, // +0.1
        },
        Policy::LeastUsedDegradationDpf {
            load: frac(0.2),
            degradation: frac(0.3),
            load_dpf: MAX / 100,
            distance: 0,
        },
    ]);
    let mut r = rng();
    // 1: 0.1 -> 0.4 -> 0.7; 2: 0.2 -> 0.5.
    let seq: Vec<u32> = (0..4).flat_map(|_| ids(&mut hs, 1, 0, &mut r)).collect();
    assert_eq!(seq, [1, 2, 1, 2]);
}

#[test]
fn weighted_random_dpf_penalizes_distance() {
    let mut hs = pool(&[
        Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: MAX / 100,
            distance: 0,
        },
        Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: MAX / 100,
            distance: 75, // weight × 0.25
        },
    ]);
    assert_proportional(&mut hs, &[(1, 4.0), (2, 1.0)], 20_000);
}

fn every_policy() -> Vec<Policy> {
    let l = frac(0.3);
    let d = frac(0.1);
    vec![
        Policy::RoundRobin,
        Policy::WeightedRoundRobin { weight: 3 },
        Policy::Random,
        Policy::WeightedRandom { weight: 3 },
        Policy::Priority { priority: 3 },
        Policy::LeastUsed { load: l },
        Policy::LeastUsedDegradation {
            load: l,
            degradation: d,
        },
        Policy::PriorityLeastUsed {
            load: l,
            degradation: d,
        },
        Policy::RandomizedLeastUsed { load: l },
        Policy::RandomizedPriorityLeastUsed {
            load: l,
            degradation: d,
        },
        Policy::RandomizedLeastUsedDegradation {
            load: l,
            degradation: d,
        },
        Policy::PriorityLeastUsedDegradation {
            load: l,
            degradation: d,
        },
        Policy::RandomizedPriorityLeastUsedDegradation {
            load: l,
            degradation: d,
        },
        Policy::WeightedRandomDpf {
            weight: 3,
            weight_dpf: d,
            distance: 2,
        },
        Policy::LeastUsedDpf {
            load: l,
            load_dpf: d,
            distance: 2,
        },
        Policy::LeastUsedDegradationDpf {
            load: l,
            degradation: d,
            load_dpf: d,
            distance: 2,
        },
    ]
}

#[test]
fn every_policy_returns_distinct_elements_up_to_pool_size() {
    let mut r = rng();
    for p in every_policy() {
        let mut hs = pool(&vec![p.clone(); 7]);
        for items in [1usize, 3, 7, 20] {
            for max_inc in [0usize, 1, 5] {
                for _ in 0..30 {
                    let got = ids(&mut hs, items, max_inc, &mut r);
                    assert_eq!(got.len(), items.min(7), "{p:?} items {items}");
                    let set: HashSet<u32> = got.iter().copied().collect();
                    assert_eq!(set.len(), got.len(), "{p:?}: duplicates in {got:?}");
                }
            }
        }
        let sel = hs.select(&ph(), 0, 0, &mut r).unwrap();
        assert!(sel.elements.is_empty());
        assert_eq!(sel.policy_type, p.type_code());
    }
}

#[test]
fn ordered_policies_spread_load_over_equal_elements() {
    // Every non-random policy with identical elements degenerates to round robin.
    let mut r = rng();
    for p in every_policy() {
        let mut hs = pool(&vec![p.clone(); 4]);
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for _ in 0..400 {
            for id in ids(&mut hs, 1, 0, &mut r) {
                *counts.entry(id).or_default() += 1;
            }
        }
        for id in 1..=4 {
            let c = counts.get(&id).copied().unwrap_or(0);
            assert!(
                (50..=150).contains(&c),
                "{p:?}: element {id} got {c} of 400"
            );
        }
    }
}

#[test]
fn unknown_and_emptied_pools_are_unknown_pool_handle() {
    let mut hs = pool(&[Policy::RoundRobin]);
    let mut r = rng();
    let other: PoolHandle = "other".parse().unwrap();
    assert_eq!(
        hs.select(&other, 3, 0, &mut r),
        Err(CauseCode::UnknownPoolHandle)
    );
    assert!(hs.deregister(&ph(), PeId(1)).is_some());
    assert_eq!(
        hs.select(&ph(), 3, 0, &mut r),
        Err(CauseCode::UnknownPoolHandle)
    );
    assert_eq!(hs.pool_count(), 0);
}

#[test]
fn selection_counts_are_kept() {
    let mut hs = pool(&vec![Policy::RoundRobin; 2]);
    let mut r = rng();
    for _ in 0..10 {
        ids(&mut hs, 2, 0, &mut r);
    }
    assert_eq!(hs.element(&ph(), PeId(1)).unwrap().selections(), 10);
    assert_eq!(hs.element(&ph(), PeId(2)).unwrap().selections(), 10);
}
