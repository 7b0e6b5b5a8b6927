//! The registrar's tokio shell: binds the transports, the announce sockets and the admin
//! endpoint, and moves bytes and time between them and the [`RegistrarCore`]. It decides nothing
//! about the protocol.
//!
//! Embedding (the load balancer daemon does this):
//! ```no_run
//! # async fn f(config: rsplb_registrar::config::RegistrarConfig) -> anyhow::Result<()> {
//! use rsplb_registrar::shell::Registrar;
//! let registrar = Registrar::bind(config).await?;
//! let mut events = registrar.control().subscribe(); // HandlespaceEvent per change
//! let control = registrar.control();
//! tokio::spawn(async move { while let Ok(ev) = events.recv().await { println!("{ev:?}") } });
//! registrar.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod announce;
pub mod tcp;
pub mod transport;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::RegistrarConfig;
use crate::core::{Action, Event, HandlespaceEvent, PeerId, RegistrarCore};
use crate::types::{RegistrarId, TransportAddress, TransportUse};
pub use admin::{HandlespaceSnapshot, Query, StatsSnapshot};
use announce::Announcer;
use transport::{PeerCommand, PeerHandle, Transport, TransportContext, TransportEvent};

/// Capacity of the handlespace event broadcast: a subscriber that falls this far behind gets
/// `RecvError::Lagged` and should re-read a snapshot.
pub const EVENT_CAPACITY: usize = 65_536;

/// A registrar whose sockets are bound; [`Registrar::run`] serves until shutdown.
pub struct Registrar {
    core: RegistrarCore,
    config: RegistrarConfig,
    transports: Vec<Box<dyn Transport>>,
    asap_addrs: Vec<SocketAddr>,
    admin: Option<tokio::net::TcpListener>,
    admin_addr: Option<SocketAddr>,
    announcer: Option<Announcer>,
    control: RegistrarControl,
    queries: mpsc::Receiver<Query>,
}

/// A cloneable handle to a running registrar: subscribe to handlespace changes, ask for
/// snapshots.
#[derive(Clone, Debug)]
pub struct RegistrarControl {
    events: broadcast::Sender<HandlespaceEvent>,
    queries: mpsc::Sender<Query>,
    id: RegistrarId,
}

impl RegistrarControl {
    /// Every handlespace change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HandlespaceEvent> {
        self.events.subscribe()
    }

    pub fn id(&self) -> RegistrarId {
        self.id
    }

    /// The current handlespace (subscribe first, then snapshot, to miss nothing).
    pub async fn snapshot(&self) -> anyhow::Result<HandlespaceSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.queries
            .send(Query::Handlespace(tx))
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
        let (admin, admin_addr) = match config.admin {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening for the admin endpoint on {addr}"))?;
                let a = l.local_addr()?;
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let advertised = announce_transports(&config, &asap_addrs);
        let announcer = if config.announce.enabled {
            let source_port = if advertised.is_empty() {
                asap_addrs.first().map_or(0, |a| a.port())
            } else {
                0
            };
            Some(
                Announcer::new(&config.announce, source_port)
                    .context("creating the server announce sockets")?,
            )
        } else {
            None
        };
        let core = RegistrarCore::new(
            config.clone(),
            id,
            advertised,
            Instant::now(),
            rand::random(),
        );
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (qtx, queries) = mpsc::channel(64);
        Ok(Self {
            core,
            config,
            transports,
            asap_addrs,
            admin,
            admin_addr,
            announcer,
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

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn control(&self) -> RegistrarControl {
        self.control.clone()
    }

    /// Serve until `shutdown` completes; then close every connection (elements registered here
    /// are gone with them) and return.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            mut core,
            config,
            transports,
            admin,
            announcer,
            control,
            mut queries,
            ..
        } = self;
        let (ev_tx, mut ev_rx) = mpsc::channel(8192);
        let ctx = TransportContext::new(
            ev_tx,
            config.limits.max_message_size,
            config.limits.max_pending_messages,
        );
        let mut tasks = tokio::task::JoinSet::new();
        for t in transports {
            tasks.spawn(t.serve(ctx.clone()));
        }
        drop(ctx);
        if let Some(l) = admin {
            tasks.spawn(admin::serve(l, control.queries.clone()));
        }
        log::info!(
            "registrar {} serving ASAP on {:?}",
            core.id(),
            config.asap_listen
        );
        let mut peers: HashMap<PeerId, PeerHandle> = HashMap::new();
        tokio::pin!(shutdown);
        loop {
            let deadline = core.poll_timeout();
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                ev = ev_rx.recv() => {
                    let Some(ev) = ev else { break };
                    let now = Instant::now();
                    feed(&mut core, &mut peers, now, ev);
                    // Take what is already queued before writing answers: one flush per batch.
                    for _ in 0..1024 {
                        match ev_rx.try_recv() {
                            Ok(ev) => feed(&mut core, &mut peers, now, ev),
                            Err(_) => break,
                        }
                    }
                }
                q = queries.recv() => {
                    if let Some(q) = q {
                        answer(&core, q);
                    }
                }
                _ = sleep_until(deadline) => {}
            }
            let now = Instant::now();
            if core.poll_timeout().is_some_and(|t| t <= now) {
                core.handle_timeout(now);
            }
            carry_out(
                &mut core,
                &mut peers,
                announcer.as_ref(),
                &control.events,
                now,
            )
            .await;
        }
        log::info!("registrar {} shutting down", core.id());
        for (_, p) in peers.drain() {
            p.try_send(PeerCommand::Close);
        }
        tasks.abort_all();
        Ok(())
    }
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

fn feed(
    core: &mut RegistrarCore,
    peers: &mut HashMap<PeerId, PeerHandle>,
    now: Instant,
    ev: TransportEvent,
) {
    let event = match ev {
        TransportEvent::Connected { peer, info, handle } => {
            peers.insert(peer, handle);
            Event::Connected { peer, info }
        }
        TransportEvent::Message { peer, bytes } => Event::Message { peer, bytes },
        TransportEvent::FramingError { peer, error } => Event::FramingError { peer, error },
        TransportEvent::Disconnected { peer } => {
            peers.remove(&peer);
            Event::Disconnected { peer }
        }
    };
    core.handle_event(now, event);
}

fn answer(core: &RegistrarCore, q: Query) {
    match q {
        Query::Handlespace(tx) => {
            let _ = tx.send(admin::snapshot(core, Instant::now()));
        }
        Query::Stats(tx) => {
            let _ = tx.send(admin::stats(core));
        }
    }
}

async fn carry_out(
    core: &mut RegistrarCore,
    peers: &mut HashMap<PeerId, PeerHandle>,
    announcer: Option<&Announcer>,
    events: &broadcast::Sender<HandlespaceEvent>,
    now: Instant,
) {
    while let Some(action) = core.poll_action() {
        match action {
            Action::Send { peer, bytes } => {
                let full = peers
                    .get(&peer)
                    .is_some_and(|p| !p.try_send(PeerCommand::Send(bytes)));
                if full {
                    // It does not read its answers: cut it off (it could not read a Lack of
                    // Resources either) and tell the core, which removes its elements.
                    log::warn!("peer {}: answer queue full; disconnecting", peer.0);
                    if let Some(p) = peers.remove(&peer) {
                        p.abort();
                    }
                    core.handle_event(now, Event::Disconnected { peer });
                }
            }
            Action::Close { peer, .. } => {
                if let Some(p) = peers.remove(&peer)
                    && !p.try_send(PeerCommand::Close)
                {
                    p.abort();
                }
            }
            Action::Announce { bytes } => {
                if let Some(a) = announcer {
                    a.send(&bytes).await;
                }
            }
            Action::Notify(ev) => {
                // No subscriber is not an error.
                let _ = events.send(ev);
            }
        }
    }
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
