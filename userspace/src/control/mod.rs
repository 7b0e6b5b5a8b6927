//! The control-plane library: VIPs, pools, elements, Maglev tables and next hops of one attached
//! interface. The command line, the daemon and the registrar reconciler all go through
//! [`Balancer`], which is a thin shell around the I/O-free [`crate::control_core::Core`]: every
//! change takes the state lock, loads the state, feeds the core, has the executor carry out the
//! core's writes in order, and saves the state.

pub mod addr;
pub mod allow;
pub mod core;
pub mod flow;
pub mod maglev;
pub mod owner;
pub mod reconcile;
pub mod state;

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, anyhow, bail};
use rsplb_common::{Counters, stat};

use crate::{
    addr::{ElementAddr, Mode, PoolHandle, Vip, VipHash},
    allow::Prefix,
    control_core::{self, Core, Hop, NeighbourTarget, Upsert},
    executor::Executor,
    maps::{Maps, pin_dir},
    nexthop::Netlink,
    state::{ElementState, ElementStateEntry, NextHop, State, StateLock, VipState, state_dir},
};

pub use crate::control_core::ElementReport;

/// Now, in Unix milliseconds (0 before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long `element add` waits for a neighbour to resolve before leaving it to the daemon.
pub const RESOLVE_WAIT: Duration = Duration::from_millis(1500);

/// Counters of one VIP or element at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipStats {
    pub vip: String,
    pub pool: String,
    pub mode: Mode,
    pub slot: u32,
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementStats {
    pub pool: String,
    pub address: String,
    pub weight: u16,
    pub state: ElementState,
    pub slot: u32,
    pub counters: Counters,
}

/// A snapshot of every counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub interface: String,
    pub time_unix_ms: u64,
    pub vips: Vec<VipStats>,
    pub elements: Vec<ElementStats>,
    pub global: [u64; stat::COUNT as usize],
}

/// One attached interface's control plane.
pub struct Balancer {
    iface: String,
    state_dir: PathBuf,
    exec: Box<dyn Executor>,
    /// When the last change's last VIP entry was written (its last table flip), if it flipped
    /// any: where the reconcile latency ends.
    flipped: Option<std::time::Instant>,
    /// The state as this process last loaded or saved it, and the file's identity then. A
    /// change or read skips parsing the file when nobody wrote it since: every writer (this
    /// process or the command line) saves under the state lock by renaming a new file into
    /// place, which gives it a new inode. (With 1,000 elements, parsing is about 0.4 ms of
    /// a change.)
    cache: std::sync::Mutex<Option<(FileStamp, State)>>,
}

/// What tells one version of the state file from another: device, inode, length, mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp(u64, u64, u64, i64, i64);

impl FileStamp {
    fn of(path: &std::path::Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp(
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
        ))
    }
}

impl Balancer {
    /// Opens an attached interface (its pinned maps and state).
    pub fn open(iface: &str) -> Result<Balancer> {
        let pdir = pin_dir(iface);
        let sdir = state_dir(iface);
        if !sdir.join("state.json").exists() || !pdir.exists() {
            bail!("`{iface}` is not attached by rsplb (run `rsplb attach {iface}` first)");
        }
        let maps = Maps::open(&pdir).with_context(|| format!("opening the maps of {iface}"))?;
        Ok(Balancer::with_executor(iface, sdir, Box::new(maps)))
    }

    /// A control plane whose state lives in `state_dir` and whose writes go to `exec`.
    pub fn with_executor(iface: &str, state_dir: PathBuf, exec: Box<dyn Executor>) -> Balancer {
        Balancer {
            iface: iface.to_string(),
            state_dir,
            exec,
            flipped: None,
            cache: Default::default(),
        }
    }

    pub fn interface(&self) -> &str {
        &self.iface
    }

    /// When the last change written flipped its last VIP entry (`None`: it flipped none).
    pub fn last_flip(&self) -> Option<std::time::Instant> {
        self.flipped
    }

    fn state_path(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// Under the lock: loads the state, runs `f` on a core holding it, executes the core's
    /// writes in order, and saves the state. Nothing is saved when `f` or a write fails.
    fn transact<R>(&mut self, f: impl FnOnce(&mut Core) -> Result<R>) -> Result<R> {
        let _lock = StateLock::acquire(&self.state_dir)?;
        let path = self.state_path();
        // Taken: a change that fails leaves no cached state (the next one reads the file).
        let mut core = Core::new(self.load_state(&path, true)?);
        let r = f(&mut core)?;
        let (state, writes) = core.finish();
        self.flipped = None;
        for w in &writes {
            self.exec.execute(w)?;
            if matches!(w, control_core::Write::Vip { .. }) {
                self.flipped = Some(std::time::Instant::now());
            }
        }
        state.save(&path)?;
        if let Some(stamp) = FileStamp::of(&path) {
            *self.cache_mut() = Some((stamp, state));
        }
        Ok(r)
    }

    /// The state as in the file at `path` (under the state lock): the kept copy while the file
    /// is the one it was kept from, else read. `take` hands the kept copy over instead of
    /// keeping it (a change keeps its own result once saved).
    fn load_state(&self, path: &std::path::Path, take: bool) -> Result<State> {
        let now = FileStamp::of(path);
        let mut cache = self.cache_mut();
        let st = match cache.take().filter(|(stamp, _)| Some(*stamp) == now) {
            Some((_, st)) => st,
            None => State::load(path)?,
        };
        if let (false, Some(now)) = (take, now) {
            *cache = Some((now, st.clone()));
        }
        Ok(st)
    }

    fn cache_mut(&self) -> std::sync::MutexGuard<'_, Option<(FileStamp, State)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One change of its own: `f` feeds the control-plane core any commands (the configuration
    /// file's, health results), and its writes are carried out in order, or nothing at all
    /// when `f` fails.
    pub fn change<R>(&mut self, f: impl FnOnce(&mut Core) -> Result<R>) -> Result<R> {
        self.transact(f)
    }

    /// A consistent copy of the state.
    pub fn state(&self) -> Result<State> {
        let _lock = StateLock::acquire(&self.state_dir)?;
        self.load_state(&self.state_path(), false)
    }

    pub fn list_vips(&self) -> Result<Vec<VipState>> {
        Ok(self.state()?.vips)
    }

    /// Each VIP's active Maglev table, read back from the map, as a digest of the elements its
    /// entries send flows to (`maglev::digest`, 16 hex digits): balancers serving the same VIPs
    /// from the same pools show the same digests, whatever element slots they chose.
    pub fn vip_digests(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let st = self.state()?;
        let keys = control_core::maglev_keys(&st);
        let mut out = std::collections::BTreeMap::new();
        for v in &st.vips {
            let table = self.exec.read_maglev(v.table, st.options.maglev_size)?;
            let d = maglev::digest(&table, |slot| keys.get(&slot).map(|k| k.as_bytes()));
            out.insert(v.vip.clone(), format!("{d:016x}"));
        }
        Ok(out)
    }

    /// Maglev table `table` as the program reads it (element slots, `NO_ELEMENT` for empty).
    pub fn read_maglev(&self, table: u32) -> Result<Vec<u32>> {
        let st = self.state()?;
        self.exec.read_maglev(table, st.options.maglev_size)
    }

    pub fn list_elements(&self, pool: Option<&PoolHandle>) -> Result<Vec<ElementStateEntry>> {
        Ok(self
            .state()?
            .elements
            .into_iter()
            .filter(|e| pool.is_none_or(|p| e.pool == p.as_str()))
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_vip(
        &mut self,
        vip: Vip,
        pool: &PoolHandle,
        mode: Mode,
        snat: Option<std::net::IpAddr>,
        nat_timeout_s: Option<u32>,
        allow: &[Prefix],
        hash: VipHash,
    ) -> Result<u32> {
        control_core::check_snat(&vip, mode, snat)?;
        if let Some(t) = nat_timeout_s {
            crate::loader::check_timeout("--nat-timeout", t)?;
        }
        self.transact(|c| c.add_vip(vip, pool, mode, snat, nat_timeout_s, allow, hash))
    }

    /// Changes what is given; `allow: Some(&[])` removes the VIP's allow list.
    pub fn change_vip(
        &mut self,
        vip: Vip,
        pool: Option<&PoolHandle>,
        mode: Option<Mode>,
        snat: Option<std::net::IpAddr>,
        allow: Option<&[Prefix]>,
        hash: Option<VipHash>,
    ) -> Result<()> {
        self.transact(|c| c.change_vip(vip, pool, mode, snat, allow, hash))
    }

    pub fn del_vip(&mut self, vip: Vip) -> Result<()> {
        self.transact(|c| c.del_vip(vip))
    }

    /// Adds an element, or updates its weight (and puts a draining element back in service).
    pub fn set_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
        weight: u16,
    ) -> Result<ElementReport> {
        self.upsert_element(pool, addr, weight, Upsert::Either)
            .and_then(applied)
    }

    /// `element add`: fails if the element exists.
    pub fn add_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
        weight: u16,
    ) -> Result<ElementReport> {
        self.upsert_element(pool, addr, weight, Upsert::MustBeNew)
            .and_then(applied)
    }

    /// `element weight`: fails if the element does not exist.
    pub fn set_weight(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
        weight: u16,
    ) -> Result<ElementReport> {
        self.upsert_element(pool, addr, weight, Upsert::MustExist)
            .and_then(applied)
    }

    /// The registrar reconciler's batch: every change in one transaction, so each affected
    /// table is rebuilt once. An element the registrar adds is not resolved here: when `cached`
    /// knows its next hop (a neighbour the kernel knows already) it enters the tables in this
    /// same transaction; otherwise it waits out of the tables for its neighbour result
    /// ([`Self::apply_neighbours`]), and the target to resolve is returned with it. Each change
    /// has its own result: `Ok(false)` for an element added by hand (left alone) or, for a
    /// removal, absent.
    pub fn apply_registered(
        &mut self,
        changes: &[RegisteredChange],
        cached: &dyn Fn(&NeighbourTarget) -> Option<NextHop>,
    ) -> Result<Vec<Result<RegisteredOutcome>>> {
        self.transact(|c| {
            Ok(changes
                .iter()
                .map(|ch| match ch {
                    RegisteredChange::Set {
                        pool,
                        addr,
                        weight,
                        active,
                    } => c
                        .upsert_element(
                            pool,
                            *addr,
                            *weight,
                            Upsert::Registrar { active: *active },
                            Hop::Pending,
                        )
                        .map(|r| match r {
                            None => (false, None),
                            Some(r) if r.needs_resolution => {
                                let t = NeighbourTarget::of(&r.element);
                                match cached(&t) {
                                    Some(hop) => {
                                        c.neighbour(&t, Some(hop));
                                        (true, None)
                                    }
                                    None => (true, Some(t)),
                                }
                            }
                            Some(_) => (true, None),
                        }),
                    RegisteredChange::Remove { pool, addr } => {
                        Ok((c.remove_registered_element(pool, *addr), None))
                    }
                })
                .collect())
        })
    }

    /// Every element whose next hop is awaited, and every other one (for a refresh).
    pub fn neighbour_targets(&self) -> Result<Vec<NeighbourTarget>> {
        Ok(self
            .state()?
            .elements
            .iter()
            .map(NeighbourTarget::of)
            .collect())
    }

    fn upsert_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
        weight: u16,
        how: Upsert,
    ) -> Result<Option<ElementReport>> {
        if weight == 0 {
            bail!("weight must be 1..=65535");
        }
        // Resolve outside the lock: it may wait for ARP/ND.
        let hop = Netlink::new()
            .map_err(anyhow::Error::from)
            .and_then(|mut nl| Ok(nl.resolve(addr.addr, RESOLVE_WAIT)?))
            .map_err(|e| format!("{e:#}"));
        self.transact(|c| c.upsert_element(pool, addr, weight, how, Hop::Resolved(hop)))
    }

    /// No new flows; existing flows stay. Returns the element as it is now.
    pub fn drain_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
    ) -> Result<ElementStateEntry> {
        self.transact(|c| c.set_element_state(pool, addr, ElementState::Draining))
    }

    /// Puts a drained element back in service (into its pool's Maglev tables, with its
    /// weight). Returns the element as it is now.
    pub fn undrain_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
    ) -> Result<ElementStateEntry> {
        self.transact(|c| c.set_element_state(pool, addr, ElementState::Active))
    }

    /// Gone: out of the Maglev tables first, then its slot is cleared, so its flows are
    /// re-selected.
    pub fn remove_element(&mut self, pool: &PoolHandle, addr: ElementAddr) -> Result<()> {
        self.transact(|c| c.remove_element(pool, addr))
    }

    /// Rewrites every map entry from the state (after a forced reload).
    pub fn resync(&mut self) -> Result<()> {
        self.transact(|c| {
            c.resync();
            Ok(())
        })
    }

    /// Applies neighbour results (`None`: resolution failed). Returns how many elements
    /// changed.
    pub fn apply_neighbours(
        &mut self,
        results: Vec<(NeighbourTarget, Option<NextHop>)>,
    ) -> Result<usize> {
        self.transact(|c| {
            Ok(results
                .into_iter()
                .filter(|(t, h)| c.neighbour(t, h.clone()))
                .count())
        })
    }

    /// Removes NAT translations idle longer than their VIP's timeout.
    pub fn expire_nat(&mut self) -> Result<usize> {
        let st = self.state()?;
        let expired = control_core::nat_expired(&st, crate::maps::monotonic_ns());
        Ok(self.exec.expire_nat(&expired))
    }

    /// Reads every counter (per-CPU values summed).
    pub fn stats(&self) -> Result<Stats> {
        let st = self.state()?;
        let time_unix_ms = unix_ms();
        let mut vips = Vec::new();
        for v in &st.vips {
            vips.push(VipStats {
                vip: v.vip.clone(),
                pool: v.pool.clone(),
                mode: v.mode,
                slot: v.slot,
                counters: self.exec.vip_counters(v.slot)?,
            });
        }
        let mut elements = Vec::new();
        for e in &st.elements {
            elements.push(ElementStats {
                pool: e.pool.clone(),
                address: e.element_addr().to_string(),
                weight: e.weight,
                state: e.state,
                slot: e.slot,
                counters: self.exec.element_counters(e.slot)?,
            });
        }
        Ok(Stats {
            interface: self.iface.clone(),
            time_unix_ms,
            vips,
            elements,
            global: self.exec.global_counters()?,
        })
    }
}

/// One change of the registrar reconciler's batch ([`Balancer::apply_registered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisteredChange {
    /// Add the element as the registrar's, or update one it owns (`active = false`: draining).
    Set {
        pool: PoolHandle,
        addr: ElementAddr,
        weight: u16,
        active: bool,
    },
    /// Remove an element the registrar owns.
    Remove { pool: PoolHandle, addr: ElementAddr },
}

/// What one [`RegisteredChange`] did: whether it changed the element, and the element to
/// resolve when it waits for its next hop.
pub type RegisteredOutcome = (bool, Option<NeighbourTarget>);

/// Only `Upsert::Registrar` leaves an element alone.
fn applied(r: Option<ElementReport>) -> Result<ElementReport> {
    r.ok_or_else(|| anyhow!("internal error: the element was left unchanged"))
}

/// A control plane of its own for tests: a fresh state directory (under the system's temporary
/// directory, named after the process and `name`) holding a state whose Maglev tables have
/// `size` entries, and a dataplane in memory (its clones share it); and that directory.
#[cfg(test)]
pub(crate) fn test_balancer(name: &str, size: u32) -> (Balancer, crate::executor::Memory, PathBuf) {
    let d = std::env::temp_dir().join(format!("rsplb-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let opts = crate::state::AttachOptions {
        maglev_size: size,
        ..crate::state::AttachOptions::default()
    };
    State::new("veth0", 8, 64, None, opts)
        .save(&d.join("state.json"))
        .unwrap();
    let mem = crate::executor::Memory::new(size);
    (
        Balancer::with_executor("veth0", d.clone(), Box::new(mem.clone())),
        mem,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(b: &mut Balancer, port: u16) {
        let vip: Vip = format!("198.18.0.1:{port}/tcp").parse().unwrap();
        let pool: PoolHandle = "web".parse().unwrap();
        b.add_vip(vip, &pool, Mode::Dsr, None, None, &[], Default::default())
            .unwrap();
    }

    fn ports(b: &Balancer) -> Vec<String> {
        b.list_vips().unwrap().into_iter().map(|v| v.vip).collect()
    }

    /// The daemon keeps the state it saved between changes; what another process (the command
    /// line) saves in between is never lost or hidden, and a file damaged in place is reported,
    /// not served from memory.
    #[test]
    fn the_kept_state_yields_to_any_other_writer() {
        let (mut daemon, mem, d) = test_balancer("cache", 251);
        let mut cli = Balancer::with_executor("veth0", d.clone(), Box::new(mem));
        add(&mut daemon, 1);
        add(&mut cli, 2);
        assert_eq!(ports(&daemon), ["198.18.0.1:1/tcp", "198.18.0.1:2/tcp"]);
        add(&mut daemon, 3);
        assert_eq!(
            ports(&cli).len(),
            3,
            "the daemon lost the command line's VIP"
        );
        // Written in place (same inode), as a careless editor would.
        std::fs::write(d.join("state.json"), "{ not json").unwrap();
        let e = daemon.list_vips().unwrap_err();
        assert!(format!("{e:#}").contains("state.json"), "{e:#}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
