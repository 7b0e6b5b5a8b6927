//! `rsplb run --config FILE`: the file applied at start (whole, or the daemon does not start),
//! the health checks it declares, and reloads (SIGHUP, sent by `rsplb reload`) that apply the
//! difference or, for a file with any error, change nothing and say why.
//!
//! The daemon of an interface keeps two files in `/run/rsplb/<IFACE>/`: `daemon.pid` (how
//! `rsplb reload` finds it) and `reload.json` (the outcome of the last load: generation, whether
//! it was applied, and the message), which `rsplb reload` waits for.

use crate::control::owner::Control;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    config::{self, ConfigFile, apply::Applied},
    control::RESOLVE_WAIT,
    control_core::{Core, NeighbourTarget},
    health::runner::{self, Plan},
    resolver::Resolver,
    state::{State, state_dir},
};

/// A configuration file and what it said when it was read.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub file: ConfigFile,
}

/// The outcome of the last load of the file, in `/run/rsplb/<IFACE>/reload.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// The daemon that wrote it.
    pub pid: u32,
    /// 0 for the load at start, then one more per reload.
    pub generation: u64,
    pub applied: bool,
    pub message: String,
    pub file: String,
    pub time_unix_ms: u64,
}

pub fn pid_path(iface: &str) -> PathBuf {
    state_dir(iface).join("daemon.pid")
}

pub fn status_path(iface: &str) -> PathBuf {
    state_dir(iface).join("reload.json")
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// The pid of the daemon serving `iface`, if one runs.
pub fn daemon_pid(iface: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_path(iface))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

/// `daemon.pid`, removed when dropped.
pub struct PidFile(PathBuf);

impl PidFile {
    /// Refuses when another daemon serves the interface.
    pub fn create(iface: &str) -> Result<PidFile> {
        if let Some(pid) = daemon_pid(iface) {
            bail!("another rsplb daemon (pid {pid}) serves {iface}; stop it first");
        }
        let path = pid_path(iface);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_status(iface: &str, status: &ReloadStatus) {
    let path = status_path(iface);
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, serde_json::to_vec_pretty(status)?)?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        log::warn!("writing {}: {e}", path.display());
    }
}

pub fn read_status(iface: &str) -> Option<ReloadStatus> {
    serde_json::from_slice(&std::fs::read(status_path(iface)).ok()?).ok()
}

/// Checks that `cfg` applies to the interface's current state (or to a fresh one when it is
/// not attached yet) without changing anything: the core is I/O-free, so this is the real
/// apply on a copy. Run before attaching, so the daemon never starts half-configured.
pub fn preflight(iface: &str, cfg: &ConfigFile) -> Result<()> {
    let opts = cfg
        .interface
        .attach_options()
        .map_err(|e| anyhow!("interface: {e}"))?;
    let state = match State::load(&state_dir(iface).join("state.json")) {
        Ok(st) => st,
        Err(_) => State::new(iface, 0, 0, None, opts),
    };
    let mut core = Core::new(state);
    config::apply::apply(&mut core, cfg).context("the file does not apply to the interface")?;
    Ok(())
}

/// Applies `cfg` as one change, then has the new elements' next hops resolved (those the
/// kernel knows at once, the others by the resolver).
pub async fn apply(balancer: &Control, resolver: &Resolver, cfg: &ConfigFile) -> Result<Applied> {
    let cfg = cfg.clone();
    let applied = balancer
        .run(move |b| b.change(|c| config::apply::apply(c, &cfg)))
        .await
        .context("applying the configuration")??;
    resolve(balancer, resolver, applied.pending.clone()).await;
    Ok(applied)
}

async fn resolve(balancer: &Control, resolver: &Resolver, targets: Vec<NeighbourTarget>) {
    let (known, unknown): (Vec<_>, Vec<_>) = targets
        .into_iter()
        .map(|t| {
            let h = resolver.cached(&t);
            (t, h)
        })
        .partition(|(_, h)| h.is_some());
    if !known.is_empty() {
        let r = balancer.run(move |b| b.apply_neighbours(known)).await;
        if let Ok(Err(e)) = r {
            log::warn!("applying known next hops: {e:#}");
        }
    }
    resolver.request(unknown.into_iter().map(|(t, _)| t), RESOLVE_WAIT);
}

/// The file, its generation, and the health checks it declares.
pub struct Configured {
    iface: String,
    path: PathBuf,
    current: ConfigFile,
    generation: u64,
    plan: watch::Sender<Arc<Plan>>,
    checks: tokio::task::JoinHandle<()>,
    _pid: PidFile,
}

impl Configured {
    /// Applies the file (the daemon stops when it does not apply) and starts its checks.
    pub async fn start(
        iface: &str,
        source: ConfigSource,
        pid: PidFile,
        balancer: &Control,
        resolver: &Resolver,
    ) -> Result<Configured> {
        let started = Instant::now();
        let applied = apply(balancer, resolver, &source.file)
            .await
            .with_context(|| format!("applying {}", source.path.display()))?;
        let message = format!(
            "applied {} in {:.1} ms: {}",
            source.path.display(),
            started.elapsed().as_secs_f64() * 1e3,
            applied.summary()
        );
        log::info!("{message}");
        write_status(
            iface,
            &ReloadStatus {
                pid: std::process::id(),
                generation: 0,
                applied: true,
                message,
                file: source.path.display().to_string(),
                time_unix_ms: crate::control::unix_ms(),
            },
        );
        let (plan, rx) = watch::channel(Arc::new(runner::plan(&source.file)));
        let checks = tokio::spawn(runner::run(balancer.clone(), rx));
        Ok(Configured {
            iface: iface.to_string(),
            path: source.path,
            current: source.file,
            generation: 0,
            plan,
            checks,
            _pid: pid,
        })
    }

    /// Reads the file again and applies the difference; a file with any error, or one the
    /// control plane refuses, changes nothing. Either way the outcome is logged and written
    /// for `rsplb reload`.
    pub async fn reload(&mut self, balancer: &Control, resolver: &Resolver) {
        self.generation += 1;
        let started = Instant::now();
        let outcome = self.try_reload(balancer, resolver).await;
        let (applied, message) = match outcome {
            Ok(m) => (
                true,
                format!(
                    "reloaded {} in {:.1} ms: {m}",
                    self.path.display(),
                    started.elapsed().as_secs_f64() * 1e3
                ),
            ),
            Err(e) => (
                false,
                format!(
                    "reload of {} refused, nothing changed: {e:#}",
                    self.path.display()
                ),
            ),
        };
        if applied {
            log::info!("{message}");
        } else {
            log::error!("{message}");
        }
        write_status(
            &self.iface,
            &ReloadStatus {
                pid: std::process::id(),
                generation: self.generation,
                applied,
                message,
                file: self.path.display().to_string(),
                time_unix_ms: crate::control::unix_ms(),
            },
        );
    }

    async fn try_reload(&mut self, balancer: &Control, resolver: &Resolver) -> Result<String> {
        let path = self.path.clone();
        let next = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| anyhow!("{e}"))??;
        if next.interface.name != self.current.interface.name {
            bail!(
                "the interface changed ({} to {}): run a daemon for {} instead",
                self.current.interface.name,
                next.interface.name,
                next.interface.name
            );
        }
        let mut restart = Vec::new();
        if next.interface != self.current.interface {
            restart.push("[interface] (attach options: `rsplb attach IFACE --force` reloads them)");
        }
        if next.metrics != self.current.metrics {
            restart.push("metrics");
        }
        if next.registrar != self.current.registrar {
            restart.push("[registrar]");
        }
        if next.interval_s != self.current.interval_s {
            restart.push("interval_s");
        }
        let applied = apply(balancer, resolver, &next).await?;
        if next.xdp_log != self.current.xdp_log {
            super::set_xdp_log(&self.iface, next.xdp_log);
        }
        self.plan.send_replace(Arc::new(runner::plan(&next)));
        self.current = next;
        let mut m = applied.summary();
        if !restart.is_empty() {
            m.push_str(&format!(
                "; changes to {} take effect when the daemon restarts",
                restart.join(", ")
            ));
            log::warn!(
                "{}: {} changed; kept the running settings until a restart",
                self.path.display(),
                restart.join(", ")
            );
        }
        Ok(m)
    }

    pub fn stop(self) {
        self.checks.abort();
    }
}

/// `rsplb reload`: signals the daemon of `iface` and waits (bounded) for its outcome.
pub fn request_reload(iface: &str, wait: Duration) -> Result<ReloadStatus> {
    let pid = daemon_pid(iface).ok_or_else(|| {
        anyhow!(
            "no rsplb daemon serves {iface} (no live pid in {}): start it with `rsplb run --config FILE`",
            pid_path(iface).display()
        )
    })?;
    // The generation this daemon reported last (a file of an earlier daemon does not count).
    let before = read_status(iface)
        .filter(|s| s.pid == pid as u32)
        .map(|s| s.generation);
    // SAFETY: kill with a pid read from the daemon's pid file and a valid signal.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signalling the daemon (pid {pid})"));
    }
    let deadline = Instant::now() + wait;
    loop {
        if let Some(s) = read_status(iface)
            && s.pid == pid as u32
            && s.generation > before.unwrap_or(0)
        {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon (pid {pid}) did not report a reload within {wait:?} (was it started with --config? see its log)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads and validates a file for the daemon (with the file named in every error).
pub fn load(path: &Path) -> Result<ConfigSource> {
    let file = config::load(path)?;
    Ok(ConfigSource {
        path: path.to_path_buf(),
        file,
    })
}
