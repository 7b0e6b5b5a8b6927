//! The `rsplb pe register` sidecar: registers a service that knows nothing of RSerPool as a pool
//! element, checks it locally, deregisters it when it fails and registers it again when it
//! recovers.
//!
//! The element keeps one identifier for the sidecar's whole life, so a recovered service comes
//! back as the same pool element.

pub mod health;

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::client::{ClientConfig, ClientError, PeState, PoolElementConfig, PoolElementHandle};
use crate::types::PeId;

use health::{Health, HealthCheck, HealthTracker};

/// Everything the sidecar needs.
#[derive(Clone, Debug)]
pub struct SidecarConfig {
    pub client: ClientConfig,
    pub element: PoolElementConfig,
    /// `None`: no check, the element stays registered until shutdown.
    pub check: Option<HealthCheck>,
    /// Time between two probes: default 1 s.
    pub interval: Duration,
    /// Time allowed for one probe: default 1 s.
    pub timeout: Duration,
    /// Consecutive successes that bring a down service back: default 2.
    pub rise: u32,
    /// Consecutive failures that take an up service out: default 3.
    pub fall: u32,
}

impl SidecarConfig {
    pub fn new(client: ClientConfig, element: PoolElementConfig) -> Self {
        Self {
            client,
            element,
            check: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// Runs until `shutdown` completes, then deregisters. Errors only for an invalid configuration;
/// registrar trouble is logged and retried.
pub async fn run(
    mut config: SidecarConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    // One identifier for the whole run: the same element leaves and comes back.
    let id = *config
        .element
        .id
        .get_or_insert_with(|| PeId(rand::random()));
    let what = format!(
        "pool element {id} of {} ({})",
        config.element.pool_handle,
        describe_transport(&config.element)
    );
    tokio::pin!(shutdown);

    let Some(check) = config.check.clone() else {
        log::info!("{what}: no health check; registering");
        let element = PoolElementHandle::start(config.client.clone(), config.element.clone())?;
        let mut states = element.watch();
        let mut last = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                changed = states.changed() => {
                    if changed.is_err() { break; }
                    let state = states.borrow_and_update().clone();
                    log_state(&what, &mut last, &state);
                }
            }
        }
        return finish(&what, Some(element)).await;
    };

    log::info!(
        "{what}: checking {check} every {:?} (timeout {:?}, rise {}, fall {})",
        config.interval,
        config.timeout,
        config.rise,
        config.fall
    );
    let mut tracker = HealthTracker::new(config.rise, config.fall);
    let mut element: Option<PoolElementHandle> = None;
    let mut states: Option<watch::Receiver<PeState>> = None;
    let mut last = None;
    let mut ticker = tokio::time::interval(config.interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {
                let result = tokio::select! {
                    r = check.probe(config.timeout) => r,
                    _ = &mut shutdown => break,
                };
                if let Err(e) = &result {
                    log::debug!("{what}: check failed: {e}");
                }
                match tracker.observe(result.is_ok()) {
                    Some(Health::Up) => {
                        log::info!("{what}: service is up ({check}); registering");
                        let handle = PoolElementHandle::start(config.client.clone(), config.element.clone())?;
                        states = Some(handle.watch());
                        last = None;
                        element = Some(handle);
                    }
                    Some(Health::Down) => {
                        let reason = result.err().map(|e| e.to_string()).unwrap_or_default();
                        if element.is_some() {
                            log::warn!("{what}: service is down ({check}: {reason}); deregistering");
                        } else {
                            log::warn!("{what}: service is down ({check}: {reason}); not registering");
                        }
                        states = None;
                        if let Some(handle) = element.take() {
                            deregister(&what, handle).await;
                        }
                    }
                    None => {}
                }
            }
            changed = next_state(&mut states) => {
                match changed {
                    Some(state) => log_state(&what, &mut last, &state),
                    None => states = None,
                }
            }
        }
    }
    finish(&what, element).await
}

async fn next_state(states: &mut Option<watch::Receiver<PeState>>) -> Option<PeState> {
    match states {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// Logs a state change for people: registrations, refusals and trouble; the first keep-alive
/// naming the home registrar only at debug level.
fn log_state(what: &str, last: &mut Option<PeState>, state: &PeState) {
    let previous = last.replace(state.clone());
    match state {
        PeState::Hunting => log::debug!("{what}: looking for a registrar"),
        PeState::Registered { registrar, home } if matches!(previous, Some(PeState::Registered { registrar: r, .. }) if r == *registrar) =>
        {
            log::debug!("{what}: home registrar {home}")
        }
        PeState::NoRegistrar { tried } => {
            let e = ClientError::NoRegistrar {
                tried: tried.clone(),
            };
            log::warn!("{what}: {e}; retrying")
        }
        PeState::Registered { registrar, home } if home.0 == 0 => {
            log::info!("{what}: registered at {registrar}")
        }
        PeState::Registered { registrar, home } => {
            log::info!("{what}: registered at {registrar} (home registrar {home})")
        }
        PeState::Rejected { causes } => {
            let causes: Vec<String> = causes.iter().map(|c| c.code.to_string()).collect();
            log::error!(
                "{what}: registration refused ({}); retrying",
                causes.join(", ")
            )
        }
        PeState::Deregistered => log::info!("{what}: deregistered"),
    }
}

async fn deregister(what: &str, handle: PoolElementHandle) {
    match handle.deregister().await {
        Ok(()) => log::info!("{what}: deregistered"),
        Err(e) => log::warn!("{what}: deregistration: {e}"),
    }
}

async fn finish(what: &str, element: Option<PoolElementHandle>) -> Result<(), ClientError> {
    log::info!("{what}: shutting down");
    if let Some(handle) = element {
        deregister(what, handle).await;
    }
    Ok(())
}

fn describe_transport(pe: &PoolElementConfig) -> String {
    let t = &pe.user_transport;
    let proto = match t.protocol() {
        crate::types::TransportProtocol::Sctp => "sctp",
        crate::types::TransportProtocol::Tcp => "tcp",
        crate::types::TransportProtocol::Udp => "udp",
        crate::types::TransportProtocol::UdpLite => "udplite",
        crate::types::TransportProtocol::Dccp => "dccp",
    };
    match t.addrs().first() {
        Some(ip) => format!("{}/{proto}", std::net::SocketAddr::new(*ip, t.port())),
        None => format!("port {}/{proto}", t.port()),
    }
}
