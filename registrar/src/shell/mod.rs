//! The registrar's tokio shell: binds the transports, the announce sockets and the admin
//! endpoint, and moves bytes and time between them and the [`RegistrarCore`]. It decides nothing
//! about the protocol.
//!
//! Embedding (the load balancer daemon does this):
//! ```no_run
//! # async fn f(config: rsplb_registrar::config::RegistrarConfig) -> anyhow::Result<()> {
//! use rsplb_registrar::shell::Registrar;
//! let registrar = Registrar::bind(config).await?;
//! let mut events = registrar.control().subscribe(); // a Notification per change
//! let control = registrar.control();
//! tokio::spawn(async move { while let Ok(n) = events.recv().await { println!("{:?}", n.event) } });
//! registrar.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod announce;
pub mod enrp;
pub mod http;
pub mod sctp;
pub mod tcp;
pub mod transport;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::config::RegistrarConfig;
use crate::core::{Action, EnrpSource, Event, HandlespaceEvent, PeerId, PeerInfo, RegistrarCore};
use crate::types::{RegistrarId, ServerInformation, TransportAddress, TransportUse};
use crate::wire::DecodeError;
pub use admin::{HandlespaceSnapshot, Query, RegistrarsSnapshot, StatsSnapshot};
use announce::Announcer;
use enrp::{EnrpNet, EnrpSink};
use transport::{CoreSink, Delivery, PeerCommand, PeerHandle, Transport, TransportContext};

/// Capacity of the handlespace event broadcast: a subscriber that falls this far behind gets
/// `RecvError::Lagged` and should re-read a snapshot.
pub const EVENT_CAPACITY: usize = 65_536;

/// A registrar whose sockets are bound; [`Registrar::run`] serves until shutdown.
pub struct Registrar {
    core: RegistrarCore,
    config: RegistrarConfig,
    transports: Vec<Box<dyn Transport>>,
    asap_addrs: Vec<SocketAddr>,
    asap_tls_addrs: Vec<SocketAddr>,
    sctp_addrs: Vec<SocketAddr>,
    sctp_counters: Vec<std::sync::Arc<sctp::SctpCounters>>,
    admin: Option<http::Listener>,
    admin_addr: Option<SocketAddr>,
    announcer: Option<Announcer>,
    enrp: Option<Arc<EnrpNet>>,
    control: RegistrarControl,
    queries: mpsc::Receiver<Query>,
}

/// A handlespace change as subscribers get it: the event, and when the registrar's core made it
/// (what a subscriber measures its own delay from, e.g. the balancer's reconcile latency).
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub at: Instant,
    pub event: HandlespaceEvent,
}

/// A cloneable handle to a running registrar: subscribe to handlespace changes, ask for
/// snapshots.
#[derive(Clone, Debug)]
pub struct RegistrarControl {
    events: broadcast::Sender<Notification>,
    queries: mpsc::Sender<Query>,
    id: RegistrarId,
}

impl RegistrarControl {
    /// Every handlespace change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.events.subscribe()
    }

    pub fn id(&self) -> RegistrarId {
        self.id
    }

    /// The channel the admin endpoint's questions go through: an embedding program serves the
    /// admin paths on its own HTTP server with [`admin::answer`].
    pub fn queries(&self) -> &mpsc::Sender<Query> {
        &self.queries
    }

    /// The current handlespace. To miss nothing, subscribe first, then take the snapshot, then
    /// apply events idempotently: an event may already be reflected in the snapshot (adding an
    /// element that is there updates it; removing one that is not is a no-op).
    pub async fn snapshot(&self) -> anyhow::Result<HandlespaceSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.queries
            .send(Query::Handlespace(tx))
            .await
            .context("the registrar is not running")?;
        let raw = rx.await.context("the registrar stopped")?;
        raw.build_off_loop()
            .await
            .context("building the handlespace snapshot")
    }

    /// This registrar's place in its operation scope (ENRP peers, sync state).
    pub async fn registrars(&self) -> anyhow::Result<RegistrarsSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.queries
            .send(Query::Registrars(tx))
            .await
            .context("the registrar is not running")?;
        rx.await.context("the registrar stopped")
    }

    pub async fn stats(&self) -> anyhow::Result<StatsSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.queries
            .send(Query::Stats(tx))
            .await
            .context("the registrar is not running")?;
        rx.await.context("the registrar stopped")
    }
}

impl Registrar {
    /// Validate the configuration and bind every socket (ports 0 are resolved: see
    /// [`Self::asap_addrs`] and [`Self::admin_addr`]).
    pub async fn bind(config: RegistrarConfig) -> anyhow::Result<Self> {
        config
            .validate()
            .context("invalid registrar configuration")?;
        let id = RegistrarId(match config.registrar_id {
            Some(id) => id,
            None => loop {
                let id: u32 = rand::random();
                if id != 0 {
                    break id;
                }
            },
        });
        let mut transports: Vec<Box<dyn Transport>> = Vec::new();
        let mut asap_addrs = Vec::new();
        for addr in &config.asap_listen {
            let t = tcp::TcpTransport::bind(*addr)
                .await
                .with_context(|| format!("listening for ASAP on TCP {addr}"))?;
            asap_addrs.extend(t.local_addrs());
            transports.push(Box::new(t));
        }
        let tls = match &config.tls {
            Some(t) => Some(
                crate::tls::ServerTls::from_pem_files(&t.certificate, &t.private_key, &t.ca)
                    .context("loading the TLS configuration ([tls])")?,
            ),
            None => None,
        };
        let mut asap_tls_addrs = Vec::new();
        if let (Some(t), Some(server_tls)) = (&config.tls, &tls) {
            for addr in &t.asap_listen {
                let l = tcp::TcpTransport::bind_tls(*addr, server_tls.clone())
                    .await
                    .with_context(|| format!("listening for ASAP over TLS on TCP {addr}"))?;
                asap_tls_addrs.extend(l.local_addrs());
                transports.push(Box::new(l));
            }
        }
        let (sctp_addrs, sctp_counters) = bind_sctp(&config, &asap_addrs, &mut transports)?;
        let (admin, admin_addr) = match (&config.admin_unix, config.admin) {
            (Some(path), _) => (Some(bind_admin_unix(path)?), None),
            (None, Some(addr)) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening for the admin endpoint on {addr}"))?;
                let a = l.local_addr()?;
                (Some(http::Listener::Tcp(l)), Some(a))
            }
            (None, None) => (None, None),
        };
        warn_if_open(&config);
        // Announce the plain listeners (rsplib's clients have no TLS); with none, the TLS ones.
        let announced = if asap_addrs.is_empty() {
            &asap_tls_addrs
        } else {
            &asap_addrs
        };
        let mut advertised = announce_transports(&config, announced);
        advertised.extend(announce_sctp_transports(&config, &sctp_addrs));
        let announcer = if config.announce.enabled {
            // rsplib's clients ignore the announce's transports and take the registrar's SCTP
            // port from the datagram's source port, so that is the SCTP port when SCTP is
            // served (by default the same number as TCP's).
            let source_port = match sctp_addrs.first() {
                Some(a) => a.port(),
                None if advertised.is_empty() => announced.first().map_or(0, |a| a.port()),
                None => 0,
            };
            Some(
                Announcer::new(&config.announce, source_port)
                    .context("creating the server announce sockets")?,
            )
        } else {
            None
        };
        let mut core = RegistrarCore::new(
            config.core(),
            id,
            advertised,
            Instant::now(),
            rand::random(),
        );
        let enrp = if config.enrp.enabled() {
            let enrp_tls = tls
                .clone()
                .filter(|_| config.tls.as_ref().is_some_and(|t| t.enrp));
            let net = EnrpNet::bind(
                &config.enrp,
                config.limits.max_message_size,
                &config.connections,
                enrp_tls,
                &config.security,
            )
            .await?;
            // An unspecified address makes peers use the address the Presence came from.
            // Where ENRP is served over SCTP, peers are told the SCTP endpoint (rsplib's
            // registrars speak nothing else; rsplb's reach it over TCP as well).
            let transport = match (net.sctp_addrs().as_slice(), net.local_addrs()) {
                (all @ [first, ..], _) => TransportAddress::Sctp {
                    port: first.port(),
                    transport_use: TransportUse::DataOnly,
                    addrs: all.iter().map(|a| a.ip()).collect(),
                },
                (_, [local, ..]) => TransportAddress::Tcp {
                    port: local.port(),
                    transport_use: TransportUse::DataOnly,
                    addr: local.ip(),
                },
                _ => anyhow::bail!("ENRP is on but listens nowhere"),
            };
            let info = ServerInformation { id, transport };
            core.enable_enrp(info, Instant::now());
            Some(Arc::new(net))
        } else {
            None
        };
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (qtx, queries) = mpsc::channel(64);
        Ok(Self {
            core,
            config,
            transports,
            asap_addrs,
            asap_tls_addrs,
            sctp_addrs,
            sctp_counters,
            admin,
            admin_addr,
            announcer,
            enrp,
            control: RegistrarControl {
                events,
                queries: qtx,
                id,
            },
            queries,
        })
    }

    pub fn id(&self) -> RegistrarId {
        self.core.id()
    }

    /// Where ASAP peers connect (ports as bound).
    pub fn asap_addrs(&self) -> &[SocketAddr] {
        &self.asap_addrs
    }

    /// Where ASAP peers connect with TLS (ports as bound; empty without `[tls]`).
    pub fn asap_tls_addrs(&self) -> &[SocketAddr] {
        &self.asap_tls_addrs
    }

    /// Where ASAP peers associate over SCTP (ports as bound); empty without SCTP.
    pub fn sctp_addrs(&self) -> &[SocketAddr] {
        &self.sctp_addrs
    }

    /// The SCTP transports' counters (wrong PPIDs, other streams, restarts, ...), one per
    /// listener.
    pub fn sctp_counters(&self) -> &[std::sync::Arc<sctp::SctpCounters>] {
        &self.sctp_counters
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Where peer registrars reach this one with ENRP (ports as bound; empty without ENRP).
    pub fn enrp_addrs(&self) -> Vec<SocketAddr> {
        self.enrp
            .as_ref()
            .map(|e| e.local_addrs().to_vec())
            .unwrap_or_default()
    }

    pub fn control(&self) -> RegistrarControl {
        self.control.clone()
    }

    /// Serve until `shutdown` completes; then close every connection (elements registered here
    /// are gone with them) and return.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            core,
            config,
            transports,
            admin,
            announcer,
            enrp,
            control,
            mut queries,
            sctp_addrs: self_sctp_addrs,
            sctp_counters,
            ..
        } = self;
        let id = core.id();
        let sctp_dialer = transports.iter().find_map(|t| t.dialer());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core,
                peers: HashMap::new(),
                armed: None,
            }),
            timer: Notify::new(),
            events: control.events.clone(),
            announcer,
            enrp: enrp.clone(),
            sctp_dialer,
        });
        let mut ctx = TransportContext::new(
            shared.clone(),
            config.limits.max_message_size,
            config.limits.max_pending_messages,
        );
        ctx.timeouts = transport::PeerTimeouts {
            write: config.connections.write_timeout(),
            idle: config.connections.idle_timeout(),
            partial_message: config.connections.partial_message_timeout(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for t in transports {
            tasks.spawn(t.serve(ctx.clone()));
        }
        drop(ctx);
        if let Some(l) = admin {
            tasks.spawn(admin::serve(
                l,
                control.queries.clone(),
                config.connections.admin_timeout(),
            ));
        }
        if let Some(net) = enrp {
            let sink: std::sync::Weak<dyn EnrpSink> =
                Arc::downgrade(&(shared.clone() as Arc<dyn EnrpSink>));
            if net.sctp_addrs().is_empty() {
                log::info!("registrar {id} serving ENRP on TCP {:?}", net.local_addrs());
            } else {
                log::info!(
                    "registrar {id} serving ENRP on TCP {:?} and over SCTP on {:?}",
                    net.local_addrs(),
                    net.sctp_addrs()
                );
            }
            tasks.spawn(net.serve(sink));
        }
        if !config.asap_listen.is_empty() {
            log::info!("registrar {id} serving ASAP on {:?}", config.asap_listen);
        }
        if let Some(t) = &config.tls {
            log::info!(
                "registrar {id} serving ASAP over TLS on {:?}{}",
                t.asap_listen,
                if t.enrp && config.enrp.enabled() {
                    "; ENRP over TLS"
                } else {
                    ""
                }
            );
        }
        if !self_sctp_addrs.is_empty() {
            log::info!("registrar {id} serving ASAP over SCTP on {self_sctp_addrs:?}");
        }
        tokio::pin!(shutdown);
        loop {
            let deadline = shared.fire_timers();
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                q = queries.recv() => {
                    if let Some(q) = q {
                        answer(&shared.lock().core, q, &sctp_counters);
                        // Let the connections' input in before the next round of timers.
                        tokio::task::yield_now().await;
                    }
                }
                _ = shared.timer.notified() => {}
                _ = sleep_until(deadline) => {}
            }
        }
        log::info!("registrar {id} shutting down");
        for (_, p) in shared.lock().peers.drain() {
            p.try_send(PeerCommand::Close);
        }
        // Give the connections a moment to flush their close, then stop everything.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        tasks.abort_all();
        Ok(())
    }
}

/// The core and the peers' handles, behind one lock: connection tasks feed their messages in
/// directly and write the answers themselves (no hop through another task per request); the
/// timer loop and the admin queries take the same lock.
struct Shared {
    state: Mutex<State>,
    /// Wakes the timer loop when a new, earlier deadline appears.
    timer: Notify,
    events: broadcast::Sender<Notification>,
    announcer: Option<Announcer>,
    enrp: Option<Arc<EnrpNet>>,
    /// Opens ASAP associations to pool elements (SCTP; `None` without SCTP).
    sctp_dialer: Option<mpsc::Sender<SocketAddr>>,
}

struct State {
    core: RegistrarCore,
    peers: HashMap<PeerId, PeerHandle>,
    /// The deadline the timer loop sleeps until.
    armed: Option<Instant>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic inside the core would poison the lock; keep serving with its state rather
        // than stop every peer.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fire due timers; returns the next deadline. Input that arrived before a deadline but is
    /// still unread (the loop was busy) is not lost: the core defers a deadline it handles late
    /// (`timers.stall_grace_ms`), and the loop yields to the connections after other work.
    fn fire_timers(&self) -> Option<Instant> {
        let mut st = self.lock();
        let now = Instant::now();
        if st.core.poll_timeout().is_some_and(|t| t <= now) {
            st.core.handle_timeout(now);
            self.route(&mut st, None, now);
        }
        let next = st.core.poll_timeout();
        st.armed = next;
        next
    }

    /// Carry out the core's actions; answers to `own` are returned for the caller to write.
    fn route(&self, st: &mut State, own: Option<PeerId>, now: Instant) -> Delivery {
        let mut d = Delivery::default();
        while let Some(action) = st.core.poll_action() {
            match action {
                Action::Send { peer, bytes } if Some(peer) == own => d.replies.push(bytes),
                Action::Send { peer, bytes } => {
                    let full = st
                        .peers
                        .get(&peer)
                        .is_some_and(|p| !p.try_send(PeerCommand::Send(bytes)));
                    if full {
                        // It does not read what it is sent: cut it off (it could not read a
                        // Lack of Resources either); the core removes its elements.
                        log::warn!("peer {}: send queue full; disconnecting", peer.0);
                        if let Some(p) = st.peers.remove(&peer) {
                            p.abort();
                        }
                        st.core.handle_event(now, Event::Disconnected { peer });
                    }
                }
                Action::Close { peer, .. } => {
                    let handle = st.peers.remove(&peer);
                    if Some(peer) == own {
                        d.close = true;
                    } else if let Some(p) = handle
                        && !p.try_send(PeerCommand::Close)
                    {
                        p.abort();
                    }
                }
                Action::Announce { bytes } => {
                    if let Some(a) = &self.announcer {
                        a.try_send(&bytes);
                    }
                }
                Action::Notify(ev) => {
                    // No subscriber is not an error.
                    let _ = self.events.send(Notification {
                        at: Instant::now(),
                        event: ev,
                    });
                }
                Action::SendEnrp { to, bytes } => {
                    if let Some(net) = &self.enrp {
                        net.send(to, bytes);
                    }
                }
                Action::Connect { transport } => {
                    let addr = match &transport {
                        TransportAddress::Sctp { port, addrs, .. } => {
                            addrs.first().map(|a| SocketAddr::new(*a, *port))
                        }
                        _ => None,
                    };
                    if let (Some(addr), Some(d)) = (addr, &self.sctp_dialer)
                        && d.try_send(addr).is_err()
                    {
                        log::debug!("too many associations being opened; not to {addr}");
                    }
                }
            }
        }
        if st
            .core
            .poll_timeout()
            .is_some_and(|t| st.armed.is_none_or(|a| t < a))
        {
            self.timer.notify_one();
        }
        d
    }
}

impl EnrpSink for Shared {
    fn enrp(&self, source: EnrpSource, bytes: &[u8]) {
        let mut st = self.lock();
        let now = Instant::now();
        st.core.handle_enrp(now, source, bytes);
        self.route(&mut st, None, now);
    }
}

impl CoreSink for Shared {
    fn connected(&self, peer: PeerId, info: PeerInfo, handle: PeerHandle) {
        let mut st = self.lock();
        let now = Instant::now();
        st.peers.insert(peer, handle);
        st.core.handle_event(now, Event::Connected { peer, info });
        self.route(&mut st, None, now);
    }

    fn messages(&self, peer: PeerId, messages: &mut dyn Iterator<Item = &[u8]>) -> Delivery {
        let mut st = self.lock();
        let now = Instant::now();
        for m in messages {
            st.core.handle_message(now, peer, m);
        }
        self.route(&mut st, Some(peer), now)
    }

    fn framing_error(&self, peer: PeerId, error: DecodeError) -> Delivery {
        let mut st = self.lock();
        let now = Instant::now();
        st.core
            .handle_event(now, Event::FramingError { peer, error });
        self.route(&mut st, Some(peer), now)
    }

    fn disconnected(&self, peer: PeerId) {
        let mut st = self.lock();
        let now = Instant::now();
        st.peers.remove(&peer);
        st.core.handle_event(now, Event::Disconnected { peer });
        self.route(&mut st, None, now);
    }
}

/// The runtime `rsp-registrar` runs on: one thread. Connection tasks feed the core under one
/// lock, so more threads mostly add wake-ups between them: `bench-registrar` measured about
/// 7.0-7.9 us of registrar CPU per handle resolution on one thread against 7.7-9.9 us on the
/// multi-threaded runtime (2 shared cores), and up to 130,000 resolutions/s against 75,000.
/// One core at that rate is far more than a registrar needs; an embedding program may run the
/// registrar on its own runtime of any flavour.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `run_registrar(config, shutdown)`: bind and serve; the simplest way to embed a registrar.
pub async fn run_registrar(
    config: RegistrarConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    Registrar::bind(config).await?.run(shutdown).await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn answer(core: &RegistrarCore, q: Query, sctp_counters: &[Arc<sctp::SctpCounters>]) {
    match q {
        Query::Handlespace(tx) => {
            // Only the copy happens here; formatting happens off the loop.
            let _ = tx.send(admin::raw_snapshot(core, Instant::now()));
        }
        Query::Stats(tx) => {
            let mut stats = admin::stats(core);
            if !sctp_counters.is_empty() {
                stats.sctp = Some(sctp::SctpStats::sum(sctp_counters));
            }
            let _ = tx.send(stats);
        }
        Query::Registrars(tx) => {
            let _ = tx.send(admin::registrars(core, Instant::now()));
        }
    }
}

/// Bind the admin endpoint's Unix socket (mode 0600), replacing a stale socket file.
fn bind_admin_unix(path: &std::path::Path) -> anyhow::Result<http::Listener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if let Ok(m) = std::fs::symlink_metadata(path)
        && m.file_type().is_socket()
    {
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let l = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("listening for the admin endpoint on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(http::Listener::Unix(l))
}

/// A registrar reachable beyond loopback that checks neither certificates nor source addresses
/// lets anyone register into its pools: say so loudly.
fn warn_if_open(config: &RegistrarConfig) {
    let open: Vec<String> = config
        .asap_listen
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    if !open.is_empty() && !config.security.has_allow_list() {
        log::warn!(
            "SECURITY: ASAP is served on {} without TLS and without an allow list: any host that \
             reaches it can register pool elements (and steer traffic) or resolve pools. Set \
             [security] allow_pe / allow_pu (source prefixes) or listen on loopback only.",
            open.join(", ")
        );
    }
}

/// Raise this process's open-file limit (RLIMIT_NOFILE) to its hard limit: every ASAP
/// connection is a file descriptor, and the usual soft limit of 1024 is far below
/// `limits.max_peers`. Returns the limit now in force. Called by `rsp-registrar` and
/// `rsplb run` at start-up.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok(lim.rlim_cur)
}

/// Binds ASAP over SCTP as configured (see `RegistrarConfig::asap_sctp_listen`): the bound
/// addresses and the transports' counters.
type SctpBound = (Vec<SocketAddr>, Vec<std::sync::Arc<sctp::SctpCounters>>);
fn bind_sctp(
    config: &RegistrarConfig,
    tcp_bound: &[SocketAddr],
    transports: &mut Vec<Box<dyn Transport>>,
) -> anyhow::Result<SctpBound> {
    let (wanted, explicit) = match &config.asap_sctp_listen {
        Some(list) => (list.clone(), true),
        None => (tcp_bound.to_vec(), false),
    };
    let mut addrs = Vec::new();
    let mut counters = Vec::new();
    // Addresses of one port make one multi-homed endpoint.
    let endpoints = crate::sctp::endpoints(&wanted)
        .map_err(|e| anyhow::anyhow!("asap_sctp_listen (--asap-sctp): {e}"))?;
    for addr in endpoints {
        match sctp::SctpTransport::bind(&addr, config.limits.max_message_size) {
            Ok(t) => {
                addrs.extend(t.local_addrs());
                counters.push(t.counters());
                transports.push(Box::new(t));
            }
            Err(e) if !explicit && crate::sctp::is_unsupported(&e) => {
                log::warn!("not serving ASAP over SCTP: {e}; serving TCP only");
                break;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("listening for ASAP on SCTP {}", crate::sctp::joined(&addr))
                });
            }
        }
    }
    Ok((addrs, counters))
}

/// SCTP transports for the Server Announce, beside the TCP ones, derived the same way (only
/// when nothing is advertised explicitly: `advertise` lists TCP endpoints).
fn announce_sctp_transports(
    config: &RegistrarConfig,
    bound: &[SocketAddr],
) -> Vec<TransportAddress> {
    if !config.announce.advertise.is_empty() {
        return Vec::new();
    }
    // One transport per endpoint: the addresses of a multi-homed one together.
    let Ok(endpoints) = crate::sctp::endpoints(bound) else {
        return Vec::new();
    };
    endpoints
        .iter()
        .filter_map(|ep| {
            let addrs: Vec<std::net::IpAddr> = ep
                .iter()
                .filter_map(|a| {
                    if a.ip().is_unspecified() {
                        config.announce.interface.map(Into::into)
                    } else {
                        Some(a.ip())
                    }
                })
                .collect();
            (!addrs.is_empty()).then(|| TransportAddress::Sctp {
                port: ep[0].port(),
                transport_use: TransportUse::DataOnly,
                addrs,
            })
        })
        .collect()
}

/// The ASAP transports written into Server Announces (see `AnnounceConfig::advertise`).
fn announce_transports(config: &RegistrarConfig, bound: &[SocketAddr]) -> Vec<TransportAddress> {
    let tcp = |a: SocketAddr| TransportAddress::Tcp {
        port: a.port(),
        transport_use: TransportUse::DataOnly,
        addr: a.ip(),
    };
    if !config.announce.advertise.is_empty() {
        return config.announce.advertise.iter().copied().map(tcp).collect();
    }
    bound
        .iter()
        .filter_map(|a| {
            if !a.ip().is_unspecified() {
                Some(tcp(*a))
            } else {
                config
                    .announce
                    .interface
                    .map(|ip| tcp(SocketAddr::new(ip.into(), a.port())))
            }
        })
        .collect()
}

/// Completes on SIGINT or SIGTERM: how a registrar, a sidecar or any other long-running RSerPool
/// process is asked to stop (deregistering or closing cleanly on the way out).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            log::warn!("cannot watch SIGTERM ({e}); only SIGINT stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
