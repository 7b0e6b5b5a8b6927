//! The registrar reconciler: turns the handlespace of the registrar embedded in
//! `rsplb run --registrar` into the elements of the XDP dataplane.
//!
//! Pool handles are rsplb pool names: every pool whose handle is printable text (1..=32 bytes,
//! no spaces, not a `0x` hex dump, the registrar's rendering of a binary handle) becomes the
//! rsplb pool of that name, and each of its pool elements becomes the element
//! `ADDR:PORT` of its user transport (the first address of a multi-homed SCTP element). VIPs
//! that name the pool steer to those elements.
//!
//! Weights follow the element's selection policy (see [`Selection`] and [`desired_pool`]):
//! - Weighted Round Robin, Weighted Random (also its DPF variant): the registered weight, clamped
//!   to 1..=65535.
//! - Round Robin, Random, unknown policies: 1.
//! - Priority: the elements with the pool's highest priority get weight 1; every other element
//!   is drained (no new flows; its existing flows stay). Recomputed on every change of the pool.
//! - The least-used family (with or without degradation, randomized, priority or DPF
//!   variants): `1 + (u32::MAX - load) * 99 / u32::MAX`, from 100 for an idle element down to
//!   1 for a fully loaded one. Degradation and DPF values are not used: the dataplane picks an
//!   element per new flow by weight, it has no per-selection state to degrade.
//!
//! Ownership: the reconciler only changes and removes the elements it added
//! ([`Owner::Registrar`](crate::state::Owner)). An element added by hand (`rsplb element add`)
//! with the same pool and address is left as it is, and stays when the element deregisters.
//! An element the registrar owns follows the registrar: changing it by hand lasts until the
//! next periodic pass.
//!
//! Ordering (as [`RegistrarControl::snapshot`] asks): subscribe first, then read a snapshot,
//! then apply events idempotently. Events only update the model; the dataplane is then moved to
//! the model's desired state by a diff against what the reconciler last applied, so a repeated
//! event changes nothing. A subscriber that lags behind re-reads a snapshot. Every pass on the
//! daemon's interval re-reads which elements the registrar owns and repairs any difference.
//!
//! Latency: every handlespace event says when the registrar's core made it; a pass that flips
//! a table observes, for each event of a pool it changed, the time from that change to its last
//! VIP flip ([`LATENCY`]: the `rsplb_reconcile_latency_seconds` histogram, and a debug log line
//! per pass with each event's figure). A new element whose next hop is not known yet enters at
//! its neighbour result, outside this figure.
//!
//! Restart: elements the registrar owned before the daemon restarted are kept for
//! [`RESTART_GRACE`] so their servers can register again (sidecars reconnect on their own)
//! without a gap in service; those that do not come back are then removed.

use crate::control::owner::Control;
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};
use rsplb_registrar::{
    core::HandlespaceEvent,
    shell::{HandlespaceSnapshot, Notification, RegistrarControl, admin::PolicySnapshot},
    types::{self as rsp, Policy, policy_type},
};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::{
    addr::{ElementAddr, PoolHandle},
    control::{Balancer, RESOLVE_WAIT, RegisteredChange},
    resolver::Resolver,
    state::{ElementState, Owner},
};

/// How long elements owned before a restart are kept while their servers register again.
pub const RESTART_GRACE: Duration = Duration::from_secs(10);

/// What an element's policy says about its share of new flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Weighted round robin / weighted random: a weight.
    Weight(u32),
    /// Round robin / random: all equal.
    Equal,
    /// Priority: higher is preferred; only the highest priority of the pool takes new flows.
    Priority(u32),
    /// Least-used family: load as a fraction of `u32::MAX`.
    Load(u32),
}

impl Selection {
    pub fn from_policy(p: &Policy) -> Selection {
        match *p {
            Policy::WeightedRoundRobin { weight }
            | Policy::WeightedRandom { weight }
            | Policy::WeightedRandomDpf { weight, .. } => Selection::Weight(weight),
            Policy::Priority { priority } => Selection::Priority(priority),
            _ => p.load().map_or(Selection::Equal, Selection::Load),
        }
    }

    /// The same mapping from the admin snapshot's policy (type code and values).
    pub fn from_snapshot(p: &PolicySnapshot) -> Selection {
        use policy_type::*;
        match p.policy_type {
            WEIGHTED_ROUND_ROBIN | WEIGHTED_RANDOM | WEIGHTED_RANDOM_DPF => {
                Selection::Weight(p.weight.unwrap_or(1))
            }
            PRIORITY => Selection::Priority(p.priority.unwrap_or(0)),
            ROUND_ROBIN | RANDOM => Selection::Equal,
            _ => match p.load {
                Some(load) => Selection::Load(load),
                None => Selection::Equal,
            },
        }
    }
}

/// A weight from a registered weight: 0 counts as 1, above 65535 as 65535.
pub fn clamp_weight(w: u32) -> u16 {
    w.clamp(1, u16::MAX as u32) as u16
}

/// A weight from a load (fraction of `u32::MAX`): 100 when idle, 1 when fully loaded.
pub fn load_weight(load: u32) -> u16 {
    let spare = u64::from(u32::MAX - load);
    (1 + spare * 99 / u64::from(u32::MAX)) as u16
}

/// A registered pool element as the reconciler needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub addr: ElementAddr,
    pub selection: Selection,
}

impl Registered {
    fn new(addrs: &[IpAddr], port: u16, selection: Selection) -> Option<Registered> {
        Some(Registered {
            addr: ElementAddr {
                addr: *addrs.first()?,
                // Port 0 cannot be reached; rsplb reads a missing port as "the VIP's port".
                port: (port != 0).then_some(port),
            },
            selection,
        })
    }
}

/// What one element should be in the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desired {
    pub weight: u16,
    /// `false`: draining.
    pub active: bool,
}

/// The dataplane elements of one pool from its registered elements. Two registrations of the
/// same address (a server that registered again under a new identifier before the old one
/// timed out) make one element: active if either is, with the larger weight.
pub fn desired_pool<'a>(
    elements: impl IntoIterator<Item = &'a Registered>,
) -> BTreeMap<ElementAddr, Desired> {
    let elements: Vec<&Registered> = elements.into_iter().collect();
    let top_priority = elements
        .iter()
        .filter_map(|e| match e.selection {
            Selection::Priority(p) => Some(p),
            _ => None,
        })
        .max();
    let mut out: BTreeMap<ElementAddr, Desired> = BTreeMap::new();
    for e in elements {
        let d = match e.selection {
            Selection::Weight(w) => Desired {
                weight: clamp_weight(w),
                active: true,
            },
            Selection::Equal => Desired {
                weight: 1,
                active: true,
            },
            Selection::Priority(p) => Desired {
                weight: 1,
                active: Some(p) == top_priority,
            },
            Selection::Load(l) => Desired {
                weight: load_weight(l),
                active: true,
            },
        };
        out.entry(e.addr)
            .and_modify(|o| {
                *o = match (o.active, d.active) {
                    (true, false) => *o,
                    (false, true) => d,
                    _ => Desired {
                        weight: o.weight.max(d.weight),
                        active: o.active,
                    },
                }
            })
            .or_insert(d);
    }
    out
}

/// rsplb's pool name for a registrar pool handle: printable text only.
fn pool_name(handle: &rsp::PoolHandle) -> Option<PoolHandle> {
    rsplb_pool(std::str::from_utf8(handle.as_bytes()).ok()?)
}

/// The pool name of a handle's text: printable ASCII without spaces, and not `0x` followed by
/// pairs of hex digits, which is how the registrar's snapshot shows a binary handle (a pool
/// named like that is not reconciled: events and snapshots could not agree on it).
fn rsplb_pool(text: &str) -> Option<PoolHandle> {
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    if let Some(hex) = text.strip_prefix("0x")
        && !hex.is_empty()
        && hex.len() % 2 == 0
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    text.parse().ok()
}

/// The handlespace as the reconciler tracks it: pool -> PE identifier -> element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pools: BTreeMap<PoolHandle, BTreeMap<u32, Registered>>,
}

impl Model {
    /// The model of a snapshot. Pools whose handle is not printable text are left out.
    pub fn from_snapshot(snap: &HandlespaceSnapshot) -> Model {
        let mut pools = BTreeMap::new();
        for p in &snap.pools {
            let Some(pool) = rsplb_pool(&p.handle) else {
                continue;
            };
            let elements: BTreeMap<u32, Registered> = p
                .elements
                .iter()
                .filter_map(|e| {
                    let sel = Selection::from_snapshot(&e.policy);
                    Some((e.id, Registered::new(&e.addresses, e.port, sel)?))
                })
                .collect();
            if !elements.is_empty() {
                pools.insert(pool, elements);
            }
        }
        Model { pools }
    }

    /// Applies one event; returns the pool it changed (if it is an rsplb pool).
    pub fn apply(&mut self, ev: &HandlespaceEvent) -> Option<PoolHandle> {
        match ev {
            HandlespaceEvent::ElementAdded { pool, element }
            | HandlespaceEvent::ElementUpdated { pool, element } => {
                let name = pool_name(pool)?;
                let t = &element.user_transport;
                let reg =
                    Registered::new(t.addrs(), t.port(), Selection::from_policy(&element.policy));
                let elements = self.pools.entry(name.clone()).or_default();
                match reg {
                    Some(r) => elements.insert(element.id.0, r),
                    None => elements.remove(&element.id.0),
                };
                if elements.is_empty() {
                    self.pools.remove(&name);
                }
                Some(name)
            }
            HandlespaceEvent::ElementRemoved { pool, id, .. } => {
                let name = pool_name(pool)?;
                if let Some(elements) = self.pools.get_mut(&name) {
                    elements.remove(&id.0);
                    if elements.is_empty() {
                        self.pools.remove(&name);
                    }
                }
                Some(name)
            }
        }
    }

    pub fn pools(&self) -> impl Iterator<Item = &PoolHandle> {
        self.pools.keys()
    }

    /// The dataplane elements `pool` should have.
    pub fn desired(&self, pool: &PoolHandle) -> BTreeMap<ElementAddr, Desired> {
        self.pools
            .get(pool)
            .map(|e| desired_pool(e.values()))
            .unwrap_or_default()
    }
}

/// One change the reconciler asks of the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Set(PoolHandle, ElementAddr, Desired),
    Remove(PoolHandle, ElementAddr),
}

/// What the reconciler needs of the control plane (implemented by [`DaemonPlane`]; tests use
/// a fake).
pub trait Dataplane {
    /// The elements the registrar owns now.
    fn owned(&self) -> Result<Vec<(PoolHandle, ElementAddr, Desired)>>;
    /// Adds or updates an element as the registrar's. `Ok(false)`: an element added by hand is
    /// there and was left alone.
    fn set(&mut self, pool: &PoolHandle, addr: ElementAddr, d: Desired) -> Result<bool>;
    /// Removes an element the registrar owns. `Ok(false)`: absent or added by hand.
    fn remove(&mut self, pool: &PoolHandle, addr: ElementAddr) -> Result<bool>;
    /// When the last `apply` flipped its last table (`None`: it flipped none, or the plane
    /// does not say).
    fn last_flip(&self) -> Option<Instant> {
        None
    }
    /// Applies a batch of changes (each result as `set` and `remove` give it). The control
    /// plane applies it as one change, so each affected table is rebuilt once.
    fn apply(&mut self, changes: &[Change]) -> Result<Vec<Result<bool>>> {
        Ok(changes
            .iter()
            .map(|c| match c {
                Change::Set(p, a, d) => self.set(p, *a, *d),
                Change::Remove(p, a) => self.remove(p, *a),
            })
            .collect())
    }
}

/// The daemon's control plane as the reconciler sees it: the balancer, whose new elements'
/// next hops go to the resolver instead of being waited for inside the change.
pub struct DaemonPlane<'a> {
    balancer: &'a mut Balancer,
    resolver: &'a Resolver,
}

impl<'a> DaemonPlane<'a> {
    pub fn new(balancer: &'a mut Balancer, resolver: &'a Resolver) -> DaemonPlane<'a> {
        DaemonPlane { balancer, resolver }
    }
}

impl Dataplane for DaemonPlane<'_> {
    fn owned(&self) -> Result<Vec<(PoolHandle, ElementAddr, Desired)>> {
        let mut out = Vec::new();
        for e in self.balancer.list_elements(None)? {
            if e.owner != Owner::Registrar {
                continue;
            }
            let Ok(pool) = e.pool.parse() else { continue };
            let d = Desired {
                weight: e.weight,
                active: e.state == ElementState::Active,
            };
            out.push((pool, e.element_addr(), d));
        }
        Ok(out)
    }

    fn set(&mut self, pool: &PoolHandle, addr: ElementAddr, d: Desired) -> Result<bool> {
        let r = self.apply(&[Change::Set(pool.clone(), addr, d)])?;
        r.into_iter().next().unwrap_or(Ok(false))
    }

    fn remove(&mut self, pool: &PoolHandle, addr: ElementAddr) -> Result<bool> {
        let r = self.apply(&[Change::Remove(pool.clone(), addr)])?;
        r.into_iter().next().unwrap_or(Ok(false))
    }

    fn apply(&mut self, changes: &[Change]) -> Result<Vec<Result<bool>>> {
        let batch: Vec<RegisteredChange> = changes
            .iter()
            .map(|c| match c {
                Change::Set(pool, addr, d) => RegisteredChange::Set {
                    pool: pool.clone(),
                    addr: *addr,
                    weight: d.weight,
                    active: d.active,
                },
                Change::Remove(pool, addr) => RegisteredChange::Remove {
                    pool: pool.clone(),
                    addr: *addr,
                },
            })
            .collect();
        // A neighbour the kernel knows already is taken at once (a cache lookup, no wait): the
        // element enters the tables in this same change. Only the others wait for the
        // resolver.
        let resolver = self.resolver;
        let results = self
            .balancer
            .apply_registered(&batch, &|t| resolver.cached(t))?;
        let mut resolve = Vec::new();
        let out = results
            .into_iter()
            .map(|r| {
                r.map(|(done, target)| {
                    resolve.extend(target);
                    done
                })
            })
            .collect();
        self.resolver.request(resolve, RESOLVE_WAIT);
        Ok(out)
    }

    fn last_flip(&self) -> Option<Instant> {
        self.balancer.last_flip()
    }
}

/// What one reconciliation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub set: usize,
    pub removed: usize,
    pub errors: usize,
    /// The pools an element was set in or removed from.
    pub pools: BTreeSet<PoolHandle>,
    /// When the batch flipped its last table, if it flipped one.
    pub flipped: Option<Instant>,
}

/// Moves the dataplane to the model, pool by pool, changing only what differs from what it
/// applied last.
#[derive(Debug, Default)]
pub struct Reconciler {
    pub model: Model,
    /// What the registrar owns in the dataplane, as far as the reconciler knows.
    applied: BTreeMap<PoolHandle, BTreeMap<ElementAddr, Desired>>,
    /// Addresses a hand-added element holds (reported once).
    manual: BTreeSet<(PoolHandle, ElementAddr)>,
    /// Owned before a restart and not registered (yet): kept until the grace ends.
    stale: BTreeSet<(PoolHandle, ElementAddr)>,
    grace_until: Option<Instant>,
}

impl Reconciler {
    pub fn new() -> Reconciler {
        Reconciler::default()
    }

    /// Re-reads which elements the registrar owns. The first call (at start) also marks the
    /// owned elements of an earlier run, kept for `grace`.
    pub fn refresh_owned(&mut self, dp: &impl Dataplane, grace: Option<Duration>) -> Result<()> {
        let mut applied: BTreeMap<PoolHandle, BTreeMap<ElementAddr, Desired>> = BTreeMap::new();
        for (pool, addr, d) in dp.owned()? {
            applied.entry(pool).or_default().insert(addr, d);
        }
        if let Some(grace) = grace {
            self.stale = applied
                .iter()
                .flat_map(|(p, e)| e.keys().map(|a| (p.clone(), *a)))
                .collect();
            if !self.stale.is_empty() {
                log::info!(
                    "{} element(s) registered before the restart are kept {grace:?} while their servers register again",
                    self.stale.len()
                );
                self.grace_until = Some(Instant::now() + grace);
            }
        }
        self.applied = applied;
        Ok(())
    }

    /// Ends the restart grace when it is over (or `now` is past it); returns whether it did.
    pub fn end_grace_if_due(&mut self, now: Instant) -> bool {
        match self.grace_until {
            Some(t) if now >= t => {
                self.grace_until = None;
                self.stale.clear();
                true
            }
            _ => false,
        }
    }

    /// Reconciles every pool the model or the dataplane knows.
    pub fn reconcile_all(&mut self, dp: &mut impl Dataplane) -> Changes {
        let pools: BTreeSet<PoolHandle> = self
            .model
            .pools()
            .chain(self.applied.keys())
            .cloned()
            .collect();
        self.reconcile(dp, &pools)
    }

    /// Reconciles `pools`, as one batch of changes.
    pub fn reconcile(&mut self, dp: &mut impl Dataplane, pools: &BTreeSet<PoolHandle>) -> Changes {
        let mut c = Changes::default();
        let mut changes = Vec::new();
        for pool in pools {
            let desired = self.model.desired(pool);
            let applied = self.applied.get(pool);
            for (addr, d) in &desired {
                self.stale.remove(&(pool.clone(), *addr));
                if applied.and_then(|a| a.get(addr)) != Some(d) {
                    changes.push(Change::Set(pool.clone(), *addr, *d));
                }
            }
            for addr in applied.into_iter().flat_map(|a| a.keys()) {
                if !desired.contains_key(addr) && !self.stale.contains(&(pool.clone(), *addr)) {
                    changes.push(Change::Remove(pool.clone(), *addr));
                }
            }
            self.manual
                .retain(|(p, a)| p != pool || desired.contains_key(a));
        }
        if changes.is_empty() {
            return c;
        }
        let results = match dp.apply(&changes) {
            Ok(r) => r,
            Err(e) => changes.iter().map(|_| Err(anyhow!("{e:#}"))).collect(),
        };
        c.flipped = dp.last_flip();
        for (change, result) in changes.into_iter().zip(results) {
            self.record(change, result, &mut c);
        }
        self.applied.retain(|_, a| !a.is_empty());
        c
    }

    /// Takes note of what one change did.
    fn record(&mut self, change: Change, result: Result<bool>, c: &mut Changes) {
        match change {
            Change::Set(pool, addr, d) => {
                let key = (pool.clone(), addr);
                let applied = self.applied.entry(pool.clone()).or_default();
                match result {
                    Ok(true) => {
                        log::info!(
                            "pool {pool}: element {addr} weight {} {} (registered)",
                            d.weight,
                            if d.active { "active" } else { "draining" }
                        );
                        applied.insert(addr, d);
                        self.manual.remove(&key);
                        c.set += 1;
                        c.pools.insert(pool);
                    }
                    Ok(false) => {
                        if self.manual.insert(key) {
                            log::info!(
                                "pool {pool}: element {addr} is registered but another owner (`element add` or the configuration file) put it there first; left as it is"
                            );
                        }
                        applied.remove(&addr);
                    }
                    Err(e) => {
                        log::warn!("pool {pool}: setting element {addr}: {e:#}");
                        c.errors += 1;
                    }
                }
            }
            Change::Remove(pool, addr) => match result {
                Ok(removed) => {
                    if let Some(a) = self.applied.get_mut(&pool) {
                        a.remove(&addr);
                    }
                    if removed {
                        log::info!("pool {pool}: element {addr} removed (no longer registered)");
                        c.removed += 1;
                        c.pools.insert(pool);
                    }
                }
                Err(e) => {
                    log::warn!("pool {pool}: removing element {addr}: {e:#}");
                    c.errors += 1;
                }
            },
        }
    }
}

/// Runs `f` on the reconciler and the control plane on a blocking thread (the control plane
/// waits for the state lock, never for neighbours) and gives the reconciler back.
/// What the reconciler passes of this process took, for `rsplb status` and the metrics (one
/// daemon per process: the figures are process-wide).
#[derive(Debug, Default)]
pub struct PassFigures {
    pub passes: std::sync::atomic::AtomicU64,
    pub total_us: std::sync::atomic::AtomicU64,
    /// When the last pass ended, Unix time in ms (0: none yet).
    pub last_unix_ms: std::sync::atomic::AtomicU64,
}

pub static PASSES: PassFigures = PassFigures {
    passes: std::sync::atomic::AtomicU64::new(0),
    total_us: std::sync::atomic::AtomicU64::new(0),
    last_unix_ms: std::sync::atomic::AtomicU64::new(0),
};

impl PassFigures {
    fn record(&self, took: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.passes.fetch_add(1, Relaxed);
        self.total_us
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
        self.last_unix_ms.store(crate::control::unix_ms(), Relaxed);
    }
}

/// Upper bounds (seconds) of the buckets of `rsplb_reconcile_latency_seconds`: fine from 50 µs
/// (a flip of a small table on an idle daemon) to 1 s (a pass held up behind a long one).
pub const LATENCY_BUCKETS: [f64; 22] = [
    50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 7.5e-3, 10e-3,
    15e-3, 20e-3, 30e-3, 50e-3, 75e-3, 100e-3, 200e-3, 500e-3, 1.0,
];

/// The reconcile latency of this process: from a handlespace change (the registrar's core
/// making it) to the table flip that carries it into the dataplane, one observation per event
/// whose pool changed in a pass that flipped a table. Atomics only: observing costs a few
/// nanoseconds and the memory is fixed.
#[derive(Debug)]
pub struct LatencyFigures {
    /// Per bucket of [`LATENCY_BUCKETS`], then one above the last bound.
    counts: [std::sync::atomic::AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: std::sync::atomic::AtomicU64,
}

pub static LATENCY: LatencyFigures = LatencyFigures {
    counts: [const { std::sync::atomic::AtomicU64::new(0) }; LATENCY_BUCKETS.len() + 1],
    sum_ns: std::sync::atomic::AtomicU64::new(0),
};

/// A copy of [`LatencyFigures`]: the sum (s), the count, and each bucket's own count with its
/// upper bound (`f64::INFINITY` last).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    pub sum_s: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl LatencyFigures {
    pub fn observe(&self, d: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        LatencySnapshot {
            sum_s: self.sum_ns.load(Relaxed) as f64 / 1e9,
            count: buckets.iter().map(|b| b.1).sum(),
            buckets,
        }
    }
}

/// The latency of each event of a pass (`stamps`: its pool, when the registrar made it) that
/// the pass carried to a table flip: events of pools it changed, when it flipped a table.
fn latencies<'a>(
    c: &'a Changes,
    stamps: &'a [(PoolHandle, Instant)],
) -> impl Iterator<Item = Duration> + 'a {
    stamps
        .iter()
        .filter(|(p, _)| c.pools.contains(p))
        .filter_map(|(_, at)| Some(c.flipped?.saturating_duration_since(*at)))
}

/// At most this many latencies in one pass's debug line (a larger burst is summed up).
const LATENCIES_LOGGED: usize = 64;

/// Observes the latency of each event (`stamps`: its pool, when the registrar made it) whose
/// pool the pass `c` changed, when it flipped a table; logs them at debug level in µs
/// (`reconcile latency_us=[..]`, what `cargo xtask bench failover` reads).
fn observe_latency(c: &Changes, stamps: &[(PoolHandle, Instant)]) {
    let us: Vec<u64> = latencies(c, stamps)
        .map(|d| {
            LATENCY.observe(d);
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
        })
        .collect();
    if us.is_empty() || !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let shown: Vec<String> = us
        .iter()
        .take(LATENCIES_LOGGED)
        .map(u64::to_string)
        .collect();
    let more = us.len().saturating_sub(LATENCIES_LOGGED);
    log::debug!(
        "reconcile latency_us=[{}]{} (handlespace event to table flip, {} event(s), {} pool(s))",
        shown.join(","),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
        us.len(),
        c.pools.len()
    );
}

/// Runs `f` with the reconciler on the control plane's owner thread (one job per pass).
async fn blocking<R: Send + 'static>(
    (balancer, resolver): &(Control, Resolver),
    mut rec: Reconciler,
    f: impl FnOnce(&mut Reconciler, &mut DaemonPlane<'_>) -> R + Send + 'static,
) -> Result<(Reconciler, R)> {
    let resolver = resolver.clone();
    balancer
        .run(move |b| {
            let started = Instant::now();
            let r = f(&mut rec, &mut DaemonPlane::new(b, &resolver));
            PASSES.record(started.elapsed());
            (rec, r)
        })
        .await
}

fn log_changes(what: &str, c: &Changes) {
    if c.set + c.removed + c.errors > 0 {
        log::info!(
            "reconciled {what}: {} element(s) set, {} removed, {} error(s)",
            c.set,
            c.removed,
            c.errors
        );
    }
}

/// The daemon's reconciliation task: `events` must have been subscribed before this starts
/// (it then reads a snapshot). Runs until the registrar stops; every `interval` it re-reads the
/// owned elements and repairs any difference (and retries failed changes).
pub async fn run(
    balancer: Control,
    resolver: Resolver,
    control: RegistrarControl,
    mut events: broadcast::Receiver<Notification>,
    interval: Duration,
) -> Result<()> {
    let plane = (balancer, resolver);
    let (mut rec, r) = blocking(&plane, Reconciler::new(), |rec, b| {
        rec.refresh_owned(b, Some(RESTART_GRACE))
    })
    .await?;
    r?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'snapshot: loop {
        let snap = control.snapshot().await?;
        rec.model = Model::from_snapshot(&snap);
        log::info!(
            "registrar snapshot: {} pool(s), {} element(s)",
            snap.pool_count,
            snap.element_count
        );
        let (r, c) = blocking(&plane, rec, |rec, b| rec.reconcile_all(b)).await?;
        rec = r;
        log_changes("the snapshot", &c);
        loop {
            let grace_end = rec.grace_until;
            tokio::select! {
                ev = events.recv() => {
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(RecvError::Lagged(n)) => {
                            log::warn!("reconciler lagged {n} event(s) behind; re-reading the handlespace");
                            continue 'snapshot;
                        }
                        Err(RecvError::Closed) => return Ok(()),
                    };
                    let mut touched = BTreeSet::new();
                    let mut stamps = Vec::new();
                    let mut take = |rec: &mut Reconciler, n: Notification| {
                        if let Some(pool) = rec.model.apply(&n.event) {
                            touched.insert(pool.clone());
                            stamps.push((pool, n.at));
                        }
                    };
                    take(&mut rec, ev);
                    // Take every event already queued: one pass per pool for a burst.
                    loop {
                        match events.try_recv() {
                            Ok(ev) => take(&mut rec, ev),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Lagged(_)) => continue 'snapshot,
                            Err(TryRecvError::Closed) => return Ok(()),
                        }
                    }
                    let (r, c) = blocking(&plane, rec, move |rec, b| rec.reconcile(b, &touched)).await?;
                    rec = r;
                    observe_latency(&c, &stamps);
                    log_changes("registrar events", &c);
                }
                _ = tick.tick() => {
                    let (r, c) = blocking(&plane, rec, |rec, b| {
                        rec.end_grace_if_due(Instant::now());
                        match rec.refresh_owned(b, None) {
                            Ok(()) => rec.reconcile_all(b),
                            Err(e) => {
                                log::warn!("reading the registered elements: {e:#}");
                                Changes { errors: 1, ..Changes::default() }
                            }
                        }
                    })
                    .await?;
                    rec = r;
                    log_changes("the periodic pass", &c);
                }
                _ = sleep_until(grace_end) => {
                    let (r, c) = blocking(&plane, rec, |rec, b| {
                        rec.end_grace_if_due(Instant::now());
                        rec.reconcile_all(b)
                    })
                    .await?;
                    rec = r;
                    log_changes("the end of the restart grace", &c);
                }
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsplb_registrar::{
        core::RemovalReason,
        shell::admin::{ElementSnapshot, PoolSnapshot},
        types::{PeId, PoolElement, RegistrarId, TransportAddress, TransportUse},
    };

    /// A control plane in memory: (pool, addr) -> (desired, owner).
    #[derive(Default)]
    struct FakeDataplane {
        elements: BTreeMap<(PoolHandle, ElementAddr), (Desired, Owner)>,
        calls: usize,
        fail: bool,
    }

    impl FakeDataplane {
        fn get(&self, pool: &str, addr: &str) -> Option<(Desired, Owner)> {
            self.elements
                .get(&(pool.parse().unwrap(), addr.parse().unwrap()))
                .copied()
        }
        fn manual(&mut self, pool: &str, addr: &str, weight: u16) {
            self.elements.insert(
                (pool.parse().unwrap(), addr.parse().unwrap()),
                (
                    Desired {
                        weight,
                        active: true,
                    },
                    Owner::Manual,
                ),
            );
        }
    }

    impl Dataplane for FakeDataplane {
        fn owned(&self) -> Result<Vec<(PoolHandle, ElementAddr, Desired)>> {
            Ok(self
                .elements
                .iter()
                .filter(|(_, (_, o))| *o == Owner::Registrar)
                .map(|((p, a), (d, _))| (p.clone(), *a, *d))
                .collect())
        }
        fn set(&mut self, pool: &PoolHandle, addr: ElementAddr, d: Desired) -> Result<bool> {
            self.calls += 1;
            if self.fail {
                return Err(anyhow!("no free element slot"));
            }
            let key = (pool.clone(), addr);
            match self.elements.get(&key) {
                Some((_, Owner::Manual)) => Ok(false),
                _ => {
                    self.elements.insert(key, (d, Owner::Registrar));
                    Ok(true)
                }
            }
        }
        fn remove(&mut self, pool: &PoolHandle, addr: ElementAddr) -> Result<bool> {
            self.calls += 1;
            let key = (pool.clone(), addr);
            match self.elements.get(&key) {
                Some((_, Owner::Registrar)) => {
                    self.elements.remove(&key);
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
    }

    #[test]
    fn latency_counts_the_events_a_flip_carried_from_their_change_to_the_flip() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let stamps = vec![
            ("web".parse().unwrap(), at(0)),
            ("api".parse().unwrap(), at(2)),
            ("web".parse().unwrap(), at(3)),
        ];
        let mut c = Changes {
            set: 1,
            pools: ["web".parse().unwrap()].into(),
            ..Changes::default()
        };
        // Nothing flipped (a pool without a VIP, a new element awaiting its next hop).
        assert_eq!(latencies(&c, &stamps).count(), 0);
        c.flipped = Some(at(5));
        // `api` changed nothing: it is not counted.
        let got: Vec<Duration> = latencies(&c, &stamps).collect();
        assert_eq!(
            got,
            vec![Duration::from_millis(5), Duration::from_millis(2)]
        );
        // The histogram's buckets: an observation lands in the first bound at or above it.
        let h = LatencyFigures {
            counts: [const { std::sync::atomic::AtomicU64::new(0) }; LATENCY_BUCKETS.len() + 1],
            sum_ns: std::sync::atomic::AtomicU64::new(0),
        };
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(3));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[1], (100e-6, 1));
        assert_eq!(s.buckets[2], (200e-6, 1));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((s.sum_s - 3.000201).abs() < 1e-9);
    }

    fn handle(s: &[u8]) -> rsp::PoolHandle {
        rsp::PoolHandle::new(s.to_vec()).unwrap()
    }

    fn pe(id: u32, addr: &str, port: u16, policy: Policy) -> PoolElement {
        PoolElement {
            id: PeId(id),
            home_registrar: RegistrarId(1),
            registration_life_ms: 30_000,
            user_transport: TransportAddress::Tcp {
                port,
                transport_use: TransportUse::DataOnly,
                addr: addr.parse().unwrap(),
            },
            policy,
            asap_transport: None,
        }
    }

    fn added(pool: &str, id: u32, addr: &str, policy: Policy) -> HandlespaceEvent {
        HandlespaceEvent::ElementAdded {
            pool: handle(pool.as_bytes()),
            element: pe(id, addr, 80, policy),
        }
    }

    fn updated(pool: &str, id: u32, addr: &str, policy: Policy) -> HandlespaceEvent {
        HandlespaceEvent::ElementUpdated {
            pool: handle(pool.as_bytes()),
            element: pe(id, addr, 80, policy),
        }
    }

    fn removed(pool: &str, id: u32) -> HandlespaceEvent {
        HandlespaceEvent::ElementRemoved {
            pool: handle(pool.as_bytes()),
            id: PeId(id),
            reason: RemovalReason::Deregistered,
        }
    }

    /// Applies events the way the daemon does: model first, then the touched pools.
    fn apply(rec: &mut Reconciler, dp: &mut FakeDataplane, evs: &[HandlespaceEvent]) -> Changes {
        let touched: BTreeSet<PoolHandle> = evs.iter().filter_map(|e| rec.model.apply(e)).collect();
        rec.reconcile(dp, &touched)
    }

    fn active(weight: u16) -> Desired {
        Desired {
            weight,
            active: true,
        }
    }

    fn draining(weight: u16) -> Desired {
        Desired {
            weight,
            active: false,
        }
    }

    #[test]
    fn weights_follow_the_policy() {
        let w = |p: Policy| {
            desired_pool(&[Registered {
                addr: "198.18.1.2:80".parse().unwrap(),
                selection: Selection::from_policy(&p),
            }])
            .into_values()
            .next()
            .unwrap()
        };
        assert_eq!(w(Policy::WeightedRoundRobin { weight: 7 }), active(7));
        assert_eq!(w(Policy::WeightedRandom { weight: 0 }), active(1));
        assert_eq!(w(Policy::WeightedRandom { weight: 1 << 20 }), active(65535));
        assert_eq!(w(Policy::RoundRobin), active(1));
        assert_eq!(w(Policy::Random), active(1));
        assert_eq!(w(Policy::Priority { priority: 9 }), active(1));
        assert_eq!(w(Policy::LeastUsed { load: 0 }), active(100));
        assert_eq!(w(Policy::LeastUsed { load: u32::MAX }), active(1));
        assert_eq!(
            w(Policy::LeastUsedDegradation {
                load: u32::MAX / 2,
                degradation: u32::MAX
            }),
            active(50)
        );
        // The weight never rises with the load.
        let mut last = u16::MAX;
        for pct in 0..=100u64 {
            let load = (u64::from(u32::MAX) * pct / 100) as u32;
            let lw = load_weight(load);
            assert!((1..=100).contains(&lw) && lw <= last, "load {pct}%: {lw}");
            last = lw;
        }
    }

    #[test]
    fn the_snapshot_policy_maps_like_the_registered_one() {
        let snap = |policy_type, weight, priority, load| PolicySnapshot {
            name: String::new(),
            policy_type,
            weight,
            priority,
            load,
            ..PolicySnapshot::default()
        };
        let cases = [
            (
                snap(policy_type::WEIGHTED_ROUND_ROBIN, Some(4), None, None),
                Policy::WeightedRoundRobin { weight: 4 },
            ),
            (
                snap(policy_type::ROUND_ROBIN, None, None, None),
                Policy::RoundRobin,
            ),
            (
                snap(policy_type::PRIORITY, None, Some(3), None),
                Policy::Priority { priority: 3 },
            ),
            (
                snap(policy_type::PRIORITY_LEAST_USED, None, None, Some(99)),
                Policy::PriorityLeastUsed {
                    load: 99,
                    degradation: 5,
                },
            ),
            (
                snap(policy_type::WEIGHTED_RANDOM_DPF, Some(8), None, None),
                Policy::WeightedRandomDpf {
                    weight: 8,
                    weight_dpf: 0,
                    distance: 0,
                },
            ),
        ];
        for (s, p) in cases {
            assert_eq!(
                Selection::from_snapshot(&s),
                Selection::from_policy(&p),
                "{p:?}"
            );
        }
    }

    #[test]
    fn events_add_update_and_remove_elements_idempotently() {
        let mut dp = FakeDataplane::default();
        let mut rec = Reconciler::new();
        let a = added(
            "web",
            1,
            "198.18.1.11",
            Policy::WeightedRoundRobin { weight: 3 },
        );
        let c = apply(&mut rec, &mut dp, std::slice::from_ref(&a));
        assert_eq!(c.set, 1);
        assert_eq!(
            dp.get("web", "198.18.1.11:80"),
            Some((active(3), Owner::Registrar))
        );
        // The same event again (already in a snapshot, say) changes nothing.
        let calls = dp.calls;
        apply(&mut rec, &mut dp, &[a]);
        assert_eq!(dp.calls, calls);

        apply(
            &mut rec,
            &mut dp,
            &[updated(
                "web",
                1,
                "198.18.1.11",
                Policy::WeightedRoundRobin { weight: 9 },
            )],
        );
        assert_eq!(dp.get("web", "198.18.1.11:80").unwrap().0, active(9));

        let c = apply(&mut rec, &mut dp, &[removed("web", 1)]);
        assert_eq!(c.removed, 1);
        assert_eq!(dp.get("web", "198.18.1.11:80"), None);
        let calls = dp.calls;
        apply(&mut rec, &mut dp, &[removed("web", 1)]);
        assert_eq!(dp.calls, calls, "removing a removed element did something");
    }

    #[test]
    fn priority_keeps_only_the_highest_priority_in_service() {
        let mut dp = FakeDataplane::default();
        let mut rec = Reconciler::new();
        let p = |priority| Policy::Priority { priority };
        apply(
            &mut rec,
            &mut dp,
            &[
                added("db", 1, "198.18.1.11", p(5)),
                added("db", 2, "198.18.1.12", p(5)),
                added("db", 3, "198.18.1.13", p(2)),
            ],
        );
        assert_eq!(dp.get("db", "198.18.1.11:80").unwrap().0, active(1));
        assert_eq!(dp.get("db", "198.18.1.12:80").unwrap().0, active(1));
        assert_eq!(dp.get("db", "198.18.1.13:80").unwrap().0, draining(1));
        // A new top priority drains the others...
        apply(&mut rec, &mut dp, &[added("db", 4, "198.18.1.14", p(8))]);
        for a in ["198.18.1.11:80", "198.18.1.12:80", "198.18.1.13:80"] {
            assert_eq!(dp.get("db", a).unwrap().0, draining(1), "{a}");
        }
        assert_eq!(dp.get("db", "198.18.1.14:80").unwrap().0, active(1));
        // ...and when the preferred elements leave, the next priority takes over.
        apply(
            &mut rec,
            &mut dp,
            &[removed("db", 4), removed("db", 1), removed("db", 2)],
        );
        assert_eq!(dp.get("db", "198.18.1.13:80").unwrap().0, active(1));
        assert_eq!(dp.elements.len(), 1);
    }

    #[test]
    fn hand_added_elements_are_never_changed_or_removed() {
        let mut dp = FakeDataplane::default();
        dp.manual("web", "198.18.1.11:80", 4);
        dp.manual("web", "198.18.1.99:80", 2);
        let mut rec = Reconciler::new();
        rec.refresh_owned(&dp, Some(RESTART_GRACE)).unwrap();
        rec.model = Model::default();
        rec.reconcile_all(&mut dp);
        apply(
            &mut rec,
            &mut dp,
            &[
                added(
                    "web",
                    1,
                    "198.18.1.11",
                    Policy::WeightedRoundRobin { weight: 9 },
                ),
                added("web", 2, "198.18.1.12", Policy::RoundRobin),
            ],
        );
        assert_eq!(
            dp.get("web", "198.18.1.11:80"),
            Some((active(4), Owner::Manual))
        );
        assert_eq!(
            dp.get("web", "198.18.1.12:80"),
            Some((active(1), Owner::Registrar))
        );
        apply(&mut rec, &mut dp, &[removed("web", 1), removed("web", 2)]);
        assert_eq!(
            dp.get("web", "198.18.1.11:80"),
            Some((active(4), Owner::Manual))
        );
        assert_eq!(dp.get("web", "198.18.1.12:80"), None);
        // A periodic pass leaves them too.
        rec.refresh_owned(&dp, None).unwrap();
        rec.reconcile_all(&mut dp);
        assert_eq!(dp.elements.len(), 2);
    }

    fn element_snapshot(id: u32, addr: &str, port: u16, policy: PolicySnapshot) -> ElementSnapshot {
        ElementSnapshot {
            id,
            id_hex: format!("{id:08x}"),
            protocol: "tcp".into(),
            addresses: vec![addr.parse().unwrap()],
            port,
            transport_use: "data_only".into(),
            address: format!("{addr}:{port}"),
            policy,
            home_registrar: 1,
            registration_life_ms: 30_000,
            age_ms: 0,
            last_update_ms: 0,
            expires_in_ms: None,
            unreachable_reports: 0,
            registrator: "asap:1".into(),
        }
    }

    fn snapshot(pools: Vec<(&str, Vec<ElementSnapshot>)>) -> HandlespaceSnapshot {
        let element_count = pools.iter().map(|p| p.1.len()).sum();
        HandlespaceSnapshot {
            registrar_id: 1,
            registrar_id_hex: "00000001".into(),
            time_unix_ms: 0,
            pool_count: pools.len(),
            element_count,
            pools: pools
                .into_iter()
                .map(|(h, elements)| PoolSnapshot {
                    handle: h.into(),
                    policy: String::new(),
                    policy_type: policy_type::ROUND_ROBIN,
                    elements,
                })
                .collect(),
            checksums: Vec::new(),
        }
    }

    #[test]
    fn restart_keeps_old_elements_for_the_grace_then_removes_those_not_back() {
        let rr = PolicySnapshot {
            policy_type: policy_type::ROUND_ROBIN,
            ..PolicySnapshot::default()
        };
        // The previous run owned two elements.
        let mut dp = FakeDataplane::default();
        for a in ["198.18.1.11:80", "198.18.1.12:80"] {
            dp.set(&"web".parse().unwrap(), a.parse().unwrap(), active(1))
                .unwrap();
        }
        let mut rec = Reconciler::new();
        rec.refresh_owned(&dp, Some(RESTART_GRACE)).unwrap();
        // After the restart, one server registered again (with its port) before the snapshot.
        rec.model = Model::from_snapshot(&snapshot(vec![(
            "web",
            vec![element_snapshot(7, "198.18.1.11", 80, rr.clone())],
        )]));
        rec.reconcile_all(&mut dp);
        assert_eq!(
            dp.elements.len(),
            2,
            "an element was removed during the grace"
        );
        assert!(!rec.end_grace_if_due(Instant::now()));
        assert!(rec.end_grace_if_due(Instant::now() + RESTART_GRACE));
        rec.reconcile_all(&mut dp);
        let left: Vec<_> = dp.elements.keys().map(|(_, a)| a.to_string()).collect();
        assert_eq!(left, ["198.18.1.11:80"]);
    }

    #[test]
    fn snapshot_and_events_make_the_same_dataplane() {
        let wrr = |w| PolicySnapshot {
            policy_type: policy_type::WEIGHTED_ROUND_ROBIN,
            weight: Some(w),
            ..PolicySnapshot::default()
        };
        let snap = snapshot(vec![
            (
                "web",
                vec![
                    element_snapshot(1, "198.18.1.11", 80, wrr(2)),
                    element_snapshot(2, "fd00::12", 8080, wrr(3)),
                ],
            ),
            // Shown as 0x + hex: a binary handle, not an rsplb pool.
            (
                "0x01ff",
                vec![element_snapshot(3, "198.18.1.13", 80, wrr(1))],
            ),
        ]);
        let mut from_snap = FakeDataplane::default();
        let mut rec = Reconciler::new();
        rec.model = Model::from_snapshot(&snap);
        rec.reconcile_all(&mut from_snap);

        let mut from_events = FakeDataplane::default();
        let mut rec2 = Reconciler::new();
        let mut v6 = pe(
            2,
            "fd00::12",
            8080,
            Policy::WeightedRoundRobin { weight: 3 },
        );
        v6.id = PeId(2);
        let evs = [
            added(
                "web",
                1,
                "198.18.1.11",
                Policy::WeightedRoundRobin { weight: 2 },
            ),
            HandlespaceEvent::ElementAdded {
                pool: handle(b"web"),
                element: v6,
            },
            HandlespaceEvent::ElementAdded {
                pool: handle(&[0x01, 0xff]),
                element: pe(3, "198.18.1.13", 80, Policy::RoundRobin),
            },
        ];
        apply(&mut rec2, &mut from_events, &evs);
        assert_eq!(from_snap.elements, from_events.elements);
        assert_eq!(
            from_snap.get("web", "[fd00::12]:8080"),
            Some((active(3), Owner::Registrar))
        );
        assert_eq!(from_snap.elements.len(), 2);
        // Events already reflected in the snapshot change nothing.
        let calls = from_snap.calls;
        apply(&mut rec, &mut from_snap, &evs);
        assert_eq!(from_snap.calls, calls);
    }

    #[test]
    fn two_registrations_of_one_address_make_one_element_until_both_leave() {
        let mut dp = FakeDataplane::default();
        let mut rec = Reconciler::new();
        apply(
            &mut rec,
            &mut dp,
            &[
                added(
                    "web",
                    1,
                    "198.18.1.11",
                    Policy::WeightedRoundRobin { weight: 2 },
                ),
                added(
                    "web",
                    2,
                    "198.18.1.11",
                    Policy::WeightedRoundRobin { weight: 5 },
                ),
            ],
        );
        assert_eq!(dp.get("web", "198.18.1.11:80").unwrap().0, active(5));
        apply(&mut rec, &mut dp, &[removed("web", 2)]);
        assert_eq!(dp.get("web", "198.18.1.11:80").unwrap().0, active(2));
        apply(&mut rec, &mut dp, &[removed("web", 1)]);
        assert!(dp.elements.is_empty());
    }

    #[test]
    fn a_failed_change_is_retried_by_the_next_pass() {
        let mut dp = FakeDataplane {
            fail: true,
            ..FakeDataplane::default()
        };
        let mut rec = Reconciler::new();
        let c = apply(
            &mut rec,
            &mut dp,
            &[added("web", 1, "198.18.1.11", Policy::RoundRobin)],
        );
        assert_eq!(c.errors, 1);
        assert!(dp.elements.is_empty());
        dp.fail = false;
        rec.refresh_owned(&dp, None).unwrap();
        let c = rec.reconcile_all(&mut dp);
        assert_eq!(c.set, 1);
        assert_eq!(dp.get("web", "198.18.1.11:80").unwrap().0, active(1));
    }
}
