//! VIP, flow table and Maglev lookups: which element serves a packet.
use aya_ebpf::bindings::xdp_action;
use rsplb_common::{
    Config, ELEM_ACTIVE, Element, FlowValue, MAGLEV_BLOCK, MAGLEV_EMPTY, VipInfo, event, fmix32,
    maglev_blocks, maglev_entry, stat,
};

use crate::{
    Verdict,
    maps::{ELEMENTS, MAGLEV},
};

const NO_ELEMENT_VERDICT: Verdict = Verdict::new(xdp_action::XDP_DROP, stat::DROP_NO_ELEMENT);

/// Second, independent hash of the flow (SNAT port probing).
#[inline(always)]
pub fn rehash(h: u32, round: u32) -> u32 {
    fmix32(h ^ round.wrapping_mul(0x9e37_79b9).wrapping_add(0x7f4a_7c15))
}

// The flow hashes are shared with userspace (`rsplb flow get` computes what this program does).
pub use rsplb_common::{flow_and_placement_hashes, placement_hash, table_hash};

/// The element currently pinned to `flow`, if it still serves it: its slot is active (draining
/// included) with the same generation, for the same VIP.
#[inline(always)]
pub fn pinned(flow: &FlowValue, vip: &VipInfo) -> Option<&'static Element> {
    let element = ELEMENTS.get(flow.element)?;
    if element.flags & ELEM_ACTIVE != 0
        && element.generation == flow.generation
        && flow.vip_slot as u32 == vip.slot
    {
        Some(element)
    } else {
        None
    }
}

/// Maglev: entry `maglev_entry(hash, maglev_size)` of the VIP's active table (`hash` =
/// `placement_hash`: `flow_hash`, or `client_hash` with client affinity), in its block of
/// `MAGLEV_BLOCK` entries. A miss carries its event.
#[inline(always)]
pub fn maglev_pick(
    vip: &VipInfo,
    hash: u32,
    cfg: &Config,
) -> Result<(u32, &'static Element), Verdict> {
    let size = cfg.maglev_size;
    let entry = maglev_entry(hash, size);
    let block = vip
        .table
        .wrapping_mul(maglev_blocks(size))
        .wrapping_add(entry / MAGLEV_BLOCK as u32);
    let block = match MAGLEV.get(block) {
        Some(b) if size != 0 => b,
        _ => {
            return Err(NO_ELEMENT_VERDICT.with_event(event::TABLE_OUT_OF_RANGE, vip.table));
        }
    };
    let slot = block.slots[entry as usize % MAGLEV_BLOCK];
    if slot == MAGLEV_EMPTY {
        return Err(NO_ELEMENT_VERDICT.with_event(event::EMPTY_POOL, 0));
    }
    let slot = slot as u32;
    // A table pointing at a free slot is userspace lagging behind: never forward to it.
    match ELEMENTS.get(slot) {
        Some(element) if element.flags & ELEM_ACTIVE != 0 => Ok((slot, element)),
        _ => Err(NO_ELEMENT_VERDICT.with_event(event::BAD_ELEMENT_SLOT, slot)),
    }
}

/// Address equality without `bcmp` (the BPF backend has no library calls).
#[inline(always)]
pub fn addr_eq(a: &[u32; 4], b: &[u32; 4]) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) == 0
}
