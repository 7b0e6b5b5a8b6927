//! Header parsing. Every class of packet the dataplane does not steer ends here with the verdict
//! documented in `rsplb_common::stat`; what comes out is a packet with IPv4 without options or
//! IPv6 without extension headers, and a TCP, UDP or SCTP header that fits in both the frame and
//! the IP length. Fixed header offsets (14, 34, 54) keep the verifier's packet range checks simple.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use rsplb_common::{FAMILY_V4, FAMILY_V6, FlowKey, PROTO_SCTP, PROTO_TCP, PROTO_UDP, stat};

use crate::Verdict;

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// Offset of the TCP checksum in the TCP header.
pub const TCP_CSUM_OFF: usize = 16;
/// Offset of the UDP checksum in the UDP header.
pub const UDP_CSUM_OFF: usize = 6;
/// Offset of the flags byte in the TCP header, and the two flags that tell a connection's
/// first packet (SYN without ACK).
const TCP_FLAGS_OFF: usize = 13;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Network byte order.
    pub ether_type: u16,
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub vtc_flow: u32,
    pub payload_len: u16,
    pub next_hdr: u8,
    pub hop_limit: u8,
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
}

/// The first four bytes of TCP, UDP and SCTP headers alike.
#[repr(C)]
pub struct Ports {
    pub src: u16,
    pub dst: u16,
}

/// A packet the dataplane may steer.
pub struct Packet {
    /// The 5-tuple as received (addresses and ports in network byte order).
    pub key: FlowKey,
    pub ttl: u8,
    /// Offset of the transport header from the start of the frame.
    pub l4_off: usize,
    /// Frame length in bytes (counters).
    pub len: u32,
    /// A TCP SYN without ACK: a new connection, placed as new even if its 5-tuple is still in
    /// the flow table (a client reusing a port).
    pub syn: bool,
}
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

const TRUNCATED: Verdict = Verdict::new(xdp_action::XDP_DROP, stat::DROP_TRUNCATED);

#[inline(always)]
const fn pass(reason: u32) -> Verdict {
    Verdict::new(xdp_action::XDP_PASS, reason)
}

/// Transport header length the dataplane needs: TCP up to its checksum field (the whole fixed
/// header), UDP's 8 bytes, SCTP's 12-byte common header. `None`: not a protocol we steer.
#[inline(always)]
fn l4_min_len(proto: u8) -> Option<usize> {
    match proto {
        PROTO_TCP => Some(20),
        PROTO_UDP => Some(8),
        PROTO_SCTP => Some(12),
        _ => None,
    }
}

/// IPv6 extension headers (IANA "IPv6 Extension Header Types", RFC 7045).
#[inline(always)]
fn is_ipv6_ext(next: u8) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Verdict> {
    let frame_len = ctx.data_end() - ctx.data();
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(TRUNCATED)?;
    // 802.1Q/802.1ad tagged frames are not steered: they count as "not IP" and go to the stack.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut key = FlowKey::default();
    let (ttl, l4_off, l4_room) = match ether_type {
        ETH_P_IP => {
            let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(TRUNCATED)?;
            let ip = unsafe { &*ip };
            let ihl = ip.ver_ihl & 0x0f;
            if ip.ver_ihl >> 4 != 4 || ihl < 5 {
                return Err(TRUNCATED);
            }
            let tot_len = u16::from_be(ip.tot_len) as usize;
            let hdr_len = (ihl as usize) * 4;
            if tot_len > frame_len - ETH_LEN || tot_len < hdr_len {
                return Err(TRUNCATED);
            }
            // More-fragments flag or a fragment offset: not the whole datagram.
            if u16::from_be(ip.frag_off) & 0x3fff != 0 {
                return Err(pass(stat::PASS_FRAGMENT));
            }
            if ihl != 5 {
                return Err(pass(stat::PASS_IPV4_OPTIONS));
            }
            key.family = FAMILY_V4;
            key.proto = ip.proto;
            key.src[0] = ip.saddr;
            key.dst[0] = ip.daddr;
            (ip.ttl, ETH_LEN + IPV4_LEN, tot_len - IPV4_LEN)
        }
        ETH_P_IPV6 => {
            let ip: *const Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok_or(TRUNCATED)?;
            let ip = unsafe { &*ip };
            if u32::from_be(ip.vtc_flow) >> 28 != 6 {
                return Err(TRUNCATED);
            }
            let payload = u16::from_be(ip.payload_len) as usize;
            if payload > frame_len - ETH_LEN - IPV6_LEN {
                return Err(TRUNCATED);
            }
            if is_ipv6_ext(ip.next_hdr) {
                return Err(pass(stat::PASS_IPV6_EXT));
            }
            key.family = FAMILY_V6;
            key.proto = ip.next_hdr;
            key.src = ip.saddr;
            key.dst = ip.daddr;
            (ip.hop_limit, ETH_LEN + IPV6_LEN, payload)
        }
        _ => return Err(pass(stat::PASS_NOT_IP)),
    };
    let need = l4_min_len(key.proto).ok_or(pass(stat::PASS_OTHER_PROTO))?;
    // The transport header must fit in the IP datagram, not only in the (possibly padded) frame.
    if l4_room < need || l4_off + need > frame_len {
        return Err(TRUNCATED);
    }
    let ports: *const Ports = ptr_at(ctx, l4_off).ok_or(TRUNCATED)?;
    unsafe {
        key.sport = (*ports).src;
        key.dport = (*ports).dst;
    }
    let mut syn = false;
    if key.proto == PROTO_TCP {
        // Within the 20 bytes checked above.
        let flags: *const u8 = ptr_at(ctx, l4_off + TCP_FLAGS_OFF).ok_or(TRUNCATED)?;
        syn = unsafe { *flags } & (TCP_SYN | TCP_ACK) == TCP_SYN;
    }
    Ok(Packet {
        key,
        ttl,
        l4_off,
        len: frame_len as u32,
        syn,
    })
}
