//! Every map of the program, named as in `rsplb_common::maps`. The sizes here are defaults only:
//! the loader resizes maps with `EbpfLoader::set_max_entries` before load, so no logic in the
//! program depends on them (Maglev geometry comes from `RSPLB_CONFIG`, every index is checked by
//! the map lookup itself).
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use rsplb_common::{
    ALLOW_CAPACITY, AllowKey, Config, Counters, DEFAULT_FLOW_CAPACITY, DEFAULT_MAGLEV_SIZE,
    DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_VIPS, DEFAULT_NAT_CAPACITY, EVENTS_BYTES, Element, FlowSet,
    LogControl, LogLimit, MAX_TX_PORTS, MaglevBlock, NatKey, NatValue, VIP_FILTER_WORDS, VipDirect,
    VipInfo, VipKey, event, flow_sets, maglev_blocks, stat,
};

/// LRU flavour of the NAT table: the common LRU (flags 0), not `BPF_F_NO_COMMON_LRU`.
/// Measured here when the flow table was an LRU hash too (SYNs of new flows, median of single
/// runs): the per-CPU LRU was 30-70 ns slower per insert, because every pop from a per-CPU list rotates (scans) a few cold nodes of that list,
/// while the common LRU pops from a per-CPU local free list and rotates only when it refills it
/// (128 nodes at a time, under the global lock). The common LRU also lets one CPU use the whole
/// capacity instead of `max_entries / nr_cpus`.
const LRU_FLAGS: u32 = 0;

/// Virtual services: (address, port, protocol) -> slot, mode and active Maglev table.
#[map(name = "RSPLB_VIPS")]
pub static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(DEFAULT_MAX_VIPS, 0);

/// VIP pre-filter: one bit per `VipKey::filter_bit`, set by userspace for every VIP. A packet
/// whose bit is clear is not for a VIP and skips the `RSPLB_VIPS` hash lookup.
#[map(name = "RSPLB_VIP_FILTER")]
pub static VIP_FILTER: Array<u64> = Array::with_max_entries(VIP_FILTER_WORDS, 0);

/// VIPs by filter bit, for a lookup without hashing (`rsplb_common::VipDirect`).
#[map(name = "RSPLB_VIP_DIRECT")]
pub static VIP_DIRECT: Array<VipDirect> = Array::with_max_entries(VipDirect::ENTRIES, 0);

/// Source allow lists of VIPs (`VipInfo::flags & VIP_F_ALLOW_LIST`): (VIP slot, source prefix)
/// -> 1. An LPM trie, because a list is prefixes and a lookup wants the longest match of one
/// address among them: one lookup per packet of such a VIP whatever the list's length. Read
/// only for VIPs with the flag, so the others pay nothing for it.
#[map(name = "RSPLB_ALLOW")]
pub static ALLOW: LpmTrie<AllowKey, u8> = LpmTrie::with_max_entries(ALLOW_CAPACITY, 0);

/// Pool elements by element slot.
#[map(name = "RSPLB_ELEMENTS")]
pub static ELEMENTS: Array<Element> = Array::with_max_entries(DEFAULT_MAX_ELEMENTS, 0);

/// Maglev lookup tables: two per VIP (active and standby), `maglev_blocks(maglev_size)` blocks
/// of `MAGLEV_BLOCK` 16-bit element slots each. Mappable (`BPF_F_MMAPABLE`): userspace writes a
/// standby table with one copy into its mapping instead of one syscall per block.
#[map(name = "RSPLB_MAGLEV")]
pub static MAGLEV: Array<MaglevBlock> = Array::with_max_entries(
    2 * DEFAULT_MAX_VIPS * maglev_blocks(DEFAULT_MAGLEV_SIZE),
    BPF_F_MMAPABLE as u32,
);

/// Flow table: client 5-tuple -> pinned element (and SNAT port in NAT mode), as sets of ways
/// (`crate::flows`). An evicted flow is re-selected by Maglev, which picks the same element
/// while the pool is unchanged.
#[map(name = "RSPLB_FLOWS")]
pub static FLOWS: Array<FlowSet> = Array::with_max_entries(flow_sets(DEFAULT_FLOW_CAPACITY), 0);

/// NAT translations seen from the element side: a reply's 5-tuple -> client and VIP.
#[map(name = "RSPLB_NAT_REVERSE")]
pub static NAT_REVERSE: LruHashMap<NatKey, NatValue> =
    LruHashMap::with_max_entries(DEFAULT_NAT_CAPACITY, LRU_FLAGS);

/// NAT translations of flows that have only sent their SYN (`FLOW_SYN_ONLY` in the flow
/// table), as in `RSPLB_NAT_REVERSE`. The client's next packet moves its flow's translation
/// into `RSPLB_NAT_REVERSE`; until then replies (the SYN-ACK) are looked up here too. A flood of
/// spoofed SYNs fills and rotates this LRU only, so it cannot push an established flow's
/// translation out of `RSPLB_NAT_REVERSE`. A quarter of the NAT capacity by default: only
/// handshakes in progress live here.
#[map(name = "RSPLB_NAT_EMBRYONIC")]
pub static NAT_EMBRYONIC: LruHashMap<NatKey, NatValue> =
    LruHashMap::with_max_entries(DEFAULT_NAT_CAPACITY / 4, LRU_FLAGS);

/// Egress interfaces for XDP_REDIRECT, keyed by ifindex (the key is `Element::ifindex`).
#[map(name = "RSPLB_TX_PORTS")]
pub static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_TX_PORTS, 0);

#[map(name = "RSPLB_ELEMENT_STATS")]
pub static ELEMENT_STATS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(DEFAULT_MAX_ELEMENTS, 0);

#[map(name = "RSPLB_VIP_STATS")]
pub static VIP_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(DEFAULT_MAX_VIPS, 0);

/// Indexed by `rsplb_common::stat::*`.
#[map(name = "RSPLB_GLOBAL_STATS")]
pub static GLOBAL_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[map(name = "RSPLB_CONFIG")]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// The event log's level and rate limit, written by the control plane (all zero: off).
#[map(name = "RSPLB_LOG")]
pub static LOG: Array<LogControl> = Array::with_max_entries(1, 0);

/// The event log's rate limiter: one window per CPU and event kind (`rsplb_common::event`).
/// Per CPU, so that the rare paths that log never share a cache line between CPUs.
#[map(name = "RSPLB_LOG_LIMITS")]
pub static LOG_LIMITS: PerCpuArray<LogLimit> = PerCpuArray::with_max_entries(event::COUNT, 0);

/// The events the program logs (`rsplb_common::XdpEvent` records), read by the daemon.
#[map(name = "RSPLB_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);
