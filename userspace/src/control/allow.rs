//! Per-VIP source allow lists (Cilium's `loadBalancerSourceRanges`): `vip add/change --allow
//! PREFIX`. The XDP program drops a packet for a VIP with a list (`VIP_F_ALLOW_LIST`) whose
//! source is in none of its prefixes (`RSPLB_ALLOW`, an LPM trie keyed by VIP slot and prefix).
//!
//! This module holds the prefixes as the control plane sees them (parsing, checks); the core
//! ([`crate::control_core`]) orders their writes around the VIP's flag, and the map itself is
//! written by [`crate::maps::Maps`].

use std::{fmt, net::IpAddr, str::FromStr};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// A source prefix: an address and a prefix length, with no bits set beyond the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    fn max_len(addr: IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    /// The address with every bit beyond `len` cleared.
    fn masked(addr: IpAddr, len: u8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::from((u32::from(a) & mask).to_be_bytes())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::from((u128::from(a) & mask).to_be_bytes())
            }
        }
    }
}

impl FromStr for Prefix {
    type Err = String;

    /// `ADDR/LEN`, or a bare address (one host).
    fn from_str(s: &str) -> Result<Prefix, String> {
        if s.contains(',') {
            return Err(format!(
                "`{s}`: one prefix per --allow (repeat --allow for more)"
            ));
        }
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| {
            format!("`{s}` is not an address prefix (ADDR/LEN, e.g. 198.18.0.0/16 or fd00::/8)")
        })?;
        let max = Prefix::max_len(addr);
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "`{s}`: the prefix length of an {} prefix is 0..={max}",
                        if addr.is_ipv4() { "IPv4" } else { "IPv6" }
                    ));
                }
            },
        };
        let masked = Prefix::masked(addr, len);
        if masked != addr {
            return Err(format!(
                "`{s}` has bits set beyond its prefix length (did you mean {masked}/{len}?)"
            ));
        }
        Ok(Prefix { addr, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl TryFrom<String> for Prefix {
    type Error = String;
    fn try_from(s: String) -> Result<Prefix, String> {
        s.parse()
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.to_string()
    }
}

/// Refuses a list a VIP at `vip_addr` could not use: a prefix of the other address family
/// (the VIP sees sources of its own family only, so such a prefix would allow nobody).
pub fn check(vip_addr: IpAddr, vip: &str, list: &[Prefix]) -> Result<()> {
    if let Some(p) = list.iter().find(|p| p.addr.is_ipv4() != vip_addr.is_ipv4()) {
        let fam = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        bail!(
            "VIP {vip} is {} and --allow {p} is {}: a VIP only receives {} sources",
            fam(vip_addr),
            fam(p.addr),
            fam(vip_addr)
        );
    }
    if list.len() > rsplb_common::ALLOW_CAPACITY as usize {
        bail!(
            "{} --allow prefixes: at most {} in all",
            list.len(),
            rsplb_common::ALLOW_CAPACITY
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_print_canonically() {
        for (s, shown) in [
            ("198.18.0.0/16", "198.18.0.0/16"),
            ("fd00::/8", "fd00::/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("198.18.5.1", "198.18.5.1/32"),
            ("fd00::1", "fd00::1/128"),
        ] {
            assert_eq!(s.parse::<Prefix>().unwrap().to_string(), shown);
        }
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_reason() {
        let err = |s: &str| s.parse::<Prefix>().unwrap_err();
        assert!(
            err("198.18.0.0/33").contains("0..=32"),
            "{}",
            err("198.18.0.0/33")
        );
        assert!(err("fd00::/129").contains("0..=128"));
        assert!(err("198.18.0.0/x").contains("0..=32"));
        assert!(err("198.18.1.0/16").contains("did you mean 198.18.0.0/16?"));
        assert!(err("fd01::/8").contains("did you mean fd00::/8?"));
        assert!(err("web.example/8").contains("not an address prefix"));
        assert!(err("").contains("not an address prefix"));
    }

    #[test]
    fn a_prefix_of_the_other_family_than_the_vip_is_refused() {
        let v4: IpAddr = "198.18.0.100".parse().unwrap();
        let list = [
            "198.18.0.0/16".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ];
        let e = check(v4, "198.18.0.100:80/tcp", &list).unwrap_err();
        assert!(
            e.to_string()
                .contains("is IPv4 and --allow fd00::/8 is IPv6"),
            "{e}"
        );
        check(v4, "198.18.0.100:80/tcp", &list[..1]).unwrap();
    }
}
