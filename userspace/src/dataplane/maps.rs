//! Typed access to the pinned maps of one attached interface.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use aya::maps::{
    Array, DevMap, DevMapHash, HashMap, Map, MapData, PerCpuArray, PerCpuValues,
    lpm_trie::{Key, LpmTrie},
};
use rsplb_common::{
    AllowKey, CONFIG_ABI_VERSION, Config, Counters, Element, MAGLEV_BLOCK, MaglevBlock, NatKey,
    NatValue, VipDirect, VipInfo, VipKey, maglev_blocks, maps, stat,
};

use crate::{
    addr::{addr_words, words_addr},
    allow::Prefix,
};

/// Root of the per-interface pin directories (on bpffs).
pub const PIN_ROOT: &str = "/sys/fs/bpf/rsplb";
/// Name of the pinned XDP link inside the pin directory.
pub const LINK_PIN: &str = "link";

pub fn pin_dir(iface: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(iface)
}

fn open(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening pinned map {}", path.display()))?;
    Map::from_map_data(data).with_context(|| format!("map {name}: unsupported map type"))
}

/// A shared, writable mapping of `RSPLB_MAGLEV` (a `BPF_F_MMAPABLE` array of `MaglevBlock`s,
/// 64 bytes each, so the kernel lays them out without padding).
struct MaglevView {
    ptr: std::ptr::NonNull<MaglevBlock>,
    blocks: u64,
    bytes: usize,
}

// SAFETY: the mapping is owned by this value and only written through `&mut self`.
unsafe impl Send for MaglevView {}

impl MaglevView {
    /// `None` if the map cannot be mapped (created without `BPF_F_MMAPABLE`).
    fn new(map: &Array<MapData, MaglevBlock>) -> Option<MaglevView> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let blocks = u64::from(map.len());
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        let block_bytes = std::mem::size_of::<MaglevBlock>();
        let bytes = (usize::try_from(blocks).ok()? * block_bytes).div_ceil(page) * page;
        let fd = aya::maps::IterableMap::map(map).fd().as_fd().as_raw_fd();
        // SAFETY: a fresh shared mapping of the map's value area; the kernel checks the length
        // and refuses maps that are not mappable.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(MaglevView {
            ptr: std::ptr::NonNull::new(ptr.cast())?,
            blocks,
            bytes,
        })
    }

    /// Copies `blocks` to block index `base`; false (nothing written) if they do not fit.
    fn write(&mut self, base: u64, blocks: &[MaglevBlock]) -> bool {
        if base + blocks.len() as u64 > self.blocks {
            return false;
        }
        // SAFETY: in bounds (checked above) of a live mapping that this value owns; the program
        // reads the standby table being written here only after the VIP is switched to it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                blocks.as_ptr(),
                self.ptr.as_ptr().add(base as usize),
                blocks.len(),
            );
        }
        true
    }
}

impl MaglevView {
    /// Copies `n` blocks from block index `base`; `None` if they do not fit.
    fn read(&self, base: u64, n: usize) -> Option<Vec<MaglevBlock>> {
        if base + n as u64 > self.blocks {
            return None;
        }
        let mut out = vec![MaglevBlock::default(); n];
        // SAFETY: in bounds (checked above) of a live mapping that this value owns; a block
        // being rewritten at the same moment can only be a standby table's, not an active one.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(base as usize),
                out.as_mut_ptr(),
                n,
            );
        }
        Some(out)
    }
}

impl Drop for MaglevView {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

/// Why pinned maps cannot be used by this binary: they were created by a build with another
/// map layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the pinned dataplane of `{iface}` ({dir}) has {found}, and this rsplb needs map layout {CONFIG_ABI_VERSION}: it was attached by another version of rsplb (it keeps forwarding as it is). `rsplb attach {iface} --force` reloads the program with this version's maps and keeps the VIPs and elements (DSR flows are placed again on the same elements while the pools are unchanged; established NAT connections break); `rsplb detach {iface}` removes it"
)]
pub struct AbiMismatch {
    pub iface: String,
    pub dir: String,
    /// The layout found, in words.
    pub found: String,
}

/// Checks the layout of the pinned config: its value size (`config_size`), then the
/// `abi_version` it holds (`version`, read only when the size fits).
pub fn check_abi(
    dir: &Path,
    config_size: u32,
    version: impl FnOnce() -> Result<u32>,
) -> Result<(), AbiMismatch> {
    let mismatch = |found: String| AbiMismatch {
        iface: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir: dir.display().to_string(),
        found,
    };
    if config_size as usize != std::mem::size_of::<Config>() {
        return Err(mismatch(format!(
            "a {config_size}-byte RSPLB_CONFIG (a layout from before map layout versions)"
        )));
    }
    match version() {
        Ok(CONFIG_ABI_VERSION) => Ok(()),
        Ok(v) => Err(mismatch(format!("map layout {v}"))),
        Err(e) => Err(mismatch(format!("an unreadable RSPLB_CONFIG ({e:#})"))),
    }
}

/// The dataplane's maps, opened from their pins.
pub struct Maps {
    pub vips: HashMap<MapData, VipKey, VipInfo>,
    pub elements: Array<MapData, Element>,
    pub maglev: Array<MapData, MaglevBlock>,
    /// `maglev` mapped into this process, when the map allows it (`BPF_F_MMAPABLE`; pins of
    /// an older program do not): tables are then written with one copy.
    maglev_view: Option<MaglevView>,
    pub nat: Option<HashMap<MapData, NatKey, NatValue>>,
    pub tx_ports: Map,
    pub element_stats: PerCpuArray<MapData, Counters>,
    pub vip_stats: PerCpuArray<MapData, Counters>,
    pub global_stats: PerCpuArray<MapData, u64>,
    pub config: Array<MapData, Config>,
    /// The VIP pre-filter (`None` for pins of a program built before it existed, which does not
    /// read one).
    pub vip_filter: Option<Array<MapData, u64>>,
    /// VIPs by filter bit (`None` for pins of a program built before it existed).
    pub vip_direct: Option<Array<MapData, VipDirect>>,
    /// Source allow lists: (VIP slot, prefix) -> 1 (see `AllowKey`).
    pub allow: LpmTrie<MapData, AllowKey, u8>,
}

/// The `RSPLB_ALLOW` key of prefix `p` of VIP slot `slot`: the slot's 32 bits, then the
/// prefix's (see `AllowKey`).
pub fn allow_key(slot: u32, p: &Prefix) -> Key<AllowKey> {
    Key::new(
        AllowKey::SLOT_BITS + u32::from(p.len),
        AllowKey {
            vip_slot: slot.to_be(),
            addr: addr_words(p.addr),
        },
    )
}

impl Maps {
    /// Opens the pinned maps of an attachment; pins of another layout (another version of
    /// rsplb) are refused with [`AbiMismatch`], naming the command that moves forward.
    pub fn open(dir: &Path) -> Result<Maps> {
        let info = aya::maps::MapInfo::from_pin(dir.join(maps::CONFIG))
            .with_context(|| format!("opening pinned map {}", dir.join(maps::CONFIG).display()))?;
        check_abi(dir, info.value_size(), || {
            let config: Array<MapData, Config> = open(dir, maps::CONFIG)?.try_into()?;
            Ok(config.get(&0, 0)?.abi_version)
        })?;
        Maps::open_any(dir)
    }

    /// Opens maps just created by this binary, before their config is written.
    pub fn open_new(dir: &Path) -> Result<Maps> {
        Maps::open_any(dir)
    }

    fn open_any(dir: &Path) -> Result<Maps> {
        let typed = |name: &str| -> Result<Map> { open(dir, name) };
        let maglev: Array<MapData, MaglevBlock> = typed(maps::MAGLEV)?
            .try_into()
            .context("RSPLB_MAGLEV has an unexpected type")?;
        let maglev_view = MaglevView::new(&maglev);
        Ok(Maps {
            maglev,
            maglev_view,
            vips: typed(maps::VIPS)?
                .try_into()
                .context("RSPLB_VIPS has an unexpected type")?,
            elements: typed(maps::ELEMENTS)?
                .try_into()
                .context("RSPLB_ELEMENTS has an unexpected type")?,
            // The NAT table may be a per-CPU LRU in some builds of the program; expiry then
            // relies on the kernel's LRU alone.
            nat: typed(maps::NAT_REVERSE)?.try_into().ok(),
            tx_ports: typed(maps::TX_PORTS)?,
            element_stats: typed(maps::ELEMENT_STATS)?
                .try_into()
                .context("RSPLB_ELEMENT_STATS has an unexpected type")?,
            vip_stats: typed(maps::VIP_STATS)?
                .try_into()
                .context("RSPLB_VIP_STATS has an unexpected type")?,
            global_stats: typed(maps::GLOBAL_STATS)?
                .try_into()
                .context("RSPLB_GLOBAL_STATS has an unexpected type")?,
            config: typed(maps::CONFIG)?
                .try_into()
                .context("RSPLB_CONFIG has an unexpected type")?,
            vip_filter: match open(dir, maps::VIP_FILTER) {
                Ok(m) => Some(
                    m.try_into()
                        .context("RSPLB_VIP_FILTER has an unexpected type")?,
                ),
                Err(_) => None,
            },
            vip_direct: match open(dir, maps::VIP_DIRECT) {
                Ok(m) => Some(
                    m.try_into()
                        .context("RSPLB_VIP_DIRECT has an unexpected type")?,
                ),
                Err(_) => None,
            },
            allow: typed(maps::ALLOW)?
                .try_into()
                .context("RSPLB_ALLOW has an unexpected type")?,
        })
    }

    /// Allows prefix `p` for VIP slot `slot`.
    pub fn insert_allow(&mut self, slot: u32, p: &Prefix) -> Result<()> {
        self.allow
            .insert(&allow_key(slot, p), 1, 0)
            .with_context(|| {
                format!(
                    "writing {p} into RSPLB_ALLOW (full at {} prefixes?)",
                    rsplb_common::ALLOW_CAPACITY
                )
            })
    }

    /// Removes every prefix of VIP slot `slot` that is not in `keep`, including any an
    /// interrupted change left behind (the map is read, not the state).
    pub fn retain_allow(&mut self, slot: u32, keep: &[Prefix]) -> Result<()> {
        let keep: Vec<Key<AllowKey>> = keep.iter().map(|p| allow_key(slot, p)).collect();
        let mut stale = Vec::new();
        for k in self.allow.keys() {
            let k = k.context("reading RSPLB_ALLOW")?;
            let same = |c: &Key<AllowKey>| c.prefix_len() == k.prefix_len() && c.data() == k.data();
            if k.data().vip_slot == slot.to_be() && !keep.iter().any(same) {
                stale.push(k);
            }
        }
        for k in stale {
            match self.allow.remove(&k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e).context("removing from RSPLB_ALLOW"),
            }
        }
        Ok(())
    }

    /// The prefixes of VIP slot `slot` (of a VIP of `family`, `FAMILY_V4` or `FAMILY_V6`),
    /// sorted.
    pub fn read_allow(&self, slot: u32, family: u8) -> Result<Vec<Prefix>> {
        let mut out = Vec::new();
        for k in self.allow.keys() {
            let k = k.context("reading RSPLB_ALLOW")?;
            if k.data().vip_slot != slot.to_be() {
                continue;
            }
            let len = k.prefix_len().saturating_sub(AllowKey::SLOT_BITS);
            out.push(Prefix {
                addr: words_addr(k.data().addr, family),
                len: u8::try_from(len).context("RSPLB_ALLOW holds a prefix longer than 128")?,
            });
        }
        out.sort();
        Ok(out)
    }

    pub fn set_vip(&mut self, key: &VipKey, info: &VipInfo) -> Result<()> {
        self.change_vip(key, Some(info), |vips| {
            vips.insert(key, info, 0).context("writing RSPLB_VIPS")
        })
    }

    pub fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        self.change_vip(key, None, |vips| match vips.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).context("removing from RSPLB_VIPS"),
        })
    }

    /// Applies `change` to `RSPLB_VIPS` (`key` becomes `info`, or is removed) and brings along
    /// what the program reads before it, both for the filter bit of `key`:
    /// - the `RSPLB_VIP_DIRECT` entry, in the order `VipDirect::transition` gives: an entry
    ///   leaves `VIP_DIRECT_ONE` (readers go to `RSPLB_VIPS`) before the map changes, and is
    ///   published again after;
    /// - then the pre-filter bit (see `VipKey::filter_bit`): set while any VIP has that bit,
    ///   clear otherwise. The filter is thus always a superset of the VIPs the program must
    ///   see: a VIP is served from the moment its bit is set, and a bit is cleared only after
    ///   its last VIP is gone.
    ///
    /// Both follow from the VIPs as they will be after the change, read once before anything
    /// is written (an unreadable `RSPLB_VIPS` fails the change with nothing written).
    fn change_vip(
        &mut self,
        key: &VipKey,
        info: Option<&VipInfo>,
        change: impl FnOnce(&mut HashMap<MapData, VipKey, VipInfo>) -> Result<()>,
    ) -> Result<()> {
        let bit = key.filter_bit();
        let mut after = Vec::new();
        for entry in self.vips.iter() {
            let (k, v) = entry.context("reading RSPLB_VIPS")?;
            if k != *key {
                after.push((k, v));
            }
        }
        after.extend(info.map(|i| (*key, *i)));
        let bit_used = after.iter().any(|(k, _)| k.filter_bit() == bit);
        match &mut self.vip_direct {
            None => change(&mut self.vips)?,
            Some(direct) => {
                let current = direct.get(&bit, 0).context("reading RSPLB_VIP_DIRECT")?;
                let steps: Vec<VipDirect> =
                    current.transition(VipDirect::for_bit(bit, after)).collect();
                let (first, rest) = match steps.split_first() {
                    Some((f, rest)) if *f == current.shared() => (Some(*f), rest),
                    _ => (None, &steps[..]),
                };
                if let Some(f) = first {
                    direct.set(bit, f, 0).context("writing RSPLB_VIP_DIRECT")?;
                }
                change(&mut self.vips)?;
                for d in rest {
                    direct.set(bit, d, 0).context("writing RSPLB_VIP_DIRECT")?;
                }
            }
        }
        self.set_filter_bit(bit, bit_used)
    }

    /// Sets or clears pre-filter bit `bit` (a no-op for pins without a filter).
    fn set_filter_bit(&mut self, bit: u32, on: bool) -> Result<()> {
        let Some(filter) = &mut self.vip_filter else {
            return Ok(());
        };
        let (index, mask) = (bit / 64, 1u64 << (bit % 64));
        let word = filter.get(&index, 0).context("reading RSPLB_VIP_FILTER")?;
        let new = if on { word | mask } else { word & !mask };
        if new != word {
            filter
                .set(index, new, 0)
                .context("writing RSPLB_VIP_FILTER")?;
        }
        Ok(())
    }

    pub fn set_element(&mut self, slot: u32, e: &Element) -> Result<()> {
        self.elements
            .set(slot, e, 0)
            .with_context(|| format!("writing RSPLB_ELEMENTS[{slot}]"))
    }

    /// Writes one whole Maglev table (`table` is the table index, not an entry index).
    /// Whether Maglev tables are written through a mapping of the map (else one syscall per
    /// entry).
    pub fn maglev_mapped(&self) -> bool {
        self.maglev_view.is_some()
    }

    /// Writes one whole Maglev table (`table` is the table index; `entries` its `size` element
    /// slots, `NO_ELEMENT` for none).
    pub fn write_maglev(&mut self, table: u32, size: u32, entries: &[u32]) -> Result<()> {
        if entries.len() != size as usize {
            bail!(
                "a Maglev table of {size} entries was given {}",
                entries.len()
            );
        }
        let blocks: Vec<MaglevBlock> = entries
            .chunks(MAGLEV_BLOCK)
            .map(MaglevBlock::from_entries)
            .collect();
        let base = u64::from(table) * u64::from(maglev_blocks(size));
        if base + blocks.len() as u64 > u64::from(self.maglev.len()) {
            bail!("Maglev table {table} lies beyond RSPLB_MAGLEV");
        }
        if let Some(view) = &mut self.maglev_view
            && view.write(base, &blocks)
        {
            return Ok(());
        }
        for (i, b) in blocks.iter().enumerate() {
            let idx = u32::try_from(base + i as u64).context("Maglev index overflow")?;
            self.maglev
                .set(idx, b, 0)
                .with_context(|| format!("writing RSPLB_MAGLEV[{idx}]"))?;
        }
        Ok(())
    }

    /// Reads one whole Maglev table back from the map, as the program sees it (`NO_ELEMENT` for
    /// an empty entry).
    pub fn read_maglev(&self, table: u32, size: u32) -> Result<Vec<u32>> {
        let n = maglev_blocks(size) as usize;
        let base = u64::from(table) * u64::from(maglev_blocks(size));
        if base + n as u64 > u64::from(self.maglev.len()) {
            bail!("Maglev table {table} lies beyond RSPLB_MAGLEV");
        }
        let blocks = match self.maglev_view.as_ref().and_then(|v| v.read(base, n)) {
            Some(b) => b,
            None => (0..n as u64)
                .map(|i| {
                    let idx = u32::try_from(base + i).context("Maglev index overflow")?;
                    self.maglev
                        .get(&idx, 0)
                        .with_context(|| format!("reading RSPLB_MAGLEV[{idx}]"))
                })
                .collect::<Result<_>>()?,
        };
        Ok(blocks
            .iter()
            .flat_map(|b| b.slots.iter())
            .take(size as usize)
            .map(|&s| {
                if s == rsplb_common::MAGLEV_EMPTY {
                    rsplb_common::NO_ELEMENT
                } else {
                    u32::from(s)
                }
            })
            .collect())
    }

    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        match &mut self.tx_ports {
            Map::DevMapHash(_) => {
                let mut m: DevMapHash<&mut MapData> = (&mut self.tx_ports).try_into()?;
                m.insert(ifindex, ifindex, None, 0)
                    .context("writing RSPLB_TX_PORTS")?;
            }
            Map::DevMap(_) => {
                let mut m: DevMap<&mut MapData> = (&mut self.tx_ports).try_into()?;
                if ifindex >= m.len() {
                    bail!(
                        "egress ifindex {ifindex} does not fit RSPLB_TX_PORTS (a devmap of {} entries keyed by ifindex)",
                        m.len()
                    );
                }
                m.set(ifindex, ifindex, None, 0)
                    .context("writing RSPLB_TX_PORTS")?;
            }
            _ => bail!("RSPLB_TX_PORTS is not a devmap"),
        }
        Ok(())
    }

    pub fn write_config(&mut self, c: &Config) -> Result<()> {
        self.config.set(0, c, 0).context("writing RSPLB_CONFIG")
    }

    fn sum(v: &PerCpuValues<Counters>) -> Counters {
        v.iter().fold(Counters::default(), |a, c| Counters {
            packets: a.packets.wrapping_add(c.packets),
            bytes: a.bytes.wrapping_add(c.bytes),
            new_flows: a.new_flows.wrapping_add(c.new_flows),
            refused: a.refused.wrapping_add(c.refused),
        })
    }

    pub fn element_counters(&self, slot: u32) -> Result<Counters> {
        let v = self
            .element_stats
            .get(&slot, 0)
            .with_context(|| format!("reading RSPLB_ELEMENT_STATS[{slot}]"))?;
        Ok(Self::sum(&v))
    }

    pub fn vip_counters(&self, slot: u32) -> Result<Counters> {
        let v = self
            .vip_stats
            .get(&slot, 0)
            .with_context(|| format!("reading RSPLB_VIP_STATS[{slot}]"))?;
        Ok(Self::sum(&v))
    }

    fn zeros() -> Result<PerCpuValues<Counters>> {
        let n = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        PerCpuValues::try_from(vec![Counters::default(); n]).context("per-CPU values")
    }

    /// Zeroes a slot's counters when it gets a new owner.
    pub fn reset_element_counters(&mut self, slot: u32) -> Result<()> {
        let z = Self::zeros()?;
        self.element_stats
            .set(slot, z, 0)
            .with_context(|| format!("zeroing RSPLB_ELEMENT_STATS[{slot}]"))
    }

    pub fn reset_vip_counters(&mut self, slot: u32) -> Result<()> {
        let z = Self::zeros()?;
        self.vip_stats
            .set(slot, z, 0)
            .with_context(|| format!("zeroing RSPLB_VIP_STATS[{slot}]"))
    }

    pub fn global_counters(&self) -> Result<[u64; stat::COUNT as usize]> {
        let mut out = [0u64; stat::COUNT as usize];
        for (i, o) in out.iter_mut().enumerate() {
            if let Ok(v) = self.global_stats.get(&(i as u32), 0) {
                *o = v.iter().fold(0u64, |a, c| a.wrapping_add(*c));
            }
        }
        Ok(out)
    }

    /// Removes the NAT translations that `expired` says are (the control plane's idle rule,
    /// `control_core::nat_expired`). Returns how many were removed.
    pub fn expire_nat(&mut self, expired: impl Fn(&NatValue) -> bool) -> usize {
        let Some(nat) = &mut self.nat else {
            return 0;
        };
        let gone: Vec<NatKey> = nat
            .iter()
            .filter_map(|r| r.ok())
            .filter(|(_, v)| expired(v))
            .map(|(k, _)| k)
            .collect();
        gone.iter().filter(|k| nat.remove(k).is_ok()).count()
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_of_another_layout_are_refused_naming_the_way_forward() {
        let dir = Path::new("/sys/fs/bpf/rsplb/veth7");
        let this = std::mem::size_of::<Config>() as u32;
        assert_eq!(check_abi(dir, this, || Ok(CONFIG_ABI_VERSION)), Ok(()));
        for (size, version, found) in [
            (20, CONFIG_ABI_VERSION, "a 20-byte RSPLB_CONFIG"),
            (28, CONFIG_ABI_VERSION, "a 28-byte RSPLB_CONFIG"),
            (this, 1, "map layout 1"),
            (this, CONFIG_ABI_VERSION + 1, "map layout 4"),
        ] {
            let e = check_abi(dir, size, || Ok(version))
                .unwrap_err()
                .to_string();
            assert!(e.contains(found), "{e}");
            assert!(e.contains("`rsplb attach veth7 --force`"), "{e}");
            assert!(e.contains("keeps the VIPs and elements"), "{e}");
        }
    }
}
