//! Registrar discovery and the registrar hunt (RFC 5352 3.2, 4.2; rsplib `registrartable.c`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::message::AsapMessage;
use crate::types::{RegistrarId, TransportAddress};
use crate::wire;

use super::{AnnounceConfig, AsapChannel, AsapTransport, ClientConfig, ClientError, nonzero};

/// An open ASAP connection to one registrar.
#[derive(Debug)]
pub struct RegistrarConnection {
    /// Plain TCP, TLS over TCP when [`ClientConfig::tls`] is set, or SCTP.
    pub stream: AsapChannel,
    pub addr: SocketAddr,
}

#[derive(Clone, Copy, Debug)]
struct Announced {
    addr: SocketAddr,
    id: RegistrarId,
    heard: Instant,
}

#[derive(Default)]
struct Heard {
    registrars: Mutex<Vec<Announced>>,
    notify: Notify,
}

/// The registrars a client knows: the static ones and those heard in announces (each forgotten
/// [`ClientConfig::announce_timeout`] after its last announce).
pub struct RegistrarTable {
    config: ClientConfig,
    heard: Arc<Heard>,
    listener: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RegistrarTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarTable")
            .field("static", &self.config.registrars)
            .field("announce", &self.config.announce)
            .finish()
    }
}

impl Drop for RegistrarTable {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
    }
}

impl RegistrarTable {
    /// Opens the announce socket when announces are configured (needs a tokio runtime then).
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        if config.registrars.is_empty() && config.announce.is_none() {
            return Err(ClientError::Config(
                "no registrar given and announce listening disabled".into(),
            ));
        }
        let heard = Arc::new(Heard::default());
        let listener = match &config.announce {
            Some(announce) => {
                let socket = announce_socket(announce)?;
                Some(tokio::spawn(listen(
                    socket,
                    heard.clone(),
                    config.transport,
                )))
            }
            None => None,
        };
        Ok(Self {
            config,
            heard,
            listener,
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Registrars heard in announces that have not timed out, most recently heard first.
    pub fn announced(&self) -> Vec<(SocketAddr, RegistrarId)> {
        let cutoff = Instant::now().checked_sub(self.config.announce_timeout);
        let mut list = self
            .heard
            .registrars
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(cutoff) = cutoff {
            list.retain(|a| a.heard >= cutoff);
        }
        let mut out: Vec<Announced> = list.clone();
        out.sort_by_key(|a| std::cmp::Reverse(a.heard));
        out.into_iter().map(|a| (a.addr, a.id)).collect()
    }

    /// Candidates in hunt order: static registrars, then announced ones; `last_lost` (the
    /// registrar just lost) goes last, so another one is preferred but it is not excluded.
    pub fn candidates(&self, last_lost: Option<SocketAddr>) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        let all = self
            .config
            .registrars
            .iter()
            .copied()
            .chain(self.announced().into_iter().map(|(a, _)| a));
        for addr in all {
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        if let Some(lost) = last_lost
            && let Some(pos) = out.iter().position(|a| *a == lost)
        {
            let a = out.remove(pos);
            out.push(a);
        }
        out
    }

    /// Hunts for a registrar for at most [`ClientConfig::hunt_timeout`]: connects to the
    /// candidates, [`ClientConfig::parallel_connects`] at a time, and returns the first
    /// connection that succeeds. With no candidate yet, waits for an announce.
    pub async fn hunt(
        &self,
        last_lost: Option<SocketAddr>,
    ) -> Result<RegistrarConnection, ClientError> {
        let deadline = Instant::now() + self.config.hunt_timeout;
        let mut delay = self.config.hunt_retry_delay;
        let mut tried = Vec::new();
        loop {
            let notified = self.heard.notify.notified();
            let candidates = self.candidates(last_lost);
            if !candidates.is_empty() {
                match self.connect_any(&candidates).await {
                    Ok(conn) => return Ok(conn),
                    Err(t) => tried = t,
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::NoRegistrar { tried });
            }
            // Wait for the retry delay, or less when a new registrar is announced.
            let wake = (now + delay).min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = notified => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Connects to `candidates` in order, at most `parallel_connects` at once; the first that
    /// succeeds wins and the others are abandoned. On failure, what went wrong with each.
    pub async fn connect_any(
        &self,
        candidates: &[SocketAddr],
    ) -> Result<RegistrarConnection, Vec<(SocketAddr, String)>> {
        let timeout = nonzero(self.config.connect_timeout);
        let parallel = self.config.parallel_connects.max(1);
        let mut pending = candidates.iter().copied();
        let mut running = JoinSet::new();
        let mut failures = Vec::new();
        let transport = self.config.transport;
        let spawn = |running: &mut JoinSet<_>, addr: SocketAddr| {
            let tls = self.config.tls.clone();
            running.spawn(async move {
                let connect = AsapChannel::connect(transport, addr, tls.as_ref());
                let result = match tokio::time::timeout(timeout, connect).await {
                    Ok(Ok(stream)) => Ok(stream),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("connect timed out after {timeout:?}")),
                };
                (addr, result)
            });
        };
        for addr in pending.by_ref().take(parallel) {
            spawn(&mut running, addr);
        }
        while let Some(joined) = running.join_next().await {
            let Ok((addr, result)) = joined else { continue };
            match result {
                Ok(stream) => {
                    log::debug!("connected to registrar {addr} over {transport}");
                    return Ok(RegistrarConnection { stream, addr });
                }
                Err(e) => {
                    log::debug!("registrar {addr}: {e}");
                    failures.push((addr, e));
                    if let Some(next) = pending.next() {
                        spawn(&mut running, next);
                    }
                }
            }
        }
        Err(failures)
    }
}

fn announce_socket(config: &AnnounceConfig) -> Result<UdpSocket, ClientError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let group = *config.group.ip();
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Several clients (sidecars, a registrar) on one host all listen on the announce port.
    socket.set_reuse_address(true)?;
    // Bound to the group address itself, so only datagrams sent to the group arrive (or, for a
    // unicast address, only those sent to it).
    socket.bind(&SocketAddr::new(IpAddr::V4(group), config.group.port()).into())?;
    if group.is_multicast() {
        socket.join_multicast_v4(&group, &config.interface)?;
    }
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket.into())?)
}

async fn listen(socket: UdpSocket, heard: Arc<Heard>, transport: AsapTransport) {
    let mut buf = vec![0u8; wire::MAX_MESSAGE_LEN];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                log::warn!("announce socket: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some((addr, id)) = parse_announce(&buf[..n], from, transport) else {
            continue;
        };
        let mut list = heard.registrars.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match list.iter_mut().find(|a| a.addr == addr) {
            Some(entry) => {
                entry.heard = now;
                entry.id = id;
            }
            None => {
                log::info!("registrar {id} announced at {addr}");
                list.push(Announced {
                    addr,
                    id,
                    heard: now,
                });
            }
        }
        drop(list);
        heard.notify.notify_waiters();
    }
}

/// Where an announce says its registrar takes ASAP connections over `transport`: the first
/// transport parameter of that protocol it carries (with the datagram's source address when the
/// transport's address is unspecified; the first address of a multi-homed SCTP endpoint); an
/// announce without transports means the datagram's source address and port (rsplib's
/// registrars announce only that, and listen on a random port unless told otherwise). An
/// announce that lists transports, none of this protocol, is ignored.
pub(crate) fn parse_announce(
    bytes: &[u8],
    from: SocketAddr,
    transport: AsapTransport,
) -> Option<(SocketAddr, RegistrarId)> {
    let msg = match wire::decode_asap(bytes) {
        Ok(d) => d.message,
        Err(e) => {
            log::debug!("ignoring an announce from {from}: {e}");
            return None;
        }
    };
    let AsapMessage::ServerAnnounce {
        server_id,
        transports,
    } = msg
    else {
        return None;
    };
    if transports.is_empty() {
        return Some((from, server_id));
    }
    let endpoint = |port: u16, addr: IpAddr| {
        let ip = if addr.is_unspecified() {
            from.ip()
        } else {
            addr
        };
        (SocketAddr::new(ip, port), server_id)
    };
    transports.iter().find_map(|t| match (t, transport) {
        (TransportAddress::Tcp { port, addr, .. }, AsapTransport::Tcp) => {
            Some(endpoint(*port, *addr))
        }
        (TransportAddress::Sctp { port, addrs, .. }, AsapTransport::Sctp) => {
            Some(endpoint(*port, *addrs.first()?))
        }
        _ => None,
    })
}
