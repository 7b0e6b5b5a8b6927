//! Rebuilding an interface's control-plane state from its pinned maps, for when
//! `/run/rsplb/<iface>/state.json` is lost or damaged while the dataplane keeps forwarding.
//!
//! The maps are the truth of what the dataplane does, but they hold less than the state file:
//! - VIPs (address, port, protocol, mode, SNAT address, idle timeout, slot, active table,
//!   source allow list from `RSPLB_ALLOW`) and elements (address, port, draining, slot,
//!   generation, next hop) are exact;
//! - pool names are not in the maps: VIPs whose active Maglev tables hold the same elements in
//!   the same proportions become one pool, named `recovered-N`;
//! - weights come back as the proportions of the Maglev table (1, 2, 3 and 2, 4, 6 give the
//!   same table, so both come back as 1, 2, 3);
//! - a draining element is in no table, so its pool is unknown: it goes to pool
//!   `recovered-draining`;
//! - every element comes back as added by hand (a running registrar reconciler re-adds its
//!   own).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::Path,
};

use anyhow::{Context as _, Result};
use aya::maps::MapInfo;
use rsplb_common::{
    ELEM_ACTIVE, ELEM_DRAINING, MAGLEV_BLOCK, MAGLEV_EMPTY, MODE_NAT, PROTO_SCTP, PROTO_UDP,
    VipInfo, VipKey, maglev_blocks, maps as names,
};

use crate::{
    addr::{Mode, Protocol, Vip, VipHash, words_addr},
    maps::Maps,
    state::{
        AttachOptions, ElementState, ElementStateEntry, NextHop, Owner, SlotAllocator, State,
        VipState,
    },
};

/// Pool of the draining elements, whose pool the maps do not tell.
pub const DRAINING_POOL: &str = "recovered-draining";

fn max_entries(dir: &Path, name: &str) -> Result<u32> {
    Ok(MapInfo::from_pin(dir.join(name))
        .with_context(|| format!("reading {name}'s size"))?
        .max_entries())
}

fn or_default(v: u32, default: u32) -> u32 {
    if v == 0 { default } else { v }
}

/// The state of `iface` as far as its pinned maps in `dir` hold it.
pub fn state_from_maps(
    dir: &Path,
    iface: &str,
    ifindex: u32,
    netns_inode: u64,
    netns_name: Option<String>,
    generic: bool,
) -> Result<State> {
    let maps = Maps::open(dir).context("opening the pinned maps")?;
    let cfg = maps.config.get(&0, 0).context("reading RSPLB_CONFIG")?;
    let d = AttachOptions::default();
    let options = AttachOptions {
        maglev_size: cfg.maglev_size,
        max_vips: max_entries(dir, names::VIPS)?,
        max_elements: maps.elements.len(),
        flow_capacity: cfg.flow_sets * rsplb_common::FLOW_WAYS as u32,
        nat_capacity: max_entries(dir, names::NAT_REVERSE)?,
        nat_port_min: cfg.nat_port_min,
        nat_port_max: cfg.nat_port_max,
        generic,
        dsr_tcp_timeout_s: or_default(cfg.dsr_tcp_timeout_s, d.dsr_tcp_timeout_s),
        dsr_udp_timeout_s: or_default(cfg.dsr_udp_timeout_s, d.dsr_udp_timeout_s),
        nat_tcp_timeout_s: or_default(cfg.nat_tcp_timeout_s, d.nat_tcp_timeout_s),
        nat_udp_timeout_s: or_default(cfg.nat_udp_timeout_s, d.nat_udp_timeout_s),
    };
    let mut state = State::new(iface, ifindex, netns_inode, netns_name, options.clone());

    let mut vips: Vec<(VipKey, VipInfo)> = Vec::new();
    for entry in maps.vips.iter() {
        vips.push(entry.context("reading RSPLB_VIPS")?);
    }
    vips.sort_by_key(|(_, i)| i.slot);

    // Each VIP's active table as element slot -> entries.
    let blocks = maglev_blocks(options.maglev_size);
    let mut tables: Vec<BTreeMap<u32, u32>> = Vec::new();
    for (_, info) in &vips {
        let mut counts = BTreeMap::new();
        for b in 0..blocks {
            let idx = info.table * blocks + b;
            let block = maps
                .maglev
                .get(&idx, 0)
                .with_context(|| format!("reading RSPLB_MAGLEV[{idx}]"))?;
            let entries = (options.maglev_size - b * MAGLEV_BLOCK as u32).min(MAGLEV_BLOCK as u32);
            for &slot in &block.slots[..entries as usize] {
                if slot != MAGLEV_EMPTY {
                    *counts.entry(u32::from(slot)).or_insert(0) += 1;
                }
            }
        }
        tables.push(counts);
    }

    // Pools: VIPs with the same table content share one.
    let mut pools: Vec<(String, BTreeMap<u32, u32>)> = Vec::new();
    for ((key, info), table) in vips.iter().zip(&tables) {
        let pool = match pools.iter().find(|(_, t)| t == table) {
            Some((name, _)) => name.clone(),
            None => {
                let name = format!("recovered-{}", pools.len() + 1);
                pools.push((name.clone(), table.clone()));
                name
            }
        };
        let proto = match key.proto {
            PROTO_UDP => Protocol::Udp,
            PROTO_SCTP => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        let vip = Vip {
            addr: words_addr(key.addr, key.family),
            port: u16::from_be(key.port),
            proto,
        };
        let mode = if info.mode == MODE_NAT {
            Mode::Nat
        } else {
            Mode::Dsr
        };
        let mut v = VipState {
            vip: vip.to_string(),
            pool,
            mode,
            snat: (mode == Mode::Nat).then(|| words_addr(info.snat_addr, key.family)),
            nat_timeout_s: 0,
            slot: info.slot,
            table: info.table,
            allow: if info.flags & rsplb_common::VIP_F_ALLOW_LIST != 0 {
                maps.read_allow(info.slot, key.family)?
            } else {
                Vec::new()
            },
            hash: VipHash::from_flags(info.flags),
            owner: Owner::Manual,
        };
        // A NAT timeout other than the attach default was the VIP's own.
        if mode == Mode::Nat && options.vip_timeout_s(&v) != info.timeout_s {
            v.nat_timeout_s = info.timeout_s;
        }
        state.vips.push(v);
    }

    // Elements: every slot in service; the generations of the others are kept so that a reused
    // slot still gets a new one.
    let mut generations = BTreeMap::new();
    let mut highest = None;
    for slot in 0..maps.elements.len() {
        let e = maps
            .elements
            .get(&slot, 0)
            .with_context(|| format!("reading RSPLB_ELEMENTS[{slot}]"))?;
        if e.generation != 0 {
            generations.insert(slot, e.generation);
            highest = Some(slot);
        }
        if e.flags & ELEM_ACTIVE == 0 {
            continue;
        }
        let draining = e.flags & ELEM_DRAINING != 0;
        let home = pools.iter().find(|(_, t)| t.contains_key(&slot));
        let (pool, weight) = match home {
            Some((name, t)) if !draining => {
                let least = t.values().copied().min().unwrap_or(1).max(1);
                let w = (f64::from(t[&slot]) / f64::from(least)).round();
                (name.clone(), w.clamp(1.0, f64::from(u16::MAX)) as u16)
            }
            _ => (DRAINING_POOL.to_string(), 1),
        };
        let addr: IpAddr = words_addr(e.addr, e.family);
        let resolved = e.dst_mac != [0; 6] || e.ifindex != 0;
        state.elements.push(ElementStateEntry {
            pool,
            addr,
            port: (e.port != 0).then(|| u16::from_be(e.port)),
            weight,
            state: if draining {
                ElementState::Draining
            } else {
                ElementState::Active
            },
            slot,
            generation: e.generation,
            nexthop: resolved.then_some(NextHop {
                ifindex: e.ifindex,
                dst_mac: e.dst_mac,
                src_mac: e.src_mac,
                gateway: None,
            }),
            owner: Owner::Manual,
            nexthop_pending: false,
            health: Default::default(),
            checked: None,
        });
        if e.ifindex != 0 && e.ifindex != ifindex && !state.tx_ports.contains(&e.ifindex) {
            state.tx_ports.push(e.ifindex);
        }
    }

    state.element_slots = allocator(
        options.max_elements,
        highest,
        state.elements.iter().map(|e| e.slot).collect(),
        generations,
    );
    let vip_slots: BTreeSet<u32> = state.vips.iter().map(|v| v.slot).collect();
    state.vip_slots = allocator(
        options.max_vips,
        vip_slots.last().copied(),
        vip_slots.clone(),
        vip_slots.iter().map(|&s| (s, 1)).collect(),
    );
    Ok(state)
}

/// A slot allocator whose slots up to `highest` were handed out and `used` are in use.
fn allocator(
    max: u32,
    highest: Option<u32>,
    used: BTreeSet<u32>,
    generations: BTreeMap<u32, u32>,
) -> SlotAllocator {
    let next_fresh = highest.map_or(0, |h| h + 1);
    SlotAllocator {
        max,
        next_fresh,
        free: (0..next_fresh).filter(|s| !used.contains(s)).collect(),
        generations,
    }
}
