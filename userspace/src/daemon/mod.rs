//! `rsplb run`: keeps next hops resolved (on neighbour events and periodically, by the
//! [`crate::resolver`] thread, never inside a table change), expires idle
//! NAT translations, and serves Prometheus metrics. With a registrar configuration it also runs
//! an RSerPool registrar on the same runtime and keeps each pool's registered elements in the
//! dataplane ([`crate::reconcile`]). Its one HTTP server ([`endpoint`]) serves the metrics and the
//! embedded registrar's admin paths; its status file ([`status`]) tells `rsplb status` it runs. Stopping it (SIGINT/SIGTERM, or a crash) leaves the pinned
//! dataplane forwarding with its last tables: the reconciler stops before the registrar closes
//! its connections, so the elements stay.
//!
//! With `--config` ([`configured`]) the file is applied before anything else starts, its health
//! checks run, and SIGHUP reloads it.

pub mod configured;
pub mod notify;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_ROUTE};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{Notify, watch},
    task::JoinHandle,
};

use rsplb_registrar::{config::RegistrarConfig, shell::Registrar};

use crate::{
    control::{Balancer, owner::Control},
    dataplane::events::{self, XdpLogLevel},
    reconcile,
    resolver::Resolver,
    state::StateError,
};

pub mod endpoint;
pub mod metrics;
pub mod status;

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub metrics: Option<SocketAddr>,
    /// Period of the next-hop refresh and NAT expiry (and of the reconciler's repair pass).
    pub interval: Duration,
    /// Run an embedded registrar with this configuration and reconcile its pools.
    pub registrar: Option<RegistrarConfig>,
    /// The configuration file (`--config`): applied at start and on SIGHUP.
    pub config: Option<configured::ConfigSource>,
    /// The level of the XDP program's event log while this daemon runs (off again when it
    /// stops: nobody reads the events then).
    pub xdp_log: XdpLogLevel,
}

const RTNLGRP_NEIGH: u32 = 3;

/// Blocks on a netlink socket subscribed to neighbour events and wakes `notify` on each batch.
fn watch_neighbours(notify: Arc<Notify>) -> Result<()> {
    let mut s = Socket::new(NETLINK_ROUTE).context("netlink socket")?;
    s.bind(&NlAddr::new(0, 1 << (RTNLGRP_NEIGH - 1)))
        .context("subscribing to neighbour events")?;
    std::thread::Builder::new()
        .name("rsplb-neigh".into())
        .spawn(move || {
            while s.recv_from_full().is_ok() {
                notify.notify_one();
            }
        })
        .context("spawning the neighbour watcher")?;
    Ok(())
}

/// The error of a state file that cannot be read (missing, empty, corrupt), if `e` is one.
fn unreadable_state(e: &anyhow::Error) -> Option<&StateError> {
    e.chain()
        .filter_map(|c| c.downcast_ref::<StateError>())
        .find(|s| matches!(s, StateError::Json { .. } | StateError::Io { .. }))
}

/// How long a periodic refresh waits for one neighbour (new elements wait
/// [`crate::control::RESOLVE_WAIT`]).
const REFRESH_WAIT: Duration = Duration::from_millis(200);

/// One maintenance pass: queues every element's next hop for a refresh (the resolver applies
/// what changed, outside this pass), then expires NAT translations. Fails only when the state
/// file cannot be read: the daemon could then apply no change at all, so it must stop and say
/// so rather than keep running as if it worked.
fn maintain(b: &mut Balancer, resolver: &Resolver) -> Result<()> {
    let iface = b.interface().to_string();
    let fatal = |e: &anyhow::Error| -> Result<()> {
        match unreadable_state(e) {
            Some(s) => {
                let msg = format!(
                    "{s}: this daemon cannot apply any change to {iface} (the dataplane keeps forwarding with its last tables); stopping. `rsplb attach {iface} --recover-state` rebuilds the state from the pinned maps"
                );
                log::error!("{msg}");
                Err(anyhow::anyhow!(msg))
            }
            None => Ok(()),
        }
    };
    match b.neighbour_targets() {
        Ok(targets) => resolver.request(targets, REFRESH_WAIT),
        Err(e) => {
            fatal(&e)?;
            log::warn!("{iface}: refreshing next hops: {e:#}");
        }
    }
    match b.expire_nat() {
        Ok(0) => {}
        Ok(n) => log::info!("{}: expired {n} NAT translation(s)", b.interface()),
        Err(e) => log::warn!("{}: expiring NAT translations: {e:#}", b.interface()),
    }
    Ok(())
}

/// The resolver of a daemon: each result is applied as a change of its own, on the owner
/// thread.
fn start_resolver(balancer: Control) -> Result<Resolver> {
    Resolver::netlink(move |target, hop| {
        let resolved = hop.as_ref().is_some_and(|h| h.resolved());
        let t = target.clone();
        let applied = balancer.run_blocking(move |b| {
            (
                b.apply_neighbours(vec![(t, hop)]),
                b.interface().to_string(),
            )
        });
        let Ok((r, iface)) = applied else {
            return;
        };
        match r {
            Ok(0) => {}
            Ok(_) if resolved => log::info!(
                "{}: pool {}: next hop of {} resolved",
                iface,
                target.pool,
                target.addr
            ),
            Ok(_) => log::warn!(
                "{}: pool {}: next hop of {} unresolved; retrying every pass",
                iface,
                target.pool,
                target.addr
            ),
            Err(e) => log::warn!("{}: applying the next hop of {}: {e:#}", iface, target.addr),
        }
    })
    .context("starting the neighbour resolver")
}

/// Runs until SIGINT or SIGTERM.
pub fn run(iface: &str, opts: RunOptions) -> Result<()> {
    // Every ASAP connection of the embedded registrar is a file descriptor.
    if let Err(e) = rsplb_registrar::shell::raise_nofile_limit() {
        log::warn!("cannot raise the open-file limit (RLIMIT_NOFILE): {e}");
    }
    // One thread owns the control plane; every task below sends it jobs.
    let balancer = Control::start(Balancer::open(iface)?)?;
    let resolver = start_resolver(balancer.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let notify = Arc::new(Notify::new());
        if let Err(e) = watch_neighbours(notify.clone()) {
            log::warn!(
                "no neighbour events ({e:#}); refreshing every {:?} only",
                opts.interval
            );
        }
        // One daemon per interface (`rsplb reload` finds it by this file).
        let pid = match &opts.config {
            Some(_) => Some(configured::PidFile::create(iface)?),
            None => None,
        };
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        // Every listener is bound before the file is applied: a daemon that cannot serve stops
        // before it changes the dataplane.
        let mut registrar = match opts.registrar {
            Some(mut config) => Some({
                // One HTTP server: with the daemon's, which serves the registrar's admin paths
                // too, the registrar opens no admin listener of its own (unless configured at
                // an address of its own).
                if opts.metrics.is_some()
                    && config.admin == Some(rsplb_registrar::config::DEFAULT_ADMIN)
                {
                    config.admin = None;
                }
                EmbeddedRegistrar::start(config, balancer.clone(), resolver.clone(), opts.interval)
                    .await?
            }),
            None => None,
        };
        let mut http = None;
        if let Some(addr) = opts.metrics {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?;
            let addr = listener.local_addr().unwrap_or(addr);
            if registrar.is_some() {
                eprintln!(
                    "rsplb: serving metrics on http://{addr}/metrics and the registrar's admin paths (http://{addr}/handlespace)"
                );
            } else {
                eprintln!("rsplb: serving metrics on http://{addr}/metrics");
            }
            http = Some((listener, addr));
        }
        let mut configured = match (opts.config, pid) {
            (Some(source), Some(pid)) => Some(
                configured::Configured::start(iface, source, pid, &balancer, &resolver).await?,
            ),
            _ => None,
        };
        let mut status = status::StatusWriter::new(
            iface,
            opts.interval,
            http.as_ref().map(|(_, a)| *a),
            registrar
                .as_ref()
                .map(|r| (r.control.clone(), r.asap.clone())),
        );
        if let Some((listener, _)) = http {
            let endpoint = endpoint::Endpoint {
                balancer: balancer.clone(),
                registrar: registrar.as_ref().map(|r| r.control.clone()),
                started_unix_ms: status.started_unix_ms(),
            };
            tokio::spawn(endpoint.serve(listener));
        }
        status.update().await;
        // The reader runs whatever the level, so that a reload can raise it.
        let event_log = tokio::spawn(read_events(iface.to_string()));
        set_xdp_log(iface, opts.xdp_log);
        let mut tick = tokio::time::interval(opts.interval);
        eprintln!("rsplb: running on {iface}");
        notify::notify(&format!("READY=1\nSTATUS=serving {iface}"));
        let result = loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = notify.notified() => {
                    // Let a burst of neighbour events settle (our own probes cause some).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                r = EmbeddedRegistrar::failed(&mut registrar) => break r,
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                _ = hup.recv() => {
                    match configured.as_mut() {
                        Some(c) => {
                            notify::notify("RELOADING=1");
                            c.reload(&balancer, &resolver).await;
                            notify::notify(&format!("READY=1\nSTATUS=serving {iface}"));
                        }
                        None => log::warn!("SIGHUP: this daemon has no configuration file to reload (start it with --config)"),
                    }
                    continue;
                }
            }
            let r = resolver.clone();
            match balancer.run(move |b| maintain(b, &r)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => break Err(e),
            }
            status.update().await;
        };
        notify::notify("STOPPING=1");
        set_xdp_log(iface, XdpLogLevel::OFF);
        event_log.abort();
        status.remove();
        if let Some(c) = configured {
            c.stop();
        }
        if let Some(r) = registrar {
            r.stop().await;
        }
        resolver.close();
        eprintln!("rsplb: stopped; the dataplane keeps forwarding with its last tables");
        result
    })
}

/// Sets the XDP program's event log level; a failure is logged (forwarding does not depend on
/// it).
pub(crate) fn set_xdp_log(iface: &str, level: XdpLogLevel) {
    if let Err(e) = events::set_level(iface, level) {
        log::warn!("{iface}: setting the XDP event log to {level}: {e:#}");
    }
}

/// Prints the XDP program's events until the daemon stops.
async fn read_events(iface: String) {
    if let Err(e) = events::read(iface.clone()).await {
        log::warn!("{iface}: no XDP event log: {e:#}");
    }
}

/// The registrar and its reconciler, on the daemon's runtime.
struct EmbeddedRegistrar {
    control: rsplb_registrar::shell::RegistrarControl,
    asap: Vec<SocketAddr>,
    registrar: JoinHandle<Result<()>>,
    reconciler: JoinHandle<Result<()>>,
    stop: watch::Sender<bool>,
}

impl EmbeddedRegistrar {
    async fn start(
        config: RegistrarConfig,
        balancer: Control,
        resolver: Resolver,
        interval: Duration,
    ) -> Result<Self> {
        let registrar = Registrar::bind(config)
            .await
            .context("starting the registrar")?;
        let asap = registrar.asap_addrs().to_vec();
        let addrs: Vec<String> = registrar
            .asap_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        eprintln!(
            "rsplb: registrar {} listening for ASAP on {}{}",
            registrar.id(),
            addrs.join(", "),
            registrar
                .admin_addr()
                .map(|a| format!(", admin on http://{a}/handlespace"))
                .unwrap_or_default()
        );
        let control = registrar.control();
        // Subscribe before the reconciler reads its snapshot: no change is missed.
        let events = control.subscribe();
        let (stop, mut stopped) = watch::channel(false);
        let registrar = tokio::spawn(registrar.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        let reconciler = tokio::spawn(reconcile::run(
            balancer,
            resolver,
            control.clone(),
            events,
            interval,
        ));
        Ok(EmbeddedRegistrar {
            control,
            asap,
            registrar,
            reconciler,
            stop,
        })
    }

    /// Completes (with the reason) only if the registrar or the reconciler stopped on its own.
    async fn failed(this: &mut Option<Self>) -> Result<()> {
        let Some(r) = this else {
            return std::future::pending().await;
        };
        let (what, res) = tokio::select! {
            res = &mut r.registrar => ("the registrar", res),
            res = &mut r.reconciler => ("the registrar reconciler", res),
        };
        *this = None;
        match res {
            Ok(Ok(())) => Err(anyhow::anyhow!("{what} stopped")),
            Ok(Err(e)) => Err(e.context(format!("{what} failed"))),
            Err(e) => Err(anyhow::anyhow!("{what} crashed: {e}")),
        }
    }

    /// Stops the reconciler first (the dataplane keeps its elements), then the registrar.
    async fn stop(self) {
        self.reconciler.abort();
        let _ = self.reconciler.await;
        let _ = self.stop.send(true);
        match tokio::time::timeout(Duration::from_secs(5), self.registrar).await {
            Ok(Ok(Err(e))) => log::warn!("registrar: {e:#}"),
            Err(_) => log::warn!("the registrar did not stop within 5 s"),
            _ => {}
        }
    }
}
