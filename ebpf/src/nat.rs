//! Full NAT: address and port rewriting with incremental checksums (RFC 1624), SNAT port
//! allocation, and the reverse translation table that turns replies back toward clients.
//!
//! Checksum arithmetic works on 16-bit words exactly as they lie in memory: the one's-complement
//! sum commutes with byte swapping, so network order never has to be converted.
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, xdp_action},
    maps::LruHashMap,
    programs::XdpContext,
};
use rsplb_common::{Config, FAMILY_V4, NatKey, NatValue, PROTO_TCP, PROTO_UDP, stat};

use crate::{
    Verdict,
    lookup::{addr_eq, rehash},
    maps::{NAT_EMBRYONIC, NAT_REVERSE},
    parse::{ETH_LEN, Packet, TCP_CSUM_OFF, UDP_CSUM_OFF, ptr_at},
};

/// SNAT port candidates tried for a new flow before giving up.
const NAT_PROBES: u32 = 16;
/// `last_seen_ns` is written at most this often (the hot path stays read-only in between).
pub const REFRESH_NS: u64 = 1_000_000_000;
const TRUNCATED: Verdict = Verdict::new(xdp_action::XDP_DROP, stat::DROP_TRUNCATED);

#[inline(always)]
pub fn expired(last_seen_ns: u64, timeout_s: u32, now: u64) -> bool {
    now.saturating_sub(last_seen_ns) > timeout_s as u64 * 1_000_000_000
}

#[inline(always)]
fn add32(acc: u64, old: u32, new: u32) -> u64 {
    let old = !old;
    acc + (old & 0xffff) as u64 + (old >> 16) as u64 + (new & 0xffff) as u64 + (new >> 16) as u64
}

#[inline(always)]
fn add16(acc: u64, old: u16, new: u16) -> u64 {
    acc + (!old) as u64 + new as u64
}

#[inline(always)]
fn fold(mut s: u64) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), with `delta` = sum of ~m + m' over changed words.
#[inline(always)]
fn apply(check: u16, delta: u64) -> u16 {
    !fold((!check) as u64 + delta)
}

/// The new 5-tuple of a translated packet (network byte order).
pub struct Rewrite {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
}

/// Rewrites addresses and ports of `pkt` and fixes the IPv4 header and TCP/UDP checksums.
/// SCTP never comes here (its CRC32c covers the ports and is not incrementally updatable).
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, pkt: &Packet, new: &Rewrite) -> Result<(), Verdict> {
    let old = &pkt.key;
    let mut addr_delta = 0u64;
    if old.family == FAMILY_V4 {
        addr_delta = add32(addr_delta, old.src[0], new.src[0]);
        addr_delta = add32(addr_delta, old.dst[0], new.dst[0]);
        let ip: *mut crate::parse::Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(TRUNCATED)?;
        unsafe {
            (*ip).saddr = new.src[0];
            (*ip).daddr = new.dst[0];
            (*ip).check = apply((*ip).check, addr_delta);
        }
    } else {
        let mut i = 0;
        while i < 4 {
            addr_delta = add32(addr_delta, old.src[i], new.src[i]);
            addr_delta = add32(addr_delta, old.dst[i], new.dst[i]);
            i += 1;
        }
        let ip: *mut crate::parse::Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok_or(TRUNCATED)?;
        unsafe {
            (*ip).saddr = new.src;
            (*ip).daddr = new.dst;
        }
    }
    let mut delta = add16(addr_delta, old.sport, new.sport);
    delta = add16(delta, old.dport, new.dport);
    let l4 = pkt.l4_off;
    if old.proto == PROTO_TCP {
        let check: *mut u16 = ptr_at(ctx, l4 + TCP_CSUM_OFF).ok_or(TRUNCATED)?;
        unsafe { *check = apply(*check, delta) };
    } else if old.proto == PROTO_UDP {
        let check: *mut u16 = ptr_at(ctx, l4 + UDP_CSUM_OFF).ok_or(TRUNCATED)?;
        unsafe {
            // IPv4 UDP without checksum stays without; a computed 0 is sent as 0xffff.
            if !(*check == 0 && old.family == FAMILY_V4) {
                let c = apply(*check, delta);
                *check = if c == 0 { 0xffff } else { c };
            }
        }
    }
    let ports: *mut crate::parse::Ports = ptr_at(ctx, l4).ok_or(TRUNCATED)?;
    unsafe {
        (*ports).src = new.sport;
        (*ports).dst = new.dport;
    }
    Ok(())
}

/// Whether an existing translation already belongs to the client flow described by `value`.
#[inline(always)]
fn same_flow(a: &NatValue, b: &NatValue) -> bool {
    addr_eq(&a.client_addr, &b.client_addr)
        && a.client_port == b.client_port
        && addr_eq(&a.vip_addr, &b.vip_addr)
        && a.vip_port == b.vip_port
}

/// Claims an SNAT port for a new flow: hashed candidates in `[nat_port_min, nat_port_max]`, each
/// claimed with BPF_NOEXIST, in `RSPLB_NAT_EMBRYONIC` for a SYN (`syn`), else in
/// `RSPLB_NAT_REVERSE`; a candidate that the other table holds is skipped. A taken port is reused if it is this very flow's translation (the
/// flow entry was evicted, or another CPU got there first) or reclaimed if it has expired.
/// Returns the port in network byte order, `None` if every candidate is in use.
#[inline(always)]
pub fn claim_port(
    key: &mut NatKey,
    value: &NatValue,
    hash: u32,
    cfg: &Config,
    now: u64,
    syn: bool,
) -> Option<u16> {
    // Two copies with constant maps: a map chosen at run time would keep the verifier from
    // pruning the probe loop's states.
    if syn {
        claim_in(&NAT_EMBRYONIC, &NAT_REVERSE, key, value, hash, cfg, now)
    } else {
        claim_in(&NAT_REVERSE, &NAT_EMBRYONIC, key, value, hash, cfg, now)
    }
}

#[inline(always)]
fn claim_in(
    table: &LruHashMap<NatKey, NatValue>,
    other: &LruHashMap<NatKey, NatValue>,
    key: &mut NatKey,
    value: &NatValue,
    hash: u32,
    cfg: &Config,
    now: u64,
) -> Option<u16> {
    let min = cfg.nat_port_min as u32;
    let max = cfg.nat_port_max as u32;
    if min == 0 || max < min {
        return None;
    }
    let range = max - min + 1;
    let mut round = 0;
    while round < NAT_PROBES {
        let port = ((min + rehash(hash, round).checked_rem(range).unwrap_or(0)) as u16).to_be();
        key.nat_port = port;
        // A live entry of the other table keeps its port, whoever's it is (no flow comparison:
        // the verifier walks every probe's paths). Replies skip an expired entry.
        let free = match other.get_ptr(*key) {
            None => true,
            Some(e) => {
                let e = unsafe { &*e };
                expired(e.last_seen_ns, e.timeout_s, now)
            }
        };
        if free {
            if table.insert(*key, value, BPF_NOEXIST as u64).is_ok() {
                return Some(port);
            }
            if let Some(existing) = table.get_ptr_mut(*key) {
                let existing = unsafe { &*existing };
                if (same_flow(existing, value)
                    || expired(existing.last_seen_ns, existing.timeout_s, now))
                    && table.insert(*key, value, BPF_ANY as u64).is_ok()
                {
                    return Some(port);
                }
            }
        }
        round += 1;
    }
    None
}
