//! Next-hop resolution over rtnetlink: route (RTM_GETROUTE) -> egress interface and gateway,
//! neighbour (RTM_GETNEIGH) -> MAC, link (RTM_GETLINK) -> the egress interface's own MAC.
//! Runs in the caller's network namespace (the one `--netns` entered).

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, LinkXdp},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_ROUTE};

use crate::state::NextHop;

/// What [`Netlink::link_summary`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSummary {
    pub name: String,
    pub veth: bool,
    /// The peer's ifindex (in its own namespace) for a veth.
    pub link: Option<u32>,
    /// The nsid (in this namespace) of the namespace the peer lives in, when it is another.
    pub link_netnsid: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum NextHopError {
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    #[error("netlink: cannot decode a reply: {0}")]
    Decode(String),
    #[error("netlink: kernel answered error {0}")]
    Kernel(i32),
    #[error("no route to {0}")]
    NoRoute(IpAddr),
    #[error("no MAC address on interface index {0}")]
    NoLinkMac(u32),
}

/// A synchronous rtnetlink client.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn new() -> Result<Netlink, NextHopError> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&NlAddr::new(0, 0))?;
        Ok(Netlink { socket, seq: 0 })
    }

    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NextHopError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let bytes = &data[offset..];
                let len = NetlinkBuffer::new_checked(bytes)
                    .map_err(|e| NextHopError::Decode(e.to_string()))?
                    .length() as usize;
                if len == 0 || len > bytes.len() {
                    return Err(NextHopError::Decode("bad message length".into()));
                }
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..len])
                    .map_err(|e| NextHopError::Decode(e.to_string()))?;
                offset += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump {
                            return Ok(out);
                        }
                    }
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(code) => Err(NextHopError::Kernel(code.get())),
                            None => Ok(out),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    _ => {}
                }
            }
        }
    }

    /// `ip route get ADDR`: egress interface and gateway (None = on link).
    pub fn route_get(&mut self, dst: IpAddr) -> Result<(u32, Option<IpAddr>), NextHopError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match dst {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let replies = match self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_REQUEST) {
            Ok(r) => r,
            Err(NextHopError::Kernel(_)) => return Err(NextHopError::NoRoute(dst)),
            Err(e) => return Err(e),
        };
        for r in replies {
            if let RouteNetlinkMessage::NewRoute(m) = r {
                let mut oif = None;
                let mut gw = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some((*g).into()),
                        RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gw = Some((*g).into()),
                        _ => {}
                    }
                }
                if let Some(oif) = oif {
                    return Ok((oif, gw));
                }
            }
        }
        Err(NextHopError::NoRoute(dst))
    }

    /// MAC of a neighbour when the kernel has a usable entry (reachable, stale, delay, probe,
    /// permanent); None when missing, incomplete or failed.
    pub fn neighbour_mac(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
    ) -> Result<Option<[u8; 6]>, NextHopError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        let replies = self.request(
            RouteNetlinkMessage::GetNeighbour(msg),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        for r in replies {
            let RouteNetlinkMessage::NewNeighbour(m) = r else {
                continue;
            };
            if m.header.ifindex != ifindex {
                continue;
            }
            let usable = matches!(
                m.header.state,
                NeighbourState::Reachable
                    | NeighbourState::Stale
                    | NeighbourState::Delay
                    | NeighbourState::Probe
                    | NeighbourState::Permanent
                    | NeighbourState::Noarp
            );
            let mut dst = None;
            let mut mac = None;
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        dst = Some(IpAddr::from(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        dst = Some(IpAddr::from(*a))
                    }
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        mac = Some([l[0], l[1], l[2], l[3], l[4], l[5]])
                    }
                    _ => {}
                }
            }
            if let Some(mac) = mac.filter(|m| dst == Some(addr) && usable && *m != [0; 6]) {
                return Ok(Some(mac));
            }
        }
        Ok(None)
    }

    /// The interface's own MAC address.
    pub fn link_mac(&mut self, ifindex: u32) -> Result<[u8; 6], NextHopError> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST)?;
        for r in replies {
            if let RouteNetlinkMessage::NewLink(m) = r {
                for a in &m.attributes {
                    if let LinkAttribute::Address(l) = a
                        && l.len() == 6
                    {
                        return Ok([l[0], l[1], l[2], l[3], l[4], l[5]]);
                    }
                }
            }
        }
        Err(NextHopError::NoLinkMac(ifindex))
    }

    /// Id of the XDP program attached to `ifindex` (any mode), None when there is none.
    pub fn xdp_prog_id(&mut self, ifindex: u32) -> Result<Option<u32>, NextHopError> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST)?;
        for r in replies {
            if let RouteNetlinkMessage::NewLink(m) = r {
                for a in &m.attributes {
                    if let LinkAttribute::Xdp(x) = a {
                        for x in x {
                            match x {
                                LinkXdp::ProgId(id)
                                | LinkXdp::DrvProgId(id)
                                | LinkXdp::SkbProgId(id)
                                    if *id != 0 =>
                                {
                                    return Ok(Some(*id));
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// The link `ifindex` as far as the veth checks need it: its name, whether it is a veth,
    /// its peer's ifindex (`IFLA_LINK`) and whether that peer is in another network namespace.
    pub fn link_summary(&mut self, ifindex: u32) -> Result<LinkSummary, NextHopError> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST)?;
        let mut out = LinkSummary::default();
        for r in replies {
            if let RouteNetlinkMessage::NewLink(m) = r {
                for a in &m.attributes {
                    match a {
                        LinkAttribute::IfName(n) => out.name = n.clone(),
                        LinkAttribute::Link(l) => out.link = Some(*l),
                        LinkAttribute::LinkNetNsId(id) => out.link_netnsid = Some(*id),
                        LinkAttribute::LinkInfo(infos) => {
                            out.veth |= infos
                                .iter()
                                .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(out)
    }

    /// The nsid this namespace gives the network namespace open as `fd` (RTM_GETNSID), if any.
    pub fn nsid_of(&mut self, fd: i32) -> Result<Option<i32>, NextHopError> {
        use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(fd as u32));
        let replies = self.request(RouteNetlinkMessage::GetNsId(msg), NLM_F_REQUEST)?;
        for r in replies {
            if let RouteNetlinkMessage::NewNsId(m) = r {
                for a in m.attributes {
                    if let NsidAttribute::Id(id) = a {
                        return Ok((id >= 0).then_some(id));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Whether `ifindex` has an XDP program attached in generic (SKB) mode.
    pub fn xdp_generic(&mut self, ifindex: u32) -> Result<bool, NextHopError> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST)?;
        Ok(replies.iter().any(|r| {
            matches!(r, RouteNetlinkMessage::NewLink(m) if m.attributes.iter().any(|a| {
                matches!(a, LinkAttribute::Xdp(x)
                    if x.iter().any(|x| matches!(x, LinkXdp::SkbProgId(id) if *id != 0)))
            }))
        }))
    }

    /// Resolves the next hop toward `addr`. When the neighbour is unknown, provokes resolution
    /// with one UDP datagram to the discard port (9) and polls until `wait` elapses. An
    /// unresolved neighbour gives a `NextHop` with a zero `dst_mac` (the kernel drops with
    /// DROP_NO_NEXTHOP), not an error: the daemon keeps retrying.
    pub fn resolve(&mut self, addr: IpAddr, wait: Duration) -> Result<NextHop, NextHopError> {
        let (ifindex, gateway) = self.route_get(addr)?;
        let src_mac = self.link_mac(ifindex)?;
        let neighbour = gateway.unwrap_or(addr);
        let deadline = Instant::now() + wait;
        let mut poked = false;
        loop {
            if let Some(mac) = self.neighbour_mac(ifindex, neighbour)? {
                return Ok(NextHop {
                    ifindex,
                    dst_mac: mac,
                    src_mac,
                    gateway,
                });
            }
            if !poked {
                poke(addr);
                poked = true;
            }
            if Instant::now() >= deadline {
                return Ok(NextHop {
                    ifindex,
                    dst_mac: [0; 6],
                    src_mac,
                    gateway,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Makes the kernel resolve the neighbour toward `addr` by sending it one empty UDP datagram
/// on the discard port. Best effort: failures only mean the next poll finds nothing.
fn poke(addr: IpAddr) {
    let bind = match addr {
        IpAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    if let Ok(s) = UdpSocket::bind(bind) {
        let _ = s.send_to(&[], SocketAddr::new(addr, 9));
    }
}
