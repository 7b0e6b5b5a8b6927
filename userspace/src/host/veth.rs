//! What a veth needs for XDP_TX and XDP_REDIRECT to work, checked at attach.
//!
//! Native XDP on a veth sends frames into the peer's NAPI, which exists only while the peer has
//! an XDP program of its own (XDP_PASS is enough; GRO on the peer was seen to count frames as
//! transmitted that never arrived, on kernel 6.18: integration/tests/xdp_tx_napi.rs). And a
//! veth hands its peer packets whose checksum is still to be computed (CHECKSUM_PARTIAL), which
//! XDP forwards with a wrong checksum: the veths sending to this one need `tx off`. Without
//! either, every connection fails while `rsplb stats` counts packets as transmitted.

use std::{fs, os::fd::AsRawFd as _, path::Path};

use crate::nexthop::Netlink;

/// What the peer of a veth looks like (from its own namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCheck {
    pub name: String,
    /// `ip netns` name of the peer's namespace, when it is not this one.
    pub netns: Option<String>,
    pub has_xdp: bool,
    /// Transmit checksum offload on the peer (`None`: unknown).
    pub tx_csum: Option<bool>,
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `ethtool -k NAME`'s tx-checksumming, in the calling thread's network namespace.
fn tx_csum(name: &str) -> Option<bool> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")
        .or_else(|_| std::net::UdpSocket::bind("[::]:0"))
        .ok()?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GTXCSUM,
        data: 0,
    };
    // SAFETY: an ifreq (name + pointer) for SIOCETHTOOL, pointing at a value we own.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    (rc == 0).then_some(value.data != 0)
}

/// The peer `peer` of a veth, looked at from the namespace it lives in (the current one).
fn check_here(peer: u32) -> Option<PeerCheck> {
    let mut nl = Netlink::new().ok()?;
    let link = nl.link_summary(peer).ok()?;
    if !link.veth {
        return None;
    }
    Some(PeerCheck {
        has_xdp: nl.xdp_prog_id(peer).ok().flatten().is_some(),
        tx_csum: tx_csum(&link.name),
        name: link.name,
        netns: None,
    })
}

/// The peer of `ifindex` if it is a veth whose peer can be found (in this namespace or in one
/// of the named namespaces under /run/netns); `None` for anything else.
pub fn check_peer(ifindex: u32) -> Option<PeerCheck> {
    let mut nl = Netlink::new().ok()?;
    let me = nl.link_summary(ifindex).ok()?;
    if !me.veth {
        return None;
    }
    let peer = me.link?;
    let Some(nsid) = me.link_netnsid else {
        return check_here(peer);
    };
    // The peer's namespace is the named one to which this namespace gives the peer's nsid.
    let entries = fs::read_dir("/run/netns").ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file) = fs::File::open(&path) else {
            continue;
        };
        if nl.nsid_of(file.as_raw_fd()).ok().flatten() != Some(nsid) {
            continue;
        }
        let mut c = in_netns(&path, move || check_here(peer)).flatten()?;
        c.netns = Some(entry.file_name().to_string_lossy().into_owned());
        return Some(c);
    }
    None
}

/// Runs `f` on a thread that entered the network namespace at `path`.
fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let file = fs::File::open(path).ok()?;
    std::thread::spawn(move || {
        // SAFETY: setns on a namespace fd we own, for this thread only.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        Some(f())
    })
    .join()
    .ok()
    .flatten()
}

/// The warning for a veth whose peer would lose rsplb's frames, with the fix; `None` if fine
/// (or not a veth).
pub fn warning(iface: &str, ifindex: u32) -> Option<String> {
    let p = check_peer(ifindex)?;
    let ns = p
        .netns
        .as_ref()
        .map(|n| format!("ip -n {n} "))
        .unwrap_or_default();
    let mut fixes = Vec::new();
    if !p.has_xdp {
        fixes.push(format!(
            "its peer {} has no XDP program, so the frames rsplb sends back out (XDP_TX, XDP_REDIRECT) are dropped: attach one to the peer (an XDP_PASS program is enough: `{ns}link set dev {} xdpdrv obj PASS.o sec xdp`)",
            p.name, p.name
        ));
    }
    if p.tx_csum == Some(true) {
        let ethtool = match &p.netns {
            Some(n) => format!("ip netns exec {n} ethtool -K {} tx off", p.name),
            None => format!("ethtool -K {} tx off", p.name),
        };
        fixes.push(format!(
            "checksum offload is on at its peer {}, so frames it sends arrive without a complete checksum and are dropped after forwarding: turn it off (`{ethtool}`, and on every veth whose packets reach {iface})",
            p.name
        ));
    }
    if fixes.is_empty() {
        return None;
    }
    Some(format!(
        "{iface} is a veth and {}; until then connections through it fail although `rsplb stats` counts their packets as transmitted",
        fixes.join("; and ")
    ))
}
