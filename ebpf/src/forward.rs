//! Sending the rewritten frame: Ethernet addresses, then XDP_TX back out of the ingress
//! interface or XDP_REDIRECT through `RSPLB_TX_PORTS` to another one.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use rsplb_common::stat;

use crate::{
    Verdict,
    maps::TX_PORTS,
    parse::{EthHdr, ptr_at},
};

pub const NO_NEXTHOP: Verdict = Verdict::new(xdp_action::XDP_DROP, stat::DROP_NO_NEXTHOP);

/// Writes the Ethernet addresses; an all-zero destination is an unresolved next hop.
#[inline(always)]
pub fn set_macs(ctx: &XdpContext, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), Verdict> {
    if dst.iter().fold(0u8, |a, b| a | b) == 0 {
        return Err(NO_NEXTHOP);
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(NO_NEXTHOP)?;
    unsafe {
        (*eth).dst = *dst;
        (*eth).src = *src;
    }
    Ok(())
}

/// Out of `ifindex`: 0 or the ingress interface is XDP_TX, anything else must be in the devmap.
#[inline(always)]
pub fn transmit(ctx: &XdpContext, ifindex: u32) -> Verdict {
    if ifindex == 0 || ifindex as usize == ctx.ingress_ifindex() {
        return Verdict::action(xdp_action::XDP_TX);
    }
    match TX_PORTS.redirect(ifindex, 0) {
        Ok(action) => Verdict::action(action),
        Err(_) => NO_NEXTHOP,
    }
}
