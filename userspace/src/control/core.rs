//! The control-plane core: what the dataplane of one interface must become, as an ordered list
//! of map writes. No aya, netlink or file system in here (in the manner of quinn-proto): the
//! caller loads the [`State`], feeds commands (command-line changes, the registrar reconciler's
//! desired elements, neighbour results), takes the writes with [`Core::finish`], has an
//! executor ([`crate::executor`]) carry them out in order, and saves the state.
//!
//! The order of the writes is what keeps packets safe; each rule is a unit test below:
//! - an element's value is written before any table names its slot;
//! - a removed element leaves every Maglev table (each VIP of its pool flips to a table without
//!   it) before its slot is cleared, and the slot is released for reuse only then: a slot is
//!   never reused while an active table points at it;
//! - a VIP's standby table is written whole, while no VIP reads it, before the VIP entry flips
//!   to it;
//! - a VIP entry is written in one map update, with every field set ([`Write::Vip`]);
//! - an egress port is in `RSPLB_TX_PORTS` before an element leaves by it;
//! - a VIP's source allow list is in `RSPLB_ALLOW` before the VIP entry sets `VIP_F_ALLOW_LIST`
//!   (and whole before an entry with the flag names a new list), and prefixes leave only after
//!   the entry no longer needs them: after the flag is cleared, after the entry that names the
//!   new list, or after the VIP entry is removed. While a list changes, a source either list
//!   allows is allowed; no packet sees a flag over a list half-written.
//!
//! A batch of commands (a burst of handlespace events) rebuilds each affected pool's table once,
//! in `finish`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
};

use anyhow::{Result, anyhow, bail};
use rsplb_common::{
    Config, ELEM_ACTIVE, ELEM_DRAINING, Element, NatValue, VIP_F_ALLOW_LIST, VipInfo, VipKey,
};

use crate::{
    addr::{ElementAddr, Mode, PoolHandle, Vip, VipHash, addr_words, family},
    allow::{self, Prefix},
    maglev::{self, MaglevElement},
    state::{
        CheckedBy, ElementState, ElementStateEntry, Health, NextHop, NoneHealthy, OnFailure, Owner,
        PoolPolicy, State, VipState,
    },
};

/// One dataplane map write, in the order the executor must carry them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Zeroes an element slot's per-CPU counters (it is about to get a new owner).
    ResetElementCounters { slot: u32 },
    /// Zeroes a VIP slot's per-CPU counters.
    ResetVipCounters { slot: u32 },
    /// `RSPLB_ELEMENTS[slot]`. A cleared slot (flags 0) keeps its generation.
    Element { slot: u32, value: Element },
    /// A whole Maglev table (`table` is a table index; `entries` are element slots,
    /// `NO_ELEMENT` for none), written while no VIP reads it.
    MaglevTable { table: u32, entries: Arc<[u32]> },
    /// A VIP entry in one map update: a new VIP, a change, or the flip to its standby table.
    Vip { key: VipKey, info: VipInfo },
    /// A VIP leaves `RSPLB_VIPS`.
    RemoveVip { key: VipKey },
    /// Allows `prefix` for the VIP of slot `slot` in `RSPLB_ALLOW`.
    AllowPrefix { slot: u32, prefix: Prefix },
    /// Removes from `RSPLB_ALLOW` every prefix of VIP slot `slot` that is not in `keep`,
    /// whatever the state says was there (so prefixes an interrupted change left behind go
    /// too). An empty `keep` clears the slot.
    RetainAllow { slot: u32, keep: Arc<[Prefix]> },
    /// An egress interface other than the attached one, in `RSPLB_TX_PORTS`.
    TxPort { ifindex: u32 },
    /// `RSPLB_CONFIG`.
    Config(Config),
}

/// How an element command treats an existing element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// `element add`: fails if the element exists.
    MustBeNew,
    /// `element weight`: fails if it does not.
    MustExist,
    /// Adds, or updates the weight and puts a draining element back in service.
    Either,
    /// Owned by the registrar: never touches an element another owner put there.
    Registrar { active: bool },
    /// Declared by the configuration file: never touches an element another owner put there;
    /// on one it owns it sets the weight only (a drain by hand lasts until it is undone).
    Config,
}

/// What [`Core::declare_vip`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VipChange {
    Added,
    /// Its pool, mode, SNAT address or NAT timeout changed.
    Changed,
    /// It was added by hand with the same settings: the file owns it now.
    Adopted,
    Unchanged,
}

/// What is known of an element's next hop when the command comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// A resolution that finished (the command line resolves before it changes anything): the
    /// next hop (possibly with an unresolved MAC), or why there is none.
    Resolved(Result<NextHop, String>),
    /// Not resolved yet (the daemon resolves in the background): a new element stays out of
    /// the Maglev tables until [`Core::neighbour`] brings its first result; an existing one
    /// keeps the next hop it has.
    Pending,
}

/// What an element command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementReport {
    pub slot: u32,
    /// Why the next hop is unresolved, if it is.
    pub unresolved: Option<String>,
    /// The element as it is now (its address as the pool knows it, weight, state).
    pub element: ElementStateEntry,
    /// The element waits for a neighbour result ([`Hop::Pending`] on a new element).
    pub needs_resolution: bool,
}

/// Which element a neighbour result is for: the slot's generation tells a result for an
/// element that was removed (and its slot reused) from one for the element there now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourTarget {
    pub pool: String,
    pub addr: ElementAddr,
    pub slot: u32,
    pub generation: u32,
}

impl NeighbourTarget {
    pub fn of(e: &ElementStateEntry) -> NeighbourTarget {
        NeighbourTarget {
            pool: e.pool.clone(),
            addr: e.element_addr(),
            slot: e.slot,
            generation: e.generation,
        }
    }
}

/// The control plane of one interface for one batch of commands.
pub struct Core {
    state: State,
    writes: Vec<Write>,
    /// Pools whose Maglev tables must be rebuilt.
    dirty_pools: BTreeSet<String>,
    /// VIPs (by `ADDR:PORT/PROTO`) whose entry must be rewritten.
    dirty_vips: BTreeSet<String>,
    /// VIPs (by `ADDR:PORT/PROTO`) whose allow list must be written with their entry, and
    /// whether their entry in the dataplane may have `VIP_F_ALLOW_LIST` set now.
    allow_vips: BTreeMap<String, bool>,
    /// Removed elements (slot, generation): cleared and released after the tables flip.
    retired: Vec<(u32, u32)>,
}

/// The element flags the dataplane should have for `e`: active (in the tables, also when a
/// fail-static rule keeps a failed element there), draining, or 0 for an element its pool's
/// `on_failure = remove` took out because its check failed.
fn element_flags(st: &State, e: &ElementStateEntry) -> u8 {
    match (e.state, e.health) {
        (ElementState::Draining, _) => ELEM_ACTIVE | ELEM_DRAINING,
        (ElementState::Active, Health::Down) if rescued(st, &e.pool) => ELEM_ACTIVE,
        (ElementState::Active, Health::Down) => match st.pool_policy(&e.pool).on_failure {
            OnFailure::Drain => ELEM_ACTIVE | ELEM_DRAINING,
            OnFailure::Remove => 0,
        },
        (ElementState::Active, _) => ELEM_ACTIVE,
    }
}

/// Does an element take new flows: in service, its next hop known, and not down?
fn serving(e: &ElementStateEntry) -> bool {
    e.state == ElementState::Active && !e.nexthop_pending && e.health != Health::Down
}

/// Is `pool` kept in the tables whatever its checks say (no element healthy, and its rule is
/// fail-static)?
fn rescued(st: &State, pool: &str) -> bool {
    st.pool_policy(pool).when_none_healthy == NoneHealthy::FailStatic
        && !st.pool_elements(pool).any(serving)
}

impl Core {
    pub fn new(state: State) -> Core {
        Core {
            state,
            writes: Vec::new(),
            dirty_pools: BTreeSet::new(),
            dirty_vips: BTreeSet::new(),
            allow_vips: BTreeMap::new(),
            retired: Vec::new(),
        }
    }

    /// The state as the commands so far left it (tables not yet rebuilt: see `finish`).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Ends the batch: rebuilds each affected table once (standby written, then the flip),
    /// then clears and releases the slots of removed elements. Returns the new state and the
    /// writes that take the dataplane there, in order.
    pub fn finish(mut self) -> (State, Vec<Write>) {
        let mut publish: BTreeSet<usize> = BTreeSet::new();
        for (i, v) in self.state.vips.iter().enumerate() {
            let backup = self
                .state
                .pools
                .get(&v.pool)
                .and_then(|p| p.backup.as_ref());
            if self.dirty_pools.contains(&v.pool)
                || backup.is_some_and(|b| self.dirty_pools.contains(b))
                || self.dirty_vips.contains(&v.vip)
            {
                publish.insert(i);
            }
        }
        // Failed elements of the changed pools: those the tables keep (drain, fail-static) are
        // active before the flips; those `on_failure = remove` takes out are cleared after.
        let mut cleared_after = Vec::new();
        let down: Vec<usize> = (0..self.state.elements.len())
            .filter(|&i| {
                let e = &self.state.elements[i];
                e.health == Health::Down && self.dirty_pools.contains(&e.pool)
            })
            .collect();
        for i in down {
            let e = &self.state.elements[i];
            match element_flags(&self.state, e) {
                0 => cleared_after.push(Write::Element {
                    slot: e.slot,
                    value: element_value(e, 0),
                }),
                _ => self.write_element(i),
            }
        }
        let mut tables: HashMap<String, Arc<[u32]>> = HashMap::new();
        for i in publish {
            let pool = self.state.vips[i].pool.clone();
            let table = tables
                .entry(pool.clone())
                .or_insert_with(|| vip_table(&self.state, &pool).into())
                .clone();
            self.publish_vip(i, table);
        }
        self.writes.extend(cleared_after);
        for (slot, generation) in std::mem::take(&mut self.retired) {
            self.writes.push(Write::Element {
                slot,
                value: Element {
                    generation,
                    ..Element::default()
                },
            });
            self.state.element_slots.release(slot);
        }
        (self.state, self.writes)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_vip(
        &mut self,
        vip: Vip,
        pool: &PoolHandle,
        mode: Mode,
        snat: Option<IpAddr>,
        nat_timeout_s: Option<u32>,
        allow: &[Prefix],
        hash: VipHash,
    ) -> Result<u32> {
        self.add_vip_owned(
            vip,
            pool,
            mode,
            snat,
            nat_timeout_s,
            allow,
            hash,
            Owner::Manual,
        )
    }

    /// Makes `vip` exactly this, owned by the configuration file: adds it, changes it, or
    /// takes over a VIP added by hand.
    #[allow(clippy::too_many_arguments)]
    pub fn declare_vip(
        &mut self,
        vip: Vip,
        pool: &PoolHandle,
        mode: Mode,
        snat: Option<IpAddr>,
        nat_timeout_s: Option<u32>,
        allow: &[Prefix],
        hash: VipHash,
    ) -> Result<VipChange> {
        let Some(i) = self.state.find_vip(&vip) else {
            self.add_vip_owned(
                vip,
                pool,
                mode,
                snat,
                nat_timeout_s,
                allow,
                hash,
                Owner::Config,
            )?;
            return Ok(VipChange::Added);
        };
        let old = self.state.vips[i].clone();
        let snat = if mode == Mode::Nat { snat } else { None };
        let allow = allow_list(&vip, allow)?;
        let same = old.pool == pool.as_str()
            && old.mode == mode
            && (mode == Mode::Dsr || old.snat == snat)
            && old.nat_timeout_s == nat_timeout_s.unwrap_or(0)
            && old.allow == allow
            && old.hash == hash;
        if same {
            self.state.vips[i].owner = Owner::Config;
            return Ok(if old.owner == Owner::Config {
                VipChange::Unchanged
            } else {
                VipChange::Adopted
            });
        }
        if let Some(t) = nat_timeout_s {
            check_nat_timeout(t)?;
        }
        let new_allow = (old.allow != allow).then_some(allow.as_slice());
        self.change_vip(vip, Some(pool), Some(mode), snat, new_allow, Some(hash))?;
        let v = &mut self.state.vips[i];
        v.snat = snat;
        v.nat_timeout_s = nat_timeout_s.unwrap_or(0);
        v.owner = Owner::Config;
        Ok(VipChange::Changed)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_vip_owned(
        &mut self,
        vip: Vip,
        pool: &PoolHandle,
        mode: Mode,
        snat: Option<IpAddr>,
        nat_timeout_s: Option<u32>,
        allow: &[Prefix],
        hash: VipHash,
        owner: Owner,
    ) -> Result<u32> {
        check_snat(&vip, mode, snat)?;
        if let Some(t) = nat_timeout_s {
            check_nat_timeout(t)?;
        }
        let allow = allow_list(&vip, allow)?;
        let st = &mut self.state;
        if st.find_vip(&vip).is_some() {
            bail!("VIP {vip} already exists (use `vip change`)");
        }
        check_pool_for_vip(st, pool.as_str(), &vip, mode)?;
        check_allow_capacity(st, None, &allow)?;
        let (slot, _) = st.vip_slots.allocate("vip")?;
        self.writes.push(Write::ResetVipCounters { slot });
        st.vips.push(VipState {
            vip: vip.to_string(),
            pool: pool.to_string(),
            mode,
            snat,
            nat_timeout_s: nat_timeout_s.unwrap_or(0),
            slot,
            // The first publish flips to 2 * slot + 1.
            table: 2 * slot,
            allow,
            hash,
            owner,
        });
        self.dirty_vips.insert(vip.to_string());
        self.allow_vips.insert(vip.to_string(), false);
        Ok(slot)
    }

    /// Changes what is given of a VIP's pool, mode, SNAT address, allow list (`Some(&[])`:
    /// no list, everyone may reach it) and hash (it applies to new flows; established ones
    /// stay pinned where they are).
    pub fn change_vip(
        &mut self,
        vip: Vip,
        pool: Option<&PoolHandle>,
        mode: Option<Mode>,
        snat: Option<IpAddr>,
        allow: Option<&[Prefix]>,
        hash: Option<VipHash>,
    ) -> Result<()> {
        let st = &self.state;
        let i = st
            .find_vip(&vip)
            .ok_or_else(|| anyhow!("no VIP {vip} on {}", st.interface))?;
        let mut v = st.vips[i].clone();
        if let Some(p) = pool {
            v.pool = p.to_string();
        }
        if let Some(m) = mode {
            v.mode = m;
        }
        if snat.is_some() {
            v.snat = snat;
        }
        if let Some(h) = hash {
            v.hash = h;
        }
        if let Some(list) = allow {
            v.allow = allow_list(&vip, list)?;
            check_allow_capacity(st, Some(i), &v.allow)?;
        }
        check_snat(&vip, v.mode, v.snat)?;
        check_pool_for_vip(st, &v.pool, &vip, v.mode)?;
        if allow.is_some() {
            let flagged = !st.vips[i].allow.is_empty();
            self.allow_vips.entry(v.vip.clone()).or_insert(flagged);
        }
        self.dirty_vips.insert(v.vip.clone());
        self.state.vips[i] = v;
        Ok(())
    }

    pub fn del_vip(&mut self, vip: Vip) -> Result<()> {
        let st = &mut self.state;
        let i = st
            .find_vip(&vip)
            .ok_or_else(|| anyhow!("no VIP {vip} on {}", st.interface))?;
        self.writes.push(Write::RemoveVip { key: vip.key() });
        let v = st.vips.remove(i);
        // Its prefixes go once no entry reads them, before the slot can be reused.
        let flagged = self.allow_vips.remove(&v.vip) == Some(true);
        if flagged || !v.allow.is_empty() {
            self.writes.push(Write::RetainAllow {
                slot: v.slot,
                keep: Arc::from([]),
            });
        }
        st.vip_slots.release(v.slot);
        self.dirty_vips.remove(&v.vip);
        Ok(())
    }

    /// Adds an element or updates it (see [`Upsert`]). `Ok(None)`: an element added by hand
    /// was left alone for the registrar.
    pub fn upsert_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
        weight: u16,
        how: Upsert,
        hop: Hop,
    ) -> Result<Option<ElementReport>> {
        if weight == 0 {
            bail!("weight must be 1..=65535");
        }
        let st = &mut self.state;
        check_element_for_pool(st, pool.as_str(), &addr)?;
        // An element keeps the spelling it was added with (what `element list` shows and the
        // registrar's reconciler compares with); `find_element` knows its other ones.
        let existing = find_element(st, pool, &addr);
        let (i, new) = match (existing, how) {
            (Some(i), Upsert::MustBeNew) => bail!(
                "element {} is already in pool {pool} (`element weight` changes its weight, `element undrain` puts a drained element back in service)",
                st.elements[i].element_addr()
            ),
            (None, Upsert::MustExist) => bail!("no element {addr} in pool {pool}"),
            (Some(i), Upsert::Registrar { .. }) if st.elements[i].owner != Owner::Registrar => {
                return Ok(None);
            }
            (Some(i), Upsert::Config) if st.elements[i].owner != Owner::Config => {
                return Ok(None);
            }
            (Some(i), _) => {
                let e = &mut st.elements[i];
                e.weight = weight;
                match how {
                    Upsert::Either => e.state = ElementState::Active,
                    Upsert::Registrar { active } => e.state = element_state(active),
                    Upsert::MustBeNew | Upsert::MustExist | Upsert::Config => {}
                }
                (i, false)
            }
            (None, _) => {
                let (slot, generation) = st.element_slots.allocate("element")?;
                self.writes.push(Write::ResetElementCounters { slot });
                let (state, owner) = match how {
                    Upsert::Registrar { active } => (element_state(active), Owner::Registrar),
                    Upsert::Config => (ElementState::Active, Owner::Config),
                    _ => (ElementState::Active, Owner::Manual),
                };
                st.elements.push(ElementStateEntry {
                    pool: pool.to_string(),
                    addr: addr.addr,
                    port: addr.port,
                    weight,
                    state,
                    slot,
                    generation,
                    nexthop: None,
                    owner,
                    nexthop_pending: false,
                    health: Health::Up,
                    checked: None,
                });
                (st.elements.len() - 1, true)
            }
        };
        let unresolved = match hop {
            Hop::Resolved(Ok(h)) => {
                let why =
                    (!h.resolved()).then(|| format!("neighbour of {} did not answer", addr.addr));
                st.elements[i].nexthop = Some(h);
                st.elements[i].nexthop_pending = false;
                why
            }
            Hop::Resolved(Err(why)) => {
                st.elements[i].nexthop_pending = false;
                Some(why)
            }
            Hop::Pending => {
                st.elements[i].nexthop_pending |= new;
                None
            }
        };
        self.write_element(i);
        // A new element awaiting its next hop is in no table yet: its pool's tables are
        // rebuilt when its neighbour result comes ([`Core::neighbour`]), not twice.
        if !(new && self.state.elements[i].nexthop_pending) {
            self.dirty_pools.insert(pool.to_string());
        }
        let e = &self.state.elements[i];
        Ok(Some(ElementReport {
            slot: e.slot,
            unresolved,
            needs_resolution: e.nexthop_pending,
            element: e.clone(),
        }))
    }

    /// Drains an element (no new flows) or puts it back in service.
    pub fn set_element_state(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
        state: ElementState,
    ) -> Result<ElementStateEntry> {
        let i = find_element(&self.state, pool, &addr)
            .ok_or_else(|| anyhow!("no element {addr} in pool {pool}"))?;
        self.state.elements[i].state = state;
        self.write_element(i);
        self.dirty_pools.insert(pool.to_string());
        Ok(self.state.elements[i].clone())
    }

    /// Removes an element: it leaves its pool's tables, then its slot is cleared, so its flows
    /// are re-selected.
    pub fn remove_element(&mut self, pool: &PoolHandle, addr: ElementAddr) -> Result<()> {
        let i = find_element(&self.state, pool, &addr)
            .ok_or_else(|| anyhow!("no element {addr} in pool {pool}"))?;
        self.remove_at(i);
        Ok(())
    }

    /// Removes an element the registrar owns. `false`, and nothing changes, when it is absent
    /// or was added by hand.
    pub fn remove_registered_element(&mut self, pool: &PoolHandle, addr: ElementAddr) -> bool {
        self.remove_owned_element(pool, addr, Owner::Registrar)
    }

    /// Removes an element `owner` owns. `false`, and nothing changes, when it is absent or
    /// another owner's.
    pub fn remove_owned_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
        owner: Owner,
    ) -> bool {
        match find_element(&self.state, pool, &addr) {
            Some(i) if self.state.elements[i].owner == owner => {
                self.remove_at(i);
                true
            }
            _ => false,
        }
    }

    fn remove_at(&mut self, i: usize) {
        let e = self.state.elements.remove(i);
        self.dirty_pools.insert(e.pool.clone());
        self.retired.push((e.slot, e.generation));
    }

    /// A neighbour result for `target`: `None` when resolution failed. A known MAC is kept over
    /// a failure (a transient one must not black-hole a working element); a result for an
    /// element that is gone (or whose slot has another owner now) is ignored. Returns whether
    /// the element changed.
    pub fn neighbour(&mut self, target: &NeighbourTarget, hop: Option<NextHop>) -> bool {
        let Some(i) = self.state.elements.iter().position(|e| {
            e.pool == target.pool
                && e.element_addr() == target.addr
                && e.slot == target.slot
                && e.generation == target.generation
        }) else {
            return false;
        };
        let e = &mut self.state.elements[i];
        let was_pending = std::mem::take(&mut e.nexthop_pending);
        let known = e.nexthop.as_ref().is_some_and(|h| h.resolved());
        let keep_old = known && !hop.as_ref().is_some_and(|h| h.resolved());
        let changed = !keep_old && e.nexthop != hop;
        if changed {
            e.nexthop = hop;
        }
        if !changed && !was_pending {
            return false;
        }
        self.write_element(i);
        if was_pending {
            // It can enter the tables now.
            self.dirty_pools.insert(self.state.elements[i].pool.clone());
        }
        true
    }

    /// A health result for `target` (matched like a neighbour result, by slot and generation):
    /// the element leaves or re-enters its pool's tables, or takes a new slow-start weight.
    /// `checked` is the check behind it, as `rsplb status` shows it (`None`: not checked).
    /// Returns whether its health changed.
    pub fn set_health(
        &mut self,
        target: &NeighbourTarget,
        health: Health,
        checked: Option<CheckedBy>,
    ) -> bool {
        let Some(i) = self.state.elements.iter().position(|e| {
            e.pool == target.pool
                && e.element_addr() == target.addr
                && e.slot == target.slot
                && e.generation == target.generation
        }) else {
            return false;
        };
        self.state.elements[i].checked = checked;
        if self.state.elements[i].health == health {
            return false;
        }
        let pool = self.state.elements[i].pool.clone();
        // Every element of the pool may change flags (fail-static keeps all, or lets go).
        self.dirty_pools.insert(pool);
        self.state.elements[i].health = health;
        if health != Health::Down {
            // Active before a table names it.
            self.write_element(i);
        }
        true
    }

    /// Sets (or, with `None`, removes) the health policy of `pool`. Refused when the new
    /// backup pool has elements the pool's VIPs could not reach.
    pub fn set_pool_policy(&mut self, pool: &str, policy: Option<PoolPolicy>) -> Result<bool> {
        if self.state.pools.get(pool) == policy.as_ref() {
            return Ok(false);
        }
        if let Some(b) = policy.as_ref().and_then(|p| p.backup.as_ref()) {
            for v in self.state.vips.iter().filter(|v| v.pool == pool) {
                check_pool_for_vip_only(&self.state, b, &v.parsed(), v.mode)?;
            }
        }
        match policy {
            Some(p) => self.state.pools.insert(pool.to_string(), p),
            None => self.state.pools.remove(pool),
        };
        self.dirty_pools.insert(pool.to_string());
        Ok(true)
    }

    /// Every element whose next hop is still awaited.
    pub fn pending_neighbours(&self) -> Vec<NeighbourTarget> {
        self.state
            .elements
            .iter()
            .filter(|e| e.nexthop_pending)
            .map(NeighbourTarget::of)
            .collect()
    }

    /// Rewrites every map entry from the state (after a forced reload).
    pub fn resync(&mut self) {
        self.state.tx_ports.clear();
        for i in 0..self.state.elements.len() {
            self.write_element(i);
        }
        for v in &self.state.vips {
            self.dirty_vips.insert(v.vip.clone());
            self.allow_vips.insert(v.vip.clone(), true);
        }
    }

    /// The dataplane configuration (`RSPLB_CONFIG`) of the attach options.
    pub fn write_config(&mut self) {
        self.writes.push(Write::Config(self.state.options.config()));
    }

    /// Writes element `i` (its egress port first). An element to be cleared (a failed one that
    /// its pool removes) is written by `finish`, after every table has let it go.
    fn write_element(&mut self, i: usize) {
        let flags = element_flags(&self.state, &self.state.elements[i]);
        if flags == 0 {
            self.dirty_pools.insert(self.state.elements[i].pool.clone());
            return;
        }
        let st = &mut self.state;
        if let Some(h) = &st.elements[i].nexthop {
            let ifindex = h.ifindex;
            if ifindex != 0 && ifindex != st.ifindex && !st.tx_ports.contains(&ifindex) {
                self.writes.push(Write::TxPort { ifindex });
                st.tx_ports.push(ifindex);
            }
        }
        let e = &st.elements[i];
        self.writes.push(Write::Element {
            slot: e.slot,
            value: element_value(e, flags),
        });
    }

    /// Writes `table` into VIP `i`'s standby half, then flips the VIP to it in one map update:
    /// packets see either the old table or the new one, never a mix. A VIP whose allow list
    /// changed has its prefixes inserted before the entry and the others removed after it.
    fn publish_vip(&mut self, i: usize, table: Arc<[u32]>) {
        let flagged = self.allow_vips.get(&self.state.vips[i].vip).copied();
        let allow = flagged.map(|_| Arc::<[Prefix]>::from(self.state.vips[i].allow.as_slice()));
        if let (Some(flagged), Some(list)) = (flagged, &allow) {
            let slot = self.state.vips[i].slot;
            if !flagged && !list.is_empty() {
                // No entry reads the slot's prefixes yet: any an interrupted change left
                // behind go before the flag can be set over them.
                self.writes.push(Write::RetainAllow {
                    slot,
                    keep: list.clone(),
                });
            }
            for &prefix in list.iter() {
                self.writes.push(Write::AllowPrefix { slot, prefix });
            }
        }
        let v = &mut self.state.vips[i];
        let standby = if v.table == 2 * v.slot {
            2 * v.slot + 1
        } else {
            2 * v.slot
        };
        self.writes.push(Write::MaglevTable {
            table: standby,
            entries: table,
        });
        v.table = standby;
        let v = &self.state.vips[i];
        self.writes.push(Write::Vip {
            key: v.parsed().key(),
            info: vip_info(&self.state, v),
        });
        if let (Some(true), Some(keep)) = (flagged, allow) {
            // The entry no longer reads the prefixes it dropped.
            self.writes.push(Write::RetainAllow { slot: v.slot, keep });
        }
    }
}

/// The NAT policy for the executor's expiry pass: whether the translation `v` is expired at
/// `now_ns` (CLOCK_MONOTONIC, the program's clock).
pub fn nat_expired(st: &State, now_ns: u64) -> impl Fn(&NatValue) -> bool + use<> {
    let per_vip: HashMap<u32, u32> = st
        .vips
        .iter()
        .map(|v| (v.slot, st.options.vip_timeout_s(v)))
        .collect();
    let fallback = st
        .options
        .nat_tcp_timeout_s
        .max(st.options.nat_udp_timeout_s);
    move |v: &NatValue| {
        // The program records the timeout that applied when it created the entry.
        let t = match per_vip.get(&v.vip_slot) {
            _ if v.timeout_s > 0 => v.timeout_s,
            Some(t) => *t,
            None => fallback,
        };
        now_ns.saturating_sub(v.last_seen_ns) > u64::from(t) * 1_000_000_000
    }
}

fn vip_info(st: &State, v: &VipState) -> VipInfo {
    VipInfo {
        slot: v.slot,
        table: v.table,
        mode: v.mode.code(),
        flags: v.hash.flags()
            | if v.allow.is_empty() {
                0
            } else {
                VIP_F_ALLOW_LIST
            },
        _pad: [0; 2],
        timeout_s: st.options.vip_timeout_s(v),
        snat_addr: v.snat.map(addr_words).unwrap_or_default(),
    }
}

/// `list` as VIP `vip` keeps it: checked against the VIP's family, sorted, without repeats.
fn allow_list(vip: &Vip, list: &[Prefix]) -> Result<Vec<Prefix>> {
    allow::check(vip.addr, &vip.to_string(), list)?;
    let mut list = list.to_vec();
    list.sort();
    list.dedup();
    Ok(list)
}

/// Refuses a list that would take `RSPLB_ALLOW` beyond its capacity, with the lists of every
/// VIP but `except` (the one being changed, whose old prefixes stay until its new ones are in).
fn check_allow_capacity(st: &State, except: Option<usize>, list: &[Prefix]) -> Result<()> {
    let others: usize = st
        .vips
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != except)
        .map(|(_, v)| v.allow.len())
        .sum();
    let leaving = except.map_or(0, |i| {
        st.vips[i]
            .allow
            .iter()
            .filter(|p| !list.contains(p))
            .count()
    });
    let cap = rsplb_common::ALLOW_CAPACITY as usize;
    if others + leaving + list.len() > cap {
        bail!(
            "RSPLB_ALLOW holds {cap} prefixes for all VIPs together: {others} are other VIPs' and {leaving} of this VIP's current list stay until the new one is in, so a list of {} does not fit",
            list.len()
        );
    }
    Ok(())
}

fn element_state(active: bool) -> ElementState {
    if active {
        ElementState::Active
    } else {
        ElementState::Draining
    }
}

fn family_name(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// The VIPs that may send flows to `pool`'s elements: those of the pool, and those of the pools
/// whose backup it is.
fn vips_of<'a>(st: &'a State, pool: &'a str) -> impl Iterator<Item = &'a VipState> + 'a {
    st.vips.iter().filter(move |v| {
        v.pool == pool
            || st
                .pools
                .get(&v.pool)
                .is_some_and(|p| p.backup.as_deref() == Some(pool))
    })
}

/// The VIPs that serve `pool` in DSR mode.
fn dsr_vips<'a>(st: &'a State, pool: &'a str) -> impl Iterator<Item = &'a VipState> + 'a {
    vips_of(st, pool).filter(|v| v.mode == Mode::Dsr)
}

fn check_nat_timeout(t: u32) -> Result<()> {
    if t == 0 || t > rsplb_common::MAX_FLOW_TIMEOUT_S {
        bail!(
            "a NAT timeout must be 1..={} seconds, not {t}",
            rsplb_common::MAX_FLOW_TIMEOUT_S
        );
    }
    Ok(())
}

/// Refuses an element that a VIP of `pool` could not reach: one with a port other than a DSR
/// VIP's (DSR rewrites Ethernet addresses only, so the element gets the VIP's port), or one of
/// the other address family than a NAT VIP's (no NAT46/64).
fn check_element_for_pool(st: &State, pool: &str, addr: &ElementAddr) -> Result<()> {
    if let Some(port) = addr.port
        && let Some(v) = dsr_vips(st, pool).find(|v| v.parsed().port != port)
    {
        bail!(
            "pool {pool} is served by the DSR VIP {}: DSR cannot change ports, the element gets the VIP's port {}, not {port}; add it as {} (no port), or serve the pool with a NAT VIP",
            v.vip,
            v.parsed().port,
            ElementAddr {
                addr: addr.addr,
                port: None
            }
        );
    }
    if let Some(v) = vips_of(st, pool)
        .find(|v| v.mode == Mode::Nat && v.parsed().addr.is_ipv4() != addr.addr.is_ipv4())
    {
        bail!(
            "pool {pool} is served by the {} NAT VIP {}, and {addr} is {}: NAT does not translate between IPv4 and IPv6 (use an {} element, or a DSR VIP)",
            family_name(v.parsed().addr),
            v.vip,
            family_name(addr.addr),
            family_name(v.parsed().addr),
        );
    }
    Ok(())
}

/// Refuses to serve `pool` by `vip` in `mode` when the pool's elements (or its backup pool's) do
/// not fit it (as [`check_element_for_pool`]), or when a DSR VIP would see one element twice.
fn check_pool_for_vip(st: &State, pool: &str, vip: &Vip, mode: Mode) -> Result<()> {
    check_pool_for_vip_only(st, pool, vip, mode)?;
    if let Some(b) = st.pools.get(pool).and_then(|p| p.backup.as_ref()) {
        check_pool_for_vip_only(st, b, vip, mode)?;
    }
    Ok(())
}

fn check_pool_for_vip_only(st: &State, pool: &str, vip: &Vip, mode: Mode) -> Result<()> {
    let elements: Vec<&ElementStateEntry> = st.pool_elements(pool).collect();
    match mode {
        Mode::Dsr => {
            if let Some(e) = elements
                .iter()
                .find(|e| e.port.is_some_and(|p| p != vip.port))
            {
                bail!(
                    "pool {pool} has the element {}: a DSR VIP cannot change ports, its elements get the VIP's port {}; remove it or use a NAT VIP",
                    e.element_addr(),
                    vip.port
                );
            }
            for (i, a) in elements.iter().enumerate() {
                if let Some(b) = elements[i + 1..].iter().find(|b| b.addr == a.addr) {
                    bail!(
                        "pool {pool} has {} and {}, which are one element for a DSR VIP (DSR reaches an element by its address); remove one first",
                        a.element_addr(),
                        b.element_addr()
                    );
                }
            }
        }
        Mode::Nat => {
            if let Some(e) = elements
                .iter()
                .find(|e| e.addr.is_ipv4() != vip.addr.is_ipv4())
            {
                bail!(
                    "VIP {vip} is {} and pool {pool} has the {} element {}: NAT does not translate between IPv4 and IPv6 (use elements of the VIP's family, or DSR)",
                    family_name(vip.addr),
                    family_name(e.addr),
                    e.element_addr()
                );
            }
        }
    }
    Ok(())
}

/// The element `addr` of `pool`, however it was written: exactly, or, in a pool that a DSR VIP
/// serves, by its address (with no port, or its own, or the DSR VIP's).
pub fn find_element(st: &State, pool: &PoolHandle, addr: &ElementAddr) -> Option<usize> {
    st.find_element(pool, addr).or_else(|| {
        let dsr_ports: Vec<u16> = dsr_vips(st, pool.as_str())
            .map(|v| v.parsed().port)
            .collect();
        if dsr_ports.is_empty() {
            return None;
        }
        st.elements.iter().position(|e| {
            e.pool == pool.as_str()
                && e.addr == addr.addr
                && (addr.port.is_none()
                    || e.port.is_none()
                    || addr.port == e.port
                    || addr.port.is_some_and(|p| dsr_ports.contains(&p)))
        })
    })
}

pub fn check_snat(vip: &Vip, mode: Mode, snat: Option<IpAddr>) -> Result<()> {
    if let (Mode::Nat, Some(s)) = (mode, snat)
        && s.is_ipv4() != vip.addr.is_ipv4()
    {
        bail!(
            "VIP {vip} is {} and its --snat {s} is {}: NAT does not translate between IPv4 and IPv6",
            family_name(vip.addr),
            family_name(s)
        );
    }
    match (mode, snat) {
        (Mode::Nat, None) => bail!(
            "VIP {vip} in NAT mode needs --snat ADDR (the balancer's source address toward the elements)"
        ),
        (Mode::Nat, _) if vip.proto == crate::addr::Protocol::Sctp => bail!(
            "VIP {vip}: SCTP is DSR only (its CRC32c checksum cannot be updated incrementally)"
        ),
        _ => Ok(()),
    }
}

fn element_value(e: &ElementStateEntry, flags: u8) -> Element {
    let hop = e.nexthop.clone().unwrap_or(NextHop {
        ifindex: 0,
        dst_mac: [0; 6],
        src_mac: [0; 6],
        gateway: None,
    });
    Element {
        addr: addr_words(e.addr),
        port: e.port.unwrap_or(0).to_be(),
        family: family(e.addr),
        flags,
        generation: e.generation,
        ifindex: hop.ifindex,
        dst_mac: hop.dst_mac,
        src_mac: hop.src_mac,
    }
}

/// The elements a VIP of `pool` sends new flows to, with their weights:
/// - the pool's serving elements (active, next hop known, not down; slow start lowers a
///   weight);
/// - fewer than the pool's `min_healthy`, and its backup pool has serving elements: those;
/// - none serving at all: with `fail-static` the pool's active elements as if healthy, with
///   `drop` none.
pub fn vip_elements<'a>(st: &'a State, pool: &str) -> Vec<(&'a ElementStateEntry, u32)> {
    let serving_of = |p: &str| -> Vec<(&'a ElementStateEntry, u32)> {
        st.elements_of(p)
            .filter(|e| serving(e))
            .filter_map(|e| Some((e, e.health.effective_weight(e.weight)?)))
            .collect()
    };
    let own = serving_of(pool);
    let policy = st.pool_policy(pool);
    if (own.len() as u64) < u64::from(policy.min_healthy)
        && let Some(b) = &policy.backup
    {
        let backup = serving_of(b);
        if !backup.is_empty() {
            return backup;
        }
    }
    if !own.is_empty() {
        return own;
    }
    match policy.when_none_healthy {
        NoneHealthy::Drop => Vec::new(),
        NoneHealthy::FailStatic => st
            .elements_of(pool)
            .filter(|e| e.state == ElementState::Active && !e.nexthop_pending)
            .map(|e| (e, u32::from(e.weight)))
            .collect(),
    }
}

/// The Maglev table of a VIP of `pool` ([`vip_elements`], by weight).
fn vip_table(st: &State, pool: &str) -> Vec<u32> {
    let keys: Vec<(String, u32, u32)> = vip_elements(st, pool)
        .into_iter()
        .map(|(e, w)| (e.maglev_key(), w, e.slot))
        .collect();
    let elems: Vec<MaglevElement<'_>> = keys
        .iter()
        .map(|(k, w, s)| MaglevElement {
            key: k.as_bytes(),
            weight: *w,
            id: *s,
        })
        .collect();
    maglev::build(&elems, st.options.maglev_size)
}

/// The pools and elements a table digest needs: element slot -> Maglev key.
pub fn maglev_keys(st: &State) -> BTreeMap<u32, String> {
    st.elements
        .iter()
        .map(|e| (e.slot, e.maglev_key()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{executor::Memory, state::AttachOptions};
    use rsplb_common::VIP_F_CLIENT_HASH;

    const SIZE: u32 = 251;

    fn state() -> State {
        let opts = AttachOptions {
            maglev_size: SIZE,
            max_vips: 4,
            max_elements: 4,
            ..AttachOptions::default()
        };
        State::new("veth0", 1, 1, None, opts)
    }

    fn hop(mac: u8) -> Hop {
        Hop::Resolved(Ok(NextHop {
            ifindex: 1,
            dst_mac: [2, 0, 0, 0, 0, mac],
            src_mac: [2, 0, 0, 0, 0, 0xfe],
            gateway: None,
        }))
    }

    fn pool(p: &str) -> PoolHandle {
        p.parse().unwrap()
    }

    fn el(a: &str) -> ElementAddr {
        a.parse().unwrap()
    }

    fn vip(v: &str) -> Vip {
        v.parse().unwrap()
    }

    /// Runs one batch on `st`, executes its writes on `dp` (which checks every rule after each
    /// write) and returns the writes.
    fn batch(st: &mut State, dp: &mut Memory, f: impl FnOnce(&mut Core)) -> Vec<Write> {
        let mut core = Core::new(st.clone());
        f(&mut core);
        let (next, writes) = core.finish();
        for w in &writes {
            crate::executor::Executor::execute(dp, w).unwrap();
        }
        *st = next;
        writes
    }

    fn add(core: &mut Core, p: &str, a: &str, w: u16) {
        core.upsert_element(&pool(p), el(a), w, Upsert::Either, hop(1))
            .unwrap();
    }

    fn position(writes: &[Write], f: impl Fn(&Write) -> bool) -> usize {
        writes.iter().position(f).expect("the write is there")
    }

    #[test]
    fn an_element_leaves_every_table_before_its_slot_is_cleared() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        batch(&mut st, &mut dp, |c| {
            add(c, "web", "198.18.1.2", 1);
            add(c, "web", "198.18.1.3", 1);
            dsr_vip(c, "198.18.0.1:80/tcp", "web");
            dsr_vip(c, "198.18.0.2:80/tcp", "web");
        });
        let gone = st.elements[0].slot;
        assert!(dp.active_tables().all(|t| t.contains(&gone)));
        let writes = batch(&mut st, &mut dp, |c| {
            c.remove_element(&pool("web"), el("198.18.1.2")).unwrap()
        });
        let cleared = position(
            &writes,
            |w| matches!(w, Write::Element { slot, value } if *slot == gone && value.flags == 0),
        );
        let flips: Vec<usize> = writes
            .iter()
            .enumerate()
            .filter(|(_, w)| matches!(w, Write::Vip { .. }))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(flips.len(), 2, "both VIPs of the pool flip");
        assert!(flips.iter().all(|&f| f < cleared));
        assert!(dp.active_tables().all(|t| !t.contains(&gone)));
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn a_removed_elements_slot_is_not_reused_in_the_same_batch() {
        let opts = AttachOptions {
            maglev_size: SIZE,
            max_elements: 2,
            ..AttachOptions::default()
        };
        let mut st = State::new("veth0", 1, 1, None, opts);
        let mut dp = Memory::new(SIZE);
        batch(&mut st, &mut dp, |c| {
            add(c, "web", "198.18.1.2", 1);
            add(c, "web", "198.18.1.3", 1);
            dsr_vip(c, "198.18.0.1:80/tcp", "web");
        });
        // Every slot is taken: the new element can only have the removed one's, and not before
        // the tables have let it go.
        let mut refused = None;
        batch(&mut st, &mut dp, |c| {
            c.remove_element(&pool("web"), el("198.18.1.2")).unwrap();
            refused = Some(
                c.upsert_element(&pool("web"), el("198.18.1.4"), 1, Upsert::Either, hop(4))
                    .unwrap_err()
                    .to_string(),
            );
        });
        assert!(refused.unwrap().contains("element"), "slots are exhausted");
        let writes = batch(&mut st, &mut dp, |c| add(c, "web", "198.18.1.4", 1));
        let reused = st.find_element(&pool("web"), &el("198.18.1.4")).unwrap();
        assert_eq!(st.elements[reused].slot, 0);
        assert_eq!(st.elements[reused].generation, 2);
        // Its value (new generation) is written before a table names it.
        let value = position(&writes, |w| matches!(w, Write::Element { slot: 0, .. }));
        let table = position(&writes, |w| matches!(w, Write::MaglevTable { .. }));
        assert!(value < table);
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn the_standby_table_is_complete_before_the_flip_and_never_the_active_one() {
        let (mut st, mut dp) = web_vip_of(&["198.18.1.2"], None);
        for w in 2..6 {
            let before = st.vips[0].table;
            let writes = batch(&mut st, &mut dp, |c| add(c, "web", "198.18.1.3", w));
            let Some((ti, Write::MaglevTable { table, entries })) = writes
                .iter()
                .enumerate()
                .find(|(_, w)| matches!(w, Write::MaglevTable { .. }))
            else {
                panic!("no table write in {writes:?}");
            };
            assert_ne!(*table, before, "the active table is never written");
            assert_eq!(entries.len(), SIZE as usize, "a whole table");
            let flip = position(
                &writes,
                |x| matches!(x, Write::Vip { info, .. } if info.table == *table),
            );
            assert!(ti < flip);
            assert_eq!(st.vips[0].table, *table);
        }
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn a_vip_entry_is_written_whole_in_one_update() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let writes = batch(&mut st, &mut dp, |c| {
            add(c, "api", "198.18.1.2", 1);
            c.add_vip(
                vip("198.18.0.1:8080/tcp"),
                &pool("api"),
                Mode::Nat,
                Some("198.18.0.9".parse().unwrap()),
                Some(42),
                &[],
                VipHash::Flow,
            )
            .unwrap();
        });
        let vips: Vec<&VipInfo> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Vip { info, .. } => Some(info),
                _ => None,
            })
            .collect();
        assert_eq!(vips.len(), 1, "one map update per VIP");
        let info = vips[0];
        assert_eq!(info.mode, Mode::Nat.code());
        assert_eq!(info.timeout_s, 42);
        assert_eq!(info.snat_addr, addr_words("198.18.0.9".parse().unwrap()));
        assert_eq!(info.table, 2 * info.slot + 1);
        // A mode change rewrites the entry whole, with its table flipped.
        let writes = batch(&mut st, &mut dp, |c| {
            c.change_vip(
                vip("198.18.0.1:8080/tcp"),
                None,
                Some(Mode::Dsr),
                None,
                None,
                None,
            )
            .unwrap()
        });
        let Some(Write::Vip { info, .. }) = writes.iter().find(|w| matches!(w, Write::Vip { .. }))
        else {
            panic!("no VIP write");
        };
        assert_eq!(info.mode, Mode::Dsr.code());
        assert_eq!(info.timeout_s, st.options.dsr_tcp_timeout_s);
        assert_eq!(info.table, 2 * info.slot);
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn a_batch_rebuilds_each_affected_table_once() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let writes = batch(&mut st, &mut dp, |c| {
            dsr_vip(c, "198.18.0.1:80/tcp", "web");
            dsr_vip(c, "198.18.0.2:80/tcp", "api");
            for a in ["198.18.1.2", "198.18.1.3", "198.18.1.4"] {
                add(c, "web", a, 1);
            }
        });
        let tables = writes
            .iter()
            .filter(|w| matches!(w, Write::MaglevTable { .. }))
            .count();
        assert_eq!(tables, 2, "one table per VIP: {writes:?}");
        let writes = batch(&mut st, &mut dp, |c| {
            c.remove_element(&pool("web"), el("198.18.1.2")).unwrap();
            c.set_element_state(&pool("web"), el("198.18.1.3"), ElementState::Draining)
                .unwrap();
        });
        let tables: Vec<u32> = writes
            .iter()
            .filter_map(|w| match w {
                Write::MaglevTable { table, .. } => Some(*table),
                _ => None,
            })
            .collect();
        assert_eq!(tables.len(), 1, "only web's VIP, once");
        let active = dp.active_table(&vip("198.18.0.1:80/tcp").key()).unwrap();
        let only = st.find_element(&pool("web"), &el("198.18.1.4")).unwrap();
        assert!(active.iter().all(|&s| s == st.elements[only].slot));
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn registered_elements_enter_with_one_rebuild_per_table_and_none_while_they_wait() {
        let (mut st, mut dp) = web_vip_of(&["198.18.1.2"], None);
        let tables = |w: &[Write]| {
            w.iter()
                .filter(|w| matches!(w, Write::MaglevTable { .. }))
                .count()
        };
        let registered = |c: &mut Core, a: &str| {
            c.upsert_element(
                &pool("web"),
                el(a),
                1,
                Upsert::Registrar { active: true },
                Hop::Pending,
            )
            .unwrap()
            .unwrap()
        };
        // Waiting for its next hop, a new element changes no table.
        let writes = batch(&mut st, &mut dp, |c| {
            registered(c, "198.18.1.3");
        });
        assert_eq!(tables(&writes), 0, "{writes:?}");
        // Two whose next hops are known (the daemon's cache) and a weight change, in one
        // batch: the table is rebuilt once, with both in it.
        let Hop::Resolved(Ok(h)) = hop(4) else {
            unreachable!()
        };
        let mut slots = Vec::new();
        let writes = batch(&mut st, &mut dp, |c| {
            for a in ["198.18.1.4", "198.18.1.5"] {
                let r = registered(c, a);
                assert!(c.neighbour(&NeighbourTarget::of(&r.element), Some(h.clone())));
                slots.push(r.slot);
            }
            add(c, "web", "198.18.1.2", 2);
        });
        assert_eq!(tables(&writes), 1, "{writes:?}");
        let active = dp.active_table(&vip("198.18.0.1:80/tcp").key()).unwrap();
        assert!(slots.iter().all(|s| active.contains(s)));
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn an_element_awaiting_its_neighbour_enters_the_tables_with_its_result() {
        let (mut st, mut dp) = web_vip_of(&["198.18.1.2"], None);
        let mut report = None;
        batch(&mut st, &mut dp, |c| {
            report = c
                .upsert_element(
                    &pool("web"),
                    el("198.18.1.3"),
                    1,
                    Upsert::Registrar { active: true },
                    Hop::Pending,
                )
                .unwrap();
        });
        let report = report.unwrap();
        assert!(report.needs_resolution);
        let key = vip("198.18.0.1:80/tcp").key();
        assert!(!dp.active_table(&key).unwrap().contains(&report.slot));
        let target = NeighbourTarget::of(&report.element);
        // Another element is removed meanwhile; the pending one stays out and waits.
        batch(&mut st, &mut dp, |c| {
            c.remove_element(&pool("web"), el("198.18.1.2")).unwrap()
        });
        assert!(
            dp.active_table(&key)
                .unwrap()
                .iter()
                .all(|&s| s == u32::MAX)
        );
        assert_eq!(
            Core::new(st.clone()).pending_neighbours(),
            vec![target.clone()]
        );
        let Hop::Resolved(Ok(h)) = hop(3) else {
            unreachable!()
        };
        let writes = batch(&mut st, &mut dp, |c| {
            assert!(c.neighbour(&target, Some(h.clone())))
        });
        let value = position(
            &writes,
            |w| matches!(w, Write::Element { value, .. } if value.dst_mac == h.dst_mac),
        );
        let table = position(&writes, |w| matches!(w, Write::MaglevTable { .. }));
        assert!(value < table);
        assert!(
            dp.active_table(&key)
                .unwrap()
                .iter()
                .all(|&s| s == report.slot)
        );
        // A late result for an element that is gone changes nothing.
        batch(&mut st, &mut dp, |c| {
            c.remove_element(&pool("web"), el("198.18.1.3")).unwrap()
        });
        let writes = batch(&mut st, &mut dp, |c| assert!(!c.neighbour(&target, None)));
        assert!(writes.is_empty());
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn a_known_mac_survives_a_failed_resolution_and_egress_ports_come_first() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let writes = batch(&mut st, &mut dp, |c| {
            c.upsert_element(
                &pool("web"),
                el("198.18.1.2"),
                1,
                Upsert::Either,
                Hop::Resolved(Ok(NextHop {
                    ifindex: 7,
                    dst_mac: [2, 0, 0, 0, 0, 1],
                    src_mac: [2, 0, 0, 0, 0, 2],
                    gateway: None,
                })),
            )
            .unwrap();
        });
        let port = position(&writes, |w| matches!(w, Write::TxPort { ifindex: 7 }));
        let value = position(&writes, |w| matches!(w, Write::Element { .. }));
        assert!(port < value);
        let target = NeighbourTarget::of(&st.elements[0]);
        let writes = batch(&mut st, &mut dp, |c| {
            let unresolved = NextHop {
                ifindex: 7,
                dst_mac: [0; 6],
                src_mac: [2, 0, 0, 0, 0, 2],
                gateway: None,
            };
            assert!(!c.neighbour(&target, Some(unresolved)));
            assert!(!c.neighbour(&target, None));
        });
        assert!(writes.is_empty());
        assert_eq!(st.elements[0].nexthop.as_ref().unwrap().dst_mac[5], 1);
    }

    #[test]
    fn the_rules_hold_through_a_long_mixed_run() {
        // A deterministic walk through adds, weights, drains, removals, VIP changes and late
        // neighbour results, with the model dataplane checking every rule after every write.
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let addrs = [
            "198.18.1.2",
            "198.18.1.3",
            "198.18.1.4",
            "198.18.1.5",
            "198.18.1.6",
        ];
        let pools = ["web", "api"];
        let web = vip("198.18.0.1:80/tcp");
        let prefixes: Vec<Prefix> = ["198.18.0.0/16", "203.0.113.0/24", "192.0.2.7"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let mut x: u32 = 0x2545_f491;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        batch(&mut st, &mut dp, |c| {
            dsr_vip(c, "198.18.0.1:80/tcp", "web");
            dsr_vip(c, "198.18.0.2:80/udp", "api");
        });
        for _ in 0..300 {
            let n = 1 + next() % 4;
            let ops: Vec<u32> = (0..n * 3).map(|_| next()).collect();
            batch(&mut st, &mut dp, |c| {
                for op in ops.chunks(3) {
                    let p = pool(pools[(op[1] % 2) as usize]);
                    let a = el(addrs[(op[2] % 5) as usize]);
                    match op[0] % 9 {
                        0 | 1 => {
                            let _ = c.upsert_element(
                                &p,
                                a,
                                1 + (op[1] % 5) as u16,
                                Upsert::Either,
                                hop(op[2] as u8),
                            );
                        }
                        2 => {
                            let _ = c.upsert_element(
                                &p,
                                a,
                                1,
                                Upsert::Registrar { active: true },
                                Hop::Pending,
                            );
                        }
                        3 => {
                            let _ = c.set_element_state(&p, a, ElementState::Draining);
                        }
                        4 => {
                            let _ = c.remove_element(&p, a);
                        }
                        5 => {
                            for t in c.pending_neighbours() {
                                let Hop::Resolved(Ok(h)) = hop(9) else {
                                    unreachable!()
                                };
                                c.neighbour(&t, Some(h));
                            }
                        }
                        6 => {
                            let lists = [&prefixes[..0], &prefixes[..1], &prefixes[1..]];
                            let list = lists[(op[1] % 3) as usize];
                            let _ = c.change_vip(web, None, None, None, Some(list), None);
                        }
                        7 => {
                            let _ = c.del_vip(web);
                            let list = &prefixes[(op[1] % 3) as usize..];
                            let _ = c.add_vip(
                                web,
                                &pool("web"),
                                Mode::Dsr,
                                None,
                                None,
                                list,
                                VipHash::Flow,
                            );
                        }
                        _ => {
                            let _ = c.change_vip(
                                vip("198.18.0.2:80/udp"),
                                Some(&p),
                                None,
                                None,
                                None,
                                None,
                            );
                        }
                    }
                }
            });
        }
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    fn prefixes(list: &[&str]) -> Vec<Prefix> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    /// The VIP entry writes of `writes`, with their positions.
    fn vip_writes(writes: &[Write]) -> Vec<(usize, VipInfo)> {
        writes
            .iter()
            .enumerate()
            .filter_map(|(i, w)| match w {
                Write::Vip { info, .. } => Some((i, *info)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_vips_hash_is_its_entrys_flag_and_a_change_keeps_the_table_and_the_allow_list() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let web = vip("198.18.0.1:80/tcp");
        let list = prefixes(&["198.18.0.0/16"]);
        let writes = batch(&mut st, &mut dp, |c| {
            add(c, "web", "198.18.1.2", 1);
            add(c, "web", "198.18.1.3", 1);
            c.add_vip(
                web,
                &pool("web"),
                Mode::Dsr,
                None,
                None,
                &list,
                VipHash::Client,
            )
            .unwrap();
        });
        let [(_, info)] = vip_writes(&writes)[..] else {
            panic!("one VIP entry: {writes:?}");
        };
        assert_eq!(info.flags, VIP_F_ALLOW_LIST | VIP_F_CLIENT_HASH);
        assert_eq!(st.vips[0].hash, VipHash::Client);
        let table = dp.active_table(&web.key()).unwrap();
        // Back to the 5-tuple: one entry write clears the flag, the table's content is the same.
        let writes = batch(&mut st, &mut dp, |c| {
            c.change_vip(web, None, None, None, None, Some(VipHash::Flow))
                .unwrap()
        });
        let [(_, info)] = vip_writes(&writes)[..] else {
            panic!("one VIP entry: {writes:?}");
        };
        assert_eq!(info.flags, VIP_F_ALLOW_LIST);
        assert_eq!(dp.active_table(&web.key()).unwrap(), table);
        assert!(!writes.iter().any(|w| matches!(w, Write::Element { .. })));
        assert_eq!(st.vips[0].hash, VipHash::Flow);
        assert_eq!(dp.allow(st.vips[0].slot), list);
        assert_eq!(dp.violations(), Vec::<String>::new());
    }

    #[test]
    fn allow_list_prefixes_go_in_before_the_flag_and_come_out_after_it() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let web = vip("198.18.0.1:80/tcp");
        let list = prefixes(&["203.0.113.7", "198.18.0.0/16"]);
        let writes = batch(&mut st, &mut dp, |c| {
            add(c, "web", "198.18.1.2", 1);
            c.add_vip(
                web,
                &pool("web"),
                Mode::Dsr,
                None,
                None,
                &list,
                VipHash::Flow,
            )
            .unwrap();
        });
        let slot = st.vips[0].slot;
        let [(flag, info)] = vip_writes(&writes)[..] else {
            panic!("one VIP entry: {writes:?}");
        };
        assert_eq!(info.flags, VIP_F_ALLOW_LIST);
        let inserted: Vec<usize> = writes
            .iter()
            .enumerate()
            .filter(|(_, w)| matches!(w, Write::AllowPrefix { slot: s, .. } if *s == slot))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(inserted.len(), 2);
        assert!(inserted.iter().all(|&i| i < flag), "{writes:?}");
        assert_eq!(
            dp.allow(slot),
            prefixes(&["198.18.0.0/16", "203.0.113.7"]),
            "kept sorted"
        );
        assert_eq!(st.vips[0].allow, dp.allow(slot));

        // A new list: its prefixes in before the entry that names it, the old ones out after.
        let writes = batch(&mut st, &mut dp, |c| {
            c.change_vip(
                web,
                None,
                None,
                None,
                Some(&prefixes(&["198.18.0.0/15"])),
                None,
            )
            .unwrap()
        });
        let [(entry, info)] = vip_writes(&writes)[..] else {
            panic!("one VIP entry: {writes:?}");
        };
        assert_eq!(info.flags, VIP_F_ALLOW_LIST);
        let insert = position(&writes, |w| matches!(w, Write::AllowPrefix { .. }));
        let retain = position(&writes, |w| matches!(w, Write::RetainAllow { .. }));
        assert!(insert < entry && entry < retain, "{writes:?}");
        assert_eq!(dp.allow(slot), prefixes(&["198.18.0.0/15"]));

        // A change of something else leaves the list alone.
        let writes = batch(&mut st, &mut dp, |c| {
            c.change_vip(web, Some(&pool("web")), None, None, None, None)
                .unwrap()
        });
        assert!(
            !writes
                .iter()
                .any(|w| matches!(w, Write::AllowPrefix { .. } | Write::RetainAllow { .. })),
            "{writes:?}"
        );
        assert_eq!(vip_writes(&writes)[0].1.flags, VIP_F_ALLOW_LIST);

        // No list: the flag is cleared first, then the prefixes go.
        let writes = batch(&mut st, &mut dp, |c| {
            c.change_vip(web, None, None, None, Some(&[]), None)
                .unwrap()
        });
        let [(cleared, info)] = vip_writes(&writes)[..] else {
            panic!("one VIP entry: {writes:?}");
        };
        assert_eq!(info.flags, 0);
        let retain = position(
            &writes,
            |w| matches!(w, Write::RetainAllow { slot: s, keep } if *s == slot && keep.is_empty()),
        );
        assert!(cleared < retain, "{writes:?}");
        assert!(dp.allow(slot).is_empty());
        assert!(st.vips[0].allow.is_empty());

        // A removed VIP's prefixes go after its entry.
        batch(&mut st, &mut dp, |c| {
            c.change_vip(web, None, None, None, Some(&list), None)
                .unwrap()
        });
        let writes = batch(&mut st, &mut dp, |c| c.del_vip(web).unwrap());
        let removed = position(&writes, |w| matches!(w, Write::RemoveVip { .. }));
        let retain = position(
            &writes,
            |w| matches!(w, Write::RetainAllow { slot: s, keep } if *s == slot && keep.is_empty()),
        );
        assert!(removed < retain, "{writes:?}");
        assert!(dp.allow(slot).is_empty());
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn a_reused_vip_slot_never_sees_another_lists_prefixes() {
        let opts = AttachOptions {
            maglev_size: SIZE,
            max_vips: 1,
            ..AttachOptions::default()
        };
        let (mut st, mut dp) = (State::new("veth0", 1, 1, None, opts), Memory::new(SIZE));
        let (a, b) = (vip("198.18.0.1:80/tcp"), vip("198.18.0.2:80/tcp"));
        batch(&mut st, &mut dp, |c| {
            add(c, "web", "198.18.1.2", 1);
            c.add_vip(
                a,
                &pool("web"),
                Mode::Dsr,
                None,
                None,
                &prefixes(&["10.0.0.0/8"]),
                VipHash::Flow,
            )
            .unwrap();
        });
        let slot = st.vips[0].slot;
        // Removed and its slot given to another VIP in one batch.
        batch(&mut st, &mut dp, |c| {
            c.del_vip(a).unwrap();
            let s = c
                .add_vip(
                    b,
                    &pool("web"),
                    Mode::Dsr,
                    None,
                    None,
                    &prefixes(&["192.0.2.0/24"]),
                    VipHash::Flow,
                )
                .unwrap();
            assert_eq!(s, slot);
        });
        assert_eq!(dp.allow(slot), prefixes(&["192.0.2.0/24"]));
        // A prefix an interrupted change left in the map (written, state not saved) is gone
        // before a VIP without a list gets one.
        batch(&mut st, &mut dp, |c| {
            c.change_vip(b, None, None, None, Some(&[]), None).unwrap()
        });
        let stale = Write::AllowPrefix {
            slot,
            prefix: "10.0.0.0/8".parse().unwrap(),
        };
        crate::executor::Executor::execute(&mut dp, &stale).unwrap();
        let writes = batch(&mut st, &mut dp, |c| {
            c.change_vip(
                b,
                None,
                None,
                None,
                Some(&prefixes(&["192.0.2.0/24"])),
                None,
            )
            .unwrap()
        });
        let retain = position(&writes, |w| matches!(w, Write::RetainAllow { .. }));
        let (flag, _) = vip_writes(&writes)[0];
        assert!(retain < flag, "{writes:?}");
        assert_eq!(dp.allow(slot), prefixes(&["192.0.2.0/24"]));
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn allow_lists_of_the_other_family_or_beyond_the_map_are_refused_before_any_write() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let web = vip("198.18.0.1:80/tcp");
        let mut refused = Vec::new();
        let writes = batch(&mut st, &mut dp, |c| {
            let mixed = prefixes(&["198.18.0.0/16", "fd00::/8"]);
            refused.push(
                c.add_vip(
                    web,
                    &pool("web"),
                    Mode::Dsr,
                    None,
                    None,
                    &mixed,
                    VipHash::Flow,
                )
                .unwrap_err()
                .to_string(),
            );
            let v6 = vip("[fd00::1]:80/tcp");
            refused.push(
                c.add_vip(
                    v6,
                    &pool("web"),
                    Mode::Dsr,
                    None,
                    None,
                    &prefixes(&["10.0.0.0/8"]),
                    VipHash::Flow,
                )
                .unwrap_err()
                .to_string(),
            );
            c.add_vip(web, &pool("web"), Mode::Dsr, None, None, &[], VipHash::Flow)
                .unwrap();
            let many: Vec<Prefix> = (0..=rsplb_common::ALLOW_CAPACITY)
                .map(|i| Prefix {
                    addr: std::net::Ipv4Addr::from(0x0a00_0000 + i).into(),
                    len: 32,
                })
                .collect();
            refused.push(
                c.change_vip(web, None, None, None, Some(&many), None)
                    .unwrap_err()
                    .to_string(),
            );
        });
        assert!(
            refused[0].contains("is IPv4 and --allow fd00::/8 is IPv6"),
            "{}",
            refused[0]
        );
        assert!(
            refused[1].contains("is IPv6 and --allow 10.0.0.0/8 is IPv4"),
            "{}",
            refused[1]
        );
        assert!(refused[2].contains("at most 16384"), "{}", refused[2]);
        assert!(
            !writes
                .iter()
                .any(|w| matches!(w, Write::AllowPrefix { .. } | Write::RetainAllow { .. })),
            "{writes:?}"
        );
        assert_eq!(vip_writes(&writes)[0].1.flags, 0);
    }

    #[test]
    fn the_model_dataplane_catches_an_allow_list_written_out_of_order() {
        // The rules the core keeps, broken by hand: the model must see each.
        let mut dp = Memory::new(SIZE);
        let exec = |dp: &mut Memory, w: Write| crate::executor::Executor::execute(dp, &w).unwrap();
        let key = vip("198.18.0.1:80/tcp").key();
        let info = VipInfo {
            slot: 0,
            table: 1,
            mode: rsplb_common::MODE_DSR,
            flags: VIP_F_ALLOW_LIST,
            timeout_s: 60,
            ..VipInfo::default()
        };
        exec(
            &mut dp,
            Write::MaglevTable {
                table: 1,
                entries: vec![rsplb_common::NO_ELEMENT; SIZE as usize].into(),
            },
        );
        exec(&mut dp, Write::Vip { key, info });
        let prefix: Prefix = "10.0.0.0/8".parse().unwrap();
        exec(&mut dp, Write::AllowPrefix { slot: 0, prefix });
        exec(
            &mut dp,
            Write::RetainAllow {
                slot: 0,
                keep: Arc::from([]),
            },
        );
        let v = dp.violations();
        assert!(v[0].contains("before its prefixes are in"), "{v:?}");
        assert!(v[1].contains("every prefix of slot 0 removed"), "{v:?}");
    }

    #[test]
    fn allow_lists_share_the_maps_capacity_counting_a_list_being_replaced() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let (a, b) = (vip("198.18.0.1:80/tcp"), vip("198.18.0.2:80/tcp"));
        let hosts = |from: u32, n: u32| -> Vec<Prefix> {
            (from..from + n)
                .map(|i| Prefix {
                    addr: std::net::Ipv4Addr::from(0x0a00_0000 + i).into(),
                    len: 32,
                })
                .collect()
        };
        let cap = rsplb_common::ALLOW_CAPACITY;
        let mut refused = Vec::new();
        batch(&mut st, &mut dp, |c| {
            c.add_vip(
                a,
                &pool("web"),
                Mode::Dsr,
                None,
                None,
                &hosts(0, cap - 100),
                VipHash::Flow,
            )
            .unwrap();
            refused.push(
                c.add_vip(
                    b,
                    &pool("web"),
                    Mode::Dsr,
                    None,
                    None,
                    &hosts(cap, 101),
                    VipHash::Flow,
                )
                .unwrap_err()
                .to_string(),
            );
            c.add_vip(
                b,
                &pool("web"),
                Mode::Dsr,
                None,
                None,
                &hosts(cap, 50),
                VipHash::Flow,
            )
            .unwrap();
        });
        batch(&mut st, &mut dp, |c| {
            // 60 new prefixes while 60 old ones still stand: 10 too many...
            refused.push(
                c.change_vip(a, None, None, None, Some(&hosts(60, cap - 100)), None)
                    .unwrap_err()
                    .to_string(),
            );
            // ... 50 fit.
            c.change_vip(a, None, None, None, Some(&hosts(50, cap - 100)), None)
                .unwrap();
        });
        assert!(
            refused[0].contains("16284 are other VIPs' and 0 of this VIP's"),
            "{}",
            refused[0]
        );
        assert!(
            refused[1].contains("50 are other VIPs' and 60 of this VIP's current list"),
            "{}",
            refused[1]
        );
        assert_eq!(dp.allow(st.vips[0].slot).len(), (cap - 100) as usize);
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    fn target(st: &State, a: &str) -> NeighbourTarget {
        let i = st.find_element(&pool("web"), &el(a)).unwrap();
        NeighbourTarget::of(&st.elements[i])
    }

    fn health(st: &mut State, dp: &mut Memory, a: &str, h: Health) -> Vec<Write> {
        let t = target(st, a);
        batch(st, dp, |c| assert!(c.set_health(&t, h, None)))
    }

    /// Adds a DSR VIP with the flow hash and no allow list.
    fn dsr_vip(c: &mut Core, v: &str, p: &str) {
        c.add_vip(vip(v), &pool(p), Mode::Dsr, None, None, &[], VipHash::Flow)
            .unwrap();
    }

    fn slot(st: &State, p: &str, a: &str) -> u32 {
        st.elements[st.find_element(&pool(p), &el(a)).unwrap()].slot
    }

    fn web_with_vip(policy: Option<PoolPolicy>) -> (State, Memory) {
        web_vip_of(&["198.18.1.2", "198.18.1.3"], policy)
    }

    /// Pool `web` of `addrs` (weight 1), with `policy`, behind the DSR VIP 198.18.0.1:80/tcp.
    fn web_vip_of(addrs: &[&str], policy: Option<PoolPolicy>) -> (State, Memory) {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        batch(&mut st, &mut dp, |c| {
            for a in addrs {
                add(c, "web", a, 1);
            }
            if let Some(p) = policy {
                c.set_pool_policy("web", Some(p)).unwrap();
            }
            dsr_vip(c, "198.18.0.1:80/tcp", "web");
        });
        (st, dp)
    }

    fn table(st: &State, dp: &Memory) -> BTreeSet<u32> {
        let _ = st;
        dp.active_table(&vip("198.18.0.1:80/tcp").key())
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn a_failed_element_is_drained_and_comes_back() {
        let (mut st, mut dp) = web_with_vip(None);
        let (a, b) = (
            slot(&st, "web", "198.18.1.2"),
            slot(&st, "web", "198.18.1.3"),
        );
        health(&mut st, &mut dp, "198.18.1.2", Health::Down);
        assert_eq!(table(&st, &dp), [b].into());
        // Drained: its pinned flows keep going.
        assert_ne!(dp.element(a).unwrap().flags & ELEM_ACTIVE, 0);
        let writes = health(&mut st, &mut dp, "198.18.1.2", Health::Up);
        assert_eq!(table(&st, &dp), [a, b].into());
        let value = position(
            &writes,
            |w| matches!(w, Write::Element { slot, .. } if *slot == a),
        );
        let flip = position(&writes, |w| matches!(w, Write::Vip { .. }));
        assert!(value < flip);
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn a_removed_element_is_cleared_after_the_flip_and_set_before_it_comes_back() {
        let policy = PoolPolicy {
            on_failure: OnFailure::Remove,
            ..PoolPolicy::default()
        };
        let (mut st, mut dp) = web_with_vip(Some(policy));
        let (a, b) = (
            slot(&st, "web", "198.18.1.2"),
            slot(&st, "web", "198.18.1.3"),
        );
        let writes = health(&mut st, &mut dp, "198.18.1.2", Health::Down);
        assert_eq!(table(&st, &dp), [b].into());
        assert_eq!(
            dp.element(a).unwrap().flags,
            0,
            "its flows are placed again"
        );
        let flip = position(&writes, |w| matches!(w, Write::Vip { .. }));
        let cleared = position(
            &writes,
            |w| matches!(w, Write::Element { slot, value } if *slot == a && value.flags == 0),
        );
        assert!(flip < cleared);
        // The slot stays the element's.
        assert_eq!(st.element_slots.in_use(), 2);
        health(&mut st, &mut dp, "198.18.1.2", Health::Up);
        assert_eq!(table(&st, &dp), [a, b].into());
        assert_eq!(dp.element(a).unwrap().flags, ELEM_ACTIVE);
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn the_check_behind_an_element_is_kept_without_touching_the_tables() {
        let (mut st, mut dp) = web_with_vip(None);
        let t = target(&st, "198.18.1.2");
        let by = CheckedBy {
            check: "tcp 198.18.1.2:80".into(),
            reason: None,
            since_unix_ms: None,
        };
        // Health unchanged: only what `rsplb status` shows changes; no map write.
        let writes = batch(&mut st, &mut dp, |c| {
            assert!(!c.set_health(&t, Health::Up, Some(by.clone())))
        });
        assert!(writes.is_empty(), "{writes:?}");
        let i = st.find_element(&pool("web"), &el("198.18.1.2")).unwrap();
        assert_eq!(st.elements[i].checked.as_ref(), Some(&by));
        // A check that goes away leaves nothing behind.
        batch(&mut st, &mut dp, |c| {
            c.set_health(&t, Health::Up, None);
        });
        assert_eq!(st.elements[i].checked, None);
    }

    #[test]
    fn none_healthy_is_fail_static_or_drop() {
        for (rule, on_failure) in [
            (NoneHealthy::FailStatic, OnFailure::Remove),
            (NoneHealthy::FailStatic, OnFailure::Drain),
            (NoneHealthy::Drop, OnFailure::Remove),
        ] {
            let policy = PoolPolicy {
                when_none_healthy: rule,
                on_failure,
                ..PoolPolicy::default()
            };
            let (mut st, mut dp) = web_with_vip(Some(policy));
            let (a, b) = (
                slot(&st, "web", "198.18.1.2"),
                slot(&st, "web", "198.18.1.3"),
            );
            health(&mut st, &mut dp, "198.18.1.2", Health::Down);
            health(&mut st, &mut dp, "198.18.1.3", Health::Down);
            match rule {
                NoneHealthy::FailStatic => {
                    assert_eq!(table(&st, &dp), [a, b].into(), "{on_failure:?}");
                    assert_ne!(dp.element(a).unwrap().flags & ELEM_ACTIVE, 0);
                }
                NoneHealthy::Drop => assert_eq!(table(&st, &dp), [u32::MAX].into()),
            }
            // One comes back: only it.
            health(&mut st, &mut dp, "198.18.1.3", Health::Up);
            assert_eq!(table(&st, &dp), [b].into());
            if on_failure == OnFailure::Remove {
                assert_eq!(dp.element(a).unwrap().flags, 0);
            }
            assert_eq!(dp.violations(), &[] as &[String], "{rule:?} {on_failure:?}");
        }
    }

    #[test]
    fn below_min_healthy_the_vips_use_the_backup_pool() {
        let policy = PoolPolicy {
            min_healthy: 2,
            backup: Some("sorry".into()),
            ..PoolPolicy::default()
        };
        let (mut st, mut dp) = web_with_vip(None);
        batch(&mut st, &mut dp, |c| {
            add(c, "sorry", "198.18.1.9", 1);
            c.set_pool_policy("web", Some(policy)).unwrap();
        });
        let (a, sorry) = (
            slot(&st, "web", "198.18.1.2"),
            slot(&st, "sorry", "198.18.1.9"),
        );
        let b = slot(&st, "web", "198.18.1.3");
        assert_eq!(table(&st, &dp), [a, b].into());
        health(&mut st, &mut dp, "198.18.1.2", Health::Down);
        assert_eq!(table(&st, &dp), [sorry].into());
        // A change in the backup pool reaches the VIP's table.
        let writes = batch(&mut st, &mut dp, |c| add(c, "sorry", "198.18.1.8", 1));
        assert!(writes.iter().any(|w| matches!(w, Write::Vip { .. })));
        assert_eq!(table(&st, &dp).len(), 2);
        health(&mut st, &mut dp, "198.18.1.2", Health::Up);
        assert_eq!(table(&st, &dp), [a, b].into());
        assert_eq!(dp.violations(), &[] as &[String]);
    }

    #[test]
    fn slow_start_lowers_the_weight_and_a_backup_must_fit_the_vips() {
        let (mut st, mut dp) = web_with_vip(None);
        batch(&mut st, &mut dp, |c| {
            c.upsert_element(&pool("web"), el("198.18.1.3"), 100, Upsert::Either, hop(1))
                .unwrap();
        });
        let b = slot(&st, "web", "198.18.1.3");
        let share = |dp: &Memory| {
            let t = dp.active_table(&vip("198.18.0.1:80/tcp").key()).unwrap();
            t.iter().filter(|&&s| s == b).count() as f64 / t.len() as f64
        };
        assert!(share(&dp) > 0.9);
        health(&mut st, &mut dp, "198.18.1.3", Health::SlowStart(1));
        assert!(share(&dp) < 0.6, "{}", share(&dp));
        health(&mut st, &mut dp, "198.18.1.3", Health::Up);
        assert!(share(&dp) > 0.9);
        // A DSR VIP cannot use a backup pool whose element has another port.
        let refused = batch(&mut st, &mut dp, |c| {
            add(c, "other", "198.18.1.7:8080", 1);
            let e = c
                .set_pool_policy(
                    "web",
                    Some(PoolPolicy {
                        backup: Some("other".into()),
                        ..PoolPolicy::default()
                    }),
                )
                .unwrap_err();
            assert!(e.to_string().contains("DSR"), "{e}");
        });
        assert!(!refused.is_empty());
        assert_eq!(dp.violations(), &[] as &[String]);
    }
}
