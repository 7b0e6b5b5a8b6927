//! Parsing and printing of the command line's domain values: VIPs (`ADDR:PORT/PROTO`), element
//! addresses (`ADDR[:PORT]`), pool handles, modes, VIP hashes, and their conversion to map keys.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use rsplb_common::{
    FAMILY_V4, FAMILY_V6, MODE_DSR, MODE_NAT, PROTO_SCTP, PROTO_TCP, PROTO_UDP, VipKey,
};
use serde::{Deserialize, Serialize};

/// Why a command-line value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "`{0}` is not a VIP: expected ADDR:PORT/PROTO, e.g. 198.18.0.100:80/tcp or [fd00::100]:53/udp"
    )]
    VipSyntax(String),
    #[error("unknown protocol `{0}`: expected tcp, udp or sctp")]
    UnknownProtocol(String),
    #[error("`{0}` is not an IP address")]
    Address(String),
    #[error("`{0}` is not a port: expected 1..=65535")]
    Port(String),
    #[error(
        "`{0}` is not an element address: expected ADDR or ADDR:PORT, IPv6 in brackets with a port"
    )]
    ElementSyntax(String),
    #[error("pool handle `{0}` must be 1..=32 bytes long")]
    PoolHandleLength(String),
    #[error("unknown mode `{0}`: expected dsr or nat")]
    Mode(String),
    #[error(
        "unknown hash `{0}`: expected flow (the 5-tuple: each connection on its own) or client (the client's address: all its connections to one element)"
    )]
    Hash(String),
    #[error("`{0}` is not a weight: expected 1..=65535")]
    Weight(String),
}

/// Transport protocol of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
            Protocol::Sctp => PROTO_SCTP,
        }
    }
}

impl FromStr for Protocol {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(ParseError::UnknownProtocol(s.to_string())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

/// Forwarding mode of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Direct server return: only the Ethernet header is rewritten.
    #[default]
    Dsr,
    /// Full NAT: destination to the element, source to the SNAT address.
    Nat,
}

impl Mode {
    pub fn code(self) -> u8 {
        match self {
            Mode::Dsr => MODE_DSR,
            Mode::Nat => MODE_NAT,
        }
    }
}

impl FromStr for Mode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "dsr" => Ok(Mode::Dsr),
            "nat" => Ok(Mode::Nat),
            _ => Err(ParseError::Mode(s.to_string())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Dsr => "dsr",
            Mode::Nat => "nat",
        })
    }
}

/// How a VIP places new flows in its Maglev table (`rsplb vip add --hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VipHash {
    /// By the 5-tuple ([`rsplb_common::flow_hash`]): each connection is placed on its own.
    #[default]
    Flow,
    /// By the client's address alone ([`rsplb_common::client_hash`], `VIP_F_CLIENT_HASH`):
    /// every connection of one client goes to the same element while the table is unchanged.
    Client,
}

impl VipHash {
    pub fn is_flow(&self) -> bool {
        *self == VipHash::Flow
    }

    /// The `VipInfo::flags` bit.
    pub fn flags(self) -> u8 {
        match self {
            VipHash::Flow => 0,
            VipHash::Client => rsplb_common::VIP_F_CLIENT_HASH,
        }
    }

    /// The hash from a VIP entry's flags.
    pub fn from_flags(flags: u8) -> VipHash {
        if flags & rsplb_common::VIP_F_CLIENT_HASH != 0 {
            VipHash::Client
        } else {
            VipHash::Flow
        }
    }
}

impl FromStr for VipHash {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "flow" => Ok(VipHash::Flow),
            "client" => Ok(VipHash::Client),
            _ => Err(ParseError::Hash(s.to_string())),
        }
    }
}

impl fmt::Display for VipHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VipHash::Flow => "flow",
            VipHash::Client => "client",
        })
    }
}

fn parse_port(s: &str) -> Result<u16, ParseError> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(ParseError::Port(s.to_string())),
    }
}

/// Splits `ADDR:PORT` / `[V6]:PORT` into address and optional port text.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if after.is_empty() {
            return Some((host, None));
        }
        return Some((host, Some(after.strip_prefix(':')?)));
    }
    match s.matches(':').count() {
        0 => Some((s, None)),
        1 => {
            let (h, p) = s.split_once(':')?;
            Some((h, Some(p)))
        }
        // A bare IPv6 address without brackets: no port.
        _ => Some((s, None)),
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, ParseError> {
    s.parse::<IpAddr>()
        .map_err(|_| ParseError::Address(s.to_string()))
}

/// A virtual service: address, port and protocol (`198.18.0.100:80/tcp`, `[fd00::100]:53/udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    pub addr: IpAddr,
    pub port: u16,
    pub proto: Protocol,
}

impl FromStr for Vip {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (hostport, proto) = s
            .rsplit_once('/')
            .ok_or_else(|| ParseError::VipSyntax(s.to_string()))?;
        let proto = proto.parse()?;
        let (host, port) =
            split_host_port(hostport).ok_or_else(|| ParseError::VipSyntax(s.to_string()))?;
        let port = port.ok_or_else(|| ParseError::VipSyntax(s.to_string()))?;
        if host.contains(':') && !hostport.starts_with('[') {
            return Err(ParseError::VipSyntax(s.to_string()));
        }
        Ok(Vip {
            addr: parse_ip(host)?,
            port: parse_port(port)?,
            proto,
        })
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.proto),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.proto),
        }
    }
}

impl Vip {
    pub fn key(&self) -> VipKey {
        VipKey {
            addr: addr_words(self.addr),
            port: self.port.to_be(),
            proto: self.proto.number(),
            family: family(self.addr),
        }
    }
}

/// A pool element's transport address; port `None` means "the VIP's port".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElementAddr {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl FromStr for ElementAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (host, port) =
            split_host_port(s).ok_or_else(|| ParseError::ElementSyntax(s.to_string()))?;
        let addr = parse_ip(host)?;
        let port = port.map(parse_port).transpose()?;
        Ok(ElementAddr { addr, port })
    }
}

impl fmt::Display for ElementAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V4(a), Some(p)) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

/// An RSerPool pool handle: 1..=32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolHandle(String);

impl PoolHandle {
    pub const MAX_LEN: usize = 32;
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PoolHandle {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(ParseError::PoolHandleLength(s.to_string()));
        }
        Ok(PoolHandle(s.to_string()))
    }
}

impl fmt::Display for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Element weight, 1..=65535.
pub fn parse_weight(s: &str) -> Result<u16, ParseError> {
    match s.parse::<u16>() {
        Ok(w) if w != 0 => Ok(w),
        _ => Err(ParseError::Weight(s.to_string())),
    }
}

pub fn family(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => FAMILY_V4,
        IpAddr::V6(_) => FAMILY_V6,
    }
}

/// Address as the maps store it: network-order words, IPv4 in word 0.
pub fn addr_words(addr: IpAddr) -> [u32; 4] {
    let mut words = [0u32; 4];
    match addr {
        IpAddr::V4(a) => words[0] = u32::from_ne_bytes(a.octets()),
        IpAddr::V6(a) => {
            for (i, chunk) in a.octets().chunks_exact(4).enumerate() {
                words[i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
        }
    }
    words
}

/// Inverse of [`addr_words`].
pub fn words_addr(words: [u32; 4], family: u8) -> IpAddr {
    if family == FAMILY_V6 {
        let mut b = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(words[0].to_ne_bytes()))
    }
}

/// `02:00:5e:...` formatting of a MAC address.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `MIN-MAX` (inclusive, host order) for the NAT source port range.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("`{s}` is not a port range: expected MIN-MAX, e.g. 20000-60000"))?;
    let a = parse_port(a).map_err(|e| e.to_string())?;
    let b = parse_port(b).map_err(|e| e.to_string())?;
    if a > b {
        return Err(format!("port range `{s}`: MIN is larger than MAX"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_parse_and_print_back() {
        for s in [
            "198.18.0.100:80/tcp",
            "[fd00::100]:53/udp",
            "198.18.0.1:9/sctp",
        ] {
            let v: Vip = s.parse().unwrap();
            assert_eq!(v.to_string(), s);
        }
        let v: Vip = "198.18.0.100:80/TCP".parse().unwrap();
        assert_eq!(v.proto, Protocol::Tcp);
        assert_eq!(v.port, 80);
    }

    #[test]
    fn bad_vips_are_refused_with_the_reason() {
        assert!(matches!(
            "198.18.0.100:80/icmp".parse::<Vip>(),
            Err(ParseError::UnknownProtocol(_))
        ));
        assert!(matches!(
            "198.18.0.100:0/tcp".parse::<Vip>(),
            Err(ParseError::Port(_))
        ));
        assert!(matches!(
            "198.18.0.100:65536/tcp".parse::<Vip>(),
            Err(ParseError::Port(_))
        ));
        assert!(matches!(
            "198.18.0.100/tcp".parse::<Vip>(),
            Err(ParseError::VipSyntax(_))
        ));
        assert!(matches!(
            "198.18.0.100:80".parse::<Vip>(),
            Err(ParseError::VipSyntax(_))
        ));
        assert!(matches!(
            "fd00::1:80/tcp".parse::<Vip>(),
            Err(ParseError::VipSyntax(_))
        ));
        assert!(matches!(
            "300.1.1.1:80/tcp".parse::<Vip>(),
            Err(ParseError::Address(_))
        ));
    }

    #[test]
    fn element_addresses_with_and_without_port() {
        let e: ElementAddr = "198.18.1.2".parse().unwrap();
        assert_eq!(e.port, None);
        let e: ElementAddr = "198.18.1.2:8080".parse().unwrap();
        assert_eq!(e.port, Some(8080));
        assert_eq!(e.to_string(), "198.18.1.2:8080");
        let e: ElementAddr = "fd00::2".parse().unwrap();
        assert_eq!(e.port, None);
        let e: ElementAddr = "[fd00::2]:53".parse().unwrap();
        assert_eq!(e.to_string(), "[fd00::2]:53");
        assert!("198.18.1.2:0".parse::<ElementAddr>().is_err());
        assert!("[fd00::2]x".parse::<ElementAddr>().is_err());
    }

    #[test]
    fn pool_handles_are_1_to_32_bytes() {
        assert!("".parse::<PoolHandle>().is_err());
        assert!("a".repeat(32).parse::<PoolHandle>().is_ok());
        assert!("a".repeat(33).parse::<PoolHandle>().is_err());
    }

    #[test]
    fn weights_are_1_to_65535() {
        assert_eq!(parse_weight("1"), Ok(1));
        assert_eq!(parse_weight("65535"), Ok(65535));
        assert!(parse_weight("0").is_err());
        assert!(parse_weight("65536").is_err());
        assert!(parse_weight("-1").is_err());
    }

    #[test]
    fn keys_are_in_network_order() {
        let v: Vip = "198.18.0.100:80/tcp".parse().unwrap();
        let k = v.key();
        assert_eq!(k.addr[0].to_ne_bytes(), [198, 18, 0, 100]);
        assert_eq!(k.addr[1..], [0, 0, 0]);
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!(k.family, FAMILY_V4);
        let a: IpAddr = "fd00::1:2".parse().unwrap();
        assert_eq!(words_addr(addr_words(a), FAMILY_V6), a);
        let a: IpAddr = "198.18.3.4".parse().unwrap();
        assert_eq!(words_addr(addr_words(a), FAMILY_V4), a);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("20000-60000"), Ok((20000, 60000)));
        assert!(parse_port_range("60000-20000").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("10").is_err());
    }
}
