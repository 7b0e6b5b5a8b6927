//! The registrar's ASAP procedures (RFC 5352) as a state machine that does no I/O, in the manner
//! of quinn-proto: the shell feeds it [`Event`]s and the clock, and carries out the [`Action`]s it
//! returns; [`RegistrarCore::poll_timeout`] says when to call [`RegistrarCore::handle_timeout`].
//! Nothing here knows which transport carries the bytes: peers are opaque [`PeerId`]s with the
//! addresses the transport reported ([`PeerInfo`]).
//!
//! Procedures and the choices made where the RFC leaves room:
//! - Registration: the registrar becomes the element's home (PR-H) and fills `home_registrar`; the
//!   element's ASAP transport is the peer's connection. User transport addresses must be
//!   addresses of the registering connection (unspecified addresses, 0.0.0.0 / ::, are replaced by
//!   them) unless `security.allow_foreign_addresses`; a violation is answered with Rejected
//!   Security (0xa): the values are well-formed, the registrar refuses them on purpose. PE id 0
//!   (rsplib's "undefined") and a registration life <= 0 are Invalid Values (0x3).
//! - Re-registration (same pool, id and connection) updates addresses, policy values and life,
//!   and counts as a sign of life for keep-alive monitoring.
//! - Deregistration answers OK for an unknown element (as rsplib); an element registered by
//!   another connection is not removed and the answer carries Rejected Security.
//! - Handle resolution returns `resolution.default_items` (3) elements when the PU does not ask,
//!   at most `resolution.max_items` (128); an unknown or empty pool is Unknown Pool Handle (0x9).
//! - Keep-alive: every `keepalive_interval` the home registrar sends ENDPOINT_KEEP_ALIVE; no ACK
//!   (or re-registration) within `keepalive_timeout` removes the element. The deadline is judged
//!   on input the core was given in time: an ack deadline handled more than half of
//!   `timers.stall_grace_ms` late (the core was not being fed: the shell's loop was busy) moves
//!   to `stall_grace` after that handling instead, so acks that arrived meanwhile and wait unread
//!   are read first. The shell also reads pending input before it fires late timers.
//! - An evicted element is told at once: when an eviction (keep-alive timeout, Endpoint
//!   Unreachable, expiry) leaves its connection without elements, the connection is closed
//!   (`CloseReason::NoElementsLeft`), as rsplib aborts the association; the element re-registers
//!   at once. An element that shares its connection with others learns it from the missing
//!   keep-alives (the client side watches for them).
//! - ENDPOINT_UNREACHABLE: counted per element by the handlespace, at most once per reporting
//!   source address until the element re-registers (`limits.distinct_reporters`, default on: one
//!   PU host cannot evict an element alone, however many connections it opens); reports are
//!   rate-limited per source address; at `max_bad_pe_reports` the element is removed. Every
//!   removal is logged with its reason (and the reporters' addresses).
//! - Allow lists (`security.allow_pe`, `allow_pu`; [`SecurityConfig::allows`]): a registration
//!   from an address not allowed as PE is Rejected Security; a handle resolution from an address
//!   allowed neither as PU nor as PE is Unknown Pool Handle; its reports are dropped.
//! - Identities (`security.identities`, RFC 5355): a peer that authenticated (TLS) carries its
//!   identity in its [`PeerInfo`]; the same answers apply when no rule for it grants the role,
//!   for a pool element per pool handle (registration and deregistration). Both checks are made
//!   in one place, [`SecurityConfig::authorizes`].
//! - Connections: at most `limits.max_peers`, and `limits.max_peers_per_address` from one source
//!   address; a refused connection gets Lack of Resources and is closed.
//! - Expiry: an element whose registration life ran out without a re-registration is removed,
//!   even when it answers keep-alives (RFC 5352: the life bounds the registration).
//! - Connection loss removes every element registered over that connection.
//! - Floods (per-peer token buckets, RFC 5355 section 6): a registration over the limit is
//!   rejected with Rejected Security; a handle resolution over the limit is answered with Unknown
//!   Pool Handle, as rsplib does, so rsplib PUs back off as for an empty pool; Endpoint
//!   Unreachable reports over the limit are dropped silently (they have no answer). Nothing
//!   already registered is touched.
//! - Malformed input: every undecodable message gets an ASAP ERROR with the decoder's cause and
//!   info (unless its action bits say "discard silently"); parameters to "skip and report" get an
//!   ERROR (at most [`MAX_ERROR_CAUSES`] causes) while the message is processed. Such a message,
//!   and an ERROR received, count as errors too: more than `limits.max_errors` within
//!   `limits.error_window_ms` close the peer's connection; no other peer is affected.
//! - Logging: what a peer sends is never logged whole. Causes are summarised (the first few
//!   codes and a count), and lines about limits being hit are rate-limited with a count of those
//!   suppressed, so a flood cannot make the registrar write more than a few hundred bytes per
//!   message or a few lines per second.

mod bucket;
mod enrp;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{CoreConfig, Role, SecurityConfig};
use crate::handlespace::{Handlespace, Limits, RegisterOutcome, RegistratorId};
use crate::message::{AsapMessage, UpdateAction};
use crate::types::{
    CauseCode, ErrorCause, PeId, PoolElement, PoolHandle, RegistrarId, TransportAddress,
    TransportProtocol, TransportUse,
};
use crate::wire::{self, DecodeError};
use bucket::TokenBucket;
pub use enrp::{EnrpDest, EnrpSource, EnrpStats, PeerState, PeerView, SyncState};

/// Most bytes of an offending message or parameter copied into an ERROR's cause information:
/// enough to identify it, and an ERROR never amplifies a flood.
pub const MAX_ERROR_INFO: usize = 512;

/// Most causes in one ERROR the registrar sends (the rest of a message's "skip and report"
/// parameters are not reported): an ERROR stays small, and always encodable.
pub const MAX_ERROR_CAUSES: usize = 16;

/// Causes named in a log line; the rest are counted.
const LOGGED_CAUSES: usize = 4;

/// A peer (one association/connection) as the shell names it. Never reused within one core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// What the transport knows about a peer when it connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The transport protocol of the connection (TCP today, SCTP later).
    pub protocol: TransportProtocol,
    /// The peer's addresses (several for a multi-homed SCTP association) and port.
    pub remote_addrs: Vec<IpAddr>,
    pub remote_port: u16,
    /// Who the peer proved to be (TLS: its certificate's first DNS subject alternative name,
    /// else its subject common name); `None` for a peer without a certificate. The security
    /// configuration's identity rules apply to it.
    pub identity: Option<String>,
}

impl PeerInfo {
    /// A single-homed peer (TCP).
    pub fn tcp(remote: SocketAddr) -> Self {
        Self {
            protocol: TransportProtocol::Tcp,
            remote_addrs: vec![canonical(remote.ip())],
            remote_port: remote.port(),
            identity: None,
        }
    }

    /// The same peer, authenticated as `identity`.
    pub fn with_identity(mut self, identity: Option<String>) -> Self {
        self.identity = identity;
        self
    }

    /// The peer's ASAP endpoint as a transport parameter.
    pub fn asap_transport(&self) -> Option<TransportAddress> {
        let addr = *self.remote_addrs.first()?;
        Some(match self.protocol {
            TransportProtocol::Sctp => TransportAddress::Sctp {
                port: self.remote_port,
                transport_use: TransportUse::DataOnly,
                addrs: self.remote_addrs.clone(),
            },
            _ => TransportAddress::Tcp {
                port: self.remote_port,
                transport_use: TransportUse::DataOnly,
                addr,
            },
        })
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4 (a dual-stack socket reports them).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Input to the core.
#[derive(Clone, Debug)]
pub enum Event {
    /// A new association/connection.
    Connected { peer: PeerId, info: PeerInfo },
    /// The connection is gone (closed by the peer, reset, or after an [`Action::Close`]).
    Disconnected { peer: PeerId },
    /// One complete ASAP message.
    Message { peer: PeerId, bytes: Vec<u8> },
    /// The transport could not delimit the next message (e.g. a TCP length field below 4): the
    /// stream cannot be re-synchronised, so the core answers with an ERROR and closes it.
    FramingError { peer: PeerId, error: DecodeError },
    /// One complete ENRP message from a peer registrar (see [`RegistrarCore::handle_enrp`]).
    Enrp { source: EnrpSource, bytes: Vec<u8> },
}

/// Output of the core, for the shell to carry out in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send one ASAP message to a peer.
    Send { peer: PeerId, bytes: Vec<u8> },
    /// Close the peer's connection after what was queued before. The core has already
    /// forgotten the peer and removed its elements.
    Close { peer: PeerId, reason: CloseReason },
    /// Send an ASAP Server Announce to the announce destinations (multicast, static targets).
    Announce { bytes: Vec<u8> },
    /// The handlespace changed (for the load balancer's control plane and monitoring).
    Notify(HandlespaceEvent),
    /// Send one ENRP message.
    SendEnrp { to: EnrpDest, bytes: Vec<u8> },
    /// Open an ASAP association to a pool element's ASAP endpoint (SCTP; RFC 5352 section
    /// 3.6): after a takeover, this registrar tells the element it is its new home with an
    /// Endpoint Keep-Alive with the H flag. The shell reports it as [`Event::Connected`] like
    /// an accepted one; if it does not come up, nothing is reported.
    Connect { transport: TransportAddress },
}

/// Why the core closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// More than `limits.max_errors` malformed messages within the window.
    TooManyErrors,
    /// The message stream cannot be delimited any more.
    Framing,
    /// `limits.max_peers` connections are open already.
    TooManyPeers,
    /// `limits.max_peers_per_address` connections from this source address are open already.
    TooManyPeersFromAddress,
    /// The connection's last element was evicted (keep-alive timeout, Endpoint Unreachable,
    /// expiry): closing tells the element at once, and it re-registers.
    NoElementsLeft,
}

/// A change of the handlespace, as subscribers see it.
#[derive(Clone, Debug, PartialEq)]
pub enum HandlespaceEvent {
    ElementAdded {
        pool: PoolHandle,
        element: PoolElement,
    },
    /// Re-registration: new addresses, policy values (load) or life.
    ElementUpdated {
        pool: PoolHandle,
        element: PoolElement,
    },
    ElementRemoved {
        pool: PoolHandle,
        id: PeId,
        reason: RemovalReason,
    },
}

/// Why an element left the handlespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalReason {
    Deregistered,
    KeepAliveTimeout,
    Unreachable,
    Expired,
    ConnectionLost,
    /// Its home registrar deregistered it (ENRP Handle Update).
    PeerUpdate,
    /// An ENRP audit found that its home registrar no longer has it.
    Audit,
}

/// Counters for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CoreStats {
    pub registrations: u64,
    pub registrations_rejected: u64,
    pub deregistrations: u64,
    pub handle_resolutions: u64,
    pub keepalives_sent: u64,
    pub keepalive_timeouts: u64,
    pub unreachable_reports: u64,
    pub expired: u64,
    pub errors_sent: u64,
    pub rate_limited: u64,
    pub peers_closed: u64,
    /// ERROR messages received from peers.
    pub errors_received: u64,
    /// Messages that counted toward a peer's error limit.
    pub peer_errors: u64,
    /// Ack deadlines moved because the core handled them late (its loop was stalled).
    pub keepalive_deadlines_deferred: u64,
    /// Requests refused by an allow list.
    pub refused_by_allow_list: u64,
    /// Connections refused by `max_peers` or `max_peers_per_address`.
    pub connections_refused: u64,
}

struct Peer {
    info: PeerInfo,
    /// The source address that limits and allow lists apply to (the first address).
    source: IpAddr,
    registrations: TokenBucket,
    resolutions: TokenBucket,
    /// Times of recent protocol errors (at most `max_errors`).
    errors: VecDeque<Instant>,
    /// Elements registered over this connection (slots).
    elements: HashSet<u64>,
}

/// Keep-alive state of one element this registrar is home of.
struct Tracked {
    pool: PoolHandle,
    id: PeId,
    peer: PeerId,
    /// When the current timer fires: the next keep-alive, or the ack deadline.
    due: Instant,
    /// When the last keep-alive went out (next one = this + interval).
    last_sent: Option<Instant>,
    awaiting_ack: bool,
    /// Source addresses whose Endpoint Unreachable report was counted since the last
    /// registration (`limits.distinct_reporters`).
    reporters: Vec<IpAddr>,
}

/// What the core keeps per source address with open connections.
struct Source {
    peers: usize,
    unreachables: TokenBucket,
}

/// Rate-limits a kind of log line that peers can trigger at will: at most one per second, with
/// the count of those suppressed in between.
#[derive(Default)]
struct LogGate {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogGate {
    /// `Some(suppressed since the last line)` when a line may be written now.
    fn pass(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Log gates of the core, one per kind of line.
#[derive(Default)]
struct LogGates {
    refused: LogGate,
    peer_errors: LogGate,
}

/// The registrar's protocol state. See the module documentation for the procedures.
pub struct RegistrarCore {
    id: RegistrarId,
    config: CoreConfig,
    keepalive_interval: Duration,
    keepalive_timeout: Duration,
    error_window: Duration,
    announce_interval: Option<Duration>,
    announce_bytes: Option<Vec<u8>>,
    next_announce: Option<Instant>,
    handlespace: Handlespace,
    rng: StdRng,
    peers: HashMap<PeerId, Peer>,
    sources: HashMap<IpAddr, Source>,
    log_gates: LogGates,
    /// Element key -> slot.
    slots: HashMap<(PoolHandle, PeId), u64>,
    tracked: HashMap<u64, Tracked>,
    /// (due, slot) of every tracked element.
    timers: BTreeSet<(Instant, u64)>,
    next_slot: u64,
    actions: VecDeque<Action>,
    stats: CoreStats,
    enrp: Option<enrp::EnrpState>,
    /// The latest time the core was given.
    clock: Instant,
}

impl RegistrarCore {
    /// A registrar with identifier `id`. `announce_transports` go into every Server Announce
    /// (empty = receivers use the datagram's source). `seed` feeds the random policies and the
    /// announce jitter (tests pass a constant).
    pub fn new(
        config: CoreConfig,
        id: RegistrarId,
        announce_transports: Vec<TransportAddress>,
        now: Instant,
        seed: u64,
    ) -> Self {
        let limits = Limits {
            max_pools: config.limits.max_pools,
            max_elements_per_pool: config.limits.max_elements_per_pool,
            max_elements: config.limits.max_elements,
            max_bad_pe_reports: config.limits.max_bad_pe_reports,
        };
        let announce_interval = config.announce_interval;
        let announce_bytes = announce_interval.and_then(|_| {
            wire::encode_asap(&AsapMessage::ServerAnnounce {
                server_id: id,
                transports: announce_transports,
            })
            .ok()
        });
        let mut core = Self {
            id,
            keepalive_interval: config.timers.keepalive_interval(),
            keepalive_timeout: config.timers.keepalive_timeout(),
            error_window: Duration::from_millis(config.limits.error_window_ms),
            announce_interval,
            announce_bytes,
            next_announce: None,
            handlespace: Handlespace::new(limits),
            rng: StdRng::seed_from_u64(seed),
            peers: HashMap::new(),
            sources: HashMap::new(),
            log_gates: LogGates::default(),
            slots: HashMap::new(),
            tracked: HashMap::new(),
            timers: BTreeSet::new(),
            next_slot: 0,
            actions: VecDeque::new(),
            stats: CoreStats::default(),
            enrp: None,
            clock: now,
            config,
        };
        // The first announce goes out at once: PEs and PUs waiting for a registrar find it
        // without a full cycle's delay.
        core.next_announce = core.announce_interval.map(|_| now);
        core
    }

    pub fn id(&self) -> RegistrarId {
        self.id
    }

    pub fn handlespace(&self) -> &Handlespace {
        &self.handlespace
    }

    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next (`None` = nothing scheduled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.first().map(|(t, _)| *t),
            self.handlespace.next_expiry(),
            self.next_announce.filter(|_| self.serving()),
            self.enrp_poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fire every timer due at `now`: keep-alives, ack timeouts, expiries, announces.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        self.enrp_timeout(now);
        while let Some(&(due, slot)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            self.fire_keepalive_timer(slot, now);
        }
        for (pool, element) in self.handlespace.expire(now) {
            self.stats.expired += 1;
            log::info!(
                "element {} of pool {pool} removed: registration life ran out",
                element.id
            );
            let owner = self.untrack(&pool, element.id);
            if element.home_registrar == self.id {
                self.enrp_own_change(UpdateAction::DelPe, &pool, &element);
            }
            self.notify_removed(pool, element.id, RemovalReason::Expired);
            self.close_if_empty(owner);
        }
        if let (Some(at), Some(interval)) = (self.next_announce, self.announce_interval)
            && at <= now
            && self.serving()
        {
            if let Some(bytes) = &self.announce_bytes {
                self.actions.push_back(Action::Announce {
                    bytes: bytes.clone(),
                });
            }
            // rsplib's jitter: +-12.5 % so that registrars started together do not stay in step.
            let factor = self.rng.random_range(0.875..=1.125);
            self.next_announce = Some(now + interval.mul_f64(factor));
        }
    }

    /// Feed one event.
    pub fn handle_event(&mut self, now: Instant, event: Event) {
        self.clock = self.clock.max(now);
        match event {
            Event::Enrp { source, bytes } => self.handle_enrp(now, source, &bytes),
            Event::Connected { peer, info } => self.peer_connected(now, peer, info),
            Event::Disconnected { peer } => self.drop_peer(peer),
            Event::Message { peer, bytes } => self.handle_message(now, peer, &bytes),
            Event::FramingError { peer, error } => {
                if self.peers.contains_key(&peer) {
                    if error.report {
                        self.send_error(peer, vec![error_cause(&error)]);
                    }
                    self.close(peer, CloseReason::Framing);
                }
            }
        }
    }

    fn peer_connected(&mut self, now: Instant, peer: PeerId, info: PeerInfo) {
        let source = info
            .remote_addrs
            .first()
            .copied()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), canonical);
        let limits = &self.config.limits;
        let from_source = self.sources.get(&source).map_or(0, |s| s.peers);
        let refused = if self.peers.len() >= limits.max_peers {
            Some((
                CloseReason::TooManyPeers,
                "limits.max_peers",
                limits.max_peers,
            ))
        } else if from_source >= limits.max_peers_per_address {
            Some((
                CloseReason::TooManyPeersFromAddress,
                "limits.max_peers_per_address",
                limits.max_peers_per_address,
            ))
        } else {
            None
        };
        if let Some((reason, key, limit)) = refused {
            self.stats.connections_refused += 1;
            if let Some(suppressed) = self.log_gates.refused.pass(now) {
                log::warn!(
                    "refusing a connection from {source}: {key} ({limit}) reached \
                     ({} open, {from_source} from this address; {suppressed} more refused \
                     since the last such message)",
                    self.peers.len()
                );
            }
            self.send_error(peer, vec![ErrorCause::new(CauseCode::LackOfResources)]);
            self.actions.push_back(Action::Close { peer, reason });
            self.stats.peers_closed += 1;
            return;
        }
        let rl = &self.config.rate_limits;
        self.sources
            .entry(source)
            .or_insert_with(|| Source {
                peers: 0,
                unreachables: TokenBucket::new(rl.endpoint_unreachable, now),
            })
            .peers += 1;
        let transport = info.asap_transport();
        self.peers.insert(
            peer,
            Peer {
                info,
                source,
                registrations: TokenBucket::new(rl.registration, now),
                resolutions: TokenBucket::new(rl.handle_resolution, now),
                errors: VecDeque::new(),
                elements: HashSet::new(),
            },
        );
        if let Some(t) = transport {
            self.adopt_connected(now, &t);
        }
    }

    /// Forget a peer and remove every element it registered.
    fn drop_peer(&mut self, peer: PeerId) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        if let Some(s) = self.sources.get_mut(&p.source) {
            s.peers -= 1;
            if s.peers == 0 {
                self.sources.remove(&p.source);
            }
        }
        if p.elements.is_empty() {
            return;
        }
        let removed = self
            .handlespace
            .remove_by_registrator(RegistratorId::Asap(peer.0));
        log::info!(
            "connection {} from {} gone: removing its {} element(s)",
            peer.0,
            p.source,
            removed.len()
        );
        for (pool, element) in removed {
            self.untrack(&pool, element.id);
            self.enrp_own_change(UpdateAction::DelPe, &pool, &element);
            self.notify_removed(pool, element.id, RemovalReason::ConnectionLost);
        }
    }

    /// After an eviction: close the connection that registered the element when it has no
    /// element left, so that the element learns of it at once.
    fn close_if_empty(&mut self, owner: Option<PeerId>) {
        let Some(peer) = owner else {
            return;
        };
        if self.peers.get(&peer).is_some_and(|p| p.elements.is_empty()) {
            log::info!("connection {}: no element left; closing it", peer.0);
            self.close(peer, CloseReason::NoElementsLeft);
        }
    }

    fn close(&mut self, peer: PeerId, reason: CloseReason) {
        self.drop_peer(peer);
        self.stats.peers_closed += 1;
        self.actions.push_back(Action::Close { peer, reason });
    }

    /// One complete ASAP message from a peer (the same as [`Event::Message`], without a copy).
    pub fn handle_message(&mut self, now: Instant, peer: PeerId, bytes: &[u8]) {
        if !self.peers.contains_key(&peer) {
            return; // closed by us; the shell has not seen the Close yet
        }
        if bytes.len() > self.config.limits.max_message_size {
            let mut cause = ErrorCause::new(CauseCode::LackOfResources);
            cause.info = bytes[..bytes.len().min(wire::HEADER_LEN)].to_vec();
            self.send_error(peer, vec![cause]);
            self.count_error(now, peer);
            return;
        }
        let decoded = match wire::decode_asap(bytes) {
            Ok(d) => d,
            Err(e) => {
                log::debug!("peer {}: undecodable message: {e}", peer.0);
                if e.report {
                    self.send_error(peer, vec![error_cause(&e)]);
                }
                self.count_error(now, peer);
                return;
            }
        };
        if !decoded.reports.is_empty() {
            let total = decoded.reports.len();
            let causes: Vec<ErrorCause> = decoded
                .reports
                .into_iter()
                .take(MAX_ERROR_CAUSES)
                .map(truncate_info)
                .collect();
            log::debug!(
                "peer {}: message 0x{:02x} with {total} parameter(s) to report: {}",
                peer.0,
                decoded.message.type_code(),
                summarize_causes(&causes, total)
            );
            self.send_error(peer, causes);
            self.count_error(now, peer);
            if !self.peers.contains_key(&peer) {
                return; // closed for too many errors
            }
        }
        match decoded.message {
            AsapMessage::Registration {
                pool_handle,
                element,
            } => self.registration(now, peer, pool_handle, element),
            AsapMessage::Deregistration { pool_handle, id } => {
                self.deregistration(peer, pool_handle, id)
            }
            AsapMessage::HandleResolution { pool_handle, items } => {
                self.handle_resolution(now, peer, pool_handle, items)
            }
            AsapMessage::EndpointKeepAliveAck { pool_handle, id } => {
                self.keepalive_ack(now, peer, &pool_handle, id)
            }
            AsapMessage::EndpointUnreachable { pool_handle, id } => {
                self.endpoint_unreachable(now, peer, pool_handle, id)
            }
            AsapMessage::Error { causes } => {
                // Never answer an ERROR with an ERROR (no loops); log a summary for the
                // operator, and count it: a peer that keeps reporting errors is broken.
                self.stats.errors_received += 1;
                if let Some(suppressed) = self.log_gates.peer_errors.pass(now) {
                    log::info!(
                        "peer {} reports errors: {} ({suppressed} peer error lines suppressed)",
                        peer.0,
                        summarize_causes(&causes, causes.len())
                    );
                }
                self.count_error(now, peer);
            }
            other => {
                // A well-formed message a registrar does not accept (a response, an announce,
                // a cookie...): reported as unrecognized (RFC 5352 section 5.4).
                log::debug!(
                    "peer {}: unexpected message type 0x{:02x}",
                    peer.0,
                    other.type_code()
                );
                let mut cause = ErrorCause::new(CauseCode::UnrecognizedMessage);
                cause.info = bytes[..bytes.len().min(MAX_ERROR_INFO)].to_vec();
                self.send_error(peer, vec![cause]);
                self.count_error(now, peer);
            }
        }
    }

    /// Count a protocol error; close the peer when it persists.
    fn count_error(&mut self, now: Instant, peer: PeerId) {
        let window = self.error_window;
        let max = self.config.limits.max_errors as usize;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        while p
            .errors
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            p.errors.pop_front();
        }
        p.errors.push_back(now);
        self.stats.peer_errors += 1;
        if p.errors.len() >= max {
            log::warn!(
                "peer {}: {} malformed messages within {:?}; closing",
                peer.0,
                p.errors.len(),
                window
            );
            self.close(peer, CloseReason::TooManyErrors);
        }
    }

    fn registration(
        &mut self,
        now: Instant,
        peer: PeerId,
        pool_handle: PoolHandle,
        mut element: PoolElement,
    ) {
        let id = element.id;
        let result = if self.serving() {
            self.try_register(now, peer, &pool_handle, &mut element)
        } else {
            // ENRP start-up: the handlespace is not complete yet (see `enrp`).
            Err(CauseCode::LackOfResources)
        };
        let (reject, error) = match result {
            Ok(updated) => {
                self.stats.registrations += 1;
                self.enrp_own_change(UpdateAction::AddPe, &pool_handle, &element);
                element.asap_transport = None;
                let event = if updated {
                    HandlespaceEvent::ElementUpdated {
                        pool: pool_handle.clone(),
                        element,
                    }
                } else {
                    HandlespaceEvent::ElementAdded {
                        pool: pool_handle.clone(),
                        element,
                    }
                };
                self.actions.push_back(Action::Notify(event));
                (false, None)
            }
            Err(cause) => {
                self.stats.registrations_rejected += 1;
                log::debug!(
                    "peer {}: registration of {id} in {pool_handle} rejected: {cause}",
                    peer.0
                );
                if cause == CauseCode::RejectedSecurity
                    && let Some(p) = self.peers.get(&peer)
                    && !p.may(
                        &self.config.security,
                        Role::PoolElement,
                        Some(pool_handle.as_bytes()),
                    )
                    && let Some(suppressed) = self.log_gates.refused.pass(now)
                {
                    log::warn!(
                        "registration in {pool_handle} from {}{} refused by security.allow_pe \
                         or security.identities ({suppressed} similar messages suppressed)",
                        p.source,
                        p.info
                            .identity
                            .as_deref()
                            .map_or(String::new(), |i| format!(" ({i})"))
                    );
                }
                (true, Some(vec![rejection_cause(cause, &element)]))
            }
        };
        self.send(
            peer,
            &AsapMessage::RegistrationResponse {
                reject,
                pool_handle,
                id,
                error,
            },
        );
    }

    /// Registers or updates; `Ok(true)` for an update of an element this peer registered.
    fn try_register(
        &mut self,
        now: Instant,
        peer: PeerId,
        pool: &PoolHandle,
        element: &mut PoolElement,
    ) -> Result<bool, CauseCode> {
        let allow_foreign = self.config.security.allow_foreign_addresses;
        let max_per_peer = self.config.limits.max_elements_per_peer;
        let home_full = self.tracked.len() >= self.config.limits.max_home_elements;
        let p = self.peers.get_mut(&peer).ok_or(CauseCode::Unspecified)?;
        if !p.may(
            &self.config.security,
            Role::PoolElement,
            Some(pool.as_bytes()),
        ) {
            self.stats.refused_by_allow_list += 1;
            return Err(CauseCode::RejectedSecurity);
        }
        if !p.registrations.try_take(now) {
            self.stats.rate_limited += 1;
            return Err(CauseCode::RejectedSecurity);
        }
        if element.id.0 == 0 || element.registration_life_ms <= 0 {
            return Err(CauseCode::InvalidValues);
        }
        element.user_transport = check_addresses(&element.user_transport, &p.info, allow_foreign)?;
        let slot = self.slots.get(&(pool.clone(), element.id)).copied();
        let existing_here = slot.is_some_and(|s| p.elements.contains(&s));
        if !existing_here && (p.elements.len() >= max_per_peer || home_full) {
            return Err(CauseCode::LackOfResources);
        }
        element.home_registrar = self.id;
        element.asap_transport = p.info.asap_transport();
        let outcome = self.handlespace.register(
            pool,
            element.clone(),
            self.id,
            RegistratorId::Asap(peer.0),
            now,
        )?;
        match slot {
            Some(s) if existing_here && outcome == RegisterOutcome::Updated => {
                // A re-registration is a sign of life: it also answers a pending keep-alive,
                // and (as the handlespace's count) clears the unreachable reports.
                if let Some(t) = self.tracked.get_mut(&s) {
                    t.reporters = Vec::new();
                }
                if let Some(t) = self.tracked.get_mut(&s)
                    && t.awaiting_ack
                {
                    t.awaiting_ack = false;
                    let next = t.last_sent.unwrap_or(now) + self.keepalive_interval;
                    let old = t.due;
                    t.due = next.max(now);
                    self.timers.remove(&(old, s));
                    self.timers.insert((t.due, s));
                }
                Ok(true)
            }
            _ => {
                self.track(now, peer, pool, element.id);
                Ok(false)
            }
        }
    }

    /// Start keep-alive monitoring of an element this registrar is home of, over `peer`.
    fn track(&mut self, now: Instant, peer: PeerId, pool: &PoolHandle, id: PeId) {
        // Stale keep-alive state for this key (cannot normally exist): drop it first.
        self.untrack(pool, id);
        let s = self.next_slot;
        self.next_slot += 1;
        let due = now + self.keepalive_interval;
        self.slots.insert((pool.clone(), id), s);
        self.tracked.insert(
            s,
            Tracked {
                pool: pool.clone(),
                id,
                peer,
                due,
                last_sent: None,
                awaiting_ack: false,
                reporters: Vec::new(),
            },
        );
        self.timers.insert((due, s));
        if let Some(p) = self.peers.get_mut(&peer) {
            p.elements.insert(s);
        }
    }

    fn deregistration(&mut self, peer: PeerId, pool_handle: PoolHandle, id: PeId) {
        let slot = self.slots.get(&(pool_handle.clone(), id)).copied();
        let owner = slot.and_then(|s| self.tracked.get(&s)).map(|t| t.peer);
        let allowed = self.peers.get(&peer).is_some_and(|p| {
            p.may(
                &self.config.security,
                Role::PoolElement,
                Some(pool_handle.as_bytes()),
            )
        });
        let error = match owner {
            _ if !allowed => {
                self.stats.refused_by_allow_list += 1;
                Some(vec![ErrorCause::new(CauseCode::RejectedSecurity)])
            }
            Some(o) if o != peer => Some(vec![ErrorCause::new(CauseCode::RejectedSecurity)]),
            Some(_) => {
                if let Some(element) = self.handlespace.deregister(&pool_handle, id) {
                    self.enrp_own_change(UpdateAction::DelPe, &pool_handle, &element);
                }
                self.untrack(&pool_handle, id);
                self.stats.deregistrations += 1;
                self.notify_removed(pool_handle.clone(), id, RemovalReason::Deregistered);
                None
            }
            None => None,
        };
        self.send(
            peer,
            &AsapMessage::DeregistrationResponse {
                pool_handle,
                id,
                error,
            },
        );
    }

    fn handle_resolution(
        &mut self,
        now: Instant,
        peer: PeerId,
        pool_handle: PoolHandle,
        items: Option<u32>,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        self.stats.handle_resolutions += 1;
        let permitted = p.may(&self.config.security, Role::PoolUser, None);
        if !permitted {
            self.stats.refused_by_allow_list += 1;
        }
        let allowed = permitted && p.resolutions.try_take(now);
        let r = &self.config.resolution;
        let n = match items {
            None | Some(0) => r.default_items,
            Some(n) => n.min(r.max_items),
        } as usize;
        let result = if !self.serving() {
            Err(CauseCode::LackOfResources)
        } else if allowed {
            self.handlespace
                .select(&pool_handle, n, r.max_increment as usize, &mut self.rng)
        } else {
            if permitted {
                self.stats.rate_limited += 1;
            }
            Err(CauseCode::UnknownPoolHandle)
        };
        let msg = match result {
            Ok(selection) if !selection.elements.is_empty() => {
                AsapMessage::HandleResolutionResponse {
                    pool_handle,
                    // RFC 5352 section 2.2.6: the policy of the pool (each element also carries
                    // its own values); rsplib sends the first selected element's.
                    policy: Some(selection.elements[0].policy.clone()),
                    elements: selection
                        .elements
                        .into_iter()
                        .map(|mut e| {
                            e.asap_transport = None;
                            e
                        })
                        .collect(),
                    error: None,
                }
            }
            Ok(_) => resolution_error(pool_handle, CauseCode::UnknownPoolHandle),
            Err(cause) => resolution_error(pool_handle, cause),
        };
        self.send(peer, &msg);
    }

    fn keepalive_ack(&mut self, now: Instant, peer: PeerId, pool: &PoolHandle, id: PeId) {
        let Some(&slot) = self.slots.get(&(pool.clone(), id)) else {
            return; // removed meanwhile: nothing to do
        };
        let Some(t) = self.tracked.get_mut(&slot) else {
            return;
        };
        if t.peer != peer || !t.awaiting_ack {
            return;
        }
        t.awaiting_ack = false;
        let old = t.due;
        t.due = (t.last_sent.unwrap_or(now) + self.keepalive_interval).max(now);
        self.timers.remove(&(old, slot));
        self.timers.insert((t.due, slot));
    }

    fn endpoint_unreachable(&mut self, now: Instant, peer: PeerId, pool: PoolHandle, id: PeId) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let source = p.source;
        if !p.may(&self.config.security, Role::PoolUser, None) {
            self.stats.refused_by_allow_list += 1;
            return;
        }
        // Per source address: a host gains nothing by opening more connections.
        let Some(s) = self.sources.get_mut(&source) else {
            return;
        };
        if !s.unreachables.try_take(now) {
            self.stats.rate_limited += 1;
            return;
        }
        self.stats.unreachable_reports += 1;
        let slot = self.slots.get(&(pool.clone(), id)).copied();
        if self.config.limits.distinct_reporters {
            let Some(t) = slot.and_then(|s| self.tracked.get_mut(&s)) else {
                return; // not an element of ours (or gone)
            };
            if t.reporters.contains(&source) {
                return; // this address's report already counts
            }
            t.reporters.push(source);
        }
        if let Some(r) = self.handlespace.report_unreachable(&pool, id)
            && r.threshold_reached
        {
            let reporters = slot
                .and_then(|s| self.tracked.get(&s))
                .map(|t| summarize_addrs(&t.reporters))
                .unwrap_or_else(|| format!("last from {source} (reporters not tracked)"));
            log::info!(
                "element {id} of pool {pool} removed: {} Endpoint Unreachable reports, \
                 from {reporters}",
                r.reports
            );
            if let Some(element) = self.handlespace.deregister(&pool, id) {
                self.enrp_own_change(UpdateAction::DelPe, &pool, &element);
            }
            let owner = self.untrack(&pool, id);
            self.notify_removed(pool, id, RemovalReason::Unreachable);
            self.close_if_empty(owner);
        }
    }

    fn fire_keepalive_timer(&mut self, slot: u64, now: Instant) {
        let Some(t) = self.tracked.get_mut(&slot) else {
            return;
        };
        if t.awaiting_ack {
            let grace = self.config.timers.stall_grace();
            if now.saturating_duration_since(t.due) > grace / 2 {
                // Handled late: the core was not fed while the deadline passed, so the ack may
                // be waiting unread. Read what arrived first (see `TimerConfig::stall_grace_ms`).
                self.stats.keepalive_deadlines_deferred += 1;
                t.due = now + grace;
                self.timers.insert((t.due, slot));
                return;
            }
            let (pool, id) = (t.pool.clone(), t.id);
            log::info!(
                "element {id} of pool {pool} removed: no keep-alive ack within {:?}",
                self.keepalive_timeout
            );
            self.stats.keepalive_timeouts += 1;
            if let Some(element) = self.handlespace.deregister(&pool, id) {
                self.enrp_own_change(UpdateAction::DelPe, &pool, &element);
            }
            let owner = self.untrack(&pool, id);
            self.notify_removed(pool, id, RemovalReason::KeepAliveTimeout);
            self.close_if_empty(owner);
            return;
        }
        t.awaiting_ack = true;
        t.last_sent = Some(now);
        t.due = now + self.keepalive_timeout;
        self.timers.insert((t.due, slot));
        let msg = AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: self.id,
            pool_handle: t.pool.clone(),
            id: t.id,
        };
        let peer = t.peer;
        self.stats.keepalives_sent += 1;
        self.send(peer, &msg);
    }

    /// Forget the keep-alive state of an element (already out of the handlespace); returns the
    /// connection that registered it.
    fn untrack(&mut self, pool: &PoolHandle, id: PeId) -> Option<PeerId> {
        let slot = self.slots.remove(&(pool.clone(), id))?;
        let t = self.tracked.remove(&slot)?;
        self.timers.remove(&(t.due, slot));
        if let Some(p) = self.peers.get_mut(&t.peer) {
            p.elements.remove(&slot);
        }
        Some(t.peer)
    }

    fn notify_removed(&mut self, pool: PoolHandle, id: PeId, reason: RemovalReason) {
        self.actions
            .push_back(Action::Notify(HandlespaceEvent::ElementRemoved {
                pool,
                id,
                reason,
            }));
    }

    fn send_error(&mut self, peer: PeerId, causes: Vec<ErrorCause>) {
        self.stats.errors_sent += 1;
        self.send(peer, &AsapMessage::Error { causes });
    }

    fn send(&mut self, peer: PeerId, msg: &AsapMessage) {
        match wire::encode_asap(msg) {
            Ok(bytes) => self.actions.push_back(Action::Send { peer, bytes }),
            // Only reachable with values the core built itself; log rather than crash (the
            // type only: the message may hold what a peer sent).
            Err(e) => log::error!(
                "cannot encode a message of type 0x{:02x}: {e}",
                msg.type_code()
            ),
        }
    }
}

impl Peer {
    /// May this peer act as `role` (in `pool`)? Its address and its identity, checked by
    /// [`SecurityConfig::authorizes`].
    fn may(&self, security: &SecurityConfig, role: Role, pool: Option<&[u8]>) -> bool {
        security.authorizes(role, self.source, self.info.identity.as_deref(), pool)
    }
}

/// `total` causes for a log line: the first few codes with the length of their information, and
/// how many more there were. Never longer than a few hundred bytes, whatever the peer sent.
fn summarize_causes(causes: &[ErrorCause], total: usize) -> String {
    use std::fmt::Write as _;
    let mut s = format!("{total} cause(s)");
    for c in causes.iter().take(LOGGED_CAUSES) {
        let _ = write!(s, "; {} ({} bytes of info)", c.code, c.info.len());
    }
    if total > LOGGED_CAUSES {
        let _ = write!(s, "; {} more not shown", total - LOGGED_CAUSES);
    }
    s
}

/// Reporters' addresses for a log line (at most a handful named).
fn summarize_addrs(addrs: &[IpAddr]) -> String {
    let shown: Vec<String> = addrs.iter().take(8).map(ToString::to_string).collect();
    if addrs.len() > shown.len() {
        format!(
            "{} and {} more",
            shown.join(", "),
            addrs.len() - shown.len()
        )
    } else {
        shown.join(", ")
    }
}

fn resolution_error(pool_handle: PoolHandle, cause: CauseCode) -> AsapMessage {
    AsapMessage::HandleResolutionResponse {
        pool_handle,
        policy: None,
        elements: Vec::new(),
        error: Some(vec![ErrorCause::new(cause)]),
    }
}

/// The error cause of a rejected registration. RFC 5352 5.4 gives Invalid Values, Inconsistent
/// Pooling Policy and Inconsistent Transport Type the offending parameter as their information
/// (Wireshark's dissector reads it as a parameter and calls the message malformed without it):
/// the policy, the user transport, or the whole pool element for invalid values. A quote that
/// would not fit the error-information cap falls back to Unspecified Error, which needs none.
fn rejection_cause(cause: CauseCode, element: &PoolElement) -> ErrorCause {
    let quoted = match cause {
        CauseCode::InconsistentPoolingPolicy => Some(wire::encode_policy_param(&element.policy)),
        CauseCode::InconsistentTransportType => {
            Some(wire::encode_transport_param(&element.user_transport))
        }
        CauseCode::InvalidValues => Some(wire::encode_pool_element_param(element)),
        _ => None,
    };
    match quoted {
        None => ErrorCause::new(cause),
        Some(Ok(info)) if info.len() <= MAX_ERROR_INFO => ErrorCause { code: cause, info },
        Some(_) => ErrorCause::new(CauseCode::Unspecified),
    }
}

fn error_cause(e: &DecodeError) -> ErrorCause {
    truncate_info(e.to_error_cause())
}

fn truncate_info(mut cause: ErrorCause) -> ErrorCause {
    cause.info.truncate(MAX_ERROR_INFO);
    cause
}

/// The user transport with unspecified addresses replaced by the peer's, checked against the
/// peer's addresses unless foreign addresses are allowed.
fn check_addresses(
    transport: &TransportAddress,
    peer: &PeerInfo,
    allow_foreign: bool,
) -> Result<TransportAddress, CauseCode> {
    let own = |ip: &IpAddr| peer.remote_addrs.contains(&canonical(*ip));
    let fill = |ip: IpAddr| -> Result<IpAddr, CauseCode> {
        let ip = canonical(ip);
        if ip.is_unspecified() {
            peer.remote_addrs
                .first()
                .copied()
                .ok_or(CauseCode::InvalidValues)
        } else if allow_foreign || own(&ip) {
            Ok(ip)
        } else {
            Err(CauseCode::RejectedSecurity)
        }
    };
    let mut t = transport.clone();
    match &mut t {
        TransportAddress::Sctp { addrs, .. } => {
            if addrs.iter().any(|a| a.is_unspecified()) {
                *addrs = peer.remote_addrs.clone();
            } else {
                for a in addrs.iter_mut() {
                    *a = fill(*a)?;
                }
            }
        }
        TransportAddress::Tcp { addr, .. }
        | TransportAddress::Udp { addr, .. }
        | TransportAddress::UdpLite { addr, .. }
        | TransportAddress::Dccp { addr, .. } => *addr = fill(*addr)?,
    }
    Ok(t)
}
