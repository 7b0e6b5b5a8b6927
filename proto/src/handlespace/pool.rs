//! One pool: its fixed properties, its elements by identifier and its selection index.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use rand::Rng;

use crate::policy::{self, Family, Fenwick, SelectionState, SortKey};
use crate::types::{PeId, PoolElement, PoolHandle, RegistrarId, TransportProtocol, TransportUse};

use super::RegistratorId;

/// Internal pool number: never reused, so `(PoolId, PeId)` keys in the indexes stay unambiguous.
pub(crate) type PoolId = u64;

/// An element as the handlespace keeps it.
#[derive(Clone, Debug)]
pub struct ElementEntry {
    pub(crate) pe: PoolElement,
    pub(crate) registrator: RegistratorId,
    pub(crate) registered_at: Instant,
    pub(crate) updated_at: Instant,
    pub(crate) expires_at: Option<Instant>,
    pub(crate) unreachable_reports: u32,
    pub(crate) selections: u64,
    pub(crate) state: SelectionState,
    /// Sum-tree slot (weighted policies only).
    pub(crate) slot: u32,
}

impl ElementEntry {
    /// The element as registered. `home_registrar` is its owner.
    pub fn element(&self) -> &PoolElement {
        &self.pe
    }

    pub fn id(&self) -> PeId {
        self.pe.id
    }

    /// The home registrar (PR-H) that owns the element.
    pub fn owner(&self) -> RegistrarId {
        self.pe.home_registrar
    }

    /// Who registered it (an ASAP connection or a peer registrar).
    pub fn registrator(&self) -> RegistratorId {
        self.registrator
    }

    /// First registration (for "age").
    pub fn registered_at(&self) -> Instant {
        self.registered_at
    }

    /// Last registration or re-registration.
    pub fn updated_at(&self) -> Instant {
        self.updated_at
    }

    /// When the registration expires (`None`: never, e.g. while the core monitors it by
    /// keep-alives).
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// Endpoint Unreachable reports since the last (re-)registration.
    pub fn unreachable_reports(&self) -> u32 {
        self.unreachable_reports
    }

    /// How many handle resolution replies carried the element.
    pub fn selections(&self) -> u64 {
        self.selections
    }

    /// The degradation counter (degradation policies), a fraction of `u32::MAX`.
    pub fn degradation(&self) -> u32 {
        self.state.degradation
    }

    /// The selection state (sequence number, WRR round and counter, degradation).
    pub fn selection_state(&self) -> &SelectionState {
        &self.state
    }
}

/// A pool: elements under one handle sharing policy type, transport protocol and transport use.
#[derive(Debug)]
pub struct Pool {
    pub(crate) handle: PoolHandle,
    pub(crate) policy_type: u32,
    pub(crate) protocol: TransportProtocol,
    pub(crate) transport_use: TransportUse,
    pub(crate) elements: BTreeMap<PeId, ElementEntry>,
    /// Ordered policies: elements by selection order.
    ordered: BTreeSet<(SortKey, PeId)>,
    /// Weighted policies: weights by slot, and the element in each slot.
    weights: Fenwick,
    slot_ids: Vec<PeId>,
    next_seq: u64,
}

impl Pool {
    pub(crate) fn new(handle: PoolHandle, pe: &PoolElement) -> Self {
        Self {
            handle,
            policy_type: pe.policy.type_code(),
            protocol: pe.user_transport.protocol(),
            transport_use: pe.user_transport.transport_use(),
            elements: BTreeMap::new(),
            ordered: BTreeSet::new(),
            weights: Fenwick::new(),
            slot_ids: Vec::new(),
            next_seq: 0,
        }
    }

    pub fn handle(&self) -> &PoolHandle {
        &self.handle
    }

    /// The pool's policy type code (`types::policy_type`).
    pub fn policy_type(&self) -> u32 {
        self.policy_type
    }

    pub fn protocol(&self) -> TransportProtocol {
        self.protocol
    }

    pub fn transport_use(&self) -> TransportUse {
        self.transport_use
    }

    pub fn len(&self) -> usize {
        self.elements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    pub fn element(&self, id: PeId) -> Option<&ElementEntry> {
        self.elements.get(&id)
    }

    /// Elements by identifier.
    pub fn elements(&self) -> impl Iterator<Item = &ElementEntry> {
        self.elements.values()
    }

    /// Elements in the order an ordered policy would select them now (first = next); for a
    /// weighted policy, by identifier.
    pub fn selection_order(&self) -> Vec<PeId> {
        if self.family() == Family::Ordered {
            self.ordered.iter().map(|(_, id)| *id).collect()
        } else {
            self.elements.keys().copied().collect()
        }
    }

    fn family(&self) -> Family {
        // The pool's policy is always a supported one (checked at registration).
        match self.elements.values().next() {
            Some(e) => policy::family(&e.pe.policy).unwrap_or(Family::Ordered),
            None => Family::Ordered,
        }
    }

    pub(crate) fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Round of the element that would be selected next (Weighted Round Robin), 0 if none.
    pub(crate) fn current_round(&self) -> u64 {
        self.ordered
            .first()
            .and_then(|(_, id)| self.elements.get(id))
            .map_or(0, |e| e.state.round)
    }

    /// Adds the element `id` (already in `elements`) to the selection index.
    pub(crate) fn index_insert(&mut self, id: PeId) {
        let Some(e) = self.elements.get_mut(&id) else {
            return;
        };
        if let Some(key) = policy::sort_key(&e.pe.policy, &e.state) {
            self.ordered.insert((key, id));
        } else if let Some(w) = policy::selection_weight(&e.pe.policy, &e.state) {
            let slot = self.weights.allocate(w);
            e.slot = slot;
            let slot = slot as usize;
            if self.slot_ids.len() <= slot {
                self.slot_ids.resize(slot + 1, PeId(0));
            }
            self.slot_ids[slot] = id;
        }
    }

    /// Removes the element `id` (still in `elements`) from the selection index.
    pub(crate) fn index_remove(&mut self, id: PeId) {
        let Some(e) = self.elements.get(&id) else {
            return;
        };
        if let Some(key) = policy::sort_key(&e.pe.policy, &e.state) {
            self.ordered.remove(&(key, id));
        } else if policy::selection_weight(&e.pe.policy, &e.state).is_some() {
            self.weights.release(e.slot);
        }
    }

    /// Up to `items` distinct elements by the pool's policy; the first `max_increment` (0 = the
    /// policy's default) advance their selection state.
    pub(crate) fn select(
        &mut self,
        items: usize,
        max_increment: usize,
        rng: &mut impl Rng,
    ) -> Vec<PeId> {
        let max_inc = if max_increment == 0 {
            policy::default_max_increment(self.policy_type)
        } else {
            max_increment
        };
        match self.family() {
            Family::Ordered => self.select_ordered(items, max_inc),
            Family::Weighted => self.select_weighted(items, max_inc, rng),
        }
    }

    fn select_ordered(&mut self, items: usize, max_inc: usize) -> Vec<PeId> {
        let picked: Vec<(SortKey, PeId)> = self.ordered.iter().take(items).copied().collect();
        for (i, (key, id)) in picked.iter().enumerate() {
            let seq = if i < max_inc {
                Some(self.take_seq())
            } else {
                None
            };
            let Some(e) = self.elements.get_mut(id) else {
                continue;
            };
            e.selections += 1;
            if let Some(seq) = seq {
                self.ordered.remove(&(*key, *id));
                e.state.seq = seq;
                policy::on_selected(&e.pe.policy, &mut e.state);
                if let Some(new_key) = policy::sort_key(&e.pe.policy, &e.state) {
                    self.ordered.insert((new_key, *id));
                }
            }
        }
        picked.into_iter().map(|(_, id)| id).collect()
    }

    fn select_weighted(&mut self, items: usize, max_inc: usize, rng: &mut impl Rng) -> Vec<PeId> {
        let n = items.min(self.elements.len());
        let mut drawn: Vec<(u32, PeId)> = Vec::with_capacity(n);
        for _ in 0..n {
            let total = self.weights.total();
            if total == 0 {
                break;
            }
            let point = rng.random_range(0..total);
            let Some(slot) = self.weights.find(point) else {
                break;
            };
            let Some(&id) = self.slot_ids.get(slot as usize) else {
                break;
            };
            // Out of the draw until the reply is complete: no duplicates.
            self.weights.set(slot, 0);
            drawn.push((slot, id));
        }
        for (i, &(slot, id)) in drawn.iter().enumerate() {
            let seq = self.take_seq();
            if let Some(e) = self.elements.get_mut(&id) {
                e.selections += 1;
                e.state.seq = seq;
                if i < max_inc {
                    policy::on_selected(&e.pe.policy, &mut e.state);
                }
                let w = policy::selection_weight(&e.pe.policy, &e.state).unwrap_or(0);
                self.weights.set(slot, w);
            }
        }
        drawn.into_iter().map(|(_, id)| id).collect()
    }
}
