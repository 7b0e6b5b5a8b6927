//! Per-CPU counters: one global count per XDP action and per reason, and packets, bytes and new
//! flows per element slot and per VIP slot. Userspace sums the CPUs.
use aya_ebpf::maps::PerCpuArray;
use rsplb_common::Counters;

use crate::maps::{ELEMENT_STATS, GLOBAL_STATS, VIP_STATS};

#[inline(always)]
pub fn global(index: u32) {
    if let Some(c) = GLOBAL_STATS.get_ptr_mut(index) {
        // Per-CPU value and XDP runs with preemption disabled: a plain add is race free.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn add(map: &PerCpuArray<Counters>, slot: u32, bytes: u32, new_flow: bool) {
    if let Some(c) = map.get_ptr_mut(slot) {
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += bytes as u64;
        if new_flow {
            c.new_flows += 1;
        }
    }
}

/// A packet forwarded to (or, for NAT replies, from) element `element` of VIP `vip`.
#[inline(always)]
pub fn forwarded(element: u32, vip: u32, bytes: u32, new_flow: bool) {
    add(&ELEMENT_STATS, element, bytes, new_flow);
    add(&VIP_STATS, vip, bytes, new_flow);
}

/// A packet for VIP `vip` refused by its allow list.
#[inline(always)]
pub fn refused(vip: u32) {
    if let Some(c) = VIP_STATS.get_ptr_mut(vip) {
        unsafe { (*c).refused += 1 };
    }
}
