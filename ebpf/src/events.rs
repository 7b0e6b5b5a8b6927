//! The event log: rare events (an empty pool, an unresolved next hop, a table read out of
//! range, ...) written as `XdpEvent` records into `RSPLB_EVENTS` for the daemon, which prints
//! them with target `xdp`.
//!
//! A verdict that drops or passes a packet for such a reason carries the event
//! (`Verdict::with_event`), and the program calls [`report`] at one place for those verdicts
//! only, so a forwarded packet never executes any of it. (Inlined: a BPF subprogram would need
//! stack of its own, and the program's frame leaves less than a map lookup's key.) The level and the rate limit are the control plane's
//! (`RSPLB_LOG`, all zero = off); the program has no default of its own. Each CPU logs at most
//! `LogControl::burst` events of a kind per `LogControl::interval_ns`, counts the others
//! (`stat::LOG_SUPPRESSED`) and reports their number in the next event of that kind it logs.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use rsplb_common::{FlowKey, LogControl, XdpEvent, event, stat};

use crate::{
    counters,
    maps::{EVENTS, LOG, LOG_LIMITS},
};

/// Whether this CPU may log an event of `kind` now: the number of events of that kind it
/// suppressed since the last one it logged, or `None` (this one is suppressed and counted).
#[inline(always)]
fn admit(kind: u32, ctl: &LogControl) -> Option<u32> {
    let limit = LOG_LIMITS.get_ptr_mut(kind)?;
    // SAFETY: per-CPU value, and XDP runs with preemption disabled.
    let limit = unsafe { &mut *limit };
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(limit.window_ns) >= ctl.interval_ns {
        limit.window_ns = now;
        limit.logged = 0;
    }
    if limit.logged >= ctl.burst {
        limit.suppressed = limit.suppressed.saturating_add(1);
        counters::global(stat::LOG_SUPPRESSED);
        return None;
    }
    limit.logged += 1;
    let suppressed = limit.suppressed;
    limit.suppressed = 0;
    Some(suppressed)
}

/// Reports event `kind` (`rsplb_common::event`) of a packet to the VIP its `key` addresses.
/// `detail` is the element slot involved, or the kind's own value (a table index, a mode).
///
/// The record is written straight into the ring buffer, not built on the stack (which the
/// program's frame nearly fills: aya-log's records need about 160 bytes of it), and the daemon
/// words it.
#[inline(always)]
pub fn report(kind: u32, key: &FlowKey, detail: u32) {
    let Some(ctl) = LOG.get(0) else { return };
    let Some(level) = event::LEVELS.get(kind as usize) else {
        return;
    };
    if *level > ctl.level {
        return;
    }
    let Some(suppressed) = admit(kind, ctl) else {
        return;
    };
    // A full ring (no reader) loses the event; the suppressed count of the next one is lost
    // with it, the global counter keeps it.
    let Some(mut entry) = EVENTS.reserve::<XdpEvent>(0) else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at a reserved record of the right size, written whole before submit.
    unsafe {
        (*e).kind = kind;
        (*e).detail = detail;
        (*e).suppressed = suppressed;
        (*e).vip.addr = key.dst;
        (*e).vip.port = key.dport;
        (*e).vip.proto = key.proto;
        (*e).vip.family = key.family;
    }
    entry.submit(0);
}
