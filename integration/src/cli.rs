//! Driving the `rsplb` binary exactly as an operator does (see briefs/cli-contract.md): every call
//! runs `rsplb --netns <balancer namespace> ...` and checks its exit status.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::cmd::{describe, output_with_timeout};

/// Finds the rsplb binary: `$RSPLB_BIN`, else `release/rsplb` or `debug/rsplb` of this
/// workspace's target directory (`$CARGO_TARGET_DIR`, else `target`), the newer of the two.
pub fn rsplb_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RSPLB_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            // Tests run from the package directory: make a relative path absolute.
            return Ok(p.canonicalize().unwrap_or(p));
        }
        bail!("RSPLB_BIN={} is not a file", p.display());
    }
    // Where cargo put the build: CARGO_TARGET_DIR (relative to the workspace) when set.
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => workspace_root().join(d),
        None => workspace_root().join("target"),
    };
    let mut found: Vec<PathBuf> = ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("rsplb"))
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    found.pop().with_context(|| {
        format!(
            "no rsplb binary: set RSPLB_BIN or run `cargo build -p rsplb` (looked in {})",
            target.display()
        )
    })
}

/// Finds a binary of this crate (`rsplb-testserver`...) next to the running executable or in
/// the workspace's target directory.
pub fn sibling_bin(name: &str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join(name));
        // Integration tests run from target/<profile>/deps.
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(name));
        }
    }
    // Where cargo put the build: CARGO_TARGET_DIR (relative to the workspace) when set.
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => workspace_root().join(d),
        None => workspace_root().join("target"),
    };
    candidates.push(target.join("debug").join(name));
    candidates.push(target.join("release").join(name));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("no {name} binary: run `cargo build -p rsplb-integration`"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `rsplb` command line pointed at one balancer namespace and interface.
#[derive(Clone, Debug)]
pub struct Rsplb {
    pub bin: PathBuf,
    pub netns: String,
    pub iface: String,
}

/// Output of a command that failed or succeeded.
#[derive(Clone, Debug)]
pub struct CliOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Rsplb {
    /// `rsplb run EXTRA` for this interface in its namespace (the daemon), not yet started.
    pub fn daemon_command(&self, extra: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.args(["--netns", &self.netns, "-i", &self.iface, "run"])
            .args(extra);
        cmd
    }

    pub fn new(bin: PathBuf, netns: &str, iface: &str) -> Self {
        Self {
            bin,
            netns: netns.to_string(),
            iface: iface.to_string(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--netns").arg(&self.netns).args(args);
        cmd
    }

    /// Runs `rsplb --netns NS ARGS` and returns its output whatever the exit status.
    pub fn try_run(&self, args: &[&str]) -> Result<CliOutput> {
        let mut cmd = self.command(args);
        let out = output_with_timeout(&mut cmd, Duration::from_secs(60))?;
        Ok(CliOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `rsplb --netns NS ARGS`, failing with rsplb's stderr unless it exits 0.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.try_run(args)?;
        if !out.success {
            bail!(
                "`{}` failed: {}",
                describe(&self.command(args)),
                out.stderr.trim()
            );
        }
        Ok(out.stdout)
    }

    /// Runs `rsplb --netns NS -i IFACE ARGS`.
    pub fn on(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-i", self.iface.as_str()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    pub fn attach(&self, extra: &[&str]) -> Result<()> {
        let mut args = vec!["attach", self.iface.as_str()];
        args.extend_from_slice(extra);
        self.run(&args).map(drop)
    }

    pub fn detach(&self) -> Result<()> {
        self.run(&["detach", &self.iface]).map(drop)
    }

    /// `vip add VIP --pool POOL --mode MODE [--snat SNAT]`.
    pub fn vip_add(&self, vip: &str, pool: &str, mode: &str, snat: Option<&str>) -> Result<()> {
        let mut args = vec!["vip", "add", vip, "--pool", pool, "--mode", mode];
        if let Some(snat) = snat {
            args.extend(["--snat", snat]);
        }
        self.on(&args).map(drop)
    }

    pub fn element_add(&self, pool: &str, addr: &str, weight: u32) -> Result<()> {
        self.on(&[
            "element",
            "add",
            pool,
            addr,
            "--weight",
            &weight.to_string(),
        ])
        .map(drop)
    }

    pub fn element_weight(&self, pool: &str, addr: &str, weight: u32) -> Result<()> {
        self.on(&["element", "weight", pool, addr, &weight.to_string()])
            .map(drop)
    }

    pub fn element_drain(&self, pool: &str, addr: &str) -> Result<()> {
        self.on(&["element", "drain", pool, addr]).map(drop)
    }

    pub fn element_del(&self, pool: &str, addr: &str) -> Result<()> {
        self.on(&["element", "del", pool, addr]).map(drop)
    }

    pub fn elements(&self) -> Result<ElementList> {
        let out = self.on(&["element", "list", "--json"])?;
        serde_json::from_str(&out).with_context(|| format!("parsing `element list --json`: {out}"))
    }

    pub fn stats(&self) -> Result<Stats> {
        let out = self.on(&["stats", "--json"])?;
        serde_json::from_str(&out).with_context(|| format!("parsing `stats --json`: {out}"))
    }

    /// The human `rsplb stats` table.
    pub fn stats_table(&self) -> Result<String> {
        self.on(&["stats"])
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct ElementList {
    pub interface: String,
    pub elements: Vec<ElementInfo>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ElementInfo {
    pub pool: String,
    pub address: String,
    pub weight: u32,
    pub state: String,
    /// `manual` (added with `element add`) or `registrar` (registered through RSerPool).
    #[serde(default)]
    pub owner: String,
    pub slot: u32,
    pub mac: Option<String>,
    pub ifindex: Option<u32>,
    /// `up`, `down` or `slow-start N%` (the daemon's balancer-side checks).
    #[serde(default)]
    pub health: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Stats {
    pub interface: String,
    pub vips: Vec<VipStats>,
    pub elements: Vec<ElementStats>,
    pub global: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct VipStats {
    pub vip: String,
    pub pool: String,
    pub mode: String,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Packets refused by the VIP's source allow list.
    #[serde(default)]
    pub drop_source_not_allowed: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ElementStats {
    pub pool: String,
    pub address: String,
    pub weight: u32,
    pub state: String,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

impl Stats {
    /// The counters of the element `address` (as printed by rsplb) in `pool`.
    pub fn element(&self, pool: &str, address: &str) -> Option<&ElementStats> {
        self.elements
            .iter()
            .find(|e| e.pool == pool && e.address == address)
    }

    pub fn global(&self, key: &str) -> u64 {
        self.global.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
    }
}
