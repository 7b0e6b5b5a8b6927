//! The dataplane side of the control plane: carries out the core's writes
//! ([`crate::control_core::Write`]) in order, and reads counters and tables back. It decides
//! nothing. [`Maps`] is the executor of a real attachment; tests use an in-memory model that
//! checks the ordering rules after every write.

use anyhow::Result;
use rsplb_common::{Counters, NatValue, stat};

use crate::{control_core::Write, maps::Maps};

/// Executes map writes and reads the dataplane back.
pub trait Executor: Send {
    /// Carries out one write. The caller stops at the first error (the state is then not saved,
    /// so the next change or the daemon's repair pass writes again).
    fn execute(&mut self, w: &Write) -> Result<()>;
    /// One whole Maglev table as the program sees it (`NO_ELEMENT` for an empty entry).
    fn read_maglev(&self, table: u32, size: u32) -> Result<Vec<u32>>;
    fn element_counters(&self, slot: u32) -> Result<Counters>;
    fn vip_counters(&self, slot: u32) -> Result<Counters>;
    fn global_counters(&self) -> Result<[u64; stat::COUNT as usize]>;
    /// Removes the NAT translations `expired` says are; returns how many.
    fn expire_nat(&mut self, expired: &dyn Fn(&NatValue) -> bool) -> usize;
}

impl Executor for Maps {
    fn execute(&mut self, w: &Write) -> Result<()> {
        match w {
            Write::ResetElementCounters { slot } => self.reset_element_counters(*slot),
            Write::ResetVipCounters { slot } => self.reset_vip_counters(*slot),
            Write::Element { slot, value } => self.set_element(*slot, value),
            Write::MaglevTable { table, entries } => {
                let size = u32::try_from(entries.len())?;
                self.write_maglev(*table, size, entries)
            }
            Write::Vip { key, info } => self.set_vip(key, info),
            Write::RemoveVip { key } => self.remove_vip(key),
            Write::AllowPrefix { slot, prefix } => self.insert_allow(*slot, prefix),
            Write::RetainAllow { slot, keep } => self.retain_allow(*slot, keep),
            Write::TxPort { ifindex } => self.add_tx_port(*ifindex),
            Write::Config(c) => self.write_config(c),
        }
    }

    fn read_maglev(&self, table: u32, size: u32) -> Result<Vec<u32>> {
        Maps::read_maglev(self, table, size)
    }

    fn element_counters(&self, slot: u32) -> Result<Counters> {
        Maps::element_counters(self, slot)
    }

    fn vip_counters(&self, slot: u32) -> Result<Counters> {
        Maps::vip_counters(self, slot)
    }

    fn global_counters(&self) -> Result<[u64; stat::COUNT as usize]> {
        Maps::global_counters(self)
    }

    fn expire_nat(&mut self, expired: &dyn Fn(&NatValue) -> bool) -> usize {
        Maps::expire_nat(self, expired)
    }
}

#[cfg(test)]
pub use model::Memory;

#[cfg(test)]
mod model {
    use std::{
        collections::{BTreeMap, BTreeSet, HashMap},
        sync::{Arc, Mutex},
    };

    use rsplb_common::{
        Config, ELEM_ACTIVE, Element, MODE_DSR, MODE_NAT, NO_ELEMENT, VIP_F_ALLOW_LIST, VipInfo,
        VipKey,
    };

    use super::*;
    use crate::allow::Prefix;

    /// The dataplane in memory, as the XDP program would see it after each write. Every write
    /// is checked against the ordering rules; a broken rule is recorded (not a panic, so a
    /// test can show the whole list). Clones share one model.
    #[derive(Clone)]
    pub struct Memory(Arc<Mutex<Model>>);

    struct Model {
        size: u32,
        /// The attached interface (XDP_TX; no devmap entry needed).
        ifindex: u32,
        elements: BTreeMap<u32, Element>,
        tables: BTreeMap<u32, Arc<[u32]>>,
        /// Tables written whole since a VIP last read them.
        complete: BTreeSet<u32>,
        vips: HashMap<VipKey, VipInfo>,
        tx_ports: BTreeSet<u32>,
        /// `RSPLB_ALLOW`: prefixes by VIP slot.
        allow: BTreeMap<u32, BTreeSet<Prefix>>,
        /// VIP slots whose VIP was removed while it had prefixes, not cleared since.
        orphaned: BTreeSet<u32>,
        config: Option<Config>,
        writes: Vec<Write>,
        violations: Vec<String>,
    }

    impl Memory {
        /// A dataplane for Maglev tables of `size` entries, attached to ifindex 1.
        pub fn new(size: u32) -> Memory {
            Memory(Arc::new(Mutex::new(Model {
                size,
                ifindex: 1,
                elements: BTreeMap::new(),
                tables: BTreeMap::new(),
                complete: BTreeSet::new(),
                vips: HashMap::new(),
                tx_ports: BTreeSet::new(),
                allow: BTreeMap::new(),
                orphaned: BTreeSet::new(),
                config: None,
                writes: Vec::new(),
                violations: Vec::new(),
            })))
        }

        fn model(&self) -> std::sync::MutexGuard<'_, Model> {
            self.0.lock().unwrap()
        }

        /// The rules broken so far.
        pub fn violations(&self) -> Vec<String> {
            self.model().violations.clone()
        }

        /// Every write executed so far.
        pub fn writes(&self) -> Vec<Write> {
            self.model().writes.clone()
        }

        pub fn element(&self, slot: u32) -> Option<Element> {
            self.model().elements.get(&slot).copied()
        }

        /// The table the VIP `key` reads now.
        pub fn active_table(&self, key: &VipKey) -> Option<Arc<[u32]>> {
            let m = self.model();
            let info = m.vips.get(key)?;
            Some(m.table(info.table))
        }

        /// The prefixes of VIP slot `slot` in `RSPLB_ALLOW` now.
        pub fn allow(&self, slot: u32) -> Vec<Prefix> {
            let m = self.model();
            m.allow.get(&slot).into_iter().flatten().copied().collect()
        }

        /// The tables some VIP reads now.
        pub fn active_tables(&self) -> impl Iterator<Item = Arc<[u32]>> {
            let m = self.model();
            let v: Vec<Arc<[u32]>> = m.vips.values().map(|i| m.table(i.table)).collect();
            v.into_iter()
        }
    }

    impl Model {
        fn table(&self, t: u32) -> Arc<[u32]> {
            self.tables
                .get(&t)
                .cloned()
                .unwrap_or_else(|| vec![NO_ELEMENT; self.size as usize].into())
        }

        /// Whether the VIP entry of slot `slot` has `VIP_F_ALLOW_LIST` set.
        fn flagged(&self, slot: u32) -> bool {
            self.vips
                .values()
                .any(|i| i.slot == slot && i.flags & VIP_F_ALLOW_LIST != 0)
        }

        fn prefixes(&self, slot: u32) -> usize {
            self.allow.get(&slot).map_or(0, BTreeSet::len)
        }

        fn read_by_a_vip(&self, t: u32) -> bool {
            self.vips.values().any(|i| i.table == t)
        }

        fn named_by_an_active_table(&self, slot: u32) -> bool {
            self.vips
                .values()
                .any(|i| self.table(i.table).contains(&slot))
        }

        fn check(&mut self, w: &Write) {
            let mut broken = Vec::new();
            match w {
                Write::Element { slot, value } => {
                    let old = self.elements.get(slot).copied().unwrap_or_default();
                    let leaves = value.flags == 0 || value.generation != old.generation;
                    if leaves && old.flags != 0 && self.named_by_an_active_table(*slot) {
                        broken.push(format!(
                            "slot {slot} cleared or reused while an active table points at it"
                        ));
                    }
                    if value.ifindex != 0
                        && value.ifindex != self.ifindex
                        && !self.tx_ports.contains(&value.ifindex)
                    {
                        broken.push(format!(
                            "slot {slot} leaves by ifindex {} before it is in RSPLB_TX_PORTS",
                            value.ifindex
                        ));
                    }
                }
                Write::MaglevTable { table, entries } => {
                    if self.read_by_a_vip(*table) {
                        broken.push(format!("table {table} written while a VIP reads it"));
                    }
                    if entries.len() != self.size as usize {
                        broken.push(format!(
                            "table {table} written with {} entries",
                            entries.len()
                        ));
                    }
                }
                Write::Vip { key, info } => {
                    let old = self.vips.get(key);
                    if old.is_none_or(|o| o.table != info.table) {
                        if !self.complete.contains(&info.table) {
                            broken.push(format!(
                                "VIP flipped to table {} before it was written whole",
                                info.table
                            ));
                        }
                        let t = self.table(info.table);
                        for s in t.iter().filter(|&&s| s != NO_ELEMENT) {
                            let e = self.elements.get(s).copied().unwrap_or_default();
                            if e.flags != ELEM_ACTIVE {
                                broken.push(format!(
                                    "table {} names slot {s}, whose element is not in service",
                                    info.table
                                ));
                                break;
                            }
                        }
                    }
                    if info.table / 2 != info.slot {
                        broken.push(format!(
                            "VIP of slot {} reads table {}",
                            info.slot, info.table
                        ));
                    }
                    if info.timeout_s == 0 {
                        broken.push("VIP entry without a timeout".into());
                    }
                    if info.mode != MODE_DSR && info.mode != MODE_NAT {
                        broken.push(format!("VIP entry of mode {}", info.mode));
                    }
                    if info.mode == MODE_NAT && info.snat_addr == [0; 4] {
                        broken.push("NAT VIP entry without its SNAT address".into());
                    }
                    if info.flags & VIP_F_ALLOW_LIST != 0 {
                        if self.prefixes(info.slot) == 0 {
                            broken.push(format!(
                                "VIP of slot {} sets its allow flag before its prefixes are in",
                                info.slot
                            ));
                        }
                        if self.orphaned.contains(&info.slot) {
                            broken.push(format!(
                                "VIP of slot {} sets its allow flag over prefixes a removed VIP left",
                                info.slot
                            ));
                        }
                    }
                }
                Write::RetainAllow { slot, keep } => {
                    let have = self.allow.get(slot).cloned().unwrap_or_default();
                    let removes = have.iter().any(|p| !keep.contains(p));
                    if removes && self.flagged(*slot) {
                        if keep.is_empty() {
                            broken.push(format!(
                                "every prefix of slot {slot} removed while its VIP's allow flag is set"
                            ));
                        } else if let Some(p) = keep.iter().find(|p| !have.contains(p)) {
                            broken.push(format!(
                                "prefixes of slot {slot} removed while its VIP's allow flag is set, before {p} of the list that replaces them is in"
                            ));
                        }
                    }
                }
                _ => {}
            }
            self.violations.extend(broken);
        }

        fn apply(&mut self, w: &Write) {
            match w {
                Write::ResetElementCounters { .. } | Write::ResetVipCounters { .. } => {}
                Write::Element { slot, value } => {
                    self.elements.insert(*slot, *value);
                }
                Write::MaglevTable { table, entries } => {
                    self.tables.insert(*table, entries.clone());
                    self.complete.insert(*table);
                }
                Write::Vip { key, info } => {
                    self.complete.remove(&info.table);
                    self.vips.insert(*key, *info);
                }
                Write::RemoveVip { key } => {
                    if let Some(info) = self.vips.remove(key)
                        && self.prefixes(info.slot) != 0
                    {
                        self.orphaned.insert(info.slot);
                    }
                }
                Write::AllowPrefix { slot, prefix } => {
                    self.allow.entry(*slot).or_default().insert(*prefix);
                }
                Write::RetainAllow { slot, keep } => {
                    if let Some(set) = self.allow.get_mut(slot) {
                        set.retain(|p| keep.contains(p));
                    }
                    self.orphaned.remove(slot);
                }
                Write::TxPort { ifindex } => {
                    self.tx_ports.insert(*ifindex);
                }
                Write::Config(c) => self.config = Some(*c),
            }
        }
    }

    impl Executor for Memory {
        fn execute(&mut self, w: &Write) -> Result<()> {
            let mut m = self.model();
            m.check(w);
            m.apply(w);
            m.writes.push(w.clone());
            Ok(())
        }

        fn read_maglev(&self, table: u32, _size: u32) -> Result<Vec<u32>> {
            Ok(self.model().table(table).to_vec())
        }

        fn element_counters(&self, _slot: u32) -> Result<Counters> {
            Ok(Counters::default())
        }

        fn vip_counters(&self, _slot: u32) -> Result<Counters> {
            Ok(Counters::default())
        }

        fn global_counters(&self) -> Result<[u64; stat::COUNT as usize]> {
            Ok([0; stat::COUNT as usize])
        }

        fn expire_nat(&mut self, _expired: &dyn Fn(&NatValue) -> bool) -> usize {
            0
        }
    }
}
