//! ENRP (RFC 5353): the registrars of one operation scope share the handlespace. This is part of
//! [`RegistrarCore`] (ENRP and ASAP share the handlespace and the keep-alive bookkeeping), fed
//! with [`Event::Enrp`] and answering with [`Action::SendEnrp`]; it does no I/O either.
//!
//! Peers are named by their registrar identifier and reached at the ENRP endpoint their Server
//! Information gives ([`EnrpDest::Endpoint`]); the shell keeps one connection per endpoint and
//! opens it when needed. A registrar sends everything for a peer over that one connection, so a
//! peer sees one registrar's Handle Updates and Presences in the order they were sent, and the
//! PE checksum in a Presence always matches what its sender had announced before it.
//!
//! Procedures and the choices made where the RFC leaves room:
//! - Start-up: a registrar with ENRP first hunts for a mentor: it sends Presence (R flag) to its
//!   static peers and the multicast group. The first peer heard becomes the mentor; this
//!   registrar asks it for its peer list and its whole handle table (Handle Table Requests until
//!   the M flag is clear), and serves only then. A registrar that hears no peer within
//!   `mentor_discovery_ms` serves alone. Until it serves it sends no Server Announce and answers
//!   registrations and handle resolutions with Lack of Resources (0x6): it says it is not ready
//!   instead of answering from a handlespace it does not have yet.
//! - Presence: to every peer each `heartbeat_interval` (jittered), and to the multicast group.
//!   A new peer gets a List Request once, so peers of peers are found.
//! - Handle Update: every change of an element this registrar owns goes to every peer (ADD for a
//!   registration or update, DEL for a removal). A peer applies an ADD as a registration whose
//!   home is the element's home registrar; it applies a DEL only from the element's owner.
//! - Audit: a Presence received over a connection whose PE checksum differs from the checksum of
//!   what this registrar holds for the sender marks the sender's elements and asks the sender for
//!   its own elements (Handle Table Request, W flag); after the last chunk, the marked elements
//!   the sender did not confirm are removed. Presence by multicast is not audited (as rsplib).
//! - Peer failure: a peer silent for `max_time_last_heard` gets a Presence with the R flag; one
//!   that does not answer within `max_time_no_response` is taken over if it owns elements (else
//!   forgotten). Init Takeover goes to every other peer; when every live peer has acknowledged,
//!   Takeover Server goes out and this registrar becomes the home of the target's elements.
//!   Two initiators for one target: the lower identifier wins (RFC 5353 section 3.9): the higher
//!   one acknowledges and gives up. A target that answers (any message) cancels a takeover of
//!   itself, and one that receives an Init Takeover naming itself answers with a Presence to
//!   every peer. A takeover that expires completes when the peers that did not acknowledge are
//!   themselves silent, and is given up otherwise. No element is removed because its registrar
//!   failed: ownership moves, nothing else. A registrar takes over only while it hears a
//!   majority of the registrars it knows (any survivor in a scope of two): one cut off from
//!   the rest does not claim their elements.
//! - Taken-over elements: the new home sends an Endpoint Keep-Alive with the H flag to each
//!   element it has an ASAP connection with. An element reached over TCP has no listening ASAP
//!   port, so it cannot be called: rsplb's PE side hunts for a new registrar as soon as its
//!   connection breaks and re-registers there, which moves its home at once (usually before the
//!   takeover even starts); an element that never comes back keeps its place until its
//!   registration life runs out.
//! - Scope: with `security.allow_registrar`, messages from any other address are dropped
//!   unanswered (RFC 5355: only the scope's registrars may peer); they create no peer state.
//! - Loop guards and bad input: a message whose sender is this registrar is dropped (a
//!   multicast echo; a different endpoint with this registrar's identifier is logged and counted
//!   as a collision); one addressed to another registrar is dropped; an undecodable or
//!   unexpected message is answered with an ENRP ERROR over the connection it came on (never for
//!   a datagram, and at most `ERROR_BURST` a second) and counted; a Handle Update that breaks a
//!   pool rule (another policy, another transport) is answered with an ERROR naming the cause
//!   and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;

use super::{Action, HandlespaceEvent, RegistrarCore, RemovalReason, bucket::TokenBucket};
use crate::config::{Bucket, EnrpConfig};
use crate::handlespace::{HandleTableCursor, RegisterOutcome, RegistratorId};
use crate::message::{EnrpBody, EnrpMessage, UpdateAction};
use crate::types::{
    CauseCode, ErrorCause, PeId, PoolElement, PoolHandle, RegistrarId, ServerInformation,
    TransportAddress, TransportUse,
};
use crate::wire;

/// ENRP ERRORs sent per second at most (a peer sending garbage never makes this registrar send
/// more than this).
const ERROR_BURST: u32 = 50;

/// Where an ENRP message came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrpSource {
    /// Over a connection (TCP, or an SCTP association); `remote` is its peer address,
    /// `identity` who the peer proved to be (TLS; see [`super::PeerInfo::identity`]).
    Connection {
        conn: super::PeerId,
        remote: SocketAddr,
        identity: Option<String>,
    },
    /// A UDP datagram (multicast Presence).
    Datagram { from: SocketAddr },
}

impl EnrpSource {
    fn ip(&self) -> IpAddr {
        match self {
            Self::Connection { remote, .. } => remote.ip(),
            Self::Datagram { from } => from.ip(),
        }
    }

    fn identity(&self) -> Option<&str> {
        match self {
            Self::Connection { identity, .. } => identity.as_deref(),
            Self::Datagram { .. } => None,
        }
    }
}

/// Where the shell sends an ENRP message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EnrpDest {
    /// A registrar's ENRP endpoint: over the shell's connection to it, opened when there is none.
    Endpoint(TransportAddress),
    /// Back over the connection a message came in on (answers to unknown or broken peers).
    Connection(super::PeerId),
    /// The Presence multicast group.
    Multicast,
}

/// Where this registrar stands in its operation scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Looking for a mentor (until the deadline).
    Hunting,
    /// Downloading the handlespace from the mentor.
    Downloading,
    /// Serving clients.
    Ready,
}

/// What this registrar knows of one peer, for monitoring (`rsplb registrars`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub id: RegistrarId,
    pub endpoint: TransportAddress,
    pub state: PeerState,
    /// Time since the peer was last heard.
    pub last_heard: Duration,
    /// The PE checksum in its last Presence.
    pub checksum: Option<u16>,
    /// The checksum of what this registrar holds for it.
    pub local_checksum: u16,
    pub owned_elements: usize,
    pub mentor: bool,
}

/// A peer's state as this registrar judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    Alive,
    /// Asked for a Presence (R flag) and waiting.
    Probing,
    /// This registrar is taking it over.
    TakingOver,
    /// Its elements are being audited.
    Auditing,
}

/// ENRP counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnrpStats {
    pub presences_sent: u64,
    pub presences_received: u64,
    pub handle_updates_sent: u64,
    pub handle_updates_received: u64,
    pub handle_updates_refused: u64,
    pub table_requests_received: u64,
    pub table_responses_sent: u64,
    pub audits: u64,
    pub audit_purged: u64,
    pub takeovers_started: u64,
    pub takeovers_completed: u64,
    pub takeovers_cancelled: u64,
    pub elements_taken_over: u64,
    pub errors_sent: u64,
    pub errors_received: u64,
    pub malformed: u64,
    pub ignored: u64,
    pub id_collisions: u64,
    /// Claims of ownership of an element that a live registrar (or this one) monitors, refused.
    pub ownership_conflicts: u64,
    /// Messages from addresses outside `security.allow_registrar`, dropped.
    pub refused: u64,
    /// Takeovers not started because this registrar heard too few of its scope.
    pub takeovers_declined: u64,
    /// Elements of Handle Table Responses this registrar could not take (a pool rule or a limit
    /// of its handlespace), each refused alone.
    pub table_elements_refused: u64,
}

/// A request this registrar is waiting on from one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    /// The initial download from the mentor (W clear).
    Download,
    /// An audit of the peer's own elements (W set).
    Audit,
}

struct Takeover {
    /// Peers whose acknowledgement is still missing.
    waiting: BTreeSet<RegistrarId>,
    expires: Instant,
    /// The Init Takeover was sent again once to the peers that had not answered.
    retried: bool,
}

struct Peer {
    endpoint: TransportAddress,
    last_heard: Instant,
    /// When the Presence with the R flag went out.
    probe: Option<Instant>,
    checksum: Option<u16>,
    pending: Option<Pending>,
    /// The peer's elements not yet confirmed by a running audit.
    marked: BTreeSet<(PoolHandle, PeId)>,
    takeover: Option<Takeover>,
    /// Where this registrar's answer to the peer's chunked table request continues, and with
    /// which W flag.
    table_cursor: Option<(bool, HandleTableCursor)>,
}

pub(super) struct EnrpState {
    config: EnrpConfig,
    info: ServerInformation,
    sync: SyncState,
    /// Until when the mentor hunt or the download may last.
    sync_deadline: Instant,
    mentor: Option<RegistrarId>,
    peers: BTreeMap<RegistrarId, Peer>,
    /// Static peers by endpoint, with the identifier once known.
    static_peers: Vec<(TransportAddress, Option<RegistrarId>)>,
    next_tick: Instant,
    errors: TokenBucket,
    /// Elements taken over whose ASAP endpoint this registrar is connecting to (to send the
    /// Keep-Alive with the H flag once the association is up), until their grace ends.
    adopting: Vec<Adopting>,
    pub(super) stats: EnrpStats,
}

/// An element taken over, waiting for the association to its ASAP endpoint.
#[derive(Clone, Debug)]
struct Adopting {
    transport: TransportAddress,
    pool: PoolHandle,
    id: PeId,
    until: Instant,
}

/// Most elements waiting for an association at once (a takeover of a huge registrar connects
/// to the first ones; the others keep their grace to re-register).
const MAX_ADOPTING: usize = 16_384;

impl EnrpState {
    pub(super) fn new(config: EnrpConfig, info: ServerInformation, now: Instant) -> Self {
        let static_peers = config
            .peers
            .iter()
            .map(|a| (static_endpoint(&info.transport, *a), None))
            .collect();
        let alone = config.peers.is_empty() && config.multicast_group.is_none();
        Self {
            sync: if alone {
                SyncState::Ready
            } else {
                SyncState::Hunting
            },
            sync_deadline: now + config.mentor_discovery(),
            mentor: None,
            peers: BTreeMap::new(),
            static_peers,
            adopting: Vec::new(),
            next_tick: now,
            errors: TokenBucket::new(
                Bucket {
                    rate_per_s: ERROR_BURST,
                    burst: ERROR_BURST,
                },
                now,
            ),
            stats: EnrpStats::default(),
            config,
            info,
        }
    }
}

/// A static peer is reached over the transport this registrar is reached by (SCTP where the
/// shell serves ENRP over SCTP, as rsplib's registrars need; TCP otherwise).
fn static_endpoint(own: &TransportAddress, a: SocketAddr) -> TransportAddress {
    match own {
        TransportAddress::Sctp { .. } => TransportAddress::Sctp {
            port: a.port(),
            transport_use: TransportUse::DataOnly,
            addrs: vec![super::canonical(a.ip())],
        },
        _ => tcp_endpoint(a),
    }
}

/// Whether two transport addresses name one endpoint: the same port and an address in common
/// (a multi-homed SCTP endpoint names several; rsplib lists them in its own order).
pub(super) fn same_endpoint(learned: &TransportAddress, configured: &TransportAddress) -> bool {
    let parts = |t: &TransportAddress| -> Option<(u16, Vec<IpAddr>)> {
        match t {
            TransportAddress::Sctp { port, addrs, .. } => Some((*port, addrs.clone())),
            TransportAddress::Tcp { port, addr, .. } => Some((*port, vec![*addr])),
            _ => None,
        }
    };
    match (parts(learned), parts(configured)) {
        (Some((lp, la)), Some((cp, ca))) => {
            lp == cp
                && ca.iter().any(|c| {
                    la.iter()
                        .any(|l| super::canonical(*l) == super::canonical(*c))
                })
        }
        _ => false,
    }
}

fn tcp_endpoint(a: SocketAddr) -> TransportAddress {
    TransportAddress::Tcp {
        port: a.port(),
        transport_use: TransportUse::DataOnly,
        addr: super::canonical(a.ip()),
    }
}

/// The transport with unspecified addresses replaced by the address the message came from.
fn fill_unspecified(t: &TransportAddress, from: IpAddr) -> TransportAddress {
    let from = super::canonical(from);
    let mut t = t.clone();
    match &mut t {
        TransportAddress::Sctp { addrs, .. } => {
            if addrs.is_empty() || addrs.iter().any(|a| a.is_unspecified()) {
                *addrs = vec![from];
            } else {
                // A multi-homed peer (rsplib's hsdump names every local address, loopback
                // first): the address its message came from first, so what goes back uses the
                // association it came on; loopback addresses only for a peer on loopback.
                addrs.retain(|a| from.is_loopback() || !a.is_loopback());
                let canon: Vec<IpAddr> = addrs.iter().map(|a| super::canonical(*a)).collect();
                if let Some(i) = canon.iter().position(|a| *a == from) {
                    let a = addrs.remove(i);
                    addrs.insert(0, a);
                }
                if addrs.is_empty() {
                    *addrs = vec![from];
                }
            }
        }
        TransportAddress::Tcp { addr, .. }
        | TransportAddress::Udp { addr, .. }
        | TransportAddress::UdpLite { addr, .. }
        | TransportAddress::Dccp { addr, .. } => {
            if addr.is_unspecified() {
                *addr = from;
            }
        }
    }
    t
}

impl RegistrarCore {
    /// Take part in ENRP with `info` (this registrar's identifier and ENRP endpoint as peers
    /// should reach it; an unspecified address makes them use the source address). Call once,
    /// right after [`RegistrarCore::new`], when `config.enrp.enabled()`.
    pub fn enable_enrp(&mut self, info: ServerInformation, now: Instant) {
        let state = EnrpState::new(self.config.enrp.clone(), info, now);
        if state.sync != SyncState::Ready {
            log::info!(
                "ENRP: looking for a mentor among {} static peer(s){} for {:?}",
                state.static_peers.len(),
                if state.config.multicast_group.is_some() {
                    " and by multicast"
                } else {
                    ""
                },
                state.config.mentor_discovery()
            );
        }
        self.enrp = Some(state);
    }

    /// Whether this registrar answers clients: always without ENRP, after its start-up with it.
    pub fn serving(&self) -> bool {
        self.enrp
            .as_ref()
            .is_none_or(|e| e.sync == SyncState::Ready)
    }

    /// Where this registrar stands in its scope (`None` without ENRP).
    pub fn sync_state(&self) -> Option<SyncState> {
        self.enrp.as_ref().map(|e| e.sync)
    }

    pub fn enrp_stats(&self) -> EnrpStats {
        self.enrp.as_ref().map(|e| e.stats).unwrap_or_default()
    }

    /// The peers this registrar knows, for monitoring.
    pub fn enrp_peers(&self, now: Instant) -> Vec<PeerView> {
        let Some(e) = &self.enrp else {
            return Vec::new();
        };
        e.peers
            .iter()
            .map(|(id, p)| PeerView {
                id: *id,
                endpoint: p.endpoint.clone(),
                state: if p.takeover.is_some() {
                    PeerState::TakingOver
                } else if p.pending == Some(Pending::Audit) {
                    PeerState::Auditing
                } else if p.probe.is_some() {
                    PeerState::Probing
                } else {
                    PeerState::Alive
                },
                last_heard: now.saturating_duration_since(p.last_heard),
                checksum: p.checksum,
                local_checksum: self.handlespace.checksum(*id),
                owned_elements: self.handlespace.owned_count(*id),
                mentor: e.mentor == Some(*id),
            })
            .collect()
    }

    pub(super) fn enrp_poll_timeout(&self) -> Option<Instant> {
        let e = self.enrp.as_ref()?;
        let mut t = e.next_tick;
        if e.sync != SyncState::Ready {
            t = t.min(e.sync_deadline);
        }
        Some(t)
    }

    pub(super) fn enrp_timeout(&mut self, now: Instant) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        if e.sync != SyncState::Ready && now >= e.sync_deadline {
            match e.sync {
                SyncState::Hunting => log::info!("ENRP: no mentor found; serving alone"),
                _ => log::warn!(
                    "ENRP: the download from mentor {:?} did not finish in time; serving with \
                     what arrived (audits will repair the rest)",
                    e.mentor
                ),
            }
            self.become_ready();
        }
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        if now < e.next_tick {
            return;
        }
        let interval = e.config.heartbeat_interval();
        let factor = self.rng.random_range(0.875..=1.125);
        e.next_tick = now + interval.mul_f64(factor);
        self.heartbeat(now);
        self.judge_peers(now);
    }

    fn become_ready(&mut self) {
        if let Some(e) = self.enrp.as_mut() {
            e.sync = SyncState::Ready;
            if let Some(m) = e.mentor
                && let Some(p) = e.peers.get_mut(&m)
                && p.pending == Some(Pending::Download)
            {
                p.pending = None;
            }
        }
        // The first announce goes out at once, now that there is something to serve.
        if self.announce_interval.is_some() {
            self.next_announce = Some(self.next_announce.unwrap_or(self.clock));
        }
    }

    /// Presence to every peer, to the static peers not yet known, and to the multicast group.
    fn heartbeat(&mut self, _now: Instant) {
        let Some(e) = self.enrp.as_ref() else {
            return;
        };
        let hunting = e.sync == SyncState::Hunting;
        let mut dests: Vec<(EnrpDest, RegistrarId)> = e
            .peers
            .iter()
            .map(|(id, p)| (EnrpDest::Endpoint(p.endpoint.clone()), *id))
            .collect();
        dests.extend(
            e.static_peers
                .iter()
                .filter(|(_, id)| id.is_none_or(|id| !e.peers.contains_key(&id)))
                .map(|(ep, _)| (EnrpDest::Endpoint(ep.clone()), RegistrarId(0))),
        );
        if e.config.multicast_group.is_some() {
            dests.push((EnrpDest::Multicast, RegistrarId(0)));
        }
        for (to, receiver) in dests {
            // While hunting, ask for an answer: the first one names the mentor.
            self.send_presence(to, receiver, hunting);
        }
    }

    fn send_presence(&mut self, to: EnrpDest, receiver: RegistrarId, reply_required: bool) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        e.stats.presences_sent += 1;
        let info = e.info.clone();
        let checksum = self.handlespace.checksum(self.id);
        self.send_enrp(
            to,
            receiver,
            EnrpBody::Presence {
                reply_required,
                checksum,
                info: Some(info),
            },
        );
    }

    /// Probe silent peers, take over or forget the ones that did not answer, finish or give up
    /// expired takeovers.
    fn judge_peers(&mut self, now: Instant) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        let last_heard = e.config.max_time_last_heard();
        let no_response = e.config.max_time_no_response();
        let mut probe = Vec::new();
        let mut dead = Vec::new();
        let mut expired = Vec::new();
        for (id, p) in &e.peers {
            if let Some(t) = &p.takeover {
                if now >= t.expires {
                    expired.push(*id);
                }
                continue;
            }
            match p.probe {
                None if now.saturating_duration_since(p.last_heard) >= last_heard => {
                    probe.push(*id)
                }
                Some(at) if now.saturating_duration_since(at) >= no_response => dead.push(*id),
                _ => {}
            }
        }
        for id in probe {
            if let Some(p) = self.enrp.as_mut().and_then(|e| e.peers.get_mut(&id)) {
                p.probe = Some(now);
                let to = EnrpDest::Endpoint(p.endpoint.clone());
                log::info!("ENRP: peer {id} silent for {last_heard:?}; asking for a Presence");
                self.send_presence(to, id, true);
            }
        }
        for id in dead {
            self.peer_dead(now, id);
        }
        for id in expired {
            self.takeover_expired(now, id);
        }
    }

    fn peer_dead(&mut self, now: Instant, target: RegistrarId) {
        let owned = self.handlespace.owned_count(target);
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        if owned == 0 {
            log::info!("ENRP: peer {target} did not answer and owns no element; forgetting it");
            self.forget_peer(target);
            return;
        }
        // Only a registrar that still hears a majority of its scope takes over: one cut off
        // from everyone is the likelier culprit, and a takeover there would have to be undone
        // (and could bring back elements the other side removed meanwhile). In a scope of two
        // there is no majority to ask; the survivor goes ahead.
        let total = e.peers.len() + 1;
        let heard = 1 + e
            .peers
            .iter()
            .filter(|(id, p)| **id != target && p.probe.is_none() && p.takeover.is_none())
            .count();
        if total > 2 && heard * 2 <= total {
            log::warn!(
                "ENRP: peer {target} did not answer, but this registrar hears only {heard} of \
                 the {total} registrars it knows; not taking over (it may be the one cut off)"
            );
            e.stats.takeovers_declined += 1;
            if let Some(p) = e.peers.get_mut(&target) {
                p.probe = Some(now);
            }
            return;
        }
        // Every other peer that is not itself under suspicion must agree.
        let waiting: BTreeSet<RegistrarId> = e
            .peers
            .iter()
            .filter(|(id, p)| **id != target && p.probe.is_none() && p.takeover.is_none())
            .map(|(id, _)| *id)
            .collect();
        // The target gets it too: if it is alive after all, it answers (with a Presence).
        let all: Vec<RegistrarId> = e.peers.keys().copied().collect();
        let expires = now + e.config.takeover_expiry();
        e.stats.takeovers_started += 1;
        log::warn!(
            "ENRP: peer {target} did not answer; taking over its {owned} element(s) ({} peer(s) \
             to acknowledge)",
            waiting.len()
        );
        if let Some(p) = e.peers.get_mut(&target) {
            p.takeover = Some(Takeover {
                waiting: waiting.clone(),
                expires,
                retried: false,
            });
        }
        for id in all {
            self.send_to_peer(id, EnrpBody::InitTakeover { target });
        }
        if waiting.is_empty() {
            self.complete_takeover(now, target);
        }
    }

    fn takeover_expired(&mut self, now: Instant, target: RegistrarId) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        let expiry = e.config.takeover_expiry();
        let Some(t) = e.peers.get(&target).and_then(|p| p.takeover.as_ref()) else {
            return;
        };
        // Peers that did not acknowledge but are silent themselves cannot object; a live one
        // that did not acknowledge still hears the target, or takes it over itself (with a
        // lower id), or missed the request: ask once more, then give up.
        let objectors: Vec<RegistrarId> = t
            .waiting
            .iter()
            .copied()
            .filter(|id| e.peers.get(id).is_some_and(|p| p.probe.is_none()))
            .collect();
        let retried = t.retried;
        if objectors.is_empty() {
            self.complete_takeover(now, target);
        } else if !retried {
            log::info!(
                "ENRP: takeover of {target} not acknowledged by {objectors:?}; asking again"
            );
            if let Some(t) = e.peers.get_mut(&target).and_then(|p| p.takeover.as_mut()) {
                t.retried = true;
                t.expires = now + expiry;
            }
            for id in objectors.into_iter().chain([target]) {
                self.send_to_peer(id, EnrpBody::InitTakeover { target });
            }
        } else {
            log::info!(
                "ENRP: takeover of {target} not acknowledged by {objectors:?}; giving it up"
            );
            e.stats.takeovers_cancelled += 1;
            if let Some(p) = e.peers.get_mut(&target) {
                p.takeover = None;
                p.probe = Some(now);
            }
        }
    }

    fn complete_takeover(&mut self, now: Instant, target: RegistrarId) {
        let me = self.id;
        let others: Vec<RegistrarId> = self
            .enrp
            .as_ref()
            .map(|e| e.peers.keys().copied().filter(|id| *id != target).collect())
            .unwrap_or_default();
        for id in others {
            self.send_to_peer(id, EnrpBody::TakeoverServer { target });
        }
        let moved = self.handlespace.take_over(target, me);
        log::warn!(
            "ENRP: took over {} element(s) of registrar {target}",
            moved.len()
        );
        if let Some(e) = self.enrp.as_mut() {
            e.stats.takeovers_completed += 1;
            e.stats.elements_taken_over += moved.len() as u64;
        }
        for (pool, id) in moved {
            self.adopt(now, &pool, id);
        }
        self.forget_peer(target);
    }

    /// This registrar became the element's home by a takeover: monitor it when an ASAP
    /// connection to it exists (and tell it with the H flag); else give its pool element
    /// `takeover_grace` to re-register somewhere before it leaves.
    fn adopt(&mut self, now: Instant, pool: &PoolHandle, id: PeId) {
        let Some(entry) = self.handlespace.element(pool, id) else {
            return;
        };
        let asap = entry.element().asap_transport.clone();
        let life = entry.element().registration_life_ms;
        let expires = entry.expires_at();
        let peer = asap.as_ref().and_then(|asap| {
            self.peers.iter().find_map(|(pid, p)| {
                p.info
                    .asap_transport()
                    .is_some_and(|t| t.protocol() == asap.protocol() && same_endpoint(&t, asap))
                    .then_some(*pid)
            })
        });
        let Some(peer) = peer else {
            let grace = self
                .enrp
                .as_ref()
                .map_or(Duration::ZERO, |e| e.config.takeover_grace());
            let until = now + grace;
            if expires.is_none_or(|t| t > until) {
                self.handlespace.set_expiry(pool, id, Some(until));
            }
            // Over SCTP the element's ASAP endpoint accepts associations (rsplib's elements
            // take a Keep-Alive with the H flag on it as the news of a new home): connect.
            if let (Some(t @ TransportAddress::Sctp { .. }), Some(e)) = (asap, self.enrp.as_mut()) {
                e.adopting.retain(|a| a.until > now);
                if e.adopting.len() < MAX_ADOPTING {
                    let connecting = e.adopting.iter().any(|a| a.transport == t);
                    e.adopting.push(Adopting {
                        transport: t.clone(),
                        pool: pool.clone(),
                        id,
                        until,
                    });
                    if !connecting {
                        self.actions.push_back(Action::Connect { transport: t });
                    }
                }
            }
            return;
        };
        // Reached: it lives as long as a registration here would (a grace set while the
        // association was being opened ends).
        if life > 0 {
            let until = now.checked_add(Duration::from_millis(life as u64));
            self.handlespace.set_expiry(pool, id, until);
        }
        self.track(now, peer, pool, id);
        self.send(
            peer,
            &crate::message::AsapMessage::EndpointKeepAlive {
                home: true,
                server_id: self.id,
                pool_handle: pool.clone(),
                id,
            },
        );
    }

    /// An ASAP association came up with `transport`: the elements taken over that wait for it
    /// are told their new home on it.
    pub(super) fn adopt_connected(&mut self, now: Instant, transport: &TransportAddress) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        if e.adopting.is_empty() {
            return;
        }
        let (ready, waiting): (Vec<Adopting>, Vec<Adopting>) = std::mem::take(&mut e.adopting)
            .into_iter()
            .filter(|a| a.until > now)
            .partition(|a| {
                a.transport.protocol() == transport.protocol()
                    && same_endpoint(&a.transport, transport)
            });
        e.adopting = waiting;
        for a in ready {
            if self
                .handlespace
                .element(&a.pool, a.id)
                .is_some_and(|el| el.element().home_registrar == self.id)
            {
                self.adopt(now, &a.pool, a.id);
            }
        }
    }

    fn forget_peer(&mut self, id: RegistrarId) {
        if let Some(e) = self.enrp.as_mut() {
            e.peers.remove(&id);
            if e.mentor == Some(id) {
                e.mentor = None;
            }
        }
    }

    /// One ENRP message from the transport.
    pub fn handle_enrp(&mut self, now: Instant, source: EnrpSource, bytes: &[u8]) {
        self.clock = self.clock.max(now);
        let unauthenticated_presence = matches!(source, EnrpSource::Datagram { .. })
            && self.config.security.identities.is_some();
        if unauthenticated_presence
            || !self.config.security.authorizes(
                crate::config::Role::Registrar,
                source.ip(),
                source.identity(),
                None,
            )
        {
            // Not of this operation scope (security.allow_registrar, or an identity no rule of
            // security.identities lets peer): no answer, no state. Where peers are authorized by
            // identity, multicast Presence (which nobody can authenticate, RFC 5355) is not
            // heard either: peers come from the static list and authenticated List Responses.
            if let Some(e) = self.enrp.as_mut() {
                e.stats.refused += 1;
            }
            return;
        }
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        let msg = match wire::decode_enrp(bytes) {
            Ok(d) => d.message,
            Err(err) => {
                e.stats.malformed += 1;
                log::debug!("ENRP from {}: undecodable: {err}", source.ip());
                if err.report {
                    let cause = super::error_cause(&err);
                    self.reply_error(now, &source, RegistrarId(0), cause);
                }
                return;
            }
        };
        let me = self.id;
        if msg.sender == me {
            let own_echo = matches!(&msg.body, EnrpBody::Presence { info: Some(i), .. }
                if fill_unspecified(&i.transport, source.ip()) == fill_unspecified(&e.info.transport, source.ip()));
            if !own_echo && !matches!(source, EnrpSource::Datagram { .. }) {
                e.stats.id_collisions += 1;
                log::warn!(
                    "ENRP: a registrar at {} uses this registrar's identifier {me}; its \
                     messages are ignored (give each registrar its own registrar_id)",
                    source.ip()
                );
            }
            return;
        }
        if msg.sender.0 == 0 || (msg.receiver.0 != 0 && msg.receiver != me) {
            e.stats.ignored += 1;
            return;
        }
        let sender = msg.sender;
        // Any message from a peer shows it is alive.
        if let Some(p) = e.peers.get_mut(&sender) {
            p.last_heard = now;
            p.probe = None;
            if p.takeover.take().is_some() {
                e.stats.takeovers_cancelled += 1;
                log::info!("ENRP: peer {sender} is alive after all; takeover cancelled");
            }
        }
        match msg.body {
            EnrpBody::Presence {
                reply_required,
                checksum,
                info,
            } => self.on_presence(now, &source, sender, reply_required, checksum, info),
            EnrpBody::HandleTableRequest { own_children_only } => {
                self.on_table_request(&source, sender, own_children_only)
            }
            EnrpBody::HandleTableResponse {
                reject,
                more,
                pools,
            } => self.on_table_response(now, sender, reject, more, pools),
            EnrpBody::HandleUpdate {
                action,
                pool_handle,
                element,
                ..
            } => self.on_handle_update(now, &source, sender, action, pool_handle, element),
            EnrpBody::ListRequest => self.on_list_request(&source, sender),
            EnrpBody::ListResponse { reject, servers } => {
                if !reject {
                    self.on_list_response(now, &source, servers)
                }
            }
            EnrpBody::InitTakeover { target } => self.on_init_takeover(now, sender, target),
            EnrpBody::InitTakeoverAck { target } => self.on_takeover_ack(now, sender, target),
            EnrpBody::TakeoverServer { target } => self.on_takeover_server(now, sender, target),
            EnrpBody::Error { causes } => {
                if let Some(e) = self.enrp.as_mut() {
                    e.stats.errors_received += 1;
                }
                log::info!(
                    "ENRP: registrar {sender} reports {} error cause(s), the first {:?}",
                    causes.len(),
                    causes.first().map(|c| c.code)
                );
            }
        }
    }

    fn on_presence(
        &mut self,
        now: Instant,
        source: &EnrpSource,
        sender: RegistrarId,
        reply_required: bool,
        checksum: u16,
        info: Option<ServerInformation>,
    ) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        e.stats.presences_received += 1;
        let known = e.peers.contains_key(&sender);
        if !known {
            let Some(info) = info.filter(|i| i.id == sender) else {
                // Without Server Information there is no endpoint to answer to.
                e.stats.ignored += 1;
                return;
            };
            if e.peers.len() >= e.config.max_peers {
                e.stats.ignored += 1;
                log::warn!(
                    "ENRP: ignoring registrar {sender}: already {} peers (enrp.max_peers)",
                    e.peers.len()
                );
                return;
            }
            let endpoint = fill_unspecified(&info.transport, source.ip());
            log::info!("ENRP: new peer {sender} at {endpoint:?}");
            for (ep, id) in e.static_peers.iter_mut() {
                if same_endpoint(&endpoint, ep) {
                    *id = Some(sender);
                }
            }
            e.peers.insert(
                sender,
                Peer {
                    endpoint,
                    last_heard: now,
                    probe: None,
                    checksum: None,
                    pending: None,
                    marked: BTreeSet::new(),
                    takeover: None,
                    table_cursor: None,
                },
            );
        }
        let hunting = e.sync == SyncState::Hunting;
        let unicast = matches!(source, EnrpSource::Connection { .. });
        let ready = e.sync == SyncState::Ready;
        if let Some(p) = e.peers.get_mut(&sender) {
            p.checksum = Some(checksum);
        }
        if !known {
            // Learn the peers of the new peer, and let it learn this registrar at once.
            self.send_to_peer(sender, EnrpBody::ListRequest);
            if !reply_required {
                let to = self.peer_dest(sender);
                if let Some(to) = to {
                    self.send_presence(to, sender, false);
                }
            }
        }
        if reply_required && let Some(to) = self.peer_dest(sender) {
            self.send_presence(to, sender, false);
        }
        if hunting {
            let Some(e) = self.enrp.as_mut() else {
                return;
            };
            log::info!("ENRP: mentor is registrar {sender}; downloading its handlespace");
            e.mentor = Some(sender);
            e.sync = SyncState::Downloading;
            e.sync_deadline = now + e.config.download_timeout();
            if let Some(p) = e.peers.get_mut(&sender) {
                p.pending = Some(Pending::Download);
            }
            self.send_to_peer(
                sender,
                EnrpBody::HandleTableRequest {
                    own_children_only: false,
                },
            );
            return;
        }
        if ready && unicast && checksum != self.handlespace.checksum(sender) {
            self.start_audit(sender, checksum);
        }
    }

    fn start_audit(&mut self, sender: RegistrarId, theirs: u16) {
        let marked: BTreeSet<(PoolHandle, PeId)> = self
            .handlespace
            .owned_by(sender)
            .map(|(h, e)| (h.clone(), e.id()))
            .collect();
        let ours = self.handlespace.checksum(sender);
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        let Some(p) = e.peers.get_mut(&sender) else {
            return;
        };
        if p.pending.is_some() {
            return; // a download or audit is running; its end settles the difference
        }
        e.stats.audits += 1;
        log::info!(
            "ENRP: audit of registrar {sender}: its checksum 0x{theirs:04x}, ours 0x{ours:04x} \
             over {} element(s); asking for its own elements",
            marked.len()
        );
        p.marked = marked;
        p.pending = Some(Pending::Audit);
        self.send_to_peer(
            sender,
            EnrpBody::HandleTableRequest {
                own_children_only: true,
            },
        );
    }

    fn on_table_request(&mut self, source: &EnrpSource, sender: RegistrarId, own_only: bool) {
        let me = self.id;
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        e.stats.table_requests_received += 1;
        let max = e.config.max_elements_per_table_response;
        let max_bytes = e.config.max_table_response_bytes;
        let Some(p) = e.peers.get_mut(&sender) else {
            // rsplib rejects requests from registrars it does not know.
            let to = source_dest(source);
            if let Some(to) = to {
                self.send_enrp(
                    to,
                    sender,
                    EnrpBody::HandleTableResponse {
                        reject: true,
                        more: false,
                        pools: Vec::new(),
                    },
                );
            }
            return;
        };
        let cursor = match p.table_cursor.take() {
            Some((w, c)) if w == own_only => Some(c),
            _ => None,
        };
        let owner = own_only.then_some(me);
        let mut n = max;
        let (pools, next) = loop {
            let chunk = self.handlespace.handle_table(cursor.as_ref(), n, owner);
            let body = EnrpBody::HandleTableResponse {
                reject: false,
                more: chunk.next.is_some(),
                pools: chunk.pools.clone(),
            };
            let size = wire::encode_enrp(&EnrpMessage {
                sender: me,
                receiver: sender,
                body,
            })
            .map_or(usize::MAX, |b| b.len());
            if size <= max_bytes || n == 1 {
                break (chunk.pools, chunk.next);
            }
            n = (n / 2).max(1);
        };
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        e.stats.table_responses_sent += 1;
        if let Some(p) = e.peers.get_mut(&sender) {
            p.table_cursor = next.clone().map(|c| (own_only, c));
        }
        self.send_to_peer(
            sender,
            EnrpBody::HandleTableResponse {
                reject: false,
                more: next.is_some(),
                pools,
            },
        );
    }

    fn on_table_response(
        &mut self,
        now: Instant,
        sender: RegistrarId,
        reject: bool,
        more: bool,
        pools: Vec<(PoolHandle, Vec<PoolElement>)>,
    ) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        let Some(p) = e.peers.get_mut(&sender) else {
            e.stats.ignored += 1;
            return;
        };
        let Some(pending) = p.pending else {
            e.stats.ignored += 1; // not asked for
            return;
        };
        if reject {
            log::warn!("ENRP: registrar {sender} refused its handle table");
            p.pending = None;
            p.marked.clear();
            if pending == Pending::Download {
                self.become_ready();
            }
            return;
        }
        for (pool, elements) in pools {
            for element in elements {
                if let Some(e) = self.enrp.as_mut()
                    && let Some(p) = e.peers.get_mut(&sender)
                {
                    p.marked.remove(&(pool.clone(), element.id));
                }
                let owner = home_of(&element, sender);
                if let Err(cause) = self.apply_remote(now, sender, owner, &pool, element, false) {
                    if let Some(e) = self.enrp.as_mut() {
                        e.stats.table_elements_refused += 1;
                    }
                    log::debug!("ENRP: element of {pool} from {sender} refused: {cause}");
                }
            }
        }
        if more {
            self.send_to_peer(
                sender,
                EnrpBody::HandleTableRequest {
                    own_children_only: pending == Pending::Audit,
                },
            );
            return;
        }
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        let Some(p) = e.peers.get_mut(&sender) else {
            return;
        };
        p.pending = None;
        let marked = std::mem::take(&mut p.marked);
        match pending {
            Pending::Download => {
                log::info!(
                    "ENRP: handlespace downloaded from {sender}: {} element(s) in {} pool(s)",
                    self.handlespace.len(),
                    self.handlespace.pool_count()
                );
                self.become_ready();
            }
            Pending::Audit => {
                let mut purged = 0;
                for (pool, id) in marked {
                    if self
                        .handlespace
                        .element(&pool, id)
                        .is_some_and(|el| el.owner() == sender)
                    {
                        self.handlespace.deregister(&pool, id);
                        self.notify_removed(pool, id, RemovalReason::Audit);
                        purged += 1;
                    }
                }
                if let Some(e) = self.enrp.as_mut() {
                    e.stats.audit_purged += purged;
                }
                log::info!(
                    "ENRP: audit of {sender} done: {purged} element(s) it no longer has removed; \
                     checksum now 0x{:04x}",
                    self.handlespace.checksum(sender)
                );
            }
        }
    }

    /// An element learned from a peer (table or update). Elements this registrar is home of are
    /// its own to judge: a peer's copy never changes them.
    ///
    /// `fresh`: a Handle Update in which the sender names itself the home: the element has just
    /// registered there, so that is where it lives now (unless this registrar keeps it alive
    /// itself). A table entry may be a registrar's claim from a takeover it cannot back, and is
    /// judged by [`Self::may_move`].
    fn apply_remote(
        &mut self,
        now: Instant,
        sender: RegistrarId,
        owner: RegistrarId,
        pool: &PoolHandle,
        element: PoolElement,
        fresh: bool,
    ) -> Result<(), CauseCode> {
        if owner == self.id {
            return Ok(());
        }
        if let Some(current) = self
            .handlespace
            .element(pool, element.id)
            .map(|e| e.owner())
            && !(if fresh && owner == sender && current != self.id {
                true
            } else {
                self.may_move(current, sender, owner, pool, element.id)
            })
        {
            if let Some(e) = self.enrp.as_mut() {
                e.stats.ownership_conflicts += 1;
            }
            return Ok(());
        }
        let before = self.handlespace.element(pool, element.id).map(|e| {
            (
                e.element().user_transport.clone(),
                e.element().policy.clone(),
            )
        });
        let was_mine = self
            .handlespace
            .element(pool, element.id)
            .is_some_and(|e| e.owner() == self.id);
        let id = element.id;
        let outcome = self.handlespace.register(
            pool,
            element.clone(),
            owner,
            RegistratorId::Peer(sender),
            now,
        )?;
        // It may have been ours: another registrar is its home now.
        self.untrack(pool, id);
        if was_mine {
            // This registrar only held it after a takeover and yields it: the peers that learned
            // this registrar as its home must learn the new one (a Handle Update naming it), or
            // their audit of this registrar would remove an element that is alive elsewhere.
            let mut moved = element.clone();
            moved.home_registrar = owner;
            self.announce_yield(sender, pool, moved);
        }
        let changed = before
            .as_ref()
            .is_none_or(|(t, p)| *t != element.user_transport || *p != element.policy);
        let mut element = element;
        element.home_registrar = owner;
        element.asap_transport = None;
        match outcome {
            RegisterOutcome::Added { .. } => {
                self.actions
                    .push_back(Action::Notify(HandlespaceEvent::ElementAdded {
                        pool: pool.clone(),
                        element,
                    }))
            }
            RegisterOutcome::Updated if changed => {
                self.actions
                    .push_back(Action::Notify(HandlespaceEvent::ElementUpdated {
                        pool: pool.clone(),
                        element,
                    }))
            }
            RegisterOutcome::Updated => {}
        }
        Ok(())
    }

    /// Whether a peer's claim that `claimed` owns an element that `current` owns here may
    /// change this registrar's view. Ownership is settled by where the element is monitored:
    /// an element this registrar keeps alive over its own ASAP connection stays its own; one it
    /// only holds after a takeover (it cannot reach it) goes to whoever claims it. An element of
    /// another live registrar moves only by that registrar's word (or the claimant's own, once
    /// the owner has fallen silent) — after a partition, each side's takeovers are undone this
    /// way without any element leaving the handlespace.
    fn may_move(
        &self,
        current: RegistrarId,
        sender: RegistrarId,
        claimed: RegistrarId,
        pool: &PoolHandle,
        id: PeId,
    ) -> bool {
        if current == self.id {
            return !self.slots.contains_key(&(pool.clone(), id));
        }
        if current == sender || current == claimed {
            return true;
        }
        let Some(e) = self.enrp.as_ref() else {
            return true;
        };
        e.peers
            .get(&current)
            .is_none_or(|p| p.probe.is_some() || p.takeover.is_some())
    }

    fn on_handle_update(
        &mut self,
        now: Instant,
        source: &EnrpSource,
        sender: RegistrarId,
        action: UpdateAction,
        pool: PoolHandle,
        element: PoolElement,
    ) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        e.stats.handle_updates_received += 1;
        if !e.peers.contains_key(&sender) {
            e.stats.ignored += 1; // only peers that said who they are (Presence) update
            return;
        }
        if let Some(p) = e.peers.get_mut(&sender) {
            p.marked.remove(&(pool.clone(), element.id));
        }
        let owner = home_of(&element, sender);
        match action {
            UpdateAction::AddPe => {
                if let Err(cause) =
                    self.apply_remote(now, sender, owner, &pool, element.clone(), true)
                {
                    if let Some(e) = self.enrp.as_mut() {
                        e.stats.handle_updates_refused += 1;
                    }
                    log::info!(
                        "ENRP: Handle Update from {sender} for {} in {pool} refused: {cause}",
                        element.id
                    );
                    let info = match cause {
                        CauseCode::InconsistentPoolingPolicy => {
                            wire::encode_policy_param(&element.policy).ok()
                        }
                        CauseCode::InconsistentTransportType => {
                            wire::encode_transport_param(&element.user_transport).ok()
                        }
                        _ => None,
                    }
                    .filter(|i| i.len() <= super::MAX_ERROR_INFO)
                    .unwrap_or_default();
                    self.reply_error(now, source, sender, ErrorCause { code: cause, info });
                }
            }
            UpdateAction::DelPe => {
                let owned_by_sender = self
                    .handlespace
                    .element(&pool, element.id)
                    .is_some_and(|el| el.owner() != self.id && el.owner() == sender);
                if owned_by_sender {
                    self.handlespace.deregister(&pool, element.id);
                    self.notify_removed(pool, element.id, RemovalReason::PeerUpdate);
                } else if let Some(e) = self.enrp.as_mut() {
                    e.stats.ignored += 1;
                }
            }
        }
    }

    fn on_list_request(&mut self, source: &EnrpSource, sender: RegistrarId) {
        let Some(e) = self.enrp.as_ref() else {
            return;
        };
        let servers: Vec<ServerInformation> = e
            .peers
            .iter()
            .filter(|(id, _)| **id != sender)
            .map(|(id, p)| ServerInformation {
                id: *id,
                transport: p.endpoint.clone(),
            })
            .collect();
        let known = e.peers.contains_key(&sender);
        let body = EnrpBody::ListResponse {
            reject: false,
            servers,
        };
        if known {
            self.send_to_peer(sender, body);
        } else if let Some(to) = source_dest(source) {
            self.send_enrp(to, sender, body);
        }
    }

    fn on_list_response(
        &mut self,
        _now: Instant,
        _source: &EnrpSource,
        servers: Vec<ServerInformation>,
    ) {
        let me = self.id;
        let Some(e) = self.enrp.as_ref() else {
            return;
        };
        let new: Vec<ServerInformation> = servers
            .into_iter()
            .filter(|s| s.id != me && s.id.0 != 0 && !e.peers.contains_key(&s.id))
            .collect();
        // A listed registrar becomes a peer when it answers: ask it.
        for s in new {
            self.send_presence(EnrpDest::Endpoint(s.transport.clone()), s.id, true);
        }
    }

    fn on_init_takeover(&mut self, now: Instant, sender: RegistrarId, target: RegistrarId) {
        let me = self.id;
        if target == me {
            // Alive: everyone must hear it.
            log::warn!("ENRP: registrar {sender} tries to take this registrar over; answering");
            let peers: Vec<RegistrarId> = self
                .enrp
                .as_ref()
                .map(|e| e.peers.keys().copied().collect())
                .unwrap_or_default();
            for id in peers {
                if let Some(to) = self.peer_dest(id) {
                    self.send_presence(to, id, false);
                }
            }
            return;
        }
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        let silence = e.config.max_time_last_heard();
        if e.peers
            .get(&target)
            .is_some_and(|p| now.saturating_duration_since(p.last_heard) < silence)
        {
            // This registrar still hears the target: no agreement. The initiator gives the
            // takeover up unless the target falls silent here too.
            log::info!(
                "ENRP: registrar {sender} wants to take over {target}, which this registrar \
                 still hears; not acknowledging"
            );
            return;
        }
        let mine = e.peers.get(&target).is_some_and(|p| p.takeover.is_some());
        if mine {
            if me < sender {
                return; // this registrar has the lower id and goes on; no acknowledgement
            }
            log::info!(
                "ENRP: registrar {sender} (lower id) takes over {target} too; leaving it to it"
            );
            e.stats.takeovers_cancelled += 1;
            if let Some(p) = e.peers.get_mut(&target) {
                p.takeover = None;
                p.probe = Some(now);
            }
        }
        self.send_to_peer(sender, EnrpBody::InitTakeoverAck { target });
    }

    fn on_takeover_ack(&mut self, now: Instant, sender: RegistrarId, target: RegistrarId) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        let Some(t) = e.peers.get_mut(&target).and_then(|p| p.takeover.as_mut()) else {
            e.stats.ignored += 1;
            return;
        };
        t.waiting.remove(&sender);
        if t.waiting.is_empty() {
            self.complete_takeover(now, target);
        }
    }

    fn on_takeover_server(&mut self, _now: Instant, sender: RegistrarId, target: RegistrarId) {
        if target == self.id {
            log::warn!("ENRP: registrar {sender} took this registrar over");
            return;
        }
        let moved = self.handlespace.take_over(target, sender);
        log::info!(
            "ENRP: registrar {sender} took over {} element(s) of {target}",
            moved.len()
        );
        self.forget_peer(target);
    }

    /// Tell every peer about a change of an element this registrar owns.
    pub(super) fn enrp_own_change(
        &mut self,
        action: UpdateAction,
        pool: &PoolHandle,
        element: &PoolElement,
    ) {
        let mut element = element.clone();
        element.home_registrar = self.id;
        self.broadcast_update(None, action, pool, element);
    }

    /// A Handle Update naming `element`'s new home, to every peer but the one that claimed it.
    fn announce_yield(&mut self, claimant: RegistrarId, pool: &PoolHandle, element: PoolElement) {
        self.broadcast_update(Some(claimant), UpdateAction::AddPe, pool, element);
    }

    /// One Handle Update to every peer but `except`. The receiver id is part of every ENRP
    /// message, so each peer's copy is encoded apart.
    fn broadcast_update(
        &mut self,
        except: Option<RegistrarId>,
        action: UpdateAction,
        pool: &PoolHandle,
        element: PoolElement,
    ) {
        let ids: Vec<RegistrarId> = self
            .enrp
            .as_ref()
            .map(|e| {
                e.peers
                    .keys()
                    .copied()
                    .filter(|id| Some(*id) != except)
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return;
        }
        let body = EnrpBody::HandleUpdate {
            takeover_suggested: false,
            action,
            pool_handle: pool.clone(),
            element,
        };
        for id in ids {
            if let Some(e) = self.enrp.as_mut() {
                e.stats.handle_updates_sent += 1;
            }
            self.send_to_peer(id, body.clone());
        }
    }

    fn peer_dest(&self, id: RegistrarId) -> Option<EnrpDest> {
        let e = self.enrp.as_ref()?;
        e.peers
            .get(&id)
            .map(|p| EnrpDest::Endpoint(p.endpoint.clone()))
    }

    fn send_to_peer(&mut self, id: RegistrarId, body: EnrpBody) {
        if let Some(to) = self.peer_dest(id) {
            self.send_enrp(to, id, body);
        }
    }

    fn send_enrp(&mut self, to: EnrpDest, receiver: RegistrarId, body: EnrpBody) {
        let msg = EnrpMessage {
            sender: self.id,
            receiver,
            body,
        };
        match wire::encode_enrp(&msg) {
            Ok(bytes) => self.actions.push_back(Action::SendEnrp { to, bytes }),
            Err(e) => log::error!("cannot encode ENRP {:?}: {e}", msg.body.type_code()),
        }
    }

    fn reply_error(
        &mut self,
        now: Instant,
        source: &EnrpSource,
        receiver: RegistrarId,
        cause: ErrorCause,
    ) {
        let Some(e) = self.enrp.as_mut() else {
            return;
        };
        let Some(to) = source_dest(source) else {
            return; // never answer a datagram: it may be spoofed
        };
        if !e.errors.try_take(now) {
            return;
        }
        e.stats.errors_sent += 1;
        self.send_enrp(
            to,
            receiver,
            EnrpBody::Error {
                causes: vec![cause],
            },
        );
    }
}

/// The element's home as a peer names it; an element sent without one is the sender's.
fn home_of(element: &PoolElement, sender: RegistrarId) -> RegistrarId {
    if element.home_registrar.0 == 0 {
        sender
    } else {
        element.home_registrar
    }
}

fn source_dest(source: &EnrpSource) -> Option<EnrpDest> {
    match source {
        EnrpSource::Connection { conn, .. } => Some(EnrpDest::Connection(*conn)),
        EnrpSource::Datagram { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sctp(port: u16, addrs: &[&str]) -> TransportAddress {
        TransportAddress::Sctp {
            port,
            transport_use: TransportUse::DataOnly,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    /// rsplib's hsdump names all its local addresses, loopback first: answers must go to the
    /// address its association came from (an INIT to 127.0.0.1 is aborted).
    #[test]
    fn a_multihomed_peer_is_answered_at_the_address_it_came_from() {
        let named = sctp(39182, &["127.0.0.1", "::1", "198.18.77.2", "fe80::1"]);
        let from: IpAddr = "198.18.77.2".parse().unwrap();
        assert_eq!(
            fill_unspecified(&named, from),
            sctp(39182, &["198.18.77.2", "fe80::1"])
        );
        // On loopback, loopback stays (first, being the source).
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            fill_unspecified(&named, lo),
            sctp(39182, &["127.0.0.1", "::1", "198.18.77.2", "fe80::1"])
        );
        assert_eq!(
            fill_unspecified(&sctp(9901, &["0.0.0.0"]), from),
            sctp(9901, &["198.18.77.2"])
        );
        // A static peer is recognised among a multi-homed peer's addresses.
        assert!(same_endpoint(
            &sctp(9901, &["10.0.0.1", "198.18.77.2"]),
            &sctp(9901, &["198.18.77.2"])
        ));
        assert!(!same_endpoint(
            &sctp(9902, &["198.18.77.2"]),
            &sctp(9901, &["198.18.77.2"])
        ));
    }
}
