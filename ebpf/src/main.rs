//! The rsplb XDP program, read as a pipeline (as in Katran):
//! parse -> VIP lookup -> flow table / Maglev -> (NAT) rewrite -> forward -> count.
//! A packet that is not for a VIP may be a NAT reply: it is translated back to its client.
//!
//! Design notes (the rules operators see are in `rsplb_common::stat`):
//! - Forwarding never touches the TTL: in DSR mode the element answers directly, in NAT mode the
//!   balancer owns the VIP and the SNAT address and re-originates the packet, like a proxy. A
//!   packet for a VIP (or a NAT reply) arriving with TTL/hop limit <= 1 goes to the stack.
//! - NAT replies go back out the way the client's first packet came in: the translation stores
//!   that packet's Ethernet source (the client or its router) and destination and its ingress
//!   interface (`NatValue::reply_*`).
//! - SCTP VIPs are DSR only (`stat::PASS_SCTP_NAT`).
//! - NAT needs the element in the VIP's address family (no NAT46/64): otherwise
//!   DROP_FAMILY_MISMATCH (the control plane refuses such pools; the counter catches the rest).
//! - A TCP SYN (without ACK) is a new connection: it is placed by Maglev and overwrites its
//!   5-tuple's flow entry, in both modes (as Katran bypasses its connection table for SYNs), so
//!   drains and weight changes reach clients that reuse ports.
//! - A VIP with a source allow list (`VIP_F_ALLOW_LIST`) drops packets from sources in none of
//!   its prefixes (`RSPLB_ALLOW`) before anything else is done for them.
//! - A VIP with client affinity (`VIP_F_CLIENT_HASH`) places new flows by the client's address
//!   only (`client_hash`); flows stay keyed and pinned by their 5-tuple, SNAT ports too.
//! - A SYN never evicts an established flow from the flow table (`crate::flows`): a spoofed-SYN
//!   flood cannot move an established flow or change its SNAT port.
//! - Flow entries idle longer than their VIP's `timeout_s` (set by userspace) are gone: the
//!   flow's next packet is placed as new. The program holds no policy value of its own.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(target_arch = "bpf")]
mod events;
#[cfg(target_arch = "bpf")]
mod flows;
#[cfg(target_arch = "bpf")]
mod forward;
#[cfg(target_arch = "bpf")]
mod lookup;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod nat;
#[cfg(target_arch = "bpf")]
mod parse;

/// What happens to a packet: an XDP action, the global counter that says why, and the rare
/// event to log, if any (`crate::events`). Eight bytes, packed: the verdict is live across
/// the whole pipeline, and the program's stack is small.
#[derive(Clone, Copy)]
pub struct Verdict {
    /// `xdp_action::*`.
    pub action: u8,
    /// `rsplb_common::event::*`, or `Verdict::NO_EVENT`.
    pub event: u8,
    /// Index in `RSPLB_GLOBAL_STATS`, or `Verdict::NO_REASON`.
    pub reason: u16,
    /// The event's element slot or value.
    pub detail: u32,
}

impl Verdict {
    pub const NO_REASON: u16 = u16::MAX;
    pub const NO_EVENT: u8 = u8::MAX;

    pub const fn new(action: u32, reason: u32) -> Self {
        Self {
            action: action as u8,
            event: Self::NO_EVENT,
            reason: reason as u16,
            detail: 0,
        }
    }

    pub const fn action(action: u32) -> Self {
        Self::new(action, Self::NO_REASON as u32)
    }

    /// The same verdict, reporting `event` with `detail`. Only verdicts that leave the
    /// pipeline as errors (`Err`) are reported: the forwarding path never carries one.
    pub const fn with_event(self, event: u32, detail: u32) -> Self {
        Self {
            event: event as u8,
            detail,
            ..self
        }
    }
}

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::maps::lpm_trie::Key;
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
    use rsplb_common::{
        AllowKey, Element, FAMILY_V4, FlowValue, MODE_DSR, MODE_NAT, NatKey, NatValue, PROTO_SCTP,
        VIP_DIRECT_ONE, VIP_DIRECT_SHARED, VIP_F_ALLOW_LIST, VipInfo, VipKey, event, stat,
    };

    use crate::{
        Verdict, counters,
        events::report,
        flows,
        forward::{NO_NEXTHOP, set_macs, transmit},
        lookup::{
            addr_eq, flow_and_placement_hashes, maglev_pick, pinned, placement_hash, table_hash,
        },
        maps::{ALLOW, CONFIG, NAT_EMBRYONIC, NAT_REVERSE, VIP_DIRECT, VIP_FILTER, VIPS},
        nat::{REFRESH_NS, Rewrite, claim_port, expired, rewrite},
        parse::{EthHdr, Packet, parse, ptr_at},
    };

    const fn pass(reason: u32) -> Verdict {
        Verdict::new(xdp_action::XDP_PASS, reason)
    }
    const NO_ELEMENT: Verdict = Verdict::new(xdp_action::XDP_DROP, stat::DROP_NO_ELEMENT);
    const FAMILY_MISMATCH: Verdict = Verdict::new(xdp_action::XDP_DROP, stat::DROP_FAMILY_MISMATCH);
    const NOT_ALLOWED: Verdict = Verdict::new(xdp_action::XDP_DROP, stat::DROP_SOURCE_NOT_ALLOWED);
    const FLOW_TABLE_FULL: Verdict = Verdict::new(xdp_action::XDP_DROP, stat::DROP_FLOW_TABLE_FULL);

    #[xdp]
    pub fn rsplb_xdp(ctx: XdpContext) -> u32 {
        let verdict = match process(&ctx) {
            Ok(v) | Err(v) => v,
        };
        // ACTION_* indexes equal the xdp_action values.
        counters::global(verdict.action as u32);
        if verdict.reason != Verdict::NO_REASON {
            counters::global(verdict.reason as u32);
        }
        verdict.action as u32
    }

    #[inline(always)]
    fn process(ctx: &XdpContext) -> Result<Verdict, Verdict> {
        let pkt = parse(ctx)?;
        let vip_key = VipKey {
            addr: pkt.key.dst,
            port: pkt.key.dport,
            proto: pkt.key.proto,
            family: pkt.key.family,
        };
        let bit = vip_key.filter_bit();
        if !maybe_vip(bit) {
            return nat_reply(ctx, &pkt);
        }
        let Some(vip) = find_vip(&vip_key, bit) else {
            return nat_reply(ctx, &pkt);
        };
        if vip.flags & VIP_F_ALLOW_LIST != 0 && !allowed(&pkt, &vip) {
            counters::refused(vip.slot);
            return Err(NOT_ALLOWED);
        }
        if pkt.ttl <= 1 {
            return Err(pass(stat::PASS_TTL));
        }
        let r = match vip.mode {
            MODE_DSR => dsr(ctx, &pkt, &vip),
            MODE_NAT if pkt.key.proto == PROTO_SCTP => {
                Err(pass(stat::PASS_SCTP_NAT).with_event(event::SCTP_NAT, 0))
            }
            MODE_NAT => nat_forward(ctx, &pkt, &vip),
            // A mode this program does not know (a newer control plane): leave the packet to
            // the stack, and say so.
            _ => {
                Err(pass(stat::PASS_UNKNOWN_MODE).with_event(event::UNKNOWN_MODE, vip.mode as u32))
            }
        };
        // The one place events are reported: the verifier checks the logging code once, and
        // forwarded packets (`Ok`) never reach it.
        if let Err(v) = r
            && v.event != Verdict::NO_EVENT
        {
            report(v.event as u32, &pkt.key, v.detail);
        }
        r
    }

    /// Writes the Ethernet addresses of element slot `slot` (an unresolved next hop is an
    /// event).
    #[inline(always)]
    fn macs_of(ctx: &XdpContext, slot: u32, element: &Element) -> Result<(), Verdict> {
        set_macs(ctx, &element.dst_mac, &element.src_mac)
            .map_err(|v| v.with_event(event::NO_NEXTHOP, slot))
    }

    /// Sends the frame out of element slot `slot`'s interface (one missing from the devmap is
    /// an event).
    #[inline(always)]
    fn transmit_to(ctx: &XdpContext, slot: u32, element: &Element) -> Result<Verdict, Verdict> {
        let v = transmit(ctx, element.ifindex);
        if v.reason as u32 == stat::DROP_NO_NEXTHOP {
            return Err(v.with_event(event::NO_TX_PORT, slot));
        }
        Ok(v)
    }

    /// The VIP pre-filter: false only if `key` is certainly not a VIP (its bit, `bit`, is
    /// clear). A word that cannot be read (a resized map) means "maybe", so the filter can cost
    /// speed, never correctness.
    #[inline(always)]
    fn maybe_vip(bit: u32) -> bool {
        match VIP_FILTER.get(bit / 64) {
            Some(word) => *word & (1u64 << (bit % 64)) != 0,
            None => true,
        }
    }

    /// The VIP `key` (filter bit `bit`): from `RSPLB_VIP_DIRECT` when it owns its bit alone,
    /// else from `RSPLB_VIPS`. A copy, whichever map it comes from: one value type downstream
    /// keeps the verifier from exploring the rest of the program once per source map.
    #[inline(always)]
    fn find_vip(key: &VipKey, bit: u32) -> Option<VipInfo> {
        let Some(direct) = VIP_DIRECT.get(bit) else {
            return unsafe { VIPS.get(*key) }.copied();
        };
        match direct.state {
            VIP_DIRECT_ONE => {
                let k = &direct.key;
                (k.port == key.port
                    && k.proto == key.proto
                    && k.family == key.family
                    && addr_eq(&k.addr, &key.addr))
                .then_some(direct.info)
            }
            VIP_DIRECT_SHARED => unsafe { VIPS.get(*key) }.copied(),
            _ => None,
        }
    }

    /// Whether the source of `pkt` is in one of the allow list prefixes of `vip`.
    #[inline(always)]
    fn allowed(pkt: &Packet, vip: &VipInfo) -> bool {
        let bits = if pkt.key.family == FAMILY_V4 { 32 } else { 128 };
        let key = Key::new(
            AllowKey::SLOT_BITS + bits,
            AllowKey {
                vip_slot: vip.slot.to_be(),
                addr: pkt.key.src,
            },
        );
        ALLOW.get(&key).is_some()
    }

    /// Counts a forwarded packet once its action is known.
    #[inline(always)]
    fn sent(v: Verdict, element: u32, vip_slot: u32, pkt: &Packet, new_flow: bool) -> Verdict {
        if v.action as u32 == xdp_action::XDP_TX || v.action as u32 == xdp_action::XDP_REDIRECT {
            counters::forwarded(element, vip_slot, pkt.len, new_flow);
        }
        v
    }

    /// DSR: the established flow's element, or Maglev's choice pinned in the flow table (a SYN
    /// or a flow idle past its timeout is placed as new, over its old entry).
    #[inline(always)]
    fn dsr(ctx: &XdpContext, pkt: &Packet, vip: &VipInfo) -> Result<Verdict, Verdict> {
        let cfg = CONFIG.get(0).ok_or(NO_ELEMENT)?;
        let th = table_hash(&pkt.key);
        let now = flows::flow_time(flows::now_ns());
        let set = flows::set(th, cfg);
        let found = flows::find(set, &pkt.key, th);
        let mut chosen: Option<(u32, &Element)> = None;
        if found.hit && !pkt.syn && !flows::expired(found.value.seen, vip.timeout_s, now) {
            match pinned(&found.value, vip) {
                Some(element) => {
                    flows::touch(&found, now);
                    chosen = Some((found.value.element, element));
                }
                None => counters::global(stat::FLOW_RESELECTED),
            }
        }
        let new_flow = chosen.is_none();
        let (slot, element) = match chosen {
            Some(c) => c,
            None => {
                let (slot, element) = maglev_pick(vip, placement_hash(&pkt.key, vip.flags), cfg)?;
                let way = flows::place(set, found.way, pkt.syn, now);
                if way.is_null() && !set.is_null() {
                    // Every way holds an established flow: forwarded, not pinned.
                    counters::global(stat::FLOW_TABLE_FULL_SYN);
                }
                flows::pin(
                    way,
                    &pkt.key,
                    th,
                    pkt.syn,
                    flows::value(slot, element, vip, now),
                );
                (slot, element)
            }
        };
        macs_of(ctx, slot, element)?;
        Ok(sent(
            transmit_to(ctx, slot, element)?,
            slot,
            vip.slot,
            pkt,
            new_flow,
        ))
    }

    #[inline(always)]
    fn element_port(element: &Element, pkt: &Packet) -> u16 {
        if element.port != 0 {
            element.port
        } else {
            pkt.key.dport
        }
    }

    #[inline(always)]
    fn same_client(nat: &NatValue, pkt: &Packet) -> bool {
        addr_eq(&nat.client_addr, &pkt.key.src)
            && nat.client_port == pkt.key.sport
            && addr_eq(&nat.vip_addr, &pkt.key.dst)
            && nat.vip_port == pkt.key.dport
    }

    /// The reverse translation's key of a NAT flow to `element` with SNAT port `nat_port`.
    #[inline(always)]
    fn nat_key(element: &Element, vip: &VipInfo, pkt: &Packet, nat_port: u16) -> NatKey {
        NatKey {
            element_addr: element.addr,
            snat_addr: vip.snat_addr,
            element_port: element_port(element, pkt),
            nat_port,
            proto: pkt.key.proto,
            family: pkt.key.family,
            _pad: [0; 2],
        }
    }

    /// The first packet after a NAT flow's SYN (its client completed the handshake): moves its
    /// translation from `RSPLB_NAT_EMBRYONIC` into `RSPLB_NAT_REVERSE`, where a SYN flood
    /// cannot push it out. False if the translation is gone (the flow is then placed again).
    #[inline(always)]
    fn promote(key: &NatKey, pkt: &Packet) -> bool {
        let Some(nat) = NAT_EMBRYONIC.get_ptr(*key) else {
            return false;
        };
        let nat = unsafe { *nat };
        if !same_client(&nat, pkt) || NAT_REVERSE.insert(*key, &nat, 0).is_err() {
            return false;
        }
        let _ = NAT_EMBRYONIC.remove(key);
        true
    }

    /// NAT, client to element: destination becomes the element, source the VIP's SNAT address
    /// and the flow's SNAT port.
    #[inline(always)]
    fn nat_forward(ctx: &XdpContext, pkt: &Packet, vip: &VipInfo) -> Result<Verdict, Verdict> {
        let cfg = CONFIG.get(0).ok_or(NO_ELEMENT)?;
        let now = flows::now_ns();
        let now_t = flows::flow_time(now);
        let timeout = vip.timeout_s;
        let th = table_hash(&pkt.key);
        let set = flows::set(th, cfg);
        let mut chosen: Option<(u32, &Element, u16)> = None;
        let found = flows::find(set, &pkt.key, th);
        // A SYN is a new connection: a new translation on Maglev's current choice.
        if found.hit && !pkt.syn {
            let flow = found.value;
            match pinned(&flow, vip) {
                Some(element)
                    if flow.nat_port != 0
                        && !flows::expired(flow.nat_seen, timeout, now_t)
                        && (found.state == 0
                            || promote(&nat_key(element, vip, pkt, flow.nat_port), pkt)) =>
                {
                    if flows::age_ns(flow.nat_seen, now_t) > REFRESH_NS {
                        // Once a second: keep the reverse translation alive and make sure it is
                        // still this flow's (it may have been evicted from the LRU).
                        let key = nat_key(element, vip, pkt, flow.nat_port);
                        if let Some(nat) = NAT_REVERSE.get_ptr_mut(key) {
                            let nat = unsafe { &mut *nat };
                            if same_client(nat, pkt) {
                                nat.last_seen_ns = now;
                                // SAFETY: `way` points into the flow table (from `find`).
                                unsafe {
                                    (*found.way).value.nat_seen = now_t;
                                    (*found.way).value.seen = now_t;
                                }
                                flows::confirm(&found);
                                chosen = Some((flow.element, element, flow.nat_port));
                            }
                        }
                    } else {
                        flows::touch(&found, now_t);
                        chosen = Some((flow.element, element, flow.nat_port));
                    }
                }
                // Translation expired or lost: a new one, on Maglev's current choice.
                Some(_) => {}
                None => counters::global(stat::FLOW_RESELECTED),
            }
        }
        let new_flow = chosen.is_none();
        let (slot, element, nat_port) = match chosen {
            Some(c) => c,
            None => {
                // Client affinity places by the client alone; the SNAT port keeps the 5-tuple's
                // hash, so a client's connections do not all start from one port.
                let (hash, place) = flow_and_placement_hashes(&pkt.key, vip.flags);
                let (slot, element) = maglev_pick(vip, place, cfg)?;
                if element.family != pkt.key.family {
                    return Err(FAMILY_MISMATCH.with_event(event::FAMILY_MISMATCH, slot));
                }
                // The way first: a translation is claimed only for a flow that can keep it.
                let way = flows::place(set, found.way, pkt.syn, now_t);
                if way.is_null() && !set.is_null() {
                    counters::global(stat::FLOW_TABLE_FULL_SYN);
                    return Err(FLOW_TABLE_FULL.with_event(event::FLOW_TABLE_FULL, slot));
                }
                let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(NO_NEXTHOP)?;
                let (client_mac, own_mac) = unsafe { ((*eth).src, (*eth).dst) };
                let mut key = NatKey {
                    element_addr: element.addr,
                    snat_addr: vip.snat_addr,
                    element_port: element_port(element, pkt),
                    nat_port: 0,
                    proto: pkt.key.proto,
                    family: pkt.key.family,
                    _pad: [0; 2],
                };
                let value = NatValue {
                    client_addr: pkt.key.src,
                    vip_addr: pkt.key.dst,
                    client_port: pkt.key.sport,
                    vip_port: pkt.key.dport,
                    vip_slot: vip.slot,
                    element: slot,
                    _pad: 0,
                    last_seen_ns: now,
                    reply_dst_mac: client_mac,
                    reply_src_mac: own_mac,
                    reply_ifindex: ctx.ingress_ifindex() as u32,
                    timeout_s: timeout,
                    _pad2: 0,
                };
                let Some(port) = claim_port(&mut key, &value, hash, cfg, now, pkt.syn) else {
                    return Err(
                        Verdict::new(xdp_action::XDP_DROP, stat::DROP_NAT_PORTS_EXHAUSTED)
                            .with_event(event::NAT_PORTS_EXHAUSTED, slot),
                    );
                };
                flows::pin(
                    way,
                    &pkt.key,
                    th,
                    pkt.syn,
                    FlowValue {
                        nat_port: port,
                        nat_seen: now_t,
                        ..flows::value(slot, element, vip, now_t)
                    },
                );
                (slot, element, port)
            }
        };
        // (A pinned flow's element was checked for its family when the flow was placed: a slot
        // changes address only with a new generation.)
        macs_of(ctx, slot, element)?;
        rewrite(
            ctx,
            pkt,
            &Rewrite {
                src: vip.snat_addr,
                dst: element.addr,
                sport: nat_port,
                dport: element_port(element, pkt),
            },
        )?;
        Ok(sent(
            transmit_to(ctx, slot, element)?,
            slot,
            vip.slot,
            pkt,
            new_flow,
        ))
    }

    /// NAT, element to client: a packet matching a live translation gets the VIP as source and
    /// the client as destination, and leaves the way the client's packets came in.
    #[inline(always)]
    fn nat_reply(ctx: &XdpContext, pkt: &Packet) -> Result<Verdict, Verdict> {
        const NOT_VIP: Verdict = Verdict::new(xdp_action::XDP_PASS, stat::PASS_NOT_VIP);
        let cfg = CONFIG.get(0).ok_or(NOT_VIP)?;
        // Only ports in the SNAT range can be replies: everything else skips the NAT lookup.
        let dport = u16::from_be(pkt.key.dport);
        if cfg.nat_port_min == 0 || dport < cfg.nat_port_min || dport > cfg.nat_port_max {
            return Err(NOT_VIP);
        }
        let key = NatKey {
            element_addr: pkt.key.src,
            snat_addr: pkt.key.dst,
            element_port: pkt.key.sport,
            nat_port: pkt.key.dport,
            proto: pkt.key.proto,
            family: pkt.key.family,
            _pad: [0; 2],
        };
        // A live translation of an established flow, else (a SYN-ACK) an embryonic one.
        let now = flows::now_ns();
        let live = |nat: *mut NatValue| {
            let n = unsafe { &*nat };
            !expired(n.last_seen_ns, n.timeout_s, now)
        };
        let nat = NAT_REVERSE
            .get_ptr_mut(key)
            .filter(|n| live(*n))
            .or_else(|| NAT_EMBRYONIC.get_ptr_mut(key).filter(|n| live(*n)))
            .ok_or(NOT_VIP)?;
        let nat = unsafe { &mut *nat };
        if pkt.ttl <= 1 {
            return Err(pass(stat::PASS_TTL));
        }
        if now.saturating_sub(nat.last_seen_ns) > REFRESH_NS {
            nat.last_seen_ns = now;
        }
        let (element, vip_slot, ifindex) = (nat.element, nat.vip_slot, nat.reply_ifindex);
        set_macs(ctx, &nat.reply_dst_mac, &nat.reply_src_mac)?;
        rewrite(
            ctx,
            pkt,
            &Rewrite {
                src: nat.vip_addr,
                dst: nat.client_addr,
                sport: nat.vip_port,
                dport: nat.client_port,
            },
        )?;
        let v = sent(transmit(ctx, ifindex), element, vip_slot, pkt, false);
        if v.action as u32 != xdp_action::XDP_DROP {
            counters::global(stat::NAT_REPLY);
        }
        Ok(v)
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
