//! The flow table: which element each established flow is pinned to.
//!
//! A set-associative cache in one BPF array of [`FlowSet`]s, shared by all CPUs: a flow lives in
//! the set its hash selects, in one of `FLOW_WAYS` ways; a new flow takes an empty way, else the
//! least recently refreshed one (LRU within the set). Unlike a BPF LRU hash map, a lookup or an
//! insert is a few loads and stores in the program itself: no helper call, no lock, no LRU list
//! maintenance. Measured here with BPF_PROG_TEST_RUN batches of inserts of new keys into a
//! 64 Ki-flow table: 270 ns (empty) to 600 ns (full) per insert into the kernel's LRU hash,
//! 180-370 ns into a preallocated hash, 105-110 ns into this table at any fill.
//!
//! A SYN never evicts an established flow (`FlowKey::state` 0): it takes its own way, an empty
//! way, or the least recently used way of an embryonic flow (`FLOW_SYN_ONLY`, placed by a SYN and
//! not yet confirmed by another packet); a set holding four established flows has no way for
//! it (`stat::FLOW_TABLE_FULL_SYN`). So a flood of spoofed SYNs, which never complete their
//! handshake, only ever competes with other SYNs, and an established NAT flow keeps its
//! translation. Packets that are not SYNs (UDP, a flow whose entry aged out) may still replace
//! the least recently used flow of a full set, embryonic ones first.
//!
//! Writers do not lock: two CPUs may write the same way at once. Every entry therefore carries
//! `check` ([`flow_check`] of its hash and value), and a reader takes an entry only from one
//! snapshot of its value whose check matches the packet's key: a torn entry reads as a miss
//! (the flow is placed by Maglev again, which picks the same element while the pool is
//! unchanged), never as a wrong element.
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use rsplb_common::{
    Config, Element, FLOW_SYN_ONLY, FLOW_TIME_SHIFT, FLOW_WAYS, FlowEntry, FlowKey, FlowSet,
    FlowValue, VipInfo, flow_check, flow_set_index, stat,
};

use crate::{counters, lookup::addr_eq, maps::FLOWS};

/// What the table holds for a flow.
pub struct Lookup {
    /// The flow's way: where it is (`hit`), or a way holding its key with a value that fails
    /// its check (a torn write: re-pinning the flow reuses that way); null if neither.
    pub way: *mut FlowEntry,
    /// The value as read from `way`, validated when `hit`.
    pub value: FlowValue,
    pub hit: bool,
    /// The entry's `FlowKey::state` (0: established).
    pub state: u8,
}

/// The dataplane's clock: CLOCK_MONOTONIC at tick resolution, in ns (`FlowValue::seen` keeps it
/// in units of 2^FLOW_TIME_SHIFT ns). Not jiffies, although the verifier inlines
/// `bpf_jiffies64`: the idle timeout is set by userspace in seconds, and the kernel's HZ is not
/// known there. The coarse clock, because a tick's resolution is plenty for millisecond units
/// and `bpf_ktime_get_ns` was measured here at about 16 ns more per packet of an established
/// flow (`xdp_est_ns` 44-46 against 29-30).
#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// `now_ns` in flow table time.
#[inline(always)]
pub fn flow_time(now_ns: u64) -> u32 {
    (now_ns >> FLOW_TIME_SHIFT) as u32
}

/// Nanoseconds since flow table time `seen`, at flow table time `now` (wrapping).
#[inline(always)]
pub fn age_ns(seen: u32, now: u32) -> u64 {
    (now.wrapping_sub(seen) as u64) << FLOW_TIME_SHIFT
}

/// Whether a flow seen at `seen` has been idle longer than `timeout_s` at `now`.
#[inline(always)]
pub fn expired(seen: u32, timeout_s: u32, now: u32) -> bool {
    age_ns(seen, now) > timeout_s as u64 * 1_000_000_000
}

/// The set of a flow with hash `hash`; null when the table is off (`flow_sets` 0) or smaller
/// than the configuration says. (Null pointers rather than `Option`s of pointers: an `Option`
/// of a raw pointer carries an undefined payload when `None`, and LLVM may copy that register,
/// which the verifier refuses as a read of an uninitialised register.)
#[inline(always)]
pub fn set(hash: u32, cfg: &Config) -> *mut FlowSet {
    if cfg.flow_sets == 0 {
        return core::ptr::null_mut();
    }
    FLOWS
        .get_ptr_mut(flow_set_index(hash, cfg.flow_sets))
        .unwrap_or(core::ptr::null_mut())
}

#[inline(always)]
fn key_eq(a: &FlowKey, b: &FlowKey) -> bool {
    a.sport == b.sport
        && a.dport == b.dport
        && addr_eq(&a.src, &b.src)
        && addr_eq(&a.dst, &b.dst)
        && a.proto == b.proto
        && a.family == b.family
}

/// Looks `key` (hash `hash`) up in `set` (a miss when `set` is null: no flow table).
#[inline(always)]
pub fn find(set: *mut FlowSet, key: &FlowKey, hash: u32) -> Lookup {
    let miss = Lookup {
        way: core::ptr::null_mut(),
        value: FlowValue::default(),
        hit: false,
        state: 0,
    };
    if set.is_null() {
        return miss;
    }
    let mut i = 0;
    while i < FLOW_WAYS {
        // SAFETY: `set` is a map value of this program's array; `i < FLOW_WAYS`.
        let way = unsafe { core::ptr::addr_of_mut!((*set).ways[i]) };
        // One read of the value: the check is verified on exactly the fields used afterwards.
        let value = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*way).value)) };
        let entry_key = unsafe { &(*way).key };
        if value.check != 0 && key_eq(entry_key, key) {
            let hit = value.check == flow_check(hash, &value);
            let state = entry_key.state;
            return Lookup {
                way,
                value,
                hit,
                state,
            };
        }
        i += 1;
    }
    miss
}

/// Marks a flow that was hit by a packet other than a SYN as used now (at most one write per
/// clock unit) and established.
#[inline(always)]
pub fn touch(found: &Lookup, now: u32) {
    if found.value.seen != now {
        // SAFETY: `way` points into a map value (from a hit of `find`).
        unsafe { (*found.way).value.seen = now };
    }
    confirm(found);
}

/// Marks a flow that was hit by a packet other than a SYN as established (once per flow).
#[inline(always)]
pub fn confirm(found: &Lookup) {
    if found.state != 0 {
        // SAFETY: as in `touch`.
        unsafe { (*found.way).key.state = 0 };
    }
}

/// The value pinning a flow of `vip` to element slot `slot` at time `now` (DSR; NAT adds its
/// port and time).
#[inline(always)]
pub fn value(slot: u32, element: &Element, vip: &VipInfo, now: u32) -> FlowValue {
    FlowValue {
        element: slot,
        generation: element.generation,
        vip_slot: vip.slot as u16,
        seen: now,
        ..FlowValue::default()
    }
}

/// The way a new flow of `set` takes: `way` (the flow's own way, being re-pinned) if not null,
/// else an empty way, else the least recently used embryonic way, else, for a packet that is not
/// a SYN only, the least recently used way (a live flow is evicted either way:
/// `stat::FLOW_EVICTED`). Null when `set` is null (no flow table) or when a SYN finds only
/// established flows (counted by the caller).
#[inline(always)]
pub fn place(set: *mut FlowSet, way: *mut FlowEntry, syn: bool, now: u32) -> *mut FlowEntry {
    if set.is_null() || !way.is_null() {
        return way;
    }
    let mut empty = FLOW_WAYS;
    let mut embryonic = FLOW_WAYS;
    let mut embryonic_age = 0u32;
    let mut oldest = 0;
    let mut oldest_age = 0u32;
    let mut i = 0;
    while i < FLOW_WAYS {
        // SAFETY: as in `find`.
        let entry = unsafe { &(*set).ways[i] };
        if entry.value.check == 0 {
            empty = i;
            break;
        }
        let age = now.wrapping_sub(entry.value.seen);
        if entry.key.state == FLOW_SYN_ONLY && (embryonic == FLOW_WAYS || age >= embryonic_age) {
            embryonic = i;
            embryonic_age = age;
        }
        if age >= oldest_age {
            oldest_age = age;
            oldest = i;
        }
        i += 1;
    }
    let victim = if empty < FLOW_WAYS {
        empty
    } else if embryonic < FLOW_WAYS {
        counters::global(stat::FLOW_EVICTED);
        embryonic
    } else if syn {
        return core::ptr::null_mut();
    } else {
        counters::global(stat::FLOW_EVICTED);
        oldest
    };
    // SAFETY: as in `find`; the mask keeps the index provably in range for the verifier.
    unsafe { core::ptr::addr_of_mut!((*set).ways[victim & (FLOW_WAYS - 1)]) }
}

/// Pins `key` (hash `hash`) to `value` in `way` (from [`place`]; nothing when null), embryonic
/// when the packet is a SYN.
#[inline(always)]
pub fn pin(way: *mut FlowEntry, key: &FlowKey, hash: u32, syn: bool, mut value: FlowValue) {
    if way.is_null() {
        return;
    }
    value.check = flow_check(hash, &value);
    let mut key = *key;
    key.state = if syn { FLOW_SYN_ONLY } else { 0 };
    // SAFETY: `way` points into a map value of this program's array.
    unsafe {
        (*way).key = key;
        (*way).value = value;
    }
}
