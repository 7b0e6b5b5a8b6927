//! The daemon's check runner: one [`Machine`] per element of every pool that has a check (the
//! file's, the registrar's and hand-added elements alike), probes sent when due, and every
//! change of health applied through the control-plane core as one change per wake-up.
//!
//! The registrar's view stays the reconciler's: an element that deregisters or stops answering
//! keep-alives leaves the pool there, and its machine goes with it here. What the checks decide
//! is the element's health, apart from its administrative state, so the two never fight.

use crate::control::owner::Control;
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Result;
use tokio::{sync::watch, task::JoinSet, time::Instant};

use super::{
    machine::{Machine, Params, Transition},
    probe,
};
use crate::{
    addr::ElementAddr,
    config::{CheckDecl, CheckKind, ConfigFile, vips_of},
    control_core::NeighbourTarget,
    state::{CheckedBy, ElementStateEntry, Health},
};

/// Elements the checks took down, and brought back up, since the daemon started (metrics).
static DOWN: AtomicU64 = AtomicU64::new(0);
static UP: AtomicU64 = AtomicU64::new(0);

/// The transitions so far: (`down`, n), (`up`, n).
pub fn transitions() -> [(&'static str, u64); 2] {
    [
        ("down", DOWN.load(Ordering::Relaxed)),
        ("up", UP.load(Ordering::Relaxed)),
    ]
}

/// How often the runner re-reads which elements the pools have.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// A pool's check as the runner needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolCheck {
    pub check: CheckDecl,
    pub slow_start: Duration,
    /// The port of a VIP that serves the pool: the check's port when neither the check nor the
    /// element has one.
    pub vip_port: Option<u16>,
}

/// Every pool's check, by pool name.
pub type Plan = BTreeMap<String, Arc<PoolCheck>>;

/// The checks a configuration file declares.
pub fn plan(cfg: &ConfigFile) -> Plan {
    cfg.pools
        .iter()
        .filter_map(|(name, p)| {
            let check = p.check.clone()?;
            Some((
                name.clone(),
                Arc::new(PoolCheck {
                    check,
                    slow_start: p.slow_start(),
                    vip_port: vips_of(cfg, name).map(|v| v.address.port).next(),
                }),
            ))
        })
        .collect()
}

/// Which element a machine checks: the slot's generation tells a new element at the same
/// address (removed and added again) from the old one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    pool: String,
    addr: ElementAddr,
    slot: u32,
    generation: u32,
}

impl Key {
    fn of(e: &ElementStateEntry) -> Key {
        Key {
            pool: e.pool.clone(),
            addr: e.element_addr(),
            slot: e.slot,
            generation: e.generation,
        }
    }

    fn target(&self) -> NeighbourTarget {
        NeighbourTarget {
            pool: self.pool.clone(),
            addr: self.addr,
            slot: self.slot,
            generation: self.generation,
        }
    }
}

struct Checked {
    machine: Machine,
    spec: Arc<PoolCheck>,
    tls: Option<Arc<rustls::ClientConfig>>,
    target: SocketAddr,
    /// The health the control plane has.
    applied: Health,
    last_error: Option<String>,
    /// What `rsplb status` shows of the check (updated on every transition).
    by: CheckedBy,
}

/// The check as an operator names it: `tcp 198.18.1.2:80`, `http 198.18.1.2:80/health`.
fn describe(check: &CheckDecl, target: SocketAddr) -> String {
    match check.kind {
        CheckKind::Exec => format!("exec for {}", target.ip()),
        CheckKind::Http | CheckKind::Https => {
            format!(
                "{} {target}{}",
                check.kind,
                check.path.as_deref().unwrap_or("/")
            )
        }
        _ => format!("{} {target}", check.kind),
    }
}

/// Runs the checks of `plan` (replaced on reload) until the task is aborted.
pub async fn run(balancer: Control, mut plan: watch::Receiver<Arc<Plan>>) {
    let mut checked: HashMap<Key, Checked> = HashMap::new();
    let mut probes: JoinSet<(Key, Result<()>)> = JoinSet::new();
    let mut sync = tokio::time::interval(SYNC_INTERVAL);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unreachable_logged: std::collections::HashSet<Key> = Default::default();
    loop {
        let now = Instant::now();
        for (key, c) in checked.iter_mut() {
            if c.machine.due(now.into_std()) {
                c.machine.started();
                let (spec, tls, target, key) =
                    (c.spec.clone(), c.tls.clone(), c.target, key.clone());
                probes.spawn(async move {
                    let r = probe::probe(&spec.check, tls.as_ref(), &key.pool, target).await;
                    (key, r)
                });
            }
        }
        apply_health(&balancer, &mut checked, now).await;
        let wake = checked
            .values()
            .filter_map(|c| c.machine.next_wakeup(now.into_std()))
            .min()
            .map(Instant::from_std);
        tokio::select! {
            Some(joined) = probes.join_next() => {
                let Ok((key, result)) = joined else { continue };
                let Some(c) = checked.get_mut(&key) else { continue };
                let now = Instant::now().into_std();
                let ok = result.is_ok();
                let transition = c.machine.result(now, ok);
                if let Err(e) = &result {
                    c.last_error = Some(format!("{e:#}"));
                    if c.machine.is_up() && c.machine.streak() == 1 {
                        log::info!(
                            "pool {}: element {} failed its {} check ({e:#}); checking every {:?} until it passes or fails {} times",
                            key.pool, key.addr, c.spec.check.kind, c.machine.params().fast_interval, c.machine.params().fall
                        );
                    }
                }
                match transition {
                    Some(Transition::Down) => DOWN.fetch_add(1, Ordering::Relaxed),
                    Some(Transition::Up) => UP.fetch_add(1, Ordering::Relaxed),
                    None => 0,
                };
                if let Some(t) = transition {
                    let p = c.machine.params();
                    c.by.reason = Some(match t {
                        Transition::Down => format!(
                            "{} failures in a row (last: {})",
                            p.fall,
                            c.last_error.as_deref().unwrap_or("-")
                        ),
                        Transition::Up => format!("{} successes in a row", p.rise),
                    });
                    c.by.since_unix_ms = Some(crate::control::unix_ms());
                }
                match transition {
                    Some(Transition::Down) => log::warn!(
                        "pool {}: element {} is down: {} {} check failures in a row (last: {})",
                        key.pool, key.addr, c.machine.params().fall, c.spec.check.kind,
                        c.last_error.as_deref().unwrap_or("-")
                    ),
                    Some(Transition::Up) => log::info!(
                        "pool {}: element {} is up again: {} {} check successes in a row{}",
                        key.pool, key.addr, c.machine.params().rise, c.spec.check.kind,
                        if c.spec.slow_start.is_zero() {
                            String::new()
                        } else {
                            format!("; its weight ramps up over {:?}", c.spec.slow_start)
                        }
                    ),
                    None => {}
                }
            }
            _ = sleep_until(wake) => {}
            _ = sync.tick() => {
                let current = plan.borrow().clone();
                resync(&balancer, &current, &mut checked, &mut unreachable_logged).await;
            }
            changed = plan.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = plan.borrow().clone();
                resync(&balancer, &current, &mut checked, &mut unreachable_logged).await;
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Applies every health that differs from what the control plane has, as one change.
async fn apply_health(balancer: &Control, checked: &mut HashMap<Key, Checked>, now: Instant) {
    let changes: Vec<(Key, Health)> = checked
        .iter()
        .filter_map(|(k, c)| {
            let h = c.machine.health(now.into_std());
            (h != c.applied).then(|| (k.clone(), h))
        })
        .collect();
    if changes.is_empty() {
        return;
    }
    let batch: Vec<Update> = changes
        .iter()
        .map(|(k, h)| (k.target(), *h, checked.get(k).map(|c| c.by.clone())))
        .collect();
    match set_health(balancer, batch).await {
        Ok(()) => {
            for (k, h) in changes {
                if let Some(c) = checked.get_mut(&k) {
                    c.applied = h;
                }
            }
        }
        Err(e) => log::warn!("applying health results: {e:#}"),
    }
}

/// An element's health, and the check behind it (`None`: not checked).
type Update = (NeighbourTarget, Health, Option<CheckedBy>);

/// Sets the health of elements through the control-plane core (one change).
async fn set_health(balancer: &Control, batch: Vec<Update>) -> Result<()> {
    balancer
        .run(move |b| {
            b.change(|c| {
                for (t, h, by) in batch {
                    c.set_health(&t, h, by);
                }
                Ok(())
            })
        })
        .await?
}

/// Follows the pools' elements: a machine for each element of a checked pool, none for the
/// others; an element whose pool lost its check is up again.
async fn resync(
    balancer: &Control,
    plan: &Plan,
    checked: &mut HashMap<Key, Checked>,
    unreachable_logged: &mut std::collections::HashSet<Key>,
) {
    let elements = match balancer.run(|b| b.list_elements(None)).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            log::warn!("health checks: reading the elements: {e:#}");
            return;
        }
        Err(e) => {
            log::warn!("health checks: {e}");
            return;
        }
    };
    let now = Instant::now().into_std();
    let mut seen = std::collections::HashSet::new();
    let mut released = Vec::new();
    for e in &elements {
        let key = Key::of(e);
        let Some(spec) = plan.get(&e.pool) else {
            if e.health != Health::Up || e.checked.is_some() {
                released.push((key.target(), Health::Up, None));
            }
            continue;
        };
        let Some(port) = spec
            .check
            .port
            .or(e.port)
            .or(spec.vip_port)
            .or((spec.check.kind == CheckKind::Exec).then_some(0))
        else {
            if unreachable_logged.insert(key.clone()) {
                log::warn!(
                    "pool {}: element {} is not checked: neither the check, the element nor a VIP gives a port",
                    e.pool,
                    e.element_addr()
                );
            }
            continue;
        };
        seen.insert(key.clone());
        if checked
            .get(&key)
            .is_some_and(|c| Arc::ptr_eq(&c.spec, spec) || *c.spec == **spec)
        {
            continue;
        }
        let tls = if spec.check.kind == CheckKind::Https {
            match probe::tls_config(&spec.check) {
                Ok(t) => Some(t),
                Err(err) => {
                    log::warn!("pool {}: TLS for its https check: {err:#}", e.pool);
                    continue;
                }
            }
        } else {
            None
        };
        let params = Params {
            interval: spec.check.interval(),
            fast_interval: spec.check.fast_interval(),
            rise: spec.check.rise,
            fall: spec.check.fall,
            slow_start: spec.slow_start,
        };
        // Spread first checks over the interval, by address.
        let spread = spec.check.interval().as_millis() as u64;
        let offset = Duration::from_millis(fxhash(&key) % spread.max(1));
        let up = e.health != Health::Down;
        let target = SocketAddr::new(e.addr, port);
        // The element shows its check from now on (what changed its health before, if the
        // check is the same, stays).
        let check = describe(&spec.check, target);
        let by = match &e.checked {
            Some(b) if b.check == check => b.clone(),
            _ => CheckedBy {
                check,
                reason: None,
                since_unix_ms: None,
            },
        };
        if e.checked.as_ref() != Some(&by) {
            released.push((key.target(), e.health, Some(by.clone())));
        }
        checked.insert(
            key.clone(),
            Checked {
                machine: Machine::new(params, up, now + offset.min(Duration::from_millis(200))),
                spec: spec.clone(),
                tls,
                target,
                applied: e.health,
                last_error: None,
                by,
            },
        );
    }
    checked.retain(|k, _| seen.contains(k));
    unreachable_logged.retain(|k| elements.iter().any(|e| Key::of(e) == *k));
    if !released.is_empty() {
        let n = released.len();
        let freed = released.iter().filter(|u| u.2.is_none()).count();
        match set_health(balancer, released).await {
            Ok(()) if freed > 0 => {
                log::info!("{freed} element(s) of pools without a check are up again")
            }
            Ok(()) => log::debug!("{n} element(s) checked from now on"),
            Err(e) => log::warn!("health checks: {e:#}"),
        }
    }
}

fn fxhash(k: &Key) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    k.hash(&mut h);
    h.finish()
}
