//! ASAP Server Announces over UDP: to a multicast group on an interface of the operator's choice
//! and to static unicast targets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::config::AnnounceConfig;

/// Where announces go and the sockets that send them.
pub struct Announcer {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    destinations: Vec<SocketAddr>,
}

impl Announcer {
    /// Sockets for every destination family. `source_port` is the local port to send from
    /// (the ASAP port when announces carry no transport, so that receivers that use the source
    /// address find the registrar; 0 = any).
    pub fn new(cfg: &AnnounceConfig, source_port: u16) -> io::Result<Self> {
        let mut destinations: Vec<SocketAddr> = cfg.multicast_group.into_iter().collect();
        destinations.extend(cfg.targets.iter().copied());
        let need_v4 = destinations.iter().any(SocketAddr::is_ipv4);
        let need_v6 = destinations.iter().any(SocketAddr::is_ipv6);
        let v4 = need_v4
            .then(|| {
                let ip = IpAddr::V4(cfg.interface.unwrap_or(Ipv4Addr::UNSPECIFIED));
                let s = socket(ip, source_port)?;
                s.set_multicast_ttl_v4(cfg.ttl)?;
                s.set_multicast_loop_v4(true)?;
                if let Some(iface) = cfg.interface {
                    s.set_multicast_if_v4(&iface)?;
                }
                UdpSocket::from_std(s.into())
            })
            .transpose()?;
        let v6 = need_v6
            .then(|| {
                let s = socket(IpAddr::V6(Ipv6Addr::UNSPECIFIED), source_port)?;
                s.set_multicast_hops_v6(cfg.ttl)?;
                s.set_multicast_loop_v6(true)?;
                UdpSocket::from_std(s.into())
            })
            .transpose()?;
        Ok(Self {
            v4,
            v6,
            destinations,
        })
    }

    /// Send one announce to every destination without waiting; failures (including a full
    /// socket buffer) are logged, never fatal: a missing route to the group must not stop the
    /// registrar, and the next announce follows within a second.
    pub fn try_send(&self, bytes: &[u8]) {
        for dest in &self.destinations {
            let sock = if dest.is_ipv4() { &self.v4 } else { &self.v6 };
            if let Some(sock) = sock
                && let Err(e) = sock.try_send_to(bytes, *dest)
            {
                log::debug!("sending the server announce to {dest}: {e}");
            }
        }
    }
}

fn socket(ip: IpAddr, port: u16) -> io::Result<Socket> {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if ip.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    let bind = SocketAddr::new(ip, port);
    if let Err(e) = s.bind(&bind.into()) {
        if port == 0 {
            return Err(e);
        }
        log::warn!("binding the announce socket to {bind}: {e}; sending from any port");
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    Ok(s)
}
