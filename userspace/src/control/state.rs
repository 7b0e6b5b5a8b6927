//! The control-plane state of one interface, kept in `/run/rsplb/<iface>/state.json`.
//!
//! Every CLI invocation and the daemon take an exclusive `flock` on `/run/rsplb/<iface>/lock`,
//! read the state, change it, write the maps, and replace the file atomically (temp file +
//! rename), so concurrent invocations serialise and a crash never leaves half a file.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File, OpenOptions},
    io::Write as _,
    net::IpAddr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::addr::{ElementAddr, Mode, PoolHandle, Vip, VipHash};

/// Root of the per-interface state directories.
pub const STATE_ROOT: &str = "/run/rsplb";

pub fn state_dir(iface: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(iface)
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed state file: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no free {what} slot (all {max} in use; attach with a larger --max-{what}s)")]
    SlotsExhausted { what: &'static str, max: u32 },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the program was loaded (fixed until `attach --force` reloads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachOptions {
    pub maglev_size: u32,
    pub max_vips: u32,
    pub max_elements: u32,
    pub flow_capacity: u32,
    pub nat_capacity: u32,
    pub nat_port_min: u16,
    pub nat_port_max: u16,
    /// `true` = generic (SKB) mode, `false` = native (driver) mode.
    pub generic: bool,
    /// Idle timeouts of flows, seconds: DSR flow entries (TCP and SCTP; UDP) and NAT
    /// translations (TCP; UDP) of VIPs without a `--nat-timeout` of their own. (State files
    /// written before these existed get the defaults.)
    #[serde(default = "default_dsr_tcp_timeout")]
    pub dsr_tcp_timeout_s: u32,
    #[serde(default = "default_dsr_udp_timeout")]
    pub dsr_udp_timeout_s: u32,
    #[serde(default = "default_nat_tcp_timeout")]
    pub nat_tcp_timeout_s: u32,
    #[serde(default = "default_nat_udp_timeout")]
    pub nat_udp_timeout_s: u32,
}

/// Default idle timeouts, seconds: long for connections (which end with FIN/RST, and whose
/// keep-alives keep them fresh), short for UDP.
pub const DEFAULT_TCP_TIMEOUT_S: u32 = 300;
pub const DEFAULT_UDP_TIMEOUT_S: u32 = 30;

fn default_dsr_tcp_timeout() -> u32 {
    DEFAULT_TCP_TIMEOUT_S
}
fn default_dsr_udp_timeout() -> u32 {
    DEFAULT_UDP_TIMEOUT_S
}
fn default_nat_tcp_timeout() -> u32 {
    DEFAULT_TCP_TIMEOUT_S
}
fn default_nat_udp_timeout() -> u32 {
    DEFAULT_UDP_TIMEOUT_S
}

impl AttachOptions {
    /// The dataplane configuration these options give (`RSPLB_CONFIG`).
    pub fn config(&self) -> rsplb_common::Config {
        rsplb_common::Config {
            abi_version: rsplb_common::CONFIG_ABI_VERSION,
            maglev_size: self.maglev_size,
            nat_tcp_timeout_s: self.nat_tcp_timeout_s,
            nat_udp_timeout_s: self.nat_udp_timeout_s,
            nat_port_min: self.nat_port_min,
            nat_port_max: self.nat_port_max,
            flow_sets: rsplb_common::flow_sets(self.flow_capacity),
            dsr_tcp_timeout_s: self.dsr_tcp_timeout_s,
            dsr_udp_timeout_s: self.dsr_udp_timeout_s,
        }
    }

    /// The idle timeout the dataplane applies to the flows of `vip` (`VipInfo::timeout_s`).
    pub fn vip_timeout_s(&self, vip: &VipState) -> u32 {
        let udp = vip.parsed().proto == crate::addr::Protocol::Udp;
        match vip.mode {
            Mode::Nat if vip.nat_timeout_s > 0 => vip.nat_timeout_s,
            Mode::Nat if udp => self.nat_udp_timeout_s,
            Mode::Nat => self.nat_tcp_timeout_s,
            Mode::Dsr if udp => self.dsr_udp_timeout_s,
            Mode::Dsr => self.dsr_tcp_timeout_s,
        }
    }
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            maglev_size: rsplb_common::DEFAULT_MAGLEV_SIZE,
            max_vips: rsplb_common::DEFAULT_MAX_VIPS,
            max_elements: rsplb_common::DEFAULT_MAX_ELEMENTS,
            flow_capacity: rsplb_common::DEFAULT_FLOW_CAPACITY,
            nat_capacity: rsplb_common::DEFAULT_NAT_CAPACITY,
            nat_port_min: 20000,
            nat_port_max: 60999,
            generic: false,
            dsr_tcp_timeout_s: DEFAULT_TCP_TIMEOUT_S,
            dsr_udp_timeout_s: DEFAULT_UDP_TIMEOUT_S,
            nat_tcp_timeout_s: DEFAULT_TCP_TIMEOUT_S,
            nat_udp_timeout_s: DEFAULT_UDP_TIMEOUT_S,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipState {
    /// `ADDR:PORT/PROTO`.
    pub vip: String,
    pub pool: String,
    pub mode: Mode,
    pub snat: Option<IpAddr>,
    pub nat_timeout_s: u32,
    pub slot: u32,
    /// Active Maglev table index (2 * slot or 2 * slot + 1).
    pub table: u32,
    /// Source prefixes allowed to reach the VIP; empty: everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<crate::allow::Prefix>,
    /// How new flows are placed: by the 5-tuple (`flow`, and files written before this
    /// existed) or by the client's address (`client`).
    #[serde(default, skip_serializing_if = "VipHash::is_flow")]
    pub hash: VipHash,
    /// Who declared it: `vip add` (manual) or the configuration file (see [`Owner`]).
    #[serde(default)]
    pub owner: Owner,
}

impl VipState {
    pub fn parsed(&self) -> Vip {
        // Written by us from a parsed Vip; a hand-edited file that breaks this is reported.
        self.vip.parse().unwrap_or(Vip {
            addr: IpAddr::from([0, 0, 0, 0]),
            port: 0,
            proto: crate::addr::Protocol::Tcp,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementState {
    Active,
    Draining,
}

/// Who put an element (or a VIP) into the control plane. The registrar reconciler and the
/// configuration file each change or remove only what they own, and leave an element that
/// another owner put there first as it is; elements added by hand stay until removed by hand.
/// The command line may change any of them (a change to a registrar's or the file's element
/// lasts until that owner applies its own view again: the next pass, or the next reload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// `rsplb element add` / `vip add` (and state files written before owners existed).
    #[default]
    Manual,
    /// The registrar embedded in `rsplb run --registrar`.
    Registrar,
    /// The configuration file of `rsplb run --config` (applied again on every reload).
    Config,
}

impl Owner {
    pub fn name(self) -> &'static str {
        match self {
            Owner::Manual => "manual",
            Owner::Registrar => "registrar",
            Owner::Config => "config",
        }
    }
}

/// An element's health as the daemon's balancer-side checks see it, apart from its
/// administrative state (`Active`/`Draining`, which the command line, the registrar and the
/// configuration set): an element takes new flows only when it is active and not down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Up, or not checked.
    #[default]
    Up,
    /// Failed its check `fall` times in a row: out of the Maglev tables (drained or removed as
    /// its pool's `on_failure` says).
    Down,
    /// Back up and ramping: this percentage (1..=99) of its weight (slow start).
    SlowStart(u8),
}

impl Health {
    pub fn is_up(&self) -> bool {
        *self == Health::Up
    }

    pub fn name(self) -> String {
        match self {
            Health::Up => "up".into(),
            Health::Down => "down".into(),
            Health::SlowStart(p) => format!("slow-start {p}%"),
        }
    }

    /// The weight an element of weight `w` takes new flows with, or `None` when down.
    pub fn effective_weight(self, w: u16) -> Option<u32> {
        match self {
            Health::Up => Some(u32::from(w)),
            Health::Down => None,
            Health::SlowStart(p) => Some((u32::from(w) * u32::from(p.min(100)) / 100).max(1)),
        }
    }
}

/// What a failed element becomes (a pool's `on_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// No new flows; its established flows stay (keepalived's `inhibit_on_failure`).
    #[default]
    Drain,
    /// No flows at all: its established flows are placed again on the others.
    Remove,
}

/// What a pool's VIPs do when none of its elements (nor its backup pool's) is healthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoneHealthy {
    /// Keep forwarding to the pool's elements as if they were healthy: a check that fails
    /// everywhere at once more often means the checks are broken than every server.
    #[default]
    FailStatic,
    /// Empty the table: new flows are dropped.
    Drop,
}

/// A pool's health policy (from the configuration file; pools without one have the
/// defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolPolicy {
    /// Fewer healthy elements than this: the pool's VIPs use `backup`'s elements instead.
    pub min_healthy: u32,
    pub backup: Option<String>,
    pub on_failure: OnFailure,
    pub when_none_healthy: NoneHealthy,
}

impl Default for PoolPolicy {
    fn default() -> Self {
        PoolPolicy {
            min_healthy: 1,
            backup: None,
            on_failure: OnFailure::Drain,
            when_none_healthy: NoneHealthy::FailStatic,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHop {
    pub ifindex: u32,
    /// Zero = unresolved.
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub gateway: Option<IpAddr>,
}

impl NextHop {
    pub fn resolved(&self) -> bool {
        self.dst_mac != [0; 6]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementStateEntry {
    pub pool: String,
    pub addr: IpAddr,
    pub port: Option<u16>,
    pub weight: u16,
    pub state: ElementState,
    pub slot: u32,
    pub generation: u32,
    pub nexthop: Option<NextHop>,
    #[serde(default)]
    pub owner: Owner,
    /// Added by the daemon before its next hop was first resolved: out of the Maglev tables
    /// until the neighbour result comes (see `control_core::Hop::Pending`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub nexthop_pending: bool,
    /// What the daemon's balancer-side check says (always up without one).
    #[serde(default, skip_serializing_if = "Health::is_up")]
    pub health: Health,
    /// The balancer-side check that decides `health`, while one does, and what last changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<CheckedBy>,
}

/// The balancer-side check of an element, as `rsplb status` shows it: the signal behind its
/// health (the registrar's keep-alives and pool users' unreachable reports decide whether a
/// registered element is there at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedBy {
    /// The check and where it goes: `tcp 198.18.1.2:80`, `http 198.18.1.2:80/health`.
    pub check: String,
    /// The results that last changed the element's health (`None`: none since it is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When they did, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_unix_ms: Option<u64>,
}

/// Fixtures for tests elsewhere in the crate: change the fields a test is about with
/// `..ElementStateEntry::test(..)`.
#[cfg(test)]
impl ElementStateEntry {
    /// An active, hand-added element of weight 1, generation 1, no port and no next hop.
    pub(crate) fn test(pool: &str, addr: IpAddr, slot: u32) -> ElementStateEntry {
        ElementStateEntry {
            pool: pool.into(),
            addr,
            port: None,
            weight: 1,
            state: ElementState::Active,
            slot,
            generation: 1,
            nexthop: None,
            owner: Owner::Manual,
            nexthop_pending: false,
            health: Health::Up,
            checked: None,
        }
    }
}

#[cfg(test)]
impl VipState {
    /// A hand-added DSR VIP of `pool` in slot 0 and table 0, flow hash, no allow list.
    pub(crate) fn test(vip: &str, pool: &str) -> VipState {
        VipState {
            vip: vip.into(),
            pool: pool.into(),
            mode: Mode::Dsr,
            snat: None,
            nat_timeout_s: 0,
            slot: 0,
            table: 0,
            allow: vec![],
            hash: VipHash::Flow,
            owner: Owner::Manual,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ElementStateEntry {
    pub fn element_addr(&self) -> ElementAddr {
        ElementAddr {
            addr: self.addr,
            port: self.port,
        }
    }
    /// Stable Maglev key: the address and port, never the slot.
    pub fn maglev_key(&self) -> String {
        self.element_addr().to_string()
    }
}

/// Slot allocator: fresh slots first, then the least recently freed one (so a slot is reused as
/// late as possible), with a generation per slot that is bumped on every allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotAllocator {
    pub max: u32,
    pub next_fresh: u32,
    pub free: VecDeque<u32>,
    /// Last generation handed out per slot (only for slots ever used).
    pub generations: BTreeMap<u32, u32>,
}

impl SlotAllocator {
    pub fn new(max: u32) -> Self {
        SlotAllocator {
            max,
            ..Default::default()
        }
    }

    /// Returns (slot, generation).
    pub fn allocate(&mut self, what: &'static str) -> Result<(u32, u32), StateError> {
        let slot = if self.next_fresh < self.max {
            self.next_fresh += 1;
            self.next_fresh - 1
        } else if let Some(s) = self.free.pop_front() {
            s
        } else {
            return Err(StateError::SlotsExhausted {
                what,
                max: self.max,
            });
        };
        let g = self.generations.entry(slot).or_insert(0);
        *g = g.wrapping_add(1).max(1);
        Ok((slot, *g))
    }

    pub fn release(&mut self, slot: u32) {
        if slot < self.next_fresh && !self.free.contains(&slot) {
            self.free.push_back(slot);
        }
    }

    pub fn in_use(&self) -> u32 {
        self.next_fresh - self.free.len() as u32
    }
}

/// Everything the control plane knows about one attached interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub interface: String,
    pub ifindex: u32,
    /// Inode of the network namespace the interface lives in.
    pub netns_inode: u64,
    /// `--netns` name used at attach, if any (for messages).
    pub netns_name: Option<String>,
    pub options: AttachOptions,
    pub vips: Vec<VipState>,
    pub elements: Vec<ElementStateEntry>,
    pub vip_slots: SlotAllocator,
    pub element_slots: SlotAllocator,
    /// Egress interfaces (other than the attached one) written into RSPLB_TX_PORTS.
    pub tx_ports: Vec<u32>,
    /// Health policies of the pools the configuration file declares.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, PoolPolicy>,
}

impl State {
    pub fn new(
        interface: &str,
        ifindex: u32,
        netns_inode: u64,
        netns_name: Option<String>,
        options: AttachOptions,
    ) -> Self {
        State {
            version: 1,
            interface: interface.to_string(),
            ifindex,
            netns_inode,
            netns_name,
            vip_slots: SlotAllocator::new(options.max_vips),
            element_slots: SlotAllocator::new(options.max_elements),
            options,
            vips: Vec::new(),
            elements: Vec::new(),
            tx_ports: Vec::new(),
            pools: BTreeMap::new(),
        }
    }

    pub fn find_vip(&self, vip: &Vip) -> Option<usize> {
        self.vips.iter().position(|v| v.parsed() == *vip)
    }

    pub fn find_element(&self, pool: &PoolHandle, addr: &ElementAddr) -> Option<usize> {
        self.elements
            .iter()
            .position(|e| e.pool == pool.as_str() && e.element_addr() == *addr)
    }

    /// The health policy of `pool` (the defaults when it has none).
    pub fn pool_policy(&self, pool: &str) -> PoolPolicy {
        self.pools.get(pool).cloned().unwrap_or_default()
    }

    /// The elements of `pool` (which need not outlive the iterator).
    pub fn elements_of<'a>(
        &'a self,
        pool: &str,
    ) -> impl Iterator<Item = &'a ElementStateEntry> + use<'a> {
        let pool = pool.to_string();
        self.elements.iter().filter(move |e| e.pool == pool)
    }

    pub fn pool_elements<'a>(
        &'a self,
        pool: &'a str,
    ) -> impl Iterator<Item = &'a ElementStateEntry> + 'a {
        self.elements.iter().filter(move |e| e.pool == pool)
    }

    pub fn load(path: &Path) -> Result<State, StateError> {
        let text = fs::read_to_string(path).map_err(io_err(path))?;
        serde_json::from_str(&text).map_err(|source| StateError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Atomic replace: write a temp file in the same directory, fsync, rename.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = dir.join(format!(".state.json.{}", std::process::id()));
        let json = serde_json::to_vec(self).map_err(|source| StateError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&json).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))
    }
}

/// An exclusive lock on one interface's state directory, held until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(dir: &Path) -> Result<StateLock, StateError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(StateError::Io {
                path,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{Arc, Barrier},
        thread,
    };

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rsplb-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn slots_reuse_bumps_generation_and_prefers_fresh_slots() {
        let mut a = SlotAllocator::new(3);
        assert_eq!(a.allocate("element").unwrap(), (0, 1));
        assert_eq!(a.allocate("element").unwrap(), (1, 1));
        a.release(0);
        // A fresh slot is preferred over the just-freed one.
        assert_eq!(a.allocate("element").unwrap(), (2, 1));
        // Then the freed slot comes back with a new generation.
        assert_eq!(a.allocate("element").unwrap(), (0, 2));
        assert!(matches!(
            a.allocate("element"),
            Err(StateError::SlotsExhausted { max: 3, .. })
        ));
        a.release(1);
        a.release(1);
        assert_eq!(a.in_use(), 2);
        assert_eq!(a.allocate("element").unwrap(), (1, 2));
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let d = tmpdir("roundtrip");
        let mut s = State::new("veth9", 7, 4026531840, None, AttachOptions::default());
        let (slot, generation) = s.element_slots.allocate("element").unwrap();
        s.elements.push(ElementStateEntry {
            pool: "web".into(),
            addr: "198.18.1.2".parse().unwrap(),
            port: Some(80),
            weight: 3,
            state: ElementState::Draining,
            slot,
            generation,
            nexthop: Some(NextHop {
                ifindex: 7,
                dst_mac: [2, 0, 0, 0, 0, 1],
                src_mac: [2, 0, 0, 0, 0, 2],
                gateway: None,
            }),
            owner: Owner::Registrar,
            nexthop_pending: true,
            health: Health::SlowStart(40),
            checked: None,
        });
        s.vips.push(VipState {
            vip: "[fd00::1]:53/udp".into(),
            pool: "web".into(),
            mode: Mode::Nat,
            snat: Some("fd00::9".parse().unwrap()),
            nat_timeout_s: 30,
            slot: 0,
            table: 1,
            allow: vec!["fd00::/8".parse().unwrap()],
            hash: VipHash::Client,
            owner: Owner::Config,
        });
        let p = d.join("state.json");
        s.save(&p).unwrap();
        assert_eq!(State::load(&p).unwrap(), s);
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        fs::write(&p, b"{not json").unwrap();
        assert!(matches!(State::load(&p), Err(StateError::Json { .. })));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn vips_of_older_state_files_hash_the_flow() {
        let old = r#"{"vip":"198.18.0.1:80/tcp","pool":"web","mode":"dsr","snat":null,
            "nat_timeout_s":0,"slot":0,"table":1}"#;
        let v: VipState = serde_json::from_str(old).unwrap();
        assert_eq!(v.hash, VipHash::Flow);
        assert!(serde_json::to_value(&v).unwrap().get("hash").is_none());
        let client = serde_json::to_value(VipState {
            hash: VipHash::Client,
            ..v
        })
        .unwrap();
        assert_eq!(client["hash"], "client");
    }

    #[test]
    fn elements_of_older_state_files_are_manual() {
        let old = r#"{"pool":"web","addr":"198.18.1.2","port":80,"weight":1,"state":"active",
            "slot":0,"generation":1,"nexthop":null}"#;
        let e: ElementStateEntry = serde_json::from_str(old).unwrap();
        assert_eq!(e.owner, Owner::Manual);
        let back = serde_json::to_value(ElementStateEntry {
            owner: Owner::Registrar,
            ..e
        })
        .unwrap();
        assert_eq!(back["owner"], "registrar");
    }

    #[test]
    fn the_lock_serialises_read_modify_write() {
        let d = tmpdir("lock");
        let p = d.join("state.json");
        State::new("veth9", 1, 1, None, AttachOptions::default())
            .save(&p)
            .unwrap();
        let threads = 8;
        let rounds = 20;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (d, p, barrier) = (d.clone(), p.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..rounds {
                        let _lock = StateLock::acquire(&d).unwrap();
                        let mut s = State::load(&p).unwrap();
                        s.ifindex += 1;
                        s.save(&p).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // Every increment survived: no lost update.
        assert_eq!(
            State::load(&p).unwrap().ifindex,
            1 + (threads * rounds) as u32
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
