//! The daemon's status file, `/run/rsplb/<iface>/daemon.json`: written by `rsplb run` when it
//! starts and every interval after, removed when it stops. `rsplb status` reads it to say
//! whether a daemon serves the interface (its process must still be alive: a daemon killed
//! with SIGKILL leaves a stale file behind, which reads as "not running").

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::atomic::Ordering::Relaxed,
    time::Duration,
};

use anyhow::{Context as _, Result};
use rsplb_registrar::shell::RegistrarControl;
use serde::{Deserialize, Serialize};

use crate::{reconcile::PASSES, state::state_dir};

/// What a running daemon says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub interface: String,
    pub started_unix_ms: u64,
    /// When this file was last written (every interval while the daemon runs).
    pub updated_unix_ms: u64,
    pub interval_ms: u64,
    /// The metrics and admin endpoint (`http://ADDR/metrics`), if served.
    pub http: Option<SocketAddr>,
    pub registrar: Option<RegistrarStatus>,
    /// Passes of the registrar reconciler (`None` without a registrar).
    pub reconcile: Option<ReconcileStatus>,
}

/// The embedded registrar, as last asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrarStatus {
    pub id: String,
    pub asap: Vec<SocketAddr>,
    /// Whether it answered the daemon's last question (a registrar whose loop is stuck does not).
    pub answering: bool,
    pub pools: usize,
    pub elements: usize,
    pub asap_connections: usize,
    /// ENRP synchronisation (`null` without ENRP).
    pub sync_state: Option<String>,
    pub enrp_peers: Vec<PeerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub id: String,
    pub endpoint: String,
    /// `alive`, `probing`, `taking_over`, `auditing`.
    pub state: String,
    pub last_heard_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileStatus {
    pub passes: u64,
    /// When the last pass ended (`null`: none yet).
    pub last_unix_ms: Option<u64>,
    pub total_ms: f64,
}

pub use crate::control::unix_ms;

/// The status file of `iface`.
pub fn path(iface: &str) -> PathBuf {
    state_dir(iface).join("daemon.json")
}

/// The reconciler's figures so far.
pub fn reconcile_figures() -> ReconcileStatus {
    let last = PASSES.last_unix_ms.load(Relaxed);
    ReconcileStatus {
        passes: PASSES.passes.load(Relaxed),
        last_unix_ms: (last != 0).then_some(last),
        total_ms: PASSES.total_us.load(Relaxed) as f64 / 1000.0,
    }
}

impl DaemonStatus {
    fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }

    /// The status of the daemon serving `iface`, if one runs: `Ok(None)` when no file is there
    /// or its process is gone.
    pub fn read(iface: &str) -> Result<Option<DaemonStatus>> {
        let p = path(iface);
        let text = match std::fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        let st: DaemonStatus =
            serde_json::from_slice(&text).with_context(|| format!("reading {}", p.display()))?;
        Ok(st.alive().then_some(st))
    }

    /// Whether its process still runs `rsplb ... run`.
    fn alive(&self) -> bool {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        args.first()
            .is_some_and(|a| String::from_utf8_lossy(a).contains("rsplb"))
            && args.iter().any(|a| *a == b"run")
    }
}

/// Keeps the status file of a daemon up to date.
pub struct StatusWriter {
    status: DaemonStatus,
    path: PathBuf,
    registrar: Option<RegistrarControl>,
}

impl StatusWriter {
    pub fn new(
        iface: &str,
        interval: Duration,
        http: Option<SocketAddr>,
        registrar: Option<(RegistrarControl, Vec<SocketAddr>)>,
    ) -> StatusWriter {
        let now = unix_ms();
        let (control, asap) = match registrar {
            Some((c, a)) => (Some(c), a),
            None => (None, Vec::new()),
        };
        StatusWriter {
            path: path(iface),
            status: DaemonStatus {
                pid: std::process::id(),
                interface: iface.to_string(),
                started_unix_ms: now,
                updated_unix_ms: now,
                interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                http,
                registrar: control.as_ref().map(|c| RegistrarStatus {
                    id: c.id().to_string(),
                    asap,
                    answering: false,
                    pools: 0,
                    elements: 0,
                    asap_connections: 0,
                    sync_state: None,
                    enrp_peers: Vec::new(),
                }),
                reconcile: control.as_ref().map(|_| reconcile_figures()),
            },
            registrar: control,
        }
    }

    pub fn started_unix_ms(&self) -> u64 {
        self.status.started_unix_ms
    }

    /// Asks the registrar (at most one second) and writes the file.
    pub async fn update(&mut self) {
        self.status.updated_unix_ms = unix_ms();
        if let (Some(control), Some(r)) = (&self.registrar, &mut self.status.registrar) {
            let asked = tokio::time::timeout(Duration::from_secs(1), async {
                Ok::<_, anyhow::Error>((control.stats().await?, control.registrars().await?))
            })
            .await;
            match asked {
                Ok(Ok((stats, scope))) => {
                    r.answering = true;
                    r.pools = stats.pools;
                    r.elements = stats.elements;
                    r.asap_connections = stats.peers;
                    r.sync_state = scope.sync_state.and_then(|s| {
                        serde_json::to_value(s)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                    });
                    r.enrp_peers = scope
                        .peers
                        .iter()
                        .map(|p| PeerStatus {
                            id: p.registrar_id_hex.clone(),
                            endpoint: p.endpoint.clone(),
                            state: serde_json::to_value(p.state)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                            last_heard_ms: p.last_heard_ms,
                        })
                        .collect();
                }
                _ => r.answering = false,
            }
            self.status.reconcile = Some(reconcile_figures());
        }
        if let Err(e) = self.status.write(&self.path) {
            log::warn!("{e:#}");
        }
    }

    /// Removes the file (the daemon stops).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
