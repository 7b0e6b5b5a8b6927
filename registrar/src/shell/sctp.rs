//! ASAP over kernel SCTP (RFC 5352): one association is one peer, as one connection is over
//! TCP, and the core sees the same events (connected, messages, disconnected).
//!
//! - Every message goes out with PPID 11. A message that arrives with another PPID ends the
//!   association with an ABORT (rsplib aborts an association that sends ENRP's PPID to its ASAP
//!   socket); the registrar counts it and logs a bounded number of them.
//! - Messages are accepted on any stream (RFC 5352 names none; rsplib sends on stream 0 and
//!   reads every stream); messages on a stream other than 0 are counted.
//! - SCTP delimits messages, so there is no framing to lose: a message above
//!   `limits.max_message_size` is reported to the core as the TCP path reports an impossible
//!   Length (an ERROR, then the association is closed).
//! - The peer's addresses are all of the association's (`sctp_getpaddrs`): a multi-homed element
//!   may register any of them.
//! - Notifications: communication lost, shutdown and a failed setup end the peer like a closed
//!   TCP connection; a restart (the peer's endpoint came back with the same addresses and ports)
//!   ends the old peer, whose elements are removed as for a reset connection, and starts a new
//!   one on the same association; peer address changes are logged.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::transport::{Delivery, PeerCommand, PeerHandle, Transport, TransportContext};
use crate::core::{PeerId, PeerInfo};
use crate::sctp::{self, AssocState, Incoming, Notification, SctpListener, SctpSocket};
use crate::types::TransportProtocol;
use crate::wire::{DecodeError, DecodeErrorKind};

/// As over TCP: a peer that does not take what it is sent for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many of each kind of bad input are logged in full; after that one line per 1000.
const LOGGED: u64 = 10;

/// Counters of what the SCTP transport saw that the core does not (it never sees the PPID or
/// the stream).
#[derive(Debug, Default)]
pub struct SctpCounters {
    pub associations: AtomicU64,
    pub wrong_ppid: AtomicU64,
    pub other_stream: AtomicU64,
    pub too_large: AtomicU64,
    pub restarts: AtomicU64,
    pub address_changes: AtomicU64,
}

/// The counters as numbers (GET /stats, key `sctp`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SctpStats {
    pub associations: u64,
    pub wrong_ppid: u64,
    pub other_stream: u64,
    pub too_large: u64,
    pub restarts: u64,
    pub address_changes: u64,
}

impl SctpStats {
    /// The sum over several listeners' counters.
    pub fn sum(counters: &[Arc<SctpCounters>]) -> Self {
        let mut s = Self::default();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for c in counters {
            s.associations += get(&c.associations);
            s.wrong_ppid += get(&c.wrong_ppid);
            s.other_stream += get(&c.other_stream);
            s.too_large += get(&c.too_large);
            s.restarts += get(&c.restarts);
            s.address_changes += get(&c.address_changes);
        }
        s
    }
}

/// Counts one event; true when it should be logged (the first [`LOGGED`], then every 1000th).
fn count(counter: &AtomicU64) -> Option<u64> {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    (n <= LOGGED || n.is_multiple_of(1000)).then_some(n)
}

/// A bound SCTP listener for ASAP.
pub struct SctpTransport {
    listener: SctpListener,
    counters: Arc<SctpCounters>,
    dial_tx: mpsc::Sender<SocketAddr>,
    dial_rx: mpsc::Receiver<SocketAddr>,
    max_message_size: usize,
}

/// Associations being opened at once (after a takeover, one per element's endpoint); further
/// requests are dropped (the elements keep their grace to re-register).
const DIALS: usize = 256;
/// How long opening an association to a pool element may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

impl SctpTransport {
    /// Binds one endpoint on `addrs` (multi-homed when there are several; fails with
    /// EPROTONOSUPPORT, explained, on a kernel without SCTP).
    pub fn bind(addrs: &[SocketAddr], max_message_size: usize) -> io::Result<Self> {
        let (dial_tx, dial_rx) = mpsc::channel(DIALS);
        Ok(Self {
            listener: SctpListener::bind(addrs, sctp::PPID_ASAP, max_message_size)?,
            counters: Arc::default(),
            dial_tx,
            dial_rx,
            max_message_size,
        })
    }

    pub fn counters(&self) -> Arc<SctpCounters> {
        self.counters.clone()
    }

    /// Where to ask for an association to a pool element's ASAP endpoint: it becomes a peer
    /// like an accepted one.
    pub fn dialer(&self) -> mpsc::Sender<SocketAddr> {
        self.dial_tx.clone()
    }
}

fn peer_info(sock: &SctpSocket) -> PeerInfo {
    let addrs = sock.peer_addrs().unwrap_or_default();
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in &addrs {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    PeerInfo {
        protocol: TransportProtocol::Sctp,
        remote_addrs: ips,
        remote_port: addrs.first().map_or(0, |a| a.port()),
        // No TLS over SCTP (rsplib has none either): no proven identity.
        identity: None,
    }
}

impl Transport for SctpTransport {
    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listener.local_addrs().to_vec()
    }

    fn dialer(&self) -> Option<mpsc::Sender<SocketAddr>> {
        Some(self.dial_tx.clone())
    }

    fn serve(self: Box<Self>, ctx: TransportContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut tasks = tokio::task::JoinSet::new();
            let SctpTransport {
                listener,
                counters,
                dial_rx: mut dials,
                max_message_size,
                ..
            } = *self;
            let (dialled_tx, mut dialled) = mpsc::channel::<SctpSocket>(DIALS);
            loop {
                let sock = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(s) => s,
                        Err(e) => {
                            log::warn!("accepting an ASAP association: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    Some(addr) = dials.recv() => {
                        let done = dialled_tx.clone();
                        tokio::spawn(async move {
                            let connect = SctpSocket::connect(addr, sctp::PPID_ASAP, max_message_size);
                            match tokio::time::timeout(DIAL_TIMEOUT, connect).await {
                                Ok(Ok(sock)) => {
                                    log::info!("ASAP association to pool element {addr} up");
                                    let _ = done.send(sock).await;
                                }
                                Ok(Err(e)) => log::info!("ASAP association to pool element {addr}: {e}"),
                                Err(_) => log::info!("ASAP association to pool element {addr}: timed out"),
                            }
                        });
                        continue;
                    }
                    Some(sock) = dialled.recv() => sock,
                };
                while tasks.try_join_next().is_some() {}
                counters.associations.fetch_add(1, Ordering::Relaxed);
                let peer = ctx.next_peer_id();
                let info = peer_info(&sock);
                log::debug!("ASAP association {} from {:?}", peer.0, info.remote_addrs);
                let (tx, rx) = mpsc::channel(ctx.max_pending_messages);
                let (ready_tx, ready_rx) = oneshot::channel::<AbortHandle>();
                let ctx2 = ctx.clone();
                let counters = counters.clone();
                let abort = tasks.spawn(async move {
                    // Wait until the registrar knows the peer, so no message precedes it.
                    let Ok(abort) = ready_rx.await else { return };
                    let mut peer = PeerSession {
                        peer,
                        rx,
                        abort,
                        ctx: &ctx2,
                        counters: &counters,
                    };
                    let last = peer.serve(sock).await;
                    ctx2.sink.disconnected(last);
                });
                ctx.sink
                    .connected(peer, info, PeerHandle::new(tx, abort.clone()));
                let _ = ready_tx.send(abort);
            }
        })
    }
}

struct PeerSession<'a> {
    peer: PeerId,
    rx: mpsc::Receiver<PeerCommand>,
    abort: AbortHandle,
    ctx: &'a TransportContext,
    counters: &'a SctpCounters,
}

enum Next {
    Continue,
    /// Close gracefully (SHUTDOWN after what is queued).
    Close,
    /// Close with an ABORT.
    Abort,
}

impl PeerSession<'_> {
    /// Serves the association until it ends; returns the peer id in force at the end (a
    /// restart replaces it).
    async fn serve(&mut self, mut sock: SctpSocket) -> PeerId {
        let mut reading = true;
        loop {
            let next = tokio::select! {
                r = sock.recv(), if reading => match r {
                    Ok(incoming) => self.incoming(&mut sock, incoming, &mut reading).await,
                    Err(e) => {
                        log::debug!("ASAP association {}: {e}", self.peer.0);
                        Next::Close
                    }
                },
                cmd = self.rx.recv() => self.command(&sock, cmd).await,
            };
            match next {
                Next::Continue => {}
                Next::Close => return self.peer,
                Next::Abort => {
                    sock.abort();
                    return self.peer;
                }
            }
        }
    }

    async fn incoming(
        &mut self,
        sock: &mut SctpSocket,
        incoming: Incoming,
        reading: &mut bool,
    ) -> Next {
        let peer = self.peer;
        match incoming {
            Incoming::Message {
                stream,
                ppid,
                bytes,
            } => {
                if ppid != sctp::PPID_ASAP {
                    if let Some(n) = count(&self.counters.wrong_ppid) {
                        log::warn!(
                            "ASAP association {}: message with PPID {ppid} instead of {} ({n} so far); aborting the association",
                            peer.0,
                            sctp::PPID_ASAP
                        );
                    }
                    return Next::Abort;
                }
                if stream != 0
                    && let Some(n) = count(&self.counters.other_stream)
                {
                    log::debug!(
                        "ASAP association {}: message on stream {stream} ({n} so far)",
                        peer.0
                    );
                }
                let d = self
                    .ctx
                    .sink
                    .messages(peer, &mut std::iter::once(bytes.as_slice()));
                self.deliver(sock, d).await
            }
            Incoming::TooLarge { len } => {
                if let Some(n) = count(&self.counters.too_large) {
                    log::warn!(
                        "ASAP association {}: a message of {len} bytes or more exceeds the limit of {} ({n} so far)",
                        peer.0,
                        self.ctx.max_message_size
                    );
                }
                *reading = false;
                let error = DecodeError {
                    kind: DecodeErrorKind::BadLength,
                    cause: crate::types::CauseCode::Unspecified,
                    info: Vec::new(),
                    detail: format!(
                        "message of at least {len} bytes exceeds the limit of {} bytes",
                        self.ctx.max_message_size
                    ),
                    report: true,
                };
                let d = self.ctx.sink.framing_error(peer, error);
                self.deliver(sock, d).await
            }
            Incoming::Notification(n) => self.notification(sock, n),
            Incoming::Closed => Next::Close,
        }
    }

    fn notification(&mut self, sock: &SctpSocket, n: Notification) -> Next {
        let peer = self.peer;
        match n {
            Notification::AssocChange { state, error, .. } => match state {
                AssocState::CommUp => Next::Continue,
                AssocState::Restart => {
                    let n = self.counters.restarts.fetch_add(1, Ordering::Relaxed) + 1;
                    // The peer's endpoint restarted: what it registered is gone with its old
                    // incarnation, as with a reset TCP connection followed by a new one.
                    self.ctx.sink.disconnected(peer);
                    let (tx, rx) = mpsc::channel(self.ctx.max_pending_messages);
                    self.rx = rx;
                    self.peer = self.ctx.next_peer_id();
                    let info = peer_info(sock);
                    log::info!(
                        "ASAP association {}: the peer restarted ({n} restarts so far); now peer {} at {:?}",
                        peer.0,
                        self.peer.0,
                        info.remote_addrs
                    );
                    self.ctx.sink.connected(
                        self.peer,
                        info,
                        PeerHandle::new(tx, self.abort.clone()),
                    );
                    Next::Continue
                }
                AssocState::CommLost
                | AssocState::ShutdownComplete
                | AssocState::CantStartAssoc => {
                    log::debug!("ASAP association {}: {state:?} (error {error})", peer.0);
                    Next::Close
                }
                AssocState::Other(_) => Next::Continue,
            },
            Notification::Shutdown => {
                log::debug!("ASAP association {}: the peer shut down", peer.0);
                Next::Close
            }
            Notification::PeerAddrChange { addr, state, error } => {
                if let Some(n) = count(&self.counters.address_changes) {
                    log::info!(
                        "ASAP association {}: peer address {} {state:?} (error {error}; {n} changes so far)",
                        peer.0,
                        addr.map_or_else(|| "?".to_string(), |a| a.to_string())
                    );
                }
                Next::Continue
            }
            Notification::RemoteError { error } => {
                log::debug!("ASAP association {}: remote error {error:#x}", peer.0);
                Next::Continue
            }
            Notification::PartialDeliveryAborted => {
                log::debug!("ASAP association {}: partial delivery aborted", peer.0);
                Next::Continue
            }
            Notification::Other { .. } => Next::Continue,
        }
    }

    async fn deliver(&self, sock: &SctpSocket, d: Delivery) -> Next {
        let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
            for r in &d.replies {
                sock.send(r, 0).await?;
            }
            io::Result::Ok(())
        })
        .await;
        match sent {
            Ok(Ok(())) if !d.close => Next::Continue,
            Ok(Ok(())) => Next::Close,
            _ => Next::Abort,
        }
    }

    async fn command(&mut self, sock: &SctpSocket, cmd: Option<PeerCommand>) -> Next {
        match cmd {
            Some(PeerCommand::Send(bytes)) => {
                match tokio::time::timeout(WRITE_TIMEOUT, sock.send(&bytes, 0)).await {
                    Ok(Ok(())) => Next::Continue,
                    _ => Next::Abort,
                }
            }
            Some(PeerCommand::Close) | None => Next::Close,
        }
    }
}
