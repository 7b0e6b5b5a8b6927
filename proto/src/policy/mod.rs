//! Pool member selection policies (RFC 5356 and rsplib's extensions), as pure functions over a
//! [`Policy`] and the per-element selection state the handlespace keeps.
//!
//! Every policy is one of two families, as in rsplib (`poolpolicy-template_impl.h`):
//!
//! - **Ordered** policies ([`Family::Ordered`]): the pool keeps its elements in a set ordered by
//!   [`sort_key`]; a handle resolution returns the first `n` elements of that order. The first
//!   `MaxIncrement` of them get a new sequence number (which moves them behind their equals:
//!   round robin among ties) and their policy update ([`on_selected`]). Round Robin, Weighted
//!   Round Robin, Priority and every Least-Used variant that is not randomized.
//! - **Weighted** policies ([`Family::Weighted`]): the pool keeps a sum tree over
//!   [`selection_weight`]; a handle resolution draws `n` distinct elements, each with probability
//!   proportional to its weight among the ones not yet drawn. Random, Weighted Random, the
//!   randomized Least-Used variants and Weighted Random DPF.
//!
//! Weighted Round Robin keeps rsplib's key (round, virtual counter, sequence): an element enters
//! the current round with its weight as counter, each selection counts it down, and at 1 it moves
//! to the next round. So every element is selected `weight` times per round (consecutively, as in
//! rsplib), at O(log n) per selection with no per-round rebuild. A weight of 0 counts as 1.
//!
//! Deliberate differences from rsplib, each because rsplib's behaviour is an accident of its
//! data structure rather than the documented semantics:
//! - rsplib's `poolNodeLinkPoolElementNodeToSelection` calls the policy update function again when
//!   it re-links a node, so a selected LUD element degrades twice and a WRR element's virtual
//!   counter drops twice per selection, and a new LUD element starts with one degradation step.
//!   rsplb applies the update exactly once per selection and starts the counter at 0.
//! - rsplib's RLUD and RPLUD never increase the degradation counter (only LUD, PLUD and LUD-DPF
//!   have an update function that does), which makes them equal to RLU and RPLU. rsplb adds the
//!   load degradation to the counter of the first `MaxIncrement` drawn elements, as the policy
//!   names and the reference table say.

mod fenwick;

pub use fenwick::Fenwick;

use crate::types::{Fraction, Policy, policy_type};

/// Largest load value (100 %).
pub const MAX_LOAD: u32 = u32::MAX;

/// How a policy selects; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ordered,
    Weighted,
}

/// Per-element state that selection reads and updates. The handlespace owns one per element.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectionState {
    /// Position among equals: lower is selected first. Assigned from the pool's counter at
    /// registration and at each selection that advances the element.
    pub seq: u64,
    /// Weighted Round Robin: round the element is in.
    pub round: u64,
    /// Weighted Round Robin: selections left in the current round (rsplib's virtual counter).
    pub virtual_counter: u32,
    /// Degradation counter (LUD, PLUD, RLUD, RPLUD, LUD-DPF): sum of the load degradation added
    /// at each selection since the element's last update, capped at 100 %.
    pub degradation: Fraction,
}

/// Order key of an ordered policy: lower keys are selected first. The last component is always
/// the sequence number, so two elements never compare equal.
pub type SortKey = (u64, u64, u64);

/// Whether rsplb can select with this policy (every arm except [`Policy::Unknown`]).
pub fn is_supported(policy: &Policy) -> bool {
    !matches!(policy, Policy::Unknown { .. })
}

/// The selection family of a supported policy; `None` for [`Policy::Unknown`].
pub fn family(policy: &Policy) -> Option<Family> {
    use Policy::*;
    Some(match policy {
        RoundRobin
        | WeightedRoundRobin { .. }
        | Priority { .. }
        | LeastUsed { .. }
        | LeastUsedDegradation { .. }
        | PriorityLeastUsed { .. }
        | PriorityLeastUsedDegradation { .. }
        | LeastUsedDpf { .. }
        | LeastUsedDegradationDpf { .. } => Family::Ordered,
        Random
        | WeightedRandom { .. }
        | RandomizedLeastUsed { .. }
        | RandomizedPriorityLeastUsed { .. }
        | RandomizedLeastUsedDegradation { .. }
        | RandomizedPriorityLeastUsedDegradation { .. }
        | WeightedRandomDpf { .. } => Family::Weighted,
        Unknown { .. } => return None,
    })
}

/// rsplib's `DefaultMaxIncrement` of a policy type: how many of the returned elements advance
/// their selection state when the caller passes `MaxIncrement` 0. 0 for Random, Weighted Random
/// and Weighted Random DPF (their state does not change with selection), 1 for all others.
pub fn default_max_increment(policy_type: u32) -> usize {
    match policy_type {
        policy_type::RANDOM | policy_type::WEIGHTED_RANDOM | policy_type::WEIGHTED_RANDOM_DPF => 0,
        _ => 1,
    }
}

/// `min(MAX_LOAD, a + b + c)` (rsplib `getSum`).
pub fn load_sum(a: u32, b: u32, c: u32) -> u64 {
    (u64::from(a) + u64::from(b) + u64::from(c)).min(u64::from(MAX_LOAD))
}

/// `clamp(MAX_LOAD - a - b - c, 1, MAX)` (rsplib `getValueFraction`): the weight of a
/// randomized least-used element never drops to 0, so a fully loaded element keeps a tiny chance.
fn free_capacity(a: u32, b: u32, c: u32) -> u64 {
    let v = i64::from(MAX_LOAD) - i64::from(a) - i64::from(b) - i64::from(c);
    v.max(1) as u64
}

/// Distance penalty of the DPF policies: `distance × dpf`, where `dpf` is a fraction of
/// `MAX_LOAD` per distance unit, so the penalty is `distance × dpf / MAX × MAX = distance × dpf`
/// load units (rsplib computes the same in floating point).
fn distance_penalty(distance: u32, dpf: Fraction) -> u64 {
    u64::from(distance).saturating_mul(u64::from(dpf))
}

/// Order key of an element under an ordered policy; `None` for weighted and unknown policies.
pub fn sort_key(policy: &Policy, st: &SelectionState) -> Option<SortKey> {
    use Policy::*;
    let max = u64::from(MAX_LOAD);
    let key = match *policy {
        RoundRobin => (0, 0, st.seq),
        WeightedRoundRobin { .. } => (st.round, u64::from(st.virtual_counter), st.seq),
        // Highest priority first.
        Priority { priority } => (u64::from(u32::MAX - priority), 0, st.seq),
        LeastUsed { load } => (u64::from(load), 0, st.seq),
        LeastUsedDegradation { load, .. } => (load_sum(load, st.degradation, 0), 0, st.seq),
        PriorityLeastUsed { load, degradation } => (load_sum(load, degradation, 0), 0, st.seq),
        PriorityLeastUsedDegradation { load, degradation } => {
            (load_sum(load, degradation, st.degradation), 0, st.seq)
        }
        LeastUsedDpf {
            load,
            load_dpf,
            distance,
        } => (
            u64::from(load)
                .saturating_add(distance_penalty(distance, load_dpf))
                .min(max),
            0,
            st.seq,
        ),
        LeastUsedDegradationDpf {
            load,
            load_dpf,
            distance,
            ..
        } => (
            load_sum(load, st.degradation, 0)
                .saturating_add(distance_penalty(distance, load_dpf))
                .min(max),
            0,
            st.seq,
        ),
        _ => return None,
    };
    Some(key)
}

/// Selection weight of an element under a weighted policy (0 = never drawn); `None` for
/// ordered and unknown policies.
pub fn selection_weight(policy: &Policy, st: &SelectionState) -> Option<u64> {
    use Policy::*;
    let w = match *policy {
        Random => 1,
        WeightedRandom { weight } => u64::from(weight),
        RandomizedLeastUsed { load } => free_capacity(load, 0, 0),
        RandomizedPriorityLeastUsed { load, degradation } => free_capacity(load, degradation, 0),
        RandomizedLeastUsedDegradation { load, .. } => free_capacity(load, st.degradation, 0),
        RandomizedPriorityLeastUsedDegradation { load, degradation } => {
            free_capacity(load, degradation, st.degradation)
        }
        WeightedRandomDpf {
            weight,
            weight_dpf,
            distance,
        } => {
            // weight × (1 − distance × wdpf / MAX), rounded; a negative value becomes 1 (rsplib).
            let penalty = (u128::from(weight) * u128::from(distance) * u128::from(weight_dpf)
                + u128::from(MAX_LOAD) / 2)
                / u128::from(MAX_LOAD);
            let v = i128::from(weight) - penalty as i128;
            if v < 0 { 1 } else { v as u64 }
        }
        _ => return None,
    };
    Some(w)
}

/// State of a newly registered element. `seq` is the pool's next sequence number,
/// `current_round` the round of the first element in a Weighted Round Robin pool (0 if empty).
pub fn initial_state(policy: &Policy, seq: u64, current_round: u64) -> SelectionState {
    let mut st = SelectionState {
        seq,
        ..SelectionState::default()
    };
    if let Policy::WeightedRoundRobin { weight } = *policy {
        st.round = current_round;
        st.virtual_counter = weight;
    }
    st
}

/// Policy values changed (re-registration): reset the degradation counter (rsplib and RFC 5356:
/// the counter restarts when the element reports its load) and refill a WRR element's counter
/// for its new weight, keeping it in its round.
pub fn on_update(policy: &Policy, st: &mut SelectionState) {
    st.degradation = 0;
    if let Policy::WeightedRoundRobin { weight } = *policy {
        st.virtual_counter = st.virtual_counter.min(weight);
        if st.virtual_counter == 0 {
            st.virtual_counter = weight;
        }
    }
}

/// The policy-specific change when an element is selected and counts towards `MaxIncrement`
/// (rsplib's `UpdatePoolElementNodeFunction`). The sequence number is the caller's business.
pub fn on_selected(policy: &Policy, st: &mut SelectionState) {
    use Policy::*;
    match *policy {
        WeightedRoundRobin { weight } => {
            if st.virtual_counter > 1 {
                st.virtual_counter -= 1;
            } else {
                // Round done: a weight of 0 behaves like 1, as in rsplib.
                st.round += 1;
                st.virtual_counter = weight;
            }
        }
        LeastUsedDegradation { degradation, .. }
        | PriorityLeastUsedDegradation { degradation, .. }
        | RandomizedLeastUsedDegradation { degradation, .. }
        | RandomizedPriorityLeastUsedDegradation { degradation, .. }
        | LeastUsedDegradationDpf { degradation, .. } => {
            st.degradation = load_sum(st.degradation, degradation, 0) as u32;
        }
        _ => {}
    }
}

/// rsplib's `-policy=` name of a policy type (for logs and the command line).
pub fn name(policy_type: u32) -> Option<&'static str> {
    use policy_type::*;
    Some(match policy_type {
        ROUND_ROBIN => "RoundRobin",
        WEIGHTED_ROUND_ROBIN => "WeightedRoundRobin",
        RANDOM => "Random",
        WEIGHTED_RANDOM => "WeightedRandom",
        PRIORITY => "Priority",
        LEAST_USED => "LeastUsed",
        LEAST_USED_DEGRADATION => "LeastUsedDegradation",
        PRIORITY_LEAST_USED => "PriorityLeastUsed",
        RANDOMIZED_LEAST_USED => "RandomizedLeastUsed",
        RANDOMIZED_PRIORITY_LEAST_USED => "RandomizedPriorityLeastUsed",
        RANDOMIZED_LEAST_USED_DEGRADATION => "RandomizedLeastUsedDegradation",
        PRIORITY_LEAST_USED_DEGRADATION => "PriorityLeastUsedDegradation",
        RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION => "RandomizedPriorityLeastUsedDegradation",
        WEIGHTED_RANDOM_DPF => "WeightedRandomDPF",
        LEAST_USED_DPF => "LeastUsedDPF",
        LEAST_USED_DEGRADATION_DPF => "LeastUsedDegradationDPF",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_cover_every_supported_policy() {
        assert_eq!(family(&Policy::RoundRobin), Some(Family::Ordered));
        assert_eq!(family(&Policy::Random), Some(Family::Weighted));
        assert_eq!(
            family(&Policy::Unknown {
                policy_type: 9,
                values: vec![]
            }),
            None
        );
    }

    #[test]
    fn priority_orders_highest_first() {
        let st = SelectionState::default();
        let hi = sort_key(&Policy::Priority { priority: 10 }, &st).unwrap();
        let lo = sort_key(&Policy::Priority { priority: 2 }, &st).unwrap();
        assert!(hi < lo);
    }

    #[test]
    fn randomized_lu_weight_never_zero() {
        let st = SelectionState::default();
        assert_eq!(
            selection_weight(&Policy::RandomizedLeastUsed { load: MAX_LOAD }, &st),
            Some(1)
        );
        assert_eq!(
            selection_weight(&Policy::RandomizedLeastUsed { load: 0 }, &st),
            Some(u64::from(MAX_LOAD))
        );
    }

    #[test]
    fn wrand_dpf_penalizes_distance() {
        let st = SelectionState::default();
        let near = Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: MAX_LOAD / 100, // 1 % per distance unit
            distance: 0,
        };
        let far = Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: MAX_LOAD / 100,
            distance: 50,
        };
        let very_far = Policy::WeightedRandomDpf {
            weight: 1000,
            weight_dpf: MAX_LOAD / 100,
            distance: 500,
        };
        assert_eq!(selection_weight(&near, &st), Some(1000));
        assert_eq!(selection_weight(&far, &st), Some(500));
        assert_eq!(selection_weight(&very_far, &st), Some(1));
    }

    #[test]
    fn degradation_saturates() {
        let p = Policy::LeastUsedDegradation {
            load: 0,
            degradation: MAX_LOAD / 2 + 1,
        };
        let mut st = SelectionState::default();
        on_selected(&p, &mut st);
        on_selected(&p, &mut st);
        assert_eq!(st.degradation, MAX_LOAD);
        on_update(&p, &mut st);
        assert_eq!(st.degradation, 0);
    }

    #[test]
    fn wrr_counts_down_then_advances_round() {
        let p = Policy::WeightedRoundRobin { weight: 2 };
        let mut st = initial_state(&p, 0, 5);
        assert_eq!((st.round, st.virtual_counter), (5, 2));
        on_selected(&p, &mut st);
        assert_eq!((st.round, st.virtual_counter), (5, 1));
        on_selected(&p, &mut st);
        assert_eq!((st.round, st.virtual_counter), (6, 2));
    }
}
