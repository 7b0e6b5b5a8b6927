//! The control-plane library: VIPs, pools, elements, Maglev tables and next hops of one attached
//! interface. The command line, the daemon and (later) the registrar all go through
//! [`Balancer`]; every change takes the state lock, recomputes what it must, writes the maps,
//! and saves the state.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, anyhow, bail};
use rsplb_common::{Counters, ELEM_ACTIVE, ELEM_DRAINING, Element, VipInfo, stat};

use crate::{
    addr::{ElementAddr, Mode, PoolHandle, Vip, addr_words, family},
    maglev::{self, MaglevElement},
    maps::{Maps, pin_dir},
    nexthop::Netlink,
    state::{
        ElementState, ElementStateEntry, NextHop, Owner, State, StateLock, VipState, state_dir,
    },
};

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

/// Result of adding or updating an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementReport {
    pub slot: u32,
    /// Why the next hop is unresolved, if it is.
    pub unresolved: Option<String>,
    /// The element as it is now (its address as the pool knows it, weight, state).
    pub element: ElementStateEntry,
}

/// One attached interface's control plane.
pub struct Balancer {
    iface: String,
    state_dir: PathBuf,
    maps: Maps,
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
        Ok(Balancer {
            iface: iface.to_string(),
            state_dir: sdir,
            maps,
        })
    }

    pub fn interface(&self) -> &str {
        &self.iface
    }

    fn state_path(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// Runs `f` on the state under the lock; saves the state when `f` succeeds.
    fn transact<R>(&mut self, f: impl FnOnce(&mut State, &mut Maps) -> Result<R>) -> Result<R> {
        let _lock = StateLock::acquire(&self.state_dir)?;
        let mut state = State::load(&self.state_path())?;
        let r = f(&mut state, &mut self.maps)?;
        state.save(&self.state_path())?;
        Ok(r)
    }

    /// A consistent copy of the state.
    pub fn state(&self) -> Result<State> {
        let _lock = StateLock::acquire(&self.state_dir)?;
        Ok(State::load(&self.state_path())?)
    }

    pub fn list_vips(&self) -> Result<Vec<VipState>> {
        Ok(self.state()?.vips)
    }

    /// Each VIP's active Maglev table, read back from the map, as a digest of the elements its
    /// entries send flows to (`maglev::digest`, 16 hex digits): balancers serving the same VIPs
    /// from the same pools show the same digests, whatever element slots they chose.
    pub fn vip_digests(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let st = self.state()?;
        let keys: std::collections::HashMap<u32, String> = st
            .elements
            .iter()
            .map(|e| (e.slot, e.maglev_key()))
            .collect();
        let mut out = std::collections::BTreeMap::new();
        for v in &st.vips {
            let table = self.maps.read_maglev(v.table, st.options.maglev_size)?;
            let d = maglev::digest(&table, |slot| keys.get(&slot).map(|k| k.as_bytes()));
            out.insert(v.vip.clone(), format!("{d:016x}"));
        }
        Ok(out)
    }

    pub fn list_elements(&self, pool: Option<&PoolHandle>) -> Result<Vec<ElementStateEntry>> {
        Ok(self
            .state()?
            .elements
            .into_iter()
            .filter(|e| pool.is_none_or(|p| e.pool == p.as_str()))
            .collect())
    }

    pub fn add_vip(
        &mut self,
        vip: Vip,
        pool: &PoolHandle,
        mode: Mode,
        snat: Option<IpAddr>,
        nat_timeout_s: Option<u32>,
    ) -> Result<u32> {
        check_snat(&vip, mode, snat)?;
        if let Some(t) = nat_timeout_s {
            crate::loader::check_timeout("--nat-timeout", t)?;
        }
        self.transact(|st, maps| {
            if st.find_vip(&vip).is_some() {
                bail!("VIP {vip} already exists (use `vip change`)");
            }
            check_pool_for_vip(st, pool.as_str(), &vip, mode)?;
            let (slot, _) = st.vip_slots.allocate("vip")?;
            maps.reset_vip_counters(slot)?;
            st.vips.push(VipState {
                vip: vip.to_string(),
                pool: pool.to_string(),
                mode,
                snat,
                nat_timeout_s: nat_timeout_s.unwrap_or(0),
                slot,
                // The first publish flips to 2 * slot + 1.
                table: 2 * slot,
            });
            let i = st.vips.len() - 1;
            publish_vip(st, maps, i)?;
            Ok(slot)
        })
    }

    pub fn change_vip(
        &mut self,
        vip: Vip,
        pool: Option<&PoolHandle>,
        mode: Option<Mode>,
        snat: Option<IpAddr>,
    ) -> Result<()> {
        self.transact(|st, maps| {
            let i = st
                .find_vip(&vip)
                .ok_or_else(|| anyhow!("no VIP {vip} on {}", st.interface))?;
            let v = &mut st.vips[i];
            if let Some(p) = pool {
                v.pool = p.to_string();
            }
            if let Some(m) = mode {
                v.mode = m;
            }
            if snat.is_some() {
                v.snat = snat;
            }
            check_snat(&vip, v.mode, v.snat)?;
            let (pool, mode) = (v.pool.clone(), v.mode);
            check_pool_for_vip(st, &pool, &vip, mode)?;
            publish_vip(st, maps, i)
        })
    }

    pub fn del_vip(&mut self, vip: Vip) -> Result<()> {
        self.transact(|st, maps| {
            let i = st
                .find_vip(&vip)
                .ok_or_else(|| anyhow!("no VIP {vip} on {}", st.interface))?;
            maps.remove_vip(&vip.key())?;
            let v = st.vips.remove(i);
            st.vip_slots.release(v.slot);
            Ok(())
        })
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

    /// The registrar reconciler's entry point: adds the element as owned by the registrar, or
    /// updates the weight and state of an element it owns (`active = false`: draining). An
    /// element added by hand is left as it is: `Ok(None)`.
    pub fn set_registered_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
        weight: u16,
        active: bool,
    ) -> Result<Option<ElementReport>> {
        self.upsert_element(pool, addr, weight, Upsert::Registrar { active })
    }

    /// Removes an element the registrar owns (as [`Self::remove_element`]). Returns `false`, and
    /// changes nothing, when the element is absent or was added by hand.
    pub fn remove_registered_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
    ) -> Result<bool> {
        self.transact(|st, maps| match find_element(st, pool, &addr) {
            Some(i) if st.elements[i].owner == Owner::Registrar => {
                remove_at(st, maps, i)?;
                Ok(true)
            }
            _ => Ok(false),
        })
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
            .and_then(|mut nl| Ok(nl.resolve(addr.addr, RESOLVE_WAIT)?));
        self.transact(|st, maps| {
            check_element_for_pool(st, pool.as_str(), &addr)?;
            // An element keeps the spelling it was added with (what `element list` shows and
            // the registrar's reconciler compares with); `find_element` knows its other ones.
            let existing = find_element(st, pool, &addr);
            let i = match (existing, how) {
                (Some(i), Upsert::MustBeNew) => bail!(
                    "element {} is already in pool {pool} (`element weight` changes its weight, `element undrain` puts a drained element back in service)",
                    st.elements[i].element_addr()
                ),
                (None, Upsert::MustExist) => bail!("no element {addr} in pool {pool}"),
                (Some(i), Upsert::Registrar { .. }) if st.elements[i].owner == Owner::Manual => {
                    return Ok(None);
                }
                (Some(i), _) => {
                    let e = &mut st.elements[i];
                    e.weight = weight;
                    match how {
                        Upsert::Either => e.state = ElementState::Active,
                        Upsert::Registrar { active } => e.state = element_state(active),
                        Upsert::MustBeNew | Upsert::MustExist => {}
                    }
                    i
                }
                (None, _) => {
                    let (slot, generation) = st.element_slots.allocate("element")?;
                    maps.reset_element_counters(slot)?;
                    let (state, owner) = match how {
                        Upsert::Registrar { active } => (element_state(active), Owner::Registrar),
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
                    });
                    st.elements.len() - 1
                }
            };
            let unresolved = match &hop {
                Ok(h) => {
                    st.elements[i].nexthop = Some(h.clone());
                    (!h.resolved()).then(|| format!("neighbour of {} did not answer", addr.addr))
                }
                Err(e) => Some(format!("{e:#}")),
            };
            if let Some(h) = &st.elements[i].nexthop {
                ensure_tx_port(st, maps, h.ifindex)?;
            }
            write_element(maps, &st.elements[i])?;
            let slot = st.elements[i].slot;
            publish_pool(st, maps, pool.as_str())?;
            Ok(Some(ElementReport {
                slot,
                unresolved,
                element: st.elements[i].clone(),
            }))
        })
    }

    /// No new flows; existing flows stay. Returns the element as it is now.
    pub fn drain_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
    ) -> Result<ElementStateEntry> {
        self.set_element_state(pool, addr, ElementState::Draining)
    }

    /// Puts a drained element back in service (into its pool's Maglev tables, with its
    /// weight). Returns the element as it is now.
    pub fn undrain_element(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
    ) -> Result<ElementStateEntry> {
        self.set_element_state(pool, addr, ElementState::Active)
    }

    fn set_element_state(
        &mut self,
        pool: &PoolHandle,
        addr: ElementAddr,
        state: ElementState,
    ) -> Result<ElementStateEntry> {
        self.transact(|st, maps| {
            let i = find_element(st, pool, &addr)
                .ok_or_else(|| anyhow!("no element {addr} in pool {pool}"))?;
            st.elements[i].state = state;
            write_element(maps, &st.elements[i])?;
            publish_pool(st, maps, pool.as_str())?;
            Ok(st.elements[i].clone())
        })
    }

    /// Gone: out of the Maglev tables first, then its slot is cleared, so its flows are
    /// re-selected.
    pub fn remove_element(&mut self, pool: &PoolHandle, addr: ElementAddr) -> Result<()> {
        self.transact(|st, maps| {
            let i = find_element(st, pool, &addr)
                .ok_or_else(|| anyhow!("no element {addr} in pool {pool}"))?;
            remove_at(st, maps, i)
        })
    }

    /// Rewrites every map entry from the state (after a forced reload).
    pub fn resync(&mut self) -> Result<()> {
        self.transact(|st, maps| {
            let ifaces: BTreeSet<u32> = st
                .elements
                .iter()
                .filter_map(|e| e.nexthop.as_ref().map(|h| h.ifindex))
                .collect();
            st.tx_ports.clear();
            for i in ifaces {
                ensure_tx_port(st, maps, i)?;
            }
            for e in &st.elements {
                write_element(maps, e)?;
            }
            for i in 0..st.vips.len() {
                publish_vip(st, maps, i)?;
            }
            Ok(())
        })
    }

    /// Re-resolves every element's next hop; writes the elements whose next hop changed.
    /// Returns the number of changed elements and the number still unresolved.
    pub fn refresh_nexthops(&mut self, wait: Duration) -> Result<(usize, usize)> {
        let targets: Vec<(String, ElementAddr)> = self
            .state()?
            .elements
            .iter()
            .map(|e| (e.pool.clone(), e.element_addr()))
            .collect();
        let mut nl = Netlink::new()?;
        let mut resolved: Vec<(String, ElementAddr, Option<NextHop>)> = Vec::new();
        for (pool, addr) in targets {
            let h = nl.resolve(addr.addr, wait).ok();
            resolved.push((pool, addr, h));
        }
        self.transact(|st, maps| {
            let mut changed = 0;
            let mut unresolved = 0;
            for (pool, addr, hop) in resolved {
                let Some(i) = st
                    .elements
                    .iter()
                    .position(|e| e.pool == pool && e.element_addr() == addr)
                else {
                    continue;
                };
                if !hop.as_ref().is_some_and(|h| h.resolved()) {
                    unresolved += 1;
                }
                // Keep a known MAC rather than forgetting it on a transient failure.
                let keep_old = !hop.as_ref().is_some_and(|h| h.resolved())
                    && st.elements[i]
                        .nexthop
                        .as_ref()
                        .is_some_and(|h| h.resolved());
                if keep_old || st.elements[i].nexthop == hop {
                    continue;
                }
                st.elements[i].nexthop = hop;
                if let Some(h) = &st.elements[i].nexthop {
                    ensure_tx_port(st, maps, h.ifindex)?;
                }
                write_element(maps, &st.elements[i])?;
                changed += 1;
            }
            Ok((changed, unresolved))
        })
    }

    /// Removes NAT translations idle longer than their VIP's timeout.
    pub fn expire_nat(&mut self) -> Result<usize> {
        let st = self.state()?;
        let expired = crate::control_core::nat_expired(&st, crate::maps::monotonic_ns());
        Ok(self.maps.expire_nat(expired))
    }

    /// Reads every counter (per-CPU values summed).
    pub fn stats(&self) -> Result<Stats> {
        let st = self.state()?;
        let time_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut vips = Vec::new();
        for v in &st.vips {
            vips.push(VipStats {
                vip: v.vip.clone(),
                pool: v.pool.clone(),
                mode: v.mode,
                slot: v.slot,
                counters: self.maps.vip_counters(v.slot)?,
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
                counters: self.maps.element_counters(e.slot)?,
            });
        }
        Ok(Stats {
            interface: self.iface.clone(),
            time_unix_ms,
            vips,
            elements,
            global: self.maps.global_counters()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upsert {
    MustBeNew,
    MustExist,
    Either,
    /// Owned by the registrar: never touches a manual element.
    Registrar {
        active: bool,
    },
}

/// Only `Upsert::Registrar` leaves an element alone.
fn applied(r: Option<ElementReport>) -> Result<ElementReport> {
    r.ok_or_else(|| anyhow!("internal error: the element was left unchanged"))
}

fn element_state(active: bool) -> ElementState {
    if active {
        ElementState::Active
    } else {
        ElementState::Draining
    }
}

/// Takes element `i` out of its pool's Maglev tables first, then clears its slot, so its flows
/// are re-selected.
fn remove_at(st: &mut State, maps: &mut Maps, i: usize) -> Result<()> {
    let e = st.elements.remove(i);
    publish_pool(st, maps, &e.pool)?;
    maps.set_element(
        e.slot,
        &Element {
            generation: e.generation,
            ..Element::default()
        },
    )?;
    st.element_slots.release(e.slot);
    Ok(())
}

fn family_name(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// The VIPs that serve `pool` in DSR mode.
fn dsr_vips<'a>(st: &'a State, pool: &'a str) -> impl Iterator<Item = &'a VipState> + 'a {
    st.vips
        .iter()
        .filter(move |v| v.pool == pool && v.mode == Mode::Dsr)
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
    if let Some(v) = st.vips.iter().find(|v| {
        v.pool == pool && v.mode == Mode::Nat && v.parsed().addr.is_ipv4() != addr.addr.is_ipv4()
    }) {
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

/// Refuses to serve `pool` by `vip` in `mode` when the pool's elements do not fit it (as
/// [`check_element_for_pool`]), or when a DSR VIP would see one element twice.
fn check_pool_for_vip(st: &State, pool: &str, vip: &Vip, mode: Mode) -> Result<()> {
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
fn find_element(st: &State, pool: &PoolHandle, addr: &ElementAddr) -> Option<usize> {
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

fn check_snat(vip: &Vip, mode: Mode, snat: Option<IpAddr>) -> Result<()> {
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

fn element_value(e: &ElementStateEntry) -> Element {
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
        flags: match e.state {
            ElementState::Active => ELEM_ACTIVE,
            ElementState::Draining => ELEM_ACTIVE | ELEM_DRAINING,
        },
        generation: e.generation,
        ifindex: hop.ifindex,
        dst_mac: hop.dst_mac,
        src_mac: hop.src_mac,
    }
}

fn write_element(maps: &mut Maps, e: &ElementStateEntry) -> Result<()> {
    maps.set_element(e.slot, &element_value(e))
}

fn ensure_tx_port(st: &mut State, maps: &mut Maps, ifindex: u32) -> Result<()> {
    if ifindex == 0 || ifindex == st.ifindex || st.tx_ports.contains(&ifindex) {
        return Ok(());
    }
    maps.add_tx_port(ifindex)?;
    st.tx_ports.push(ifindex);
    Ok(())
}

/// The Maglev table of a pool: its active elements, by weight.
fn pool_table(st: &State, pool: &str) -> Vec<u32> {
    let keys: Vec<(String, u32, u32)> = st
        .pool_elements(pool)
        .filter(|e| e.state == ElementState::Active)
        .map(|e| (e.maglev_key(), e.weight as u32, e.slot))
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

/// Writes the pool's table into the standby half of the VIP, then flips `VipInfo.table` in one
/// map update: packets see either the old table or the new one, never a mix.
fn publish_vip_with(st: &mut State, maps: &mut Maps, i: usize, table: &[u32]) -> Result<()> {
    let size = st.options.maglev_size;
    let v = &mut st.vips[i];
    let standby = if v.table == 2 * v.slot {
        2 * v.slot + 1
    } else {
        2 * v.slot
    };
    maps.write_maglev(standby, size, table)?;
    let vip = v.parsed();
    let info = VipInfo {
        slot: v.slot,
        table: standby,
        mode: v.mode.code(),
        flags: 0,
        _pad: [0; 2],
        timeout_s: st.options.vip_timeout_s(v),
        snat_addr: v.snat.map(addr_words).unwrap_or_default(),
    };
    maps.set_vip(&vip.key(), &info)?;
    v.table = standby;
    Ok(())
}

fn publish_vip(st: &mut State, maps: &mut Maps, i: usize) -> Result<()> {
    let table = pool_table(st, &st.vips[i].pool.clone());
    publish_vip_with(st, maps, i, &table)
}

fn publish_pool(st: &mut State, maps: &mut Maps, pool: &str) -> Result<()> {
    let users: Vec<usize> = (0..st.vips.len())
        .filter(|&i| st.vips[i].pool == pool)
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    let table = pool_table(st, pool);
    for i in users {
        publish_vip_with(st, maps, i, &table)?;
    }
    Ok(())
}
