//! A small, independent packet builder and parser for the XDP tests: frames are built with
//! checksums computed from scratch, and output frames are parsed and their checksums verified
//! from scratch, so the program's incremental updates are checked against a separate reference.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// One test frame: Ethernet, IPv4 or IPv6, and a TCP, UDP or SCTP (or other) header.
#[derive(Clone, Debug)]
pub struct Frame {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: u8,
    pub ttl: u8,
    pub tcp_flags: u8,
    pub payload: Vec<u8>,
    /// UDP over IPv4 only: send checksum 0 ("none").
    pub udp_no_checksum: bool,
}

impl Frame {
    pub fn new(proto: u8, src: &str, dst: &str) -> Self {
        Frame {
            eth_dst: LB_MAC,
            eth_src: CLIENT_MAC,
            src: src.parse().expect("test address"),
            dst: dst.parse().expect("test address"),
            proto,
            ttl: 64,
            tcp_flags: TCP_ACK,
            payload: b"hello rsplb".to_vec(),
            udp_no_checksum: false,
        }
    }

    pub fn tcp(src: &str, dst: &str) -> Self {
        Self::new(6, src, dst)
    }

    pub fn syn(src: &str, dst: &str) -> Self {
        Frame {
            tcp_flags: TCP_SYN,
            ..Self::new(6, src, dst)
        }
    }

    pub fn udp(src: &str, dst: &str) -> Self {
        Self::new(17, src, dst)
    }

    pub fn sctp(src: &str, dst: &str) -> Self {
        Self::new(132, src, dst)
    }

    fn l4(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.src.port().to_be_bytes());
        l4.extend_from_slice(&self.dst.port().to_be_bytes());
        match self.proto {
            6 => {
                l4.extend_from_slice(&1000u32.to_be_bytes()); // seq
                l4.extend_from_slice(&0u32.to_be_bytes()); // ack
                l4.push(5 << 4);
                l4.push(self.tcp_flags);
                l4.extend_from_slice(&64240u16.to_be_bytes());
                l4.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
            }
            17 => {
                l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
            }
            132 => {
                l4.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // verification tag
                l4.extend_from_slice(&[0, 0, 0, 0]); // CRC32c
            }
            _ => {}
        }
        l4.extend_from_slice(&self.payload);
        let csum_at = match self.proto {
            6 => Some(16),
            17 => Some(6),
            _ => None,
        };
        if let Some(at) = csum_at {
            if !(self.proto == 17 && self.udp_no_checksum) {
                let mut c = !fold(
                    pseudo_sum(&self.src.ip(), &self.dst.ip(), self.proto, l4.len()) + sum(&l4),
                );
                if c == 0 && self.proto == 17 {
                    c = 0xffff;
                }
                l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
        } else if self.proto == 132 {
            let crc = crc32c(&l4);
            l4[8..12].copy_from_slice(&crc.to_le_bytes());
        }
        l4
    }

    pub fn build(&self) -> Vec<u8> {
        let l4 = self.l4();
        let mut f = Vec::new();
        f.extend_from_slice(&self.eth_dst);
        f.extend_from_slice(&self.eth_src);
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&ETH_P_IP.to_be_bytes());
                let mut ip = vec![0x45, 0];
                ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&[0x12, 0x34, 0x40, 0]); // id, DF
                ip.push(self.ttl);
                ip.push(self.proto);
                ip.extend_from_slice(&[0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                let c = !fold(sum(&ip));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                f.push(self.proto);
                f.push(self.ttl);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => panic!("test frame mixes address families"),
        }
        f.extend_from_slice(&l4);
        f
    }
}

/// A frame as parsed back from the program's output, with checksums verified from scratch.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: u8,
    pub ttl: u8,
    /// IPv4 header checksum verifies (always true for IPv6).
    pub ip_csum_ok: bool,
    /// TCP/UDP checksum verifies over the pseudo-header (SCTP: CRC32c verifies).
    pub l4_csum_ok: bool,
    /// The raw checksum field of the transport header (UDP: 0 means none).
    pub l4_csum: u16,
    pub payload: Vec<u8>,
}

pub fn parse(f: &[u8]) -> Parsed {
    let mut eth_dst = [0; 6];
    let mut eth_src = [0; 6];
    eth_dst.copy_from_slice(&f[0..6]);
    eth_src.copy_from_slice(&f[6..12]);
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let (src_ip, dst_ip, proto, ttl, ip_csum_ok, l4): (IpAddr, IpAddr, u8, u8, bool, &[u8]) =
        match ethertype {
            ETH_P_IP => {
                let ip = &f[14..34];
                let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
                let s: [u8; 4] = ip[12..16].try_into().unwrap();
                let d: [u8; 4] = ip[16..20].try_into().unwrap();
                (
                    s.into(),
                    d.into(),
                    ip[9],
                    ip[8],
                    fold(sum(ip)) == 0xffff,
                    &f[34..14 + tot],
                )
            }
            ETH_P_IPV6 => {
                let ip = &f[14..54];
                let len = u16::from_be_bytes([ip[4], ip[5]]) as usize;
                let s: [u8; 16] = ip[8..24].try_into().unwrap();
                let d: [u8; 16] = ip[24..40].try_into().unwrap();
                (s.into(), d.into(), ip[6], ip[7], true, &f[54..54 + len])
            }
            other => panic!("not an IP frame: ethertype {other:#x}"),
        };
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    let (l4_csum, l4_csum_ok, hdr) = match proto {
        6 => (
            u16::from_be_bytes([l4[16], l4[17]]),
            fold(pseudo_sum(&src_ip, &dst_ip, 6, l4.len()) + sum(l4)) == 0xffff,
            20,
        ),
        17 => {
            let c = u16::from_be_bytes([l4[6], l4[7]]);
            let ok = (c == 0 && src_ip.is_ipv4())
                || fold(pseudo_sum(&src_ip, &dst_ip, 17, l4.len()) + sum(l4)) == 0xffff;
            (c, ok, 8)
        }
        132 => {
            let got = u32::from_le_bytes(l4[8..12].try_into().unwrap());
            let mut copy = l4.to_vec();
            copy[8..12].fill(0);
            (0, crc32c(&copy) == got, 12)
        }
        _ => (0, true, 4),
    };
    Parsed {
        eth_dst,
        eth_src,
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        proto,
        ttl,
        ip_csum_ok,
        l4_csum_ok,
        l4_csum,
        payload: l4[hdr..].to_vec(),
    }
}

/// One's-complement sum of big-endian 16-bit words (odd length padded with zero).
pub fn sum(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64)
        .sum()
}

pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn pseudo_sum(src: &IpAddr, dst: &IpAddr, proto: u8, len: usize) -> u64 {
    let addrs = |a: &IpAddr| match a {
        IpAddr::V4(a) => sum(&a.octets()),
        IpAddr::V6(a) => sum(&a.octets()),
    };
    addrs(src) + addrs(dst) + proto as u64 + len as u64
}

/// CRC32c (Castagnoli), bitwise: the SCTP checksum (RFC 9260 appendix A).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
