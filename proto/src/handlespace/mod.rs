//! The handlespace: every pool of the operation scope with its elements, the pool consistency
//! rules and limits of RFC 5352, handle resolution by the pool policies of RFC 5356 (see
//! [`crate::policy`]), registration expiry, Endpoint Unreachable bookkeeping, and the per-owner
//! PE checksums and ownership queries ENRP (RFC 5353) needs. No I/O and no clock: callers pass
//! `now`.
//!
//! Costs, with n elements in a pool and N in the handlespace: register, re-register, deregister,
//! lookup, report: O(log n + log N); `select(k)`: O(k log n); `expire`: O((expired + 1) log N);
//! ownership take-over and removal by registrator: O(m log N) for the m elements concerned;
//! checksum: O(1) (kept incrementally).
//!
//! Registration rules (`register`):
//! - Invalid Values (0x3): identifier 0, user transport port 0 or without addresses (or more than
//!   `MAX_PE_ADDRESSES`), registration life <= 0, or a policy type rsplb cannot select with
//!   (`Policy::Unknown`; rsplib answers its implementation code 0x100b "unsupported policy",
//!   which is not an RFC cause).
//! - Inconsistent Transport Type (0x7), Inconsistent Data/Control Configuration (0x8), Inconsistent
//!   Pooling Policy (0x5): the element's user transport protocol, transport use or policy type
//!   differs from the pool's, which the pool's first element fixed. An element that is the only
//!   one of its pool may change them by re-registering.
//! - Non-unique PE Identifier (0x4): the identifier is registered in the pool over another ASAP
//!   connection ([`RegistratorId::Asap`]). A registration carried by ENRP
//!   ([`RegistratorId::Peer`]), or one that replaces an element learned by ENRP, is an update:
//!   that is how an element moves to a new home registrar.
//! - Lack of Resources (0x6): a new pool beyond `Limits::max_pools`, a new element beyond
//!   `max_elements_per_pool` or `max_elements`.
//!
//! An update (same identifier, accepted registrator) replaces addresses, policy values, home
//! registrar, life and registrator, resets the degradation counter and the Endpoint Unreachable
//! count, and keeps the element's place in round robin order.

mod checksum;
mod pool;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::time::{Duration, Instant};

use rand::Rng;

pub use checksum::{compute as compute_checksum, element_sum, finish as finish_checksum};
use pool::PoolId;
pub use pool::{ElementEntry, Pool};

use crate::policy;
use crate::types::{CauseCode, MAX_PE_ADDRESSES, PeId, PoolElement, PoolHandle, RegistrarId};

/// Who registered an element: the registrar core passes it in and removes everything a
/// registrator registered when it goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegistratorId {
    /// An ASAP association or connection of this registrar (an opaque id chosen by the core).
    Asap(u64),
    /// A peer registrar that announced the element by ENRP.
    Peer(RegistrarId),
}

/// Size limits. Exceeding one refuses the registration with Lack of Resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most pools (default 65,536).
    pub max_pools: usize,
    /// Most elements in one pool (default 262,144).
    pub max_elements_per_pool: usize,
    /// Most elements in the whole handlespace (default 1,048,576: about 0.65 GiB at the
    /// ~600-650 heap bytes per element measured by `tests/handlespace_scale.rs`).
    pub max_elements: usize,
    /// Endpoint Unreachable reports after which an element should be removed (default 3, rsplib's
    /// `-maxbadpereports` and RFC 5353's MAX-BAD-PE-REPORT). 0 counts as 1.
    pub max_bad_pe_reports: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pools: 65_536,
            max_elements_per_pool: 262_144,
            max_elements: 1_048_576,
            max_bad_pe_reports: 3,
        }
    }
}

/// Result of an accepted registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// A new element (and maybe a new pool).
    Added { new_pool: bool },
    /// An existing element was updated.
    Updated,
}

/// A handle resolution answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The pool's policy type code.
    pub policy_type: u32,
    /// The selected elements, in selection order, without duplicates. Each carries its own
    /// policy values; RFC 5352's response carries the policy of the first one.
    pub elements: Vec<PoolElement>,
}

/// Result of an Endpoint Unreachable report about an existing element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnreachableReport {
    /// Reports counted since the element's last (re-)registration, this one included.
    pub reports: u32,
    /// `reports >= Limits::max_bad_pe_reports`: the caller should remove the element.
    pub threshold_reached: bool,
}

/// Where a chunked handle table walk continues. Opaque; valid across changes of the handlespace
/// (elements added or removed meanwhile are seen or not, none is repeated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandleTableCursor(CursorKey);

#[derive(Clone, Debug, PartialEq, Eq)]
enum CursorKey {
    /// Whole handlespace: after this element of this pool (pools by handle, elements by id).
    All(PoolHandle, PeId),
    /// One owner's elements: after this (pool, element) in the owner index.
    Owned(PoolId, PeId),
}

/// One chunk of a handle table walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandleTableChunk {
    /// Elements grouped by pool, pools in handle order.
    pub pools: Vec<(PoolHandle, Vec<PoolElement>)>,
    /// `Some` when more elements follow (the M flag).
    pub next: Option<HandleTableCursor>,
}

#[derive(Debug, Default)]
struct OwnerIndex {
    checksum_sum: u64,
    elements: BTreeSet<(PoolId, PeId)>,
}

/// All pools and elements. See the module documentation for rules and costs.
#[derive(Debug)]
pub struct Handlespace {
    limits: Limits,
    by_handle: BTreeMap<PoolHandle, PoolId>,
    pools: HashMap<PoolId, Pool>,
    next_pool_id: PoolId,
    total: usize,
    expiry: BTreeSet<(Instant, PoolId, PeId)>,
    owners: HashMap<RegistrarId, OwnerIndex>,
    registrators: HashMap<RegistratorId, BTreeSet<(PoolId, PeId)>>,
}

impl Default for Handlespace {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Handlespace {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            by_handle: BTreeMap::new(),
            pools: HashMap::new(),
            next_pool_id: 0,
            total: 0,
            expiry: BTreeSet::new(),
            owners: HashMap::new(),
            registrators: HashMap::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Number of elements in all pools.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// Pools in handle order. A pool exists while it has elements.
    pub fn pools(&self) -> impl Iterator<Item = (&PoolHandle, &Pool)> {
        self.by_handle
            .iter()
            .filter_map(|(h, id)| self.pools.get(id).map(|p| (h, p)))
    }

    pub fn pool(&self, ph: &PoolHandle) -> Option<&Pool> {
        self.by_handle.get(ph).and_then(|id| self.pools.get(id))
    }

    pub fn element(&self, ph: &PoolHandle, id: PeId) -> Option<&ElementEntry> {
        self.pool(ph).and_then(|p| p.element(id))
    }

    /// Registers `pe` in pool `ph`, or updates it when it is there. The element's home registrar
    /// becomes `owner`; its registration expires `registration_life_ms` after `now` (see
    /// [`Handlespace::set_expiry`]). Errors carry the RFC cause; see the module documentation.
    pub fn register(
        &mut self,
        ph: &PoolHandle,
        mut pe: PoolElement,
        owner: RegistrarId,
        registrator: RegistratorId,
        now: Instant,
    ) -> Result<RegisterOutcome, CauseCode> {
        validate(&pe)?;
        pe.home_registrar = owner;
        let expires_at = now.checked_add(Duration::from_millis(pe.registration_life_ms as u64));

        let existing_pool = self.by_handle.get(ph).copied();
        let Some(pool_id) = existing_pool else {
            if self.pools.len() >= self.limits.max_pools || self.total >= self.limits.max_elements {
                return Err(CauseCode::LackOfResources);
            }
            if self.limits.max_elements_per_pool == 0 {
                return Err(CauseCode::LackOfResources);
            }
            let pool_id = self.next_pool_id;
            self.next_pool_id += 1;
            let pool = Pool::new(ph.clone(), &pe);
            self.by_handle.insert(ph.clone(), pool_id);
            self.pools.insert(pool_id, pool);
            self.insert_new(pool_id, pe, registrator, now, expires_at);
            return Ok(RegisterOutcome::Added { new_pool: true });
        };

        let Some(pool) = self.pools.get(&pool_id) else {
            return Err(CauseCode::Unspecified);
        };
        let sole = pool.len() == 1 && pool.elements.contains_key(&pe.id);
        if let Some(old) = pool.elements.get(&pe.id)
            && let (RegistratorId::Asap(a), RegistratorId::Asap(b)) = (old.registrator, registrator)
            && a != b
        {
            return Err(CauseCode::NonUniquePeIdentifier);
        }
        if !sole {
            check_consistency(pool, &pe)?;
        }
        if pool.elements.contains_key(&pe.id) {
            self.update_existing(pool_id, pe, registrator, now, expires_at);
            return Ok(RegisterOutcome::Updated);
        }
        if pool.len() >= self.limits.max_elements_per_pool || self.total >= self.limits.max_elements
        {
            return Err(CauseCode::LackOfResources);
        }
        self.insert_new(pool_id, pe, registrator, now, expires_at);
        Ok(RegisterOutcome::Added { new_pool: false })
    }

    fn insert_new(
        &mut self,
        pool_id: PoolId,
        pe: PoolElement,
        registrator: RegistratorId,
        now: Instant,
        expires_at: Option<Instant>,
    ) {
        let Some(pool) = self.pools.get_mut(&pool_id) else {
            return;
        };
        let id = pe.id;
        let owner = pe.home_registrar;
        let seq = pool.take_seq();
        let state = policy::initial_state(&pe.policy, seq, pool.current_round());
        let sum = checksum::element_sum(&pool.handle, id);
        pool.elements.insert(
            id,
            ElementEntry {
                pe,
                registrator,
                registered_at: now,
                updated_at: now,
                expires_at,
                unreachable_reports: 0,
                selections: 0,
                state,
                slot: 0,
            },
        );
        pool.index_insert(id);
        self.total += 1;
        self.link(pool_id, id, owner, registrator, expires_at, sum);
    }

    fn update_existing(
        &mut self,
        pool_id: PoolId,
        pe: PoolElement,
        registrator: RegistratorId,
        now: Instant,
        expires_at: Option<Instant>,
    ) {
        let Some(pool) = self.pools.get_mut(&pool_id) else {
            return;
        };
        let id = pe.id;
        let Some(old) = pool.elements.get(&id) else {
            return;
        };
        let (old_owner, old_reg, old_exp) =
            (old.pe.home_registrar, old.registrator, old.expires_at);
        let sum = checksum::element_sum(&pool.handle, id);
        pool.index_remove(id);
        let type_changed = pool
            .elements
            .get(&id)
            .is_some_and(|e| e.pe.policy.type_code() != pe.policy.type_code());
        if type_changed {
            // Only possible for the sole element: the pool takes the new properties.
            pool.policy_type = pe.policy.type_code();
        }
        pool.protocol = pe.user_transport.protocol();
        pool.transport_use = pe.user_transport.transport_use();
        let fresh_seq = if type_changed {
            Some(pool.take_seq())
        } else {
            None
        };
        let round = pool.current_round();
        let new_owner = pe.home_registrar;
        if let Some(e) = pool.elements.get_mut(&id) {
            e.pe = pe;
            e.registrator = registrator;
            e.updated_at = now;
            e.expires_at = expires_at;
            e.unreachable_reports = 0;
            match fresh_seq {
                Some(seq) => e.state = policy::initial_state(&e.pe.policy, seq, round),
                None => policy::on_update(&e.pe.policy, &mut e.state),
            }
        }
        pool.index_insert(id);
        self.unlink(pool_id, id, old_owner, old_reg, old_exp, sum);
        self.link(pool_id, id, new_owner, registrator, expires_at, sum);
    }

    /// Adds an element to the expiry, owner and registrator indexes.
    fn link(
        &mut self,
        pool_id: PoolId,
        id: PeId,
        owner: RegistrarId,
        registrator: RegistratorId,
        expires_at: Option<Instant>,
        sum: u64,
    ) {
        if let Some(t) = expires_at {
            self.expiry.insert((t, pool_id, id));
        }
        let o = self.owners.entry(owner).or_default();
        o.checksum_sum += sum;
        o.elements.insert((pool_id, id));
        self.registrators
            .entry(registrator)
            .or_default()
            .insert((pool_id, id));
    }

    /// Removes an element from the expiry, owner and registrator indexes.
    fn unlink(
        &mut self,
        pool_id: PoolId,
        id: PeId,
        owner: RegistrarId,
        registrator: RegistratorId,
        expires_at: Option<Instant>,
        sum: u64,
    ) {
        if let Some(t) = expires_at {
            self.expiry.remove(&(t, pool_id, id));
        }
        if let Some(o) = self.owners.get_mut(&owner) {
            o.checksum_sum -= sum;
            o.elements.remove(&(pool_id, id));
            if o.elements.is_empty() {
                self.owners.remove(&owner);
            }
        }
        if let Some(r) = self.registrators.get_mut(&registrator) {
            r.remove(&(pool_id, id));
            if r.is_empty() {
                self.registrators.remove(&registrator);
            }
        }
    }

    fn remove_by_pool_id(
        &mut self,
        pool_id: PoolId,
        id: PeId,
    ) -> Option<(PoolHandle, PoolElement)> {
        let pool = self.pools.get_mut(&pool_id)?;
        if !pool.elements.contains_key(&id) {
            return None;
        }
        pool.index_remove(id);
        let entry = pool.elements.remove(&id)?;
        let sum = checksum::element_sum(&pool.handle, id);
        let handle = pool.handle.clone();
        if pool.is_empty() {
            self.pools.remove(&pool_id);
            self.by_handle.remove(&handle);
        }
        self.total -= 1;
        self.unlink(
            pool_id,
            id,
            entry.pe.home_registrar,
            entry.registrator,
            entry.expires_at,
            sum,
        );
        Some((handle, entry.pe))
    }

    /// Removes an element; `None` if it is not there. An empty pool disappears.
    pub fn deregister(&mut self, ph: &PoolHandle, id: PeId) -> Option<PoolElement> {
        let pool_id = *self.by_handle.get(ph)?;
        self.remove_by_pool_id(pool_id, id).map(|(_, pe)| pe)
    }

    /// Handle resolution: up to `items` distinct elements of pool `ph` by its policy.
    /// `max_increment` is how many of them advance the policy state (0 = the policy's default,
    /// [`policy::default_max_increment`]). Unknown Pool Handle if the pool does not exist.
    pub fn select(
        &mut self,
        ph: &PoolHandle,
        items: usize,
        max_increment: usize,
        rng: &mut impl Rng,
    ) -> Result<Selection, CauseCode> {
        let pool_id = *self.by_handle.get(ph).ok_or(CauseCode::UnknownPoolHandle)?;
        let pool = self
            .pools
            .get_mut(&pool_id)
            .ok_or(CauseCode::UnknownPoolHandle)?;
        let ids = pool.select(items, max_increment, rng);
        let elements = ids
            .iter()
            .filter_map(|id| pool.elements.get(id).map(|e| e.pe.clone()))
            .collect();
        Ok(Selection {
            policy_type: pool.policy_type,
            elements,
        })
    }

    /// Counts an Endpoint Unreachable report; `None` if the element is unknown.
    pub fn report_unreachable(&mut self, ph: &PoolHandle, id: PeId) -> Option<UnreachableReport> {
        let pool_id = *self.by_handle.get(ph)?;
        let e = self.pools.get_mut(&pool_id)?.elements.get_mut(&id)?;
        e.unreachable_reports = e.unreachable_reports.saturating_add(1);
        Some(UnreachableReport {
            reports: e.unreachable_reports,
            threshold_reached: e.unreachable_reports >= self.limits.max_bad_pe_reports.max(1),
        })
    }

    /// Sets when an element's registration expires (`None` = never). Returns false if the
    /// element is unknown. The registrar core uses `None` for elements it monitors itself.
    pub fn set_expiry(&mut self, ph: &PoolHandle, id: PeId, at: Option<Instant>) -> bool {
        let Some(&pool_id) = self.by_handle.get(ph) else {
            return false;
        };
        let Some(e) = self
            .pools
            .get_mut(&pool_id)
            .and_then(|p| p.elements.get_mut(&id))
        else {
            return false;
        };
        if let Some(t) = e.expires_at {
            self.expiry.remove(&(t, pool_id, id));
        }
        e.expires_at = at;
        if let Some(t) = at {
            self.expiry.insert((t, pool_id, id));
        }
        true
    }

    /// The earliest expiry time of any element.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(t, _, _)| *t)
    }

    /// Removes every element whose registration expired at or before `now`, earliest first.
    pub fn expire(&mut self, now: Instant) -> Vec<(PoolHandle, PoolElement)> {
        let mut out = Vec::new();
        while let Some(&(t, pool_id, id)) = self.expiry.first() {
            if t > now {
                break;
            }
            match self.remove_by_pool_id(pool_id, id) {
                Some(removed) => out.push(removed),
                // Cannot happen (indexes agree); never loop on it.
                None => {
                    self.expiry.remove(&(t, pool_id, id));
                }
            }
        }
        out
    }

    /// The PE checksum of the elements `owner` owns (RFC 5353; see [`compute_checksum`]).
    pub fn checksum(&self, owner: RegistrarId) -> u16 {
        checksum::finish(self.owners.get(&owner).map_or(0, |o| o.checksum_sum))
    }

    /// The same checksum computed from scratch (for audits and tests): O(N).
    pub fn checksum_from_scratch(&self, owner: RegistrarId) -> u16 {
        checksum::compute(self.pools().flat_map(|(h, p)| {
            p.elements()
                .filter(move |e| e.owner() == owner)
                .map(move |e| (h, e.id()))
        }))
    }

    /// Registrars that own at least one element.
    pub fn owners(&self) -> impl Iterator<Item = RegistrarId> + '_ {
        self.owners.keys().copied()
    }

    /// Number of elements `owner` owns.
    pub fn owned_count(&self, owner: RegistrarId) -> usize {
        self.owners.get(&owner).map_or(0, |o| o.elements.len())
    }

    /// The elements `owner` owns (grouped by pool, not in handle order).
    pub fn owned_by(
        &self,
        owner: RegistrarId,
    ) -> impl Iterator<Item = (&PoolHandle, &ElementEntry)> + '_ {
        self.owners
            .get(&owner)
            .into_iter()
            .flat_map(|o| o.elements.iter())
            .filter_map(|(pid, id)| {
                let p = self.pools.get(pid)?;
                Some((&p.handle, p.elements.get(id)?))
            })
    }

    /// Take-over (RFC 5353): every element owned by `from` becomes owned by `to`. Returns the
    /// elements moved (the new owner sends them keep-alives with the H flag).
    pub fn take_over(&mut self, from: RegistrarId, to: RegistrarId) -> Vec<(PoolHandle, PeId)> {
        if from == to {
            return Vec::new();
        }
        let Some(old) = self.owners.remove(&from) else {
            return Vec::new();
        };
        let mut moved = Vec::with_capacity(old.elements.len());
        for &(pid, id) in &old.elements {
            if let Some(p) = self.pools.get_mut(&pid)
                && let Some(e) = p.elements.get_mut(&id)
            {
                e.pe.home_registrar = to;
                moved.push((p.handle.clone(), id));
            }
        }
        let new = self.owners.entry(to).or_default();
        new.checksum_sum += old.checksum_sum;
        new.elements.extend(old.elements);
        moved
    }

    /// Removes every element `owner` owns (e.g. after a failed audit or a dropped peer).
    pub fn remove_owned_by(&mut self, owner: RegistrarId) -> Vec<(PoolHandle, PoolElement)> {
        let keys: Vec<(PoolId, PeId)> = self
            .owners
            .get(&owner)
            .map(|o| o.elements.iter().copied().collect())
            .unwrap_or_default();
        keys.into_iter()
            .filter_map(|(pid, id)| self.remove_by_pool_id(pid, id))
            .collect()
    }

    /// Removes every element registered by `r` (its ASAP connection closed, or a peer is gone).
    pub fn remove_by_registrator(&mut self, r: RegistratorId) -> Vec<(PoolHandle, PoolElement)> {
        let keys: Vec<(PoolId, PeId)> = self
            .registrators
            .get(&r)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        keys.into_iter()
            .filter_map(|(pid, id)| self.remove_by_pool_id(pid, id))
            .collect()
    }

    /// One chunk of at most `max` elements of the handle table (ENRP Handle Table Response),
    /// continuing after `cursor` (`None` = from the start). With `owner`, only that registrar's
    /// elements (the W flag). A cursor from a walk with another `owner` filter restarts the walk.
    pub fn handle_table(
        &self,
        cursor: Option<&HandleTableCursor>,
        max: usize,
        owner: Option<RegistrarId>,
    ) -> HandleTableChunk {
        let max = max.max(1);
        let mut pools: Vec<(PoolHandle, Vec<PoolElement>)> = Vec::new();
        let mut count = 0usize;
        let mut last: Option<CursorKey> = None;
        let mut more = false;
        let push =
            |pools: &mut Vec<(PoolHandle, Vec<PoolElement>)>, h: &PoolHandle, pe: &PoolElement| {
                match pools.last_mut() {
                    Some((lh, v)) if lh == h => v.push(pe.clone()),
                    _ => pools.push((h.clone(), vec![pe.clone()])),
                }
            };
        match owner {
            None => {
                let (start_h, after): (Bound<&PoolHandle>, Option<PeId>) = match cursor {
                    Some(HandleTableCursor(CursorKey::All(h, id))) => {
                        (Bound::Included(h), Some(*id))
                    }
                    _ => (Bound::Unbounded, None),
                };
                'outer: for (h, pid) in self
                    .by_handle
                    .range::<PoolHandle, _>((start_h, Bound::Unbounded))
                {
                    let Some(p) = self.pools.get(pid) else {
                        continue;
                    };
                    let lower = match (cursor, after) {
                        (Some(HandleTableCursor(CursorKey::All(ch, _))), Some(a)) if ch == h => {
                            Bound::Excluded(a)
                        }
                        _ => Bound::Unbounded,
                    };
                    for (id, e) in p.elements.range((lower, Bound::Unbounded)) {
                        if count == max {
                            more = true;
                            break 'outer;
                        }
                        push(&mut pools, h, &e.pe);
                        count += 1;
                        last = Some(CursorKey::All(h.clone(), *id));
                    }
                }
            }
            Some(o) => {
                if let Some(idx) = self.owners.get(&o) {
                    let lower = match cursor {
                        Some(HandleTableCursor(CursorKey::Owned(pid, id))) => {
                            Bound::Excluded((*pid, *id))
                        }
                        _ => Bound::Unbounded,
                    };
                    for &(pid, id) in idx.elements.range((lower, Bound::Unbounded)) {
                        let Some(p) = self.pools.get(&pid) else {
                            continue;
                        };
                        let Some(e) = p.elements.get(&id) else {
                            continue;
                        };
                        if count == max {
                            more = true;
                            break;
                        }
                        push(&mut pools, &p.handle, &e.pe);
                        count += 1;
                        last = Some(CursorKey::Owned(pid, id));
                    }
                }
            }
        }
        HandleTableChunk {
            pools,
            next: if more {
                last.map(HandleTableCursor)
            } else {
                None
            },
        }
    }
}

/// Checks that do not depend on the pool.
fn validate(pe: &PoolElement) -> Result<(), CauseCode> {
    let n = pe.user_transport.addrs().len();
    if pe.id.0 == 0
        || pe.user_transport.port() == 0
        || n == 0
        || n > MAX_PE_ADDRESSES
        || pe.registration_life_ms <= 0
        || !policy::is_supported(&pe.policy)
    {
        return Err(CauseCode::InvalidValues);
    }
    Ok(())
}

/// The pool's fixed properties against a registration (rsplib's order: protocol, control
/// channel, policy).
fn check_consistency(pool: &Pool, pe: &PoolElement) -> Result<(), CauseCode> {
    if pe.user_transport.protocol() != pool.protocol {
        return Err(CauseCode::InconsistentTransportType);
    }
    if pe.user_transport.transport_use() != pool.transport_use {
        return Err(CauseCode::InconsistentDataControlConfiguration);
    }
    if pe.policy.type_code() != pool.policy_type {
        return Err(CauseCode::InconsistentPoolingPolicy);
    }
    Ok(())
}
