//! RSerPool in the lab: servers that join a pool by registering, through `rsplb pe register`
//! sidecars, at the registrar that `rsplb run --registrar` embeds on the balancer, and waits
//! (bounded) on the dataplane's element list until registrations or failures show there.

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    Lab,
    cli::{ElementInfo, Rsplb},
    netns::ChildGuard,
};

/// The ASAP port (RFC 5353) the balancer's registrar listens on.
pub const REGISTRAR_PORT: u16 = 3863;
/// Milliseconds between two health probes of a sidecar: a failed server is deregistered after
/// `--fall` (3) failed probes.
pub const CHECK_INTERVAL_MS: u32 = 100;
/// Milliseconds allowed for one probe.
pub const CHECK_TIMEOUT_MS: u32 = 200;

/// Where the balancer's registrar listens: its IPv4 address on the segment.
pub fn registrar_addr(lab: &Lab) -> SocketAddr {
    SocketAddr::new(lab.lb.v4.into(), REGISTRAR_PORT)
}

/// `rsplb run --registrar <registrar_addr> --interval 1` on the balancer, stopped when the lab
/// drops (or by [`Lab::stop_daemons`]).
pub fn start_registrar_daemon(lab: &mut Lab) -> Result<()> {
    let registrar = registrar_addr(lab).to_string();
    lab.start_daemon(&["--registrar", &registrar, "--interval", "1"])
        .context("starting rsplb run --registrar")
}

/// The IPv4 `ADDR:PORT` of server `i` (0-based) on the segment.
pub fn server_addr(lab: &Lab, i: usize, port: u16) -> Result<SocketAddr> {
    let h = lab
        .server_hosts
        .get(i)
        .with_context(|| format!("the lab has no server {}", i + 1))?;
    Ok(SocketAddr::new(h.v4.into(), port))
}

/// What a sidecar registers.
#[derive(Clone, Debug)]
pub struct Sidecar<'a> {
    pub pool: &'a str,
    /// The port of the server's service; the sidecar registers and TCP-checks `server:port`.
    pub port: u16,
    /// `--policy` (e.g. `weighted-round-robin:3`); the sidecar's default when `None`.
    pub policy: Option<String>,
}

impl Sidecar<'_> {
    /// The command line of server `i`'s sidecar: `rsplb --netns <s> pe register POOL ADDR:PORT
    /// --registrar LB:3863 --check tcp --check-target ADDR:PORT --check-interval 100 ...`.
    pub fn args(&self, lab: &Lab, i: usize) -> Result<Vec<String>> {
        self.args_checked(lab, i, true)
    }

    /// The command line of a sidecar that only registers: no health check of its own, so the
    /// server stays registered while the sidecar runs (the balancer's checks then decide).
    pub fn args_without_check(&self, lab: &Lab, i: usize) -> Result<Vec<String>> {
        self.args_checked(lab, i, false)
    }

    fn args_checked(&self, lab: &Lab, i: usize, check: bool) -> Result<Vec<String>> {
        let h = lab
            .server_hosts
            .get(i)
            .with_context(|| format!("the lab has no server {}", i + 1))?;
        let me = server_addr(lab, i, self.port)?.to_string();
        let mut args: Vec<String> = [
            "--netns",
            h.netns.name(),
            "pe",
            "register",
            self.pool,
            &me,
            "--registrar",
            &registrar_addr(lab).to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if check {
            args.extend(
                [
                    "--check",
                    "tcp",
                    "--check-target",
                    &me,
                    "--check-interval",
                    &CHECK_INTERVAL_MS.to_string(),
                    "--check-timeout",
                    &CHECK_TIMEOUT_MS.to_string(),
                ]
                .iter()
                .map(|s| s.to_string()),
            );
        }
        if let Some(p) = &self.policy {
            args.extend(["--policy".to_string(), p.clone()]);
        }
        Ok(args)
    }

    /// Starts server `i`'s sidecar in its namespace; stopped (SIGTERM: it deregisters) when the
    /// guard drops.
    pub fn start(&self, lab: &Lab, i: usize) -> Result<ChildGuard> {
        let mut cmd = Command::new(&lab.rsplb.bin);
        cmd.args(self.args(lab, i)?);
        ChildGuard::spawn(cmd).with_context(|| format!("starting the sidecar of s{}", i + 1))
    }

    /// Starts server `i`'s sidecar without a check of its own ([`Self::args_without_check`]).
    pub fn start_without_check(&self, lab: &Lab, i: usize) -> Result<ChildGuard> {
        let mut cmd = Command::new(&lab.rsplb.bin);
        cmd.args(self.args_without_check(lab, i)?);
        ChildGuard::spawn(cmd).with_context(|| format!("starting the sidecar of s{}", i + 1))
    }
}

/// The elements of `pool` in the dataplane (`element list --json`).
pub fn pool_elements(rsplb: &Rsplb, pool: &str) -> Result<Vec<ElementInfo>> {
    Ok(rsplb
        .elements()?
        .elements
        .into_iter()
        .filter(|e| e.pool == pool)
        .collect())
}

/// Polls the elements of `pool` every 20 ms until `done` holds of them, for at most `bound`;
/// returns how long it took. `done` may fail (e.g. when interrupted or when a process it watches
/// exited): the wait then stops with that error.
pub fn wait_for_elements(
    rsplb: &Rsplb,
    pool: &str,
    bound: Duration,
    what: &str,
    mut done: impl FnMut(&[ElementInfo]) -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let list = pool_elements(rsplb, pool)?;
        if done(&list)? {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= bound {
            let now: Vec<String> = list
                .iter()
                .map(|e| format!("{} ({}, {})", e.address, e.owner, e.state))
                .collect();
            bail!(
                "{what}: not within {bound:?}; elements of pool {pool} now: [{}]",
                now.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Do the addresses of `list` contain every one of `addrs`?
pub fn contains_all(list: &[ElementInfo], addrs: &[String]) -> bool {
    addrs.iter().all(|a| list.iter().any(|e| &e.address == a))
}

/// Does `list` contain `addr`?
pub fn contains(list: &[ElementInfo], addr: &str) -> bool {
    list.iter().any(|e| e.address == addr)
}
