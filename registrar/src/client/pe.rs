//! The pool element side of ASAP (RFC 5352 3.1-3.5): registration, re-registration, keep-alive
//! answers, home registrar changes, deregistration, and recovery from a lost registrar.
//!
//! Keep-alive watchdog: once two keep-alives have shown the registrar's interval, an element
//! that hears none for [`KEEPALIVE_MISSES`] intervals (at least [`KEEPALIVE_WATCHDOG_MIN`])
//! assumes the registrar dropped it and re-registers at once on the same connection; if that
//! gets no answer, it hunts for another registrar. Without it, an element removed by its
//! registrar (which stops sending keep-alives) would stay out of its pool until its next
//! scheduled re-registration. (A registrar that closes the connection is noticed at once.)

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::message::AsapMessage;
use crate::types::{
    ErrorCause, Fraction, PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress,
};

use super::{ClientConfig, ClientError, RegistrarConnection, RegistrarTable, nonzero};

/// Keep-alive intervals without a keep-alive after which an element re-registers.
pub const KEEPALIVE_MISSES: u32 = 4;
/// The watchdog never fires sooner than this after the last keep-alive.
pub const KEEPALIVE_WATCHDOG_MIN: Duration = Duration::from_millis(1000);

/// What to register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolElementConfig {
    pub pool_handle: PoolHandle,
    /// The element's identifier; random when `None` (as rsplib does).
    pub id: Option<PeId>,
    /// Where pool users reach the service.
    pub user_transport: TransportAddress,
    pub policy: Policy,
    /// Registration life: how long registrars other than the home keep the element without
    /// hearing of it. Default 30 s (rsplib's rspserver uses 90 s; a shorter life makes the
    /// elements of a dead home registrar disappear from the other registrars sooner).
    pub registration_life: Duration,
    /// Re-registration interval; `None` = a third of the registration life (rsplib's ratio),
    /// so two re-registrations can be lost before the life runs out.
    pub reregistration_interval: Option<Duration>,
}

impl PoolElementConfig {
    /// Round robin, a 30 s life, a random identifier.
    pub fn new(pool_handle: PoolHandle, user_transport: TransportAddress) -> Self {
        Self {
            pool_handle,
            id: None,
            user_transport,
            policy: Policy::RoundRobin,
            registration_life: Duration::from_secs(30),
            reregistration_interval: None,
        }
    }

    fn reregistration_interval(&self) -> Duration {
        nonzero(
            self.reregistration_interval
                .unwrap_or(self.registration_life / 3),
        )
    }

    fn life_ms(&self) -> i32 {
        i32::try_from(self.registration_life.as_millis()).unwrap_or(i32::MAX)
    }
}

/// Where a pool element stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeState {
    /// Looking for a registrar (at start, or after losing one).
    Hunting,
    /// A hunt found no registrar (what went wrong with each); hunting again after a pause.
    NoRegistrar { tried: Vec<(SocketAddr, String)> },
    /// Registered at `registrar`, whose identifier (from its keep-alives) is `home`; 0 until the
    /// first keep-alive tells it.
    Registered {
        registrar: SocketAddr,
        home: RegistrarId,
    },
    /// The registrar refused the registration; retried every re-registration interval.
    Rejected { causes: Vec<ErrorCause> },
    /// Deregistered; the task has ended.
    Deregistered,
}

enum Command {
    UpdatePolicy(Policy, oneshot::Sender<Result<(), ClientError>>),
    Deregister(oneshot::Sender<Result<(), ClientError>>),
}

/// A registered (or registering) pool element, kept registered by a background task. Dropping
/// the handle deregisters the element (best effort) and ends the task.
#[derive(Debug)]
pub struct PoolElementHandle {
    pool_handle: PoolHandle,
    id: PeId,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<PeState>,
    task: JoinHandle<()>,
    wait_limit: Duration,
}

impl PoolElementHandle {
    /// Starts the background task and returns at once; the task hunts for a registrar and
    /// registers (see [`Self::state`], [`Self::registered`]). Must run inside a tokio runtime.
    pub fn start(client: ClientConfig, mut pe: PoolElementConfig) -> Result<Self, ClientError> {
        if pe.registration_life.is_zero() {
            return Err(ClientError::Config(
                "registration life must not be zero".into(),
            ));
        }
        let id = *pe.id.get_or_insert_with(|| PeId(rand::random()));
        let wait_limit =
            client.hunt_timeout + client.request_timeout * client.request_attempts.max(1);
        let table = RegistrarTable::new(client)?;
        let (commands, command_rx) = mpsc::channel(8);
        let (state_tx, state) = watch::channel(PeState::Hunting);
        let pool_handle = pe.pool_handle.clone();
        let task = tokio::spawn(
            Task {
                table,
                pe,
                commands: command_rx,
                state: state_tx,
            }
            .run(),
        );
        Ok(Self {
            pool_handle,
            id,
            commands,
            state,
            task,
            wait_limit,
        })
    }

    /// Starts and waits for the first registration (bounded by the hunt timeout plus the
    /// request timeouts). A refusal or no registrar ends the task and is returned.
    pub async fn register(
        client: ClientConfig,
        pe: PoolElementConfig,
    ) -> Result<Self, ClientError> {
        let mut handle = Self::start(client, pe)?;
        let limit = handle.wait_limit;
        match tokio::time::timeout(limit, handle.registered()).await {
            Ok(Ok(_)) => Ok(handle),
            Ok(Err(e)) => {
                handle.task.abort();
                Err(e)
            }
            Err(_) => {
                handle.task.abort();
                Err(ClientError::NoRegistrar { tried: Vec::new() })
            }
        }
    }

    pub fn id(&self) -> PeId {
        self.id
    }

    pub fn pool_handle(&self) -> &PoolHandle {
        &self.pool_handle
    }

    pub fn state(&self) -> PeState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn watch(&self) -> watch::Receiver<PeState> {
        self.state.clone()
    }

    /// Waits until the element is registered; returns the registrar and its identifier.
    /// Fails when the registration is refused, a hunt finds no registrar, or the task ends
    /// (the task itself keeps trying in the first two cases).
    pub async fn registered(&mut self) -> Result<(SocketAddr, RegistrarId), ClientError> {
        let state = self
            .state
            .wait_for(|s| !matches!(s, PeState::Hunting))
            .await
            .map_err(|_| ClientError::Stopped)?
            .clone();
        match state {
            PeState::Registered { registrar, home } => Ok((registrar, home)),
            PeState::Rejected { causes } => Err(ClientError::Rejected {
                pool: self.pool_handle.clone(),
                causes,
            }),
            PeState::NoRegistrar { tried } => Err(ClientError::NoRegistrar { tried }),
            PeState::Deregistered | PeState::Hunting => Err(ClientError::Stopped),
        }
    }

    /// Re-registers at once with new policy values (a load update for adaptive policies).
    /// Returns when the registrar has accepted them; when not registered, they are used at the
    /// next registration and this returns at once.
    pub async fn update_policy(&self, policy: Policy) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::UpdatePolicy(policy, tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Updates the load of an adaptive policy (the other values are kept).
    pub async fn update_load(&self, policy: &Policy, load: Fraction) -> Result<(), ClientError> {
        let updated = policy.with_load(load).ok_or_else(|| {
            ClientError::Config(format!(
                "policy 0x{:08x} carries no load value",
                policy.type_code()
            ))
        })?;
        self.update_policy(updated).await
    }

    /// Deregisters and ends the task.
    pub async fn deregister(self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Deregister(tx)).await.is_err() {
            return Ok(());
        }
        let result = rx.await.unwrap_or(Ok(()));
        let _ = (&mut { self }.task).await;
        result
    }
}

struct Task {
    table: RegistrarTable,
    pe: PoolElementConfig,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<PeState>,
}

/// How a session with one registrar ended.
enum SessionEnd {
    Deregistered,
    Lost(SocketAddr, ClientError),
    Rejected(Vec<ErrorCause>),
}

/// A request in flight on the session.
enum Pending {
    Registration {
        reply: Option<oneshot::Sender<Result<(), ClientError>>>,
        /// The policy to restore if an update is refused.
        previous: Option<Policy>,
        deadline: Instant,
    },
    Deregistration {
        reply: Option<oneshot::Sender<Result<(), ClientError>>>,
        deadline: Instant,
    },
}

impl Pending {
    fn deadline(&self) -> Instant {
        match self {
            Self::Registration { deadline, .. } | Self::Deregistration { deadline, .. } => {
                *deadline
            }
        }
    }
}

/// What to do after a command arrived while no registrar session exists.
enum Idle {
    Continue,
    Stop,
}

impl Task {
    async fn run(mut self) {
        let id = self.pe.id.unwrap_or(PeId(0));
        let mut delay = self.table.config().hunt_retry_delay;
        let mut last_lost = None;
        loop {
            if !matches!(*self.state.borrow(), PeState::Rejected { .. }) {
                self.state.send_replace(PeState::Hunting);
            }
            let hunted = tokio::select! {
                r = self.table.hunt(last_lost) => r,
                cmd = self.commands.recv() => match self.idle_command(cmd) {
                    Idle::Continue => continue,
                    Idle::Stop => return,
                },
            };
            let mut conn = match hunted {
                Ok(conn) => conn,
                Err(e) => {
                    log::warn!(
                        "pool element {id} of {}: {e}; hunting again in {delay:?}",
                        self.pe.pool_handle
                    );
                    if let ClientError::NoRegistrar { tried } = e {
                        self.state.send_replace(PeState::NoRegistrar { tried });
                    }
                    if let Idle::Stop = self.idle_wait(delay).await {
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            delay = self.table.config().hunt_retry_delay;
            match self.session(&mut conn).await {
                SessionEnd::Deregistered => {
                    self.state.send_replace(PeState::Deregistered);
                    return;
                }
                SessionEnd::Lost(addr, e) => {
                    log::warn!(
                        "pool element {id} of {}: lost registrar {addr}: {e}; hunting again",
                        self.pe.pool_handle
                    );
                    last_lost = Some(addr);
                }
                SessionEnd::Rejected(causes)
                    if causes
                        .iter()
                        .all(|c| c.code == crate::types::CauseCode::LackOfResources) =>
                {
                    // A registrar that is full, or still synchronising with its operation
                    // scope (ENRP start-up), refuses for now: another one may serve at once.
                    log::info!(
                        "pool element {id} of {}: registrar {} lacks resources (busy or still \
                         synchronising); hunting again in {delay:?}",
                        self.pe.pool_handle,
                        conn.addr
                    );
                    last_lost = Some(conn.addr);
                    drop(conn);
                    if let Idle::Stop = self.idle_wait(delay).await {
                        return;
                    }
                }
                SessionEnd::Rejected(causes) => {
                    let err = ClientError::Rejected {
                        pool: self.pe.pool_handle.clone(),
                        causes: causes.clone(),
                    };
                    log::error!("pool element {id}: {err}; retrying later");
                    self.state.send_replace(PeState::Rejected { causes });
                    drop(conn);
                    if let Idle::Stop = self.idle_wait(self.pe.reregistration_interval()).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps while serving commands; `Stop` when deregistration was asked for meanwhile.
    async fn idle_wait(&mut self, delay: Duration) -> Idle {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Idle::Continue,
                cmd = self.commands.recv() => {
                    if let Idle::Stop = self.idle_command(cmd) {
                        return Idle::Stop;
                    }
                }
            }
        }
    }

    /// A command while not connected: nothing is registered, so deregistration is immediate and
    /// a policy update waits for the next registration.
    fn idle_command(&mut self, cmd: Option<Command>) -> Idle {
        match cmd {
            None => {
                self.state.send_replace(PeState::Deregistered);
                Idle::Stop
            }
            Some(Command::Deregister(reply)) => {
                self.state.send_replace(PeState::Deregistered);
                let _ = reply.send(Ok(()));
                Idle::Stop
            }
            Some(Command::UpdatePolicy(policy, reply)) => {
                self.pe.policy = policy;
                let _ = reply.send(Ok(()));
                Idle::Continue
            }
        }
    }

    /// The registration, with an SCTP user transport's unspecified address replaced by every
    /// local address of the channel (`local`): a multi-homed element registers all of them,
    /// as rsplib's elements do (rsplib's registrars keep only the addresses that belong to the
    /// registering association).
    fn registration(&self, local: &[IpAddr]) -> AsapMessage {
        let mut user_transport = self.pe.user_transport.clone();
        if let TransportAddress::Sctp { addrs, .. } = &mut user_transport
            && addrs.iter().all(|a| a.is_unspecified())
            && !local.is_empty()
        {
            *addrs = local.to_vec();
        }
        AsapMessage::Registration {
            pool_handle: self.pe.pool_handle.clone(),
            element: PoolElement {
                id: self.pe.id.unwrap_or(PeId(0)),
                home_registrar: RegistrarId(0),
                registration_life_ms: self.pe.life_ms(),
                user_transport,
                policy: self.pe.policy.clone(),
                asap_transport: None,
            },
        }
    }

    async fn session(&mut self, conn: &mut RegistrarConnection) -> SessionEnd {
        let addr = conn.addr;
        let local = conn.stream.local_addrs();
        let id = self.pe.id.unwrap_or(PeId(0));
        let timeout = nonzero(self.table.config().request_timeout);
        let interval = self.pe.reregistration_interval();
        let lost = |e| SessionEnd::Lost(addr, e);

        if let Err(e) = conn.stream.send(&self.registration(&local)).await {
            return lost(e);
        }
        let mut pending = Some(Pending::Registration {
            reply: None,
            previous: None,
            deadline: Instant::now() + timeout,
        });
        let mut registered = false;
        let mut home = RegistrarId(0);
        let mut next_reregistration = Instant::now() + interval;
        let far = Duration::from_secs(86400 * 365);
        // The keep-alive watchdog: when the last keep-alive came, and the registrar's interval
        // (the shortest gap seen between two).
        let mut last_keepalive: Option<Instant> = None;
        let mut keepalive_interval: Option<Duration> = None;

        loop {
            let deadline = pending
                .as_ref()
                .map_or(Instant::now() + far, Pending::deadline);
            let watchdog = match (last_keepalive, keepalive_interval) {
                (Some(last), Some(i)) if registered => {
                    Some(last + (i * KEEPALIVE_MISSES).max(KEEPALIVE_WATCHDOG_MIN))
                }
                _ => None,
            };
            tokio::select! {
                msg = conn.stream.recv() => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => return lost(e),
                    };
                    match msg {
                        AsapMessage::EndpointKeepAlive { home: h, server_id, pool_handle, id: ka_id } => {
                            if pool_handle != self.pe.pool_handle || ka_id != id {
                                log::debug!("keep-alive for {pool_handle}/{ka_id} is not ours");
                                continue;
                            }
                            let ack = AsapMessage::EndpointKeepAliveAck { pool_handle, id };
                            if let Err(e) = conn.stream.send(&ack).await {
                                return lost(e);
                            }
                            let now = Instant::now();
                            if let Some(prev) = last_keepalive {
                                let gap = now - prev;
                                keepalive_interval = Some(keepalive_interval.map_or(gap, |i| i.min(gap)));
                            }
                            last_keepalive = Some(now);
                            // H flag: the sender is (now) our home registrar. Also learn the
                            // identifier of the registrar we registered with from its first
                            // keep-alive.
                            if (h && server_id != home) || home == RegistrarId(0) {
                                if home != RegistrarId(0) {
                                    log::info!(
                                        "pool element {id} of {}: home registrar is now {server_id} (was {home})",
                                        self.pe.pool_handle
                                    );
                                }
                                home = server_id;
                                if registered {
                                    self.state.send_replace(PeState::Registered { registrar: addr, home });
                                }
                            }
                        }
                        AsapMessage::RegistrationResponse { reject, pool_handle, id: r_id, error }
                            if pool_handle == self.pe.pool_handle && r_id == id =>
                        {
                            let Some(Pending::Registration { reply, previous, .. }) = pending.take() else {
                                log::debug!("unexpected registration response from {addr}");
                                continue;
                            };
                            if reject {
                                let causes = error.unwrap_or_default();
                                if let Some(reply) = reply {
                                    let _ = reply.send(Err(ClientError::Rejected {
                                        pool: self.pe.pool_handle.clone(),
                                        causes: causes.clone(),
                                    }));
                                }
                                match previous {
                                    // A refused update: the registrar keeps the old values.
                                    Some(old) if registered => {
                                        self.pe.policy = old;
                                        next_reregistration = Instant::now() + interval;
                                    }
                                    _ => return SessionEnd::Rejected(causes),
                                }
                            } else {
                                if !registered {
                                    log::debug!(
                                        "pool element {id} of {} registered at {addr}",
                                        self.pe.pool_handle
                                    );
                                }
                                registered = true;
                                self.state.send_replace(PeState::Registered { registrar: addr, home });
                                next_reregistration = Instant::now() + interval;
                                if let Some(reply) = reply {
                                    let _ = reply.send(Ok(()));
                                }
                            }
                        }
                        AsapMessage::DeregistrationResponse { pool_handle, id: r_id, error }
                            if pool_handle == self.pe.pool_handle && r_id == id =>
                        {
                            if let Some(Pending::Deregistration { reply, .. }) = pending.take() {
                                if let Some(causes) = error.filter(|c| !c.is_empty()) {
                                    log::warn!("deregistration answered with {causes:?}");
                                }
                                log::debug!("pool element {id} of {} deregistered", self.pe.pool_handle);
                                if let Some(reply) = reply {
                                    let _ = reply.send(Ok(()));
                                }
                                return SessionEnd::Deregistered;
                            }
                        }
                        AsapMessage::Error { causes } => {
                            log::warn!("registrar {addr} reports an error: {causes:?}");
                        }
                        other => log::debug!("ignoring {:#04x} from registrar {addr}", other.type_code()),
                    }
                }
                _ = tokio::time::sleep_until(deadline), if pending.is_some() => {
                    let what = match pending.take() {
                        Some(Pending::Deregistration { reply, .. }) => {
                            // Closing the connection makes the registrar drop the element anyway.
                            log::warn!("no deregistration response from {addr}; closing the connection");
                            if let Some(reply) = reply {
                                let _ = reply.send(Ok(()));
                            }
                            return SessionEnd::Deregistered;
                        }
                        Some(Pending::Registration { reply, .. }) => {
                            if let Some(reply) = reply {
                                let _ = reply.send(Err(ClientError::Timeout { what: "registration", registrar: addr, after: timeout }));
                            }
                            "registration"
                        }
                        None => "request",
                    };
                    return lost(ClientError::Timeout { what, registrar: addr, after: timeout });
                }
                _ = sleep_until_opt(watchdog), if watchdog.is_some() && pending.is_none() => {
                    log::warn!(
                        "pool element {id} of {}: no keep-alive from registrar {addr} for {:?}; \
                         re-registering",
                        self.pe.pool_handle,
                        last_keepalive.map(|t| t.elapsed()).unwrap_or_default()
                    );
                    // Watch again from now; a re-registration that gets no answer loses the
                    // registrar and starts a hunt.
                    last_keepalive = Some(Instant::now());
                    if let Err(e) = conn.stream.send(&self.registration(&local)).await {
                        return lost(e);
                    }
                    pending = Some(Pending::Registration { reply: None, previous: None, deadline: Instant::now() + timeout });
                }
                _ = tokio::time::sleep_until(next_reregistration), if pending.is_none() && registered => {
                    if let Err(e) = conn.stream.send(&self.registration(&local)).await {
                        return lost(e);
                    }
                    pending = Some(Pending::Registration { reply: None, previous: None, deadline: Instant::now() + timeout });
                }
                cmd = self.commands.recv(), if pending.is_none() => {
                    match cmd {
                        Some(Command::UpdatePolicy(policy, reply)) => {
                            let previous = std::mem::replace(&mut self.pe.policy, policy);
                            if let Err(e) = conn.stream.send(&self.registration(&local)).await {
                                let _ = reply.send(Err(ClientError::Stopped));
                                return lost(e);
                            }
                            pending = Some(Pending::Registration { reply: Some(reply), previous: Some(previous), deadline: Instant::now() + timeout });
                        }
                        cmd => {
                            let reply = match cmd {
                                Some(Command::Deregister(reply)) => Some(reply),
                                _ => None,
                            };
                            let msg = AsapMessage::Deregistration { pool_handle: self.pe.pool_handle.clone(), id };
                            if conn.stream.send(&msg).await.is_err() {
                                // The connection is gone: the registrar drops the element itself.
                                if let Some(reply) = reply {
                                    let _ = reply.send(Ok(()));
                                }
                                return SessionEnd::Deregistered;
                            }
                            pending = Some(Pending::Deregistration { reply, deadline: Instant::now() + timeout });
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
