//! Network namespaces, processes inside them and per-run unique names, as RAII guards.
//!
//! Names carry the creating process's pid, so a later run can tell leftovers of a crashed run (pid
//! gone) from those of a run still going (pid alive), and [`cleanup_leftovers`] removes only the
//! former.

use std::{
    fs,
    os::fd::AsRawFd as _,
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{self, ip};

/// Prefix of every namespace the lab creates: `rsplbt-<pid>-<seq>-<role>`.
pub const NETNS_PREFIX: &str = "rsplbt-";
/// Prefix of interface names that must be unique machine-wide (the balancer's interface, whose
/// name is also the rsplb pin directory): `rl<pid base36>_<seq><suffix>`.
pub const IFACE_PREFIX: &str = "rl";

static NEXT_SEQ: AtomicU32 = AtomicU32::new(1);

/// A unique id for one lab (test, demo or benchmark run): the process id and a per-process
/// sequence number. Every name and address of the lab derives from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabId {
    pub pid: u32,
    pub seq: u32,
}

impl LabId {
    /// A fresh id, never returned twice in this process.
    pub fn next() -> Self {
        Self {
            pid: std::process::id(),
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Namespace name for a role (`client`, `lb`, `s1`, `sw`...).
    pub fn netns(&self, role: &str) -> String {
        format!("{NETNS_PREFIX}{}-{}-{role}", self.pid, self.seq)
    }

    /// A machine-wide unique interface name (at most 15 bytes for suffixes of up to 3 bytes).
    pub fn iface(&self, suffix: &str) -> String {
        let name = format!(
            "{IFACE_PREFIX}{}_{}{suffix}",
            base36(self.pid),
            self.seq % 1000
        );
        debug_assert!(name.len() <= 15, "{name} is too long for an interface name");
        name
    }

    /// Third octet / group used in this lab's addresses (unique per lab within a process;
    /// namespaces isolate labs of different processes from each other anyway).
    pub fn subnet(&self) -> u8 {
        (self.seq % 250) as u8 + 1
    }
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A network namespace created with `ip netns add`, deleted (with everything in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        // A stale namespace of the same name can only come from a crashed run of this very pid.
        let _ = ip(["netns", "del", name]);
        ip(["netns", "add", name]).with_context(|| format!("creating network namespace {name}"))?;
        let ns = Self {
            name: name.to_string(),
        };
        cmd::ip_in(name, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <self> ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        cmd::ip_in(&self.name, args)
    }

    /// Runs a tool inside the namespace with `ip netns exec`.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        cmd::exec_in(&self.name, program, args)
    }

    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        cmd::sysctl_in(&self.name, key, value)
    }

    /// Runs `f` on a fresh thread that has entered this namespace (network namespace only).
    /// Sockets created inside `f` stay in the namespace wherever they are used later.
    pub fn run<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        in_netns(&self.name, f)
    }

    /// Starts a long-running process inside the namespace; it is killed when the guard drops.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<ChildGuard> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        ChildGuard::spawn(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(["netns", "del", &self.name]) {
            eprintln!("warning: removing network namespace {}: {e:#}", self.name);
        }
    }
}

/// Runs `f` on a new thread inside the named network namespace (`/run/netns/<name>`).
pub fn in_netns<F, R>(name: &str, f: F) -> Result<R>
where
    F: FnOnce() -> Result<R> + Send + 'static,
    R: Send + 'static,
{
    in_netns_scoped(name, f)
}

/// Like [`in_netns`], for a closure that borrows from the caller (a scoped thread, joined
/// before returning).
pub fn in_netns_scoped<F, R>(name: &str, f: F) -> Result<R>
where
    F: FnOnce() -> Result<R> + Send,
    R: Send,
{
    let path = format!("/run/netns/{name}");
    let file = fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn_scoped(scope, move || -> Result<R> {
                // SAFETY: setns on a valid namespace fd affects only this (new, short-lived)
                // thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error()).context("setns(CLONE_NEWNET)");
                }
                f()
            })
            .context("spawning a thread")?;
        handle
            .join()
            .map_err(|_| anyhow!("the thread in network namespace {name} panicked"))?
    })
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    pub fn spawn(cmd: Command) -> Result<Self> {
        Self::spawn_with_stderr(cmd, Stdio::inherit())
    }

    /// As [`ChildGuard::spawn`], with the process's stderr going to `stderr` (a file the test
    /// reads, for example).
    pub fn spawn_with_stderr(mut cmd: Command, stderr: Stdio) -> Result<Self> {
        let what = cmd::describe(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Self {
            child: Some(child),
            what,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("{} exited early: {status}", self.what);
        }
        Ok(())
    }

    /// Stops the process now (SIGTERM, up to two seconds, then SIGKILL).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // `ip netns exec` execs the program, so the pid is the program's.
        // SAFETY: kill with a pid we own and a valid signal number.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes what crashed earlier runs left behind: namespaces named `rsplbt-<pid>-...` and rsplb
/// pin/state directories of interfaces named `rl<pid36>_...` whose pid no longer runs. Returns
/// how many items it removed.
pub fn cleanup_leftovers() -> usize {
    let mut removed = 0;
    if let Ok(list) = ip(["netns", "list"]) {
        for line in list.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !pid_alive(pid)
                && ip(["netns", "del", name]).is_ok()
            {
                removed += 1;
            }
        }
    }
    for dir in ["/sys/fs/bpf/rsplb", "/run/rsplb"] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(IFACE_PREFIX) else {
                continue;
            };
            let Some((pid36, _)) = rest.split_once('_') else {
                continue;
            };
            let Ok(pid) = u32::from_str_radix(pid36, 36) else {
                continue;
            };
            if !pid_alive(pid) && fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_encode_the_pid() {
        let id = LabId {
            pid: 4_194_304,
            seq: 999,
        };
        let iface = id.iface("out");
        assert!(iface.len() <= 15, "{iface}");
        let rest = iface.strip_prefix(IFACE_PREFIX).unwrap();
        let (pid36, _) = rest.split_once('_').unwrap();
        assert_eq!(u32::from_str_radix(pid36, 36).unwrap(), 4_194_304);
        assert!(id.netns("client").starts_with("rsplbt-4194304-999-"));
    }
}
