//! ENRP's bytes: connections to and from peer registrars (SCTP associations with PPID 12, as
//! rsplib's registrars use, or TCP connections, each message framed by its own length as ASAP
//! over TCP is), and Presence by UDP multicast. The core decides everything;
//! this module only carries [`Action::SendEnrp`](crate::core::Action::SendEnrp) out and feeds
//! what arrives in as [`Event::Enrp`](crate::core::Event::Enrp).
//!
//! A registrar keeps one outgoing connection per peer endpoint, opened on the first message for
//! it and re-opened after it breaks; what it sends to a peer always goes that way, so the peer
//! sees it in order. Connections work both ways: whatever arrives on any of them (opened by
//! either side) goes to the core with the connection it came on, for answers that must go back
//! the same way. Messages for a peer that cannot be reached are dropped (counted): ENRP repairs
//! the difference by its audit once the peer is back.
//!
//! Where the kernel has SCTP, ENRP also runs over SCTP (`enrp.sctp_listen`; by default where
//! TCP listens) on one one-to-many socket, as rsplib's registrars do: every association, the
//! peers' and ours, uses the port peers know (rsplib accepts a Presence only from an
//! association whose peer port is the one the Presence names), and one association joins two
//! registrars both ways. The registrar then names its SCTP endpoint in its Server Information
//! and reaches static peers over SCTP. A peer that names a TCP endpoint is reached over TCP; a
//! registrar without SCTP reaches a peer's SCTP endpoint over TCP at the same address and port
//! (rsplb's registrars listen on both). An association is handled as a connection: answers go
//! back on it, a message with another PPID aborts it (counted), messages on any stream are
//! taken, and one above `limits.max_message_size` aborts it.
//!
//! With TLS (`tls.enrp`, RFC 5355) every connection, accepted or dialled, first completes a
//! handshake in which both registrars present certificates that chain to the configured CA; what
//! arrives on it then carries the peer's identity to the core, which decides whether that
//! identity may peer (`security.identities`). A connection this registrar dialled is also
//! dropped at once when the peer's identity may not peer (with the same check,
//! [`SecurityConfig::authorizes`]), so nothing of the handlespace is pushed to it. Multicast
//! Presence stays unauthenticated.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::config::{EnrpConfig, SecurityConfig};
use crate::core::{EnrpDest, EnrpSource, PeerId};
use crate::sctp::{self, AssocState, Incoming, Notification, SctpEndpoint};
use crate::tls::{MaybeTlsStream, ServerTls};
use crate::types::TransportAddress;
use crate::wire;

/// Messages queued for one connection; beyond this they are dropped (a peer that does not read
/// its ENRP is repaired by the audit later).
const QUEUE: usize = 8_192;
/// How long opening a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A peer connection that takes nothing for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection ids of ENRP start here, apart from ASAP's.
const FIRST_CONN_ID: u64 = 1 << 48;
/// Connection ids of SCTP associations: this plus the association id.
const SCTP_CONN_BASE: u64 = 1 << 56;
/// Most ENRP connections at once (in and out); more are refused at accept. A scope has a few
/// registrars, each with one connection each way to every other.
const MAX_CONNECTIONS: usize = 1_024;

/// What the ENRP transport needs from the registrar: a place to put what arrives.
pub trait EnrpSink: Send + Sync + 'static {
    fn enrp(&self, source: EnrpSource, bytes: &[u8]);
}

/// Counters of the ENRP transport.
#[derive(Debug, Default)]
pub struct EnrpNetStats {
    pub dropped: AtomicU64,
    pub connects_failed: AtomicU64,
    /// Connections refused because [`MAX_CONNECTIONS`] were open.
    pub refused: AtomicU64,
    /// Connections closed for a stalled partial message or for idling.
    pub timed_out: AtomicU64,
    /// SCTP associations aborted for a message with a PPID other than ENRP's (12).
    pub wrong_ppid: AtomicU64,
    /// Peers' SCTP endpoints reached over TCP (this registrar has no SCTP).
    pub tcp_fallbacks: AtomicU64,
    /// SCTP associations aborted because [`MAX_CONNECTIONS`] were open.
    pub sctp_refused: AtomicU64,
}

/// ENRP's sockets and connections.
pub struct EnrpNet {
    listeners: Mutex<Vec<TcpListener>>,
    local: Vec<SocketAddr>,
    /// ENRP over SCTP: the endpoint, and the queue of what goes out on it (one task sends, so
    /// messages keep their order).
    sctp: Option<(Arc<SctpEndpoint>, mpsc::Sender<SctpOut>)>,
    sctp_out: Mutex<Option<mpsc::Receiver<SctpOut>>>,
    mcast: Option<(Arc<UdpSocket>, SocketAddr)>,
    max_message_size: usize,
    /// A message begun but not finished within this long closes its connection (a peer cannot
    /// pin a 64 KiB buffer forever): `connections.partial_message_timeout_ms`.
    partial_timeout: Duration,
    /// A connection that brings nothing for this long is closed (`connections.idle_timeout_ms`);
    /// live peers say Presence several times a second, and the shell opens a new connection
    /// when there is something to send.
    idle_timeout: Duration,
    /// Outgoing connection by peer endpoint (its first address).
    by_endpoint: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    /// Every live connection by id (for answers on the connection a message came on).
    by_conn: Mutex<HashMap<PeerId, mpsc::Sender<Vec<u8>>>>,
    ids: AtomicU64,
    /// Connections being served now.
    live: AtomicU64,
    sink: OnceLock<Weak<dyn EnrpSink>>,
    /// TLS on every connection (`None`: plain TCP).
    tls: Option<ServerTls>,
    /// Who may peer (checked on connections this registrar dials; the core checks the rest).
    security: SecurityConfig,
    pub stats: EnrpNetStats,
}

impl EnrpNet {
    /// Bind the listeners and the multicast socket.
    pub async fn bind(
        config: &EnrpConfig,
        max_message_size: usize,
        connections: &crate::config::ConnectionConfig,
        tls: Option<ServerTls>,
        security: &SecurityConfig,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut listeners = Vec::new();
        let mut local = Vec::new();
        for addr in &config.listen {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for ENRP on TCP {addr}"))?;
            local.push(l.local_addr()?);
            listeners.push(l);
        }
        let sctp = bind_sctp(config, &local, max_message_size, tls.is_some())?;
        let (sctp, sctp_out) = match sctp {
            Some(ep) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                (Some((Arc::new(ep), tx)), Some(rx))
            }
            None => (None, None),
        };
        let mcast = match config.multicast_group {
            Some(group) => Some((
                Arc::new(
                    multicast_socket(group, config.interface)
                        .with_context(|| format!("joining the ENRP multicast group {group}"))?,
                ),
                group,
            )),
            None => None,
        };
        Ok(Self {
            listeners: Mutex::new(listeners),
            local,
            sctp,
            sctp_out: Mutex::new(sctp_out),
            mcast,
            max_message_size,
            partial_timeout: connections.partial_message_timeout(),
            idle_timeout: connections.idle_timeout(),
            by_endpoint: Mutex::new(HashMap::new()),
            by_conn: Mutex::new(HashMap::new()),
            ids: AtomicU64::new(FIRST_CONN_ID),
            live: AtomicU64::new(0),
            sink: OnceLock::new(),
            tls,
            security: security.clone(),
            stats: EnrpNetStats::default(),
        })
    }

    /// Where peers reach this registrar over TCP (ports as bound).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Where peers reach this registrar over SCTP (as bound; empty without SCTP).
    pub fn sctp_addrs(&self) -> Vec<SocketAddr> {
        self.sctp
            .iter()
            .flat_map(|(ep, _)| ep.local_addrs().iter().copied())
            .collect()
    }

    /// Accept connections and multicast datagrams, feeding `sink`, until aborted.
    pub async fn serve(self: Arc<Self>, sink: Weak<dyn EnrpSink>) {
        let _ = self.sink.set(sink);
        let listeners =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        let mut tasks = tokio::task::JoinSet::new();
        for l in listeners {
            let me = self.clone();
            tasks.spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((stream, remote)) => {
                            if me.live.load(Ordering::Relaxed) >= MAX_CONNECTIONS as u64 {
                                let n = me.stats.refused.fetch_add(1, Ordering::Relaxed);
                                if n.is_power_of_two() {
                                    log::warn!(
                                        "ENRP: {MAX_CONNECTIONS} connections open; refusing \
                                         {remote} ({} refused so far)",
                                        n + 1
                                    );
                                }
                                drop(stream);
                                continue;
                            }
                            me.clone().accept_connection(stream, remote)
                        }
                        Err(e) => {
                            log::warn!("accepting an ENRP connection: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
        let sctp_out = lock(&self.sctp_out).take();
        if let (Some((ep, _)), Some(out)) = (&self.sctp, sctp_out) {
            tasks.spawn(self.clone().sctp_receiver(ep.clone()));
            tasks.spawn(self.clone().sctp_sender(ep.clone(), out));
        }
        if let Some((sock, _)) = &self.mcast {
            let me = self.clone();
            let sock = sock.clone();
            tasks.spawn(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    match sock.recv_from(&mut buf).await {
                        Ok((n, from)) => me.deliver(EnrpSource::Datagram { from }, &buf[..n]),
                        Err(e) => {
                            log::debug!("receiving ENRP multicast: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        std::future::pending::<()>().await;
    }

    fn deliver(&self, source: EnrpSource, bytes: &[u8]) {
        if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
            sink.enrp(source, bytes);
        }
    }

    /// Send one message as the core asked (never blocks).
    pub fn send(self: &Arc<Self>, to: EnrpDest, bytes: Vec<u8>) {
        match to {
            EnrpDest::Multicast => {
                if let Some((sock, group)) = &self.mcast
                    && let Err(e) = sock.try_send_to(&bytes, *group)
                {
                    log::debug!("sending ENRP Presence to {group}: {e}");
                }
            }
            EnrpDest::Connection(conn) if conn.0 >= SCTP_CONN_BASE => {
                let assoc = (conn.0 - SCTP_CONN_BASE) as u32 as i32;
                self.sctp_send(SctpOut::Assoc(assoc, bytes));
            }
            EnrpDest::Connection(conn) => {
                let tx = lock(&self.by_conn).get(&conn).cloned();
                if tx.is_none_or(|tx| tx.try_send(bytes).is_err()) {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            EnrpDest::Endpoint(t) => {
                let (addr, sctp) = match &t {
                    TransportAddress::Tcp { port, addr, .. } => {
                        (SocketAddr::new(*addr, *port), false)
                    }
                    TransportAddress::Sctp { port, addrs, .. } if !addrs.is_empty() => {
                        (SocketAddr::new(addrs[0], *port), true)
                    }
                    _ => {
                        log::debug!("ENRP endpoint {t:?} is neither SCTP nor TCP");
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                if sctp {
                    if self.sctp.is_some() {
                        self.sctp_send(SctpOut::To(addr, bytes));
                        return;
                    }
                    self.stats.tcp_fallbacks.fetch_add(1, Ordering::Relaxed);
                }
                let mut map = lock(&self.by_endpoint);
                if let Some(tx) = map.get(&addr) {
                    match tx.try_send(bytes) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(b)) => {
                            map.remove(&addr);
                            self.dial(&mut map, addr, b);
                        }
                    }
                } else {
                    self.dial(&mut map, addr, bytes);
                }
            }
        }
    }

    /// Open a TCP connection to `addr`; `first` goes out first once it is up.
    fn dial(
        self: &Arc<Self>,
        map: &mut HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
        addr: SocketAddr,
        first: Vec<u8>,
    ) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let _ = tx.try_send(first);
        map.insert(addr, tx);
        let me = self.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    log::debug!("ENRP: connecting to {addr}: {e}");
                    me.connect_failed(addr);
                    return;
                }
                Err(_) => {
                    log::debug!("ENRP: connecting to {addr} timed out");
                    me.connect_failed(addr);
                    return;
                }
            };
            let (stream, identity) = match &me.tls {
                None => (MaybeTlsStream::Plain(stream), None),
                Some(tls) => match tls.connect_peer(stream, addr).await {
                    Ok((_, identity))
                        if !me.security.authorizes(
                            rserpool_proto::config::Role::Registrar,
                            addr.ip(),
                            identity.as_deref(),
                            None,
                        ) =>
                    {
                        let who = identity.as_deref().unwrap_or("no identity");
                        tls.log.failed("ENRP", addr, &format!("{who} may not peer"));
                        me.connect_failed(addr);
                        return;
                    }
                    Ok(x) => x,
                    Err(e) => {
                        tls.log.failed("ENRP", addr, &format!("dialling: {e}"));
                        me.connect_failed(addr);
                        return;
                    }
                },
            };
            me.run_connection(stream, addr, identity, Some(rx)).await;
            me.forget_endpoint(addr);
        });
    }

    /// After an outgoing connection ended: the next message for its endpoint dials again.
    fn forget_endpoint(&self, addr: SocketAddr) {
        let mut map = lock(&self.by_endpoint);
        if map.get(&addr).is_some_and(|tx| tx.is_closed()) {
            map.remove(&addr);
        }
    }

    fn connect_failed(&self, addr: SocketAddr) {
        self.stats.connects_failed.fetch_add(1, Ordering::Relaxed);
        lock(&self.by_endpoint).remove(&addr);
    }

    /// Serve a connection a peer opened (after its TLS handshake, with TLS).
    fn accept_connection(self: Arc<Self>, stream: TcpStream, remote: SocketAddr) {
        tokio::spawn(async move {
            let (stream, identity) = match &self.tls {
                None => (MaybeTlsStream::Plain(stream), None),
                Some(tls) => match tls.accept("ENRP", stream, remote).await {
                    Some(x) => x,
                    None => return,
                },
            };
            self.run_connection(stream, remote, identity, None).await
        });
    }

    /// Serve one connection both ways until it breaks.
    async fn run_connection(
        self: &Arc<Self>,
        stream: MaybeTlsStream,
        remote: SocketAddr,
        identity: Option<String>,
        rx: Option<mpsc::Receiver<Vec<u8>>>,
    ) {
        let _ = stream.tcp().set_nodelay(true);
        let outgoing = rx.is_some();
        let (conn, mut rx) = self.open_connection(remote, rx);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let source = EnrpSource::Connection {
            conn,
            remote,
            identity,
        };
        let max = self.max_message_size;
        // Our own outgoing connections carry what we send; peers answer on theirs, so an
        // outgoing connection may rightly receive nothing for long.
        let idle_timeout = if outgoing {
            Duration::MAX
        } else {
            self.idle_timeout
        };
        let partial_timeout = self.partial_timeout;
        let writer = async move {
            while let Some(first) = rx.recv().await {
                let mut batch = first;
                while batch.len() < 64 * 1024 {
                    match rx.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                // The flush matters with TLS: records may wait in the session until then.
                let write = async {
                    wr.write_all(&batch).await?;
                    wr.flush().await
                };
                match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
        };
        let me = self.clone();
        let reader = async move {
            let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
            loop {
                buf.reserve(16 * 1024);
                let limit = if buf.is_empty() {
                    idle_timeout
                } else {
                    partial_timeout
                };
                match tokio::time::timeout(limit, rd.read_buf(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        me.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        log::info!(
                            "ENRP from {remote}: nothing {} for {limit:?}; closing",
                            if buf.is_empty() {
                                "received"
                            } else {
                                "completing the message"
                            }
                        );
                        return;
                    }
                }
                let mut start = 0;
                loop {
                    match wire::frame_length(&buf[start..], max) {
                        Ok(Some(len)) if buf.len() - start >= len => {
                            me.deliver(source.clone(), &buf[start..start + len]);
                            start += len;
                        }
                        Ok(_) => break,
                        Err(e) => {
                            // The stream cannot be delimited any more: the core answers with
                            // an ERROR (it sees the bytes as malformed) and the link goes.
                            log::info!("ENRP from {remote}: {e}; closing the connection");
                            me.deliver(source.clone(), &buf[start..]);
                            return;
                        }
                    }
                }
                buf.drain(..start);
            }
        };
        // A peer may close its sending side of a connection we opened (it answers on its
        // own): what we still have to say to it goes on until writing fails.
        let reader = async move {
            reader.await;
            if outgoing {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = writer => {}
            _ = reader => {}
        }
        self.close_connection(conn);
    }

    /// A new connection's id and the queue of what goes out on it: the outgoing queue of a
    /// connection this registrar dialled (`rx`), so answers on it keep the order of everything
    /// sent over it, else a queue of its own.
    fn open_connection(
        &self,
        remote: SocketAddr,
        rx: Option<mpsc::Receiver<Vec<u8>>>,
    ) -> (PeerId, mpsc::Receiver<Vec<u8>>) {
        let conn = PeerId(self.ids.fetch_add(1, Ordering::Relaxed));
        self.live.fetch_add(1, Ordering::Relaxed);
        let (rx, reply_tx) = match rx {
            Some(rx) => {
                let tx = lock(&self.by_endpoint).get(&remote).cloned();
                (rx, tx)
            }
            None => {
                let (tx, rx) = mpsc::channel(QUEUE);
                (rx, Some(tx))
            }
        };
        if let Some(tx) = reply_tx {
            lock(&self.by_conn).insert(conn, tx);
        }
        (conn, rx)
    }

    fn close_connection(&self, conn: PeerId) {
        lock(&self.by_conn).remove(&conn);
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    fn sctp_send(&self, out: SctpOut) {
        let queued = self
            .sctp
            .as_ref()
            .is_some_and(|(_, tx)| tx.try_send(out).is_ok());
        if !queued {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what is queued for SCTP, in order. A message that cannot leave within
    /// [`WRITE_TIMEOUT`] (a peer that does not read) aborts its association.
    async fn sctp_sender(self: Arc<Self>, ep: Arc<SctpEndpoint>, mut out: mpsc::Receiver<SctpOut>) {
        while let Some(o) = out.recv().await {
            let (sent, assoc) = match &o {
                SctpOut::To(addr, bytes) => (
                    tokio::time::timeout(WRITE_TIMEOUT, ep.send_to(bytes, *addr)).await,
                    None,
                ),
                SctpOut::Assoc(assoc, bytes) => (
                    tokio::time::timeout(WRITE_TIMEOUT, ep.send_assoc(bytes, *assoc)).await,
                    Some(*assoc),
                ),
            };
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    // No association (yet, or any more) with that address: ENRP repairs by
                    // its timers and audits.
                    log::debug!("ENRP over SCTP: sending: {e}");
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    if let Some(a) = assoc {
                        log::info!("ENRP association {a}: the peer takes nothing; aborting");
                        let _ = ep.abort(a).await;
                    }
                }
            }
        }
    }

    /// Receives everything that arrives on the SCTP endpoint.
    async fn sctp_receiver(self: Arc<Self>, ep: Arc<SctpEndpoint>) {
        let mut assocs: std::collections::HashSet<i32> = std::collections::HashSet::new();
        loop {
            let unit = match ep.recv().await {
                Ok(u) => u,
                Err(e) => {
                    log::warn!("receiving ENRP over SCTP: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let assoc = unit.assoc;
            let conn = PeerId(SCTP_CONN_BASE + u64::from(assoc as u32));
            match unit.incoming {
                Incoming::Message { ppid, bytes, .. } if ppid == sctp::PPID_ENRP => {
                    let remote = unit
                        .from
                        .or_else(|| ep.peer_addrs(assoc).ok()?.first().copied())
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                    let source = EnrpSource::Connection {
                        conn,
                        remote,
                        // No TLS over SCTP (RFC 5355 would need DTLS; rsplib has neither).
                        identity: None,
                    };
                    self.deliver(source, &bytes);
                }
                Incoming::Message { ppid, .. } => {
                    let n = self.stats.wrong_ppid.fetch_add(1, Ordering::Relaxed) + 1;
                    if n <= 10 || n.is_multiple_of(1000) {
                        log::warn!(
                            "ENRP association {assoc} ({:?}): a message with PPID {ppid} \
                             instead of {} ({n} so far); aborting the association",
                            unit.from,
                            sctp::PPID_ENRP
                        );
                    }
                    let _ = ep.abort(assoc).await;
                }
                Incoming::TooLarge { len } => {
                    log::info!(
                        "ENRP association {assoc}: a message of {len} bytes or more exceeds \
                         the limit of {}; aborting the association",
                        self.max_message_size
                    );
                    let _ = ep.abort(assoc).await;
                }
                Incoming::Notification(Notification::AssocChange { state, error, .. }) => {
                    match state {
                        AssocState::CommUp | AssocState::Restart => {
                            let peer = ep.peer_addrs(assoc).unwrap_or_default();
                            log::debug!("ENRP association {assoc} with {peer:?}: {state:?}");
                            if assocs.insert(assoc)
                                && self.live.load(Ordering::Relaxed) >= MAX_CONNECTIONS as u64
                            {
                                self.stats.sctp_refused.fetch_add(1, Ordering::Relaxed);
                                let _ = ep.abort(assoc).await;
                            } else {
                                self.live.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        AssocState::CommLost
                        | AssocState::ShutdownComplete
                        | AssocState::CantStartAssoc => {
                            log::debug!("ENRP association {assoc}: {state:?} (error {error})");
                            if assocs.remove(&assoc) {
                                self.live.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                        AssocState::Other(_) => {}
                    }
                }
                Incoming::Notification(_) | Incoming::Closed => {}
            }
        }
    }
}

/// What goes out on the SCTP endpoint.
enum SctpOut {
    /// To a peer's endpoint address (its association, set up when there is none).
    To(SocketAddr, Vec<u8>),
    /// On the association a message came on.
    Assoc(i32, Vec<u8>),
}

/// The SCTP endpoint of ENRP: `enrp.sctp_listen` (one endpoint with all of its addresses:
/// multi-homed), or by default the first TCP listen address when the kernel has SCTP (not with
/// TLS, which needs TCP). An unspecified address means all of the host's.
fn bind_sctp(
    config: &EnrpConfig,
    tcp_bound: &[SocketAddr],
    max_message_size: usize,
    tls: bool,
) -> anyhow::Result<Option<SctpEndpoint>> {
    use anyhow::Context as _;
    let (wanted, explicit) = match &config.sctp_listen {
        Some(list) => (list.clone(), true),
        None if tls => (Vec::new(), false),
        None => (tcp_bound.iter().take(1).copied().collect(), false),
    };
    let Some(&addr) = wanted.first() else {
        return Ok(None);
    };
    if explicit && tls {
        anyhow::bail!(
            "enrp.sctp_listen with tls.enrp: TLS protects ENRP over TCP only; set \
             enrp.sctp_listen = [] or turn TLS for ENRP off"
        );
    }
    // ENRP has one endpoint (its port is the one the Server Information names).
    match sctp::endpoints(&wanted) {
        Err(e) => anyhow::bail!("enrp.sctp_listen (--enrp-sctp): {e}"),
        Ok(groups) if groups.len() > 1 => anyhow::bail!(
            "enrp.sctp_listen (--enrp-sctp): {addr} and {} cannot be one SCTP endpoint (its \
             addresses share one port and one address family)",
            groups[1][0]
        ),
        Ok(_) => {}
    }
    match SctpEndpoint::bind(&wanted, sctp::PPID_ENRP, max_message_size) {
        Ok(ep) => Ok(Some(ep)),
        Err(e) if !explicit && sctp::is_unsupported(&e) => {
            log::info!("ENRP over TCP only: {e}");
            Ok(None)
        }
        Err(e) => {
            Err(e).with_context(|| format!("listening for ENRP on SCTP {}", sctp::joined(&wanted)))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A UDP socket bound to the group's port, member of the group (on `interface` when given),
/// sending to it with TTL 30 (rsplib's default) and looping back to local members.
fn multicast_socket(group: SocketAddr, interface: Option<Ipv4Addr>) -> io::Result<UdpSocket> {
    let IpAddr::V4(g) = group.ip() else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "ENRP multicast over IPv6 is not supported; use static peers",
        ));
    };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), group.port()).into())?;
    let iface = interface.unwrap_or(Ipv4Addr::UNSPECIFIED);
    s.join_multicast_v4(&g, &iface)?;
    s.set_multicast_ttl_v4(30)?;
    s.set_multicast_loop_v4(true)?;
    if let Some(i) = interface {
        s.set_multicast_if_v4(&i)?;
    }
    UdpSocket::from_std(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_sctp(list: &[&str]) -> EnrpConfig {
        EnrpConfig {
            listen: vec!["127.0.0.1:9901".parse().unwrap()],
            sctp_listen: Some(list.iter().map(|a| a.parse().unwrap()).collect()),
            ..EnrpConfig::default()
        }
    }

    fn refused(list: &[&str]) -> String {
        match bind_sctp(&with_sctp(list), &[], 65_535, false) {
            Ok(_) => panic!("{list:?} accepted as one SCTP endpoint"),
            Err(e) => format!("{e:#}"),
        }
    }

    // (Binding itself needs kernel SCTP: the interop lab binds two addresses, row 3.)
    #[test]
    fn one_endpoint_has_one_port_and_one_family() {
        let e = refused(&["198.18.0.1:9901", "198.18.0.2:9902"]);
        assert!(
            e.contains("198.18.0.1:9901 and 198.18.0.2:9902 cannot be one SCTP endpoint"),
            "{e}"
        );
        let e = refused(&["198.18.0.1:9901", "[2001:db8::1]:9901"]);
        assert!(e.contains("one address family"), "{e}");
        let e = refused(&["0.0.0.0:9901", "198.18.0.2:9901"]);
        assert!(
            e.contains("unspecified address already means every local address"),
            "{e}"
        );
    }
}
