//! `bench-failover` (`cargo xtask bench failover`): how long a failed pool element keeps getting
//! new flows through the balancer, and how long a handlespace change takes to reach the tables,
//! with defaults, in the namespace lab. Two phases, each in its own lab (`--only` runs one):
//!
//! **Failover** (client, balancer with `rsplb run --config` whose file declares a DSR VIP, the
//! pool `web` with a balancer-side TCP check left at its defaults, and the embedded registrar;
//! three servers each registered by its `rsplb pe register` sidecar). The client sends one UDP
//! datagram per millisecond to the VIP, each from a new source port: each is a new flow that
//! Maglev places. The servers answer every datagram with their name, so the client knows which
//! element each datagram reached. At the event (time 0) the victim fails; the figure is the send
//! time of the last datagram that still reached it: the last packet the balancer sent to that
//! element (a datagram crosses the balancer within a fraction of a millisecond; the server
//! process itself keeps answering, so every datagram that reached it is seen).
//!
//! - `failover_crash_ms`: the pool element process (the sidecar) is SIGKILLed: its ASAP
//!   connection resets and the registrar removes its element at once.
//! - `failover_silent_ms`: the pool element process is SIGSTOPped: it answers no keep-alive, and
//!   the registrar's keep-alive timers (250 ms + 250 ms) remove it.
//! - `failover_check_ms`: the service the balancer checks stops answering: each server also
//!   serves a TCP listener on [`CHECK_PORT`] (the check's target), and the event closes the
//!   victim's (connections are then refused). The data service on port 80 and the sidecar go on,
//!   so the registrar keeps the element: only the check (defaults: every 2 s, every 500 ms once
//!   failing, fall 3, `on_failure = "drain"`) takes it out.
//! - `flows_broken`: 30 TCP connections through the VIP opened before the runs, asked again
//!   after each run: those to surviving servers that failed or moved (must be 0).
//!
//! **Reconcile** (`rsplb run --registrar` with default timers and interval, the interface
//! attached with `--max-vips 128`): 100 NAT VIPs, one per pool `p0`..`p99`; 1,000 elements
//! (10 per pool, on the three servers' addresses, each its own port) registered over ASAP/TCP by
//! this process with the registrar client library (one runtime per server namespace, one
//! connection per element, as sidecars would). Then a series of handlespace events, about 170:
//! up to 90 single weight changes (re-registrations with a new weight or policy), 30 single
//! deregistrations each followed by a new registration, and 5 bursts of 10 weight changes in 10
//! pools (so the median is a single event's, the 99th percentile a burst's). The daemon logs, at debug level,
//! the latency of each event from the registrar core's change to the flip of the last table of
//! the reconciler pass that carries it (the same figure as its `rsplb_reconcile_latency_seconds`
//! histogram); this reads them from its log: `reconcile_p50_us`, `reconcile_p99_us`.
//!
//! Medians of `--runs` runs per failover case (default 5). Needs root (namespaces, XDP).

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rsplb_integration::{
    Lab, LabConfig, TcpConn, in_netns,
    netns::ChildGuard,
    rserpool::{Sidecar, contains_all, pool_elements, registrar_addr, wait_for_elements},
};
use rsplb_registrar::client::{ClientConfig, PoolElementConfig, PoolElementHandle};
use rsplb_registrar::types::{PeId, Policy, TransportAddress, TransportUse};

const POOL: &str = "web";
const PORT: u16 = 80;
/// The port of the service the balancer-side check probes (a listener of this process in each
/// server's namespace).
const CHECK_PORT: u16 = 8080;
/// Datagrams before the event.
const BEFORE: Duration = Duration::from_millis(300);
const GAP: Duration = Duration::from_millis(1);
/// Source ports of the datagrams, used in turn (one per datagram).
const FIRST_PORT: u16 = 10_000;
const LAST_PORT: u16 = 65_000;

/// Reconcile phase: pools, elements per pool, and the events.
const POOLS: usize = 100;
const PER_POOL: usize = 10;
const SINGLE_UPDATES: usize = 90;
const SINGLE_REPLACEMENTS: usize = 30;
const BURSTS: usize = 5;
const BURST: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Crash,
    Silent,
    Check,
}

impl Failure {
    /// Datagrams after the event: well past the slowest expected removal.
    fn after(self) -> Duration {
        match self {
            Failure::Crash | Failure::Silent => Duration::from_millis(1_800),
            // Up to one interval (2 s) to the next check, then two more at the fast interval
            // (500 ms each), and the pass that applies the result.
            Failure::Check => Duration::from_millis(4_500),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut runs = 5usize;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .context("--runs needs a number")?
                    .parse()
                    .context("--runs")?;
                if runs == 0 {
                    bail!("--runs must be at least 1");
                }
            }
            "--only" => {
                let what = args.next().context("--only needs failover or reconcile")?;
                if what != "failover" && what != "reconcile" {
                    bail!("--only takes failover or reconcile, not {what:?}");
                }
                only = Some(what);
            }
            "-h" | "--help" => {
                println!(
                    "bench-failover [--runs N] [--only failover|reconcile]: failover_crash_ms, failover_silent_ms, failover_check_ms, flows_broken (median of N runs per case, default 5), reconcile_p50_us, reconcile_p99_us (see the source's header)"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    raise_fd_limit();
    let mut lines = Vec::new();
    if only.as_deref() != Some("reconcile") {
        lines.extend(failover(runs)?);
    }
    if only.as_deref() != Some("failover") {
        lines.extend(reconcile()?);
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// The failover phase; returns its `key=value` lines.
fn failover(runs: usize) -> anyhow::Result<Vec<String>> {
    let mut lab = Lab::build(LabConfig {
        servers: 3,
        ports: vec![PORT],
        verbose: true,
        ..LabConfig::default()
    })?;
    lab.attach(&[])?;
    let checked = Arc::new(CheckedService::start(&lab)?);
    let vip_ip: IpAddr = lab.vip4(0).into();
    let vip = SocketAddr::new(vip_ip, PORT);
    let file = TempFile(std::env::temp_dir().join(format!("{}bench.toml", lab.id.netns(""))));
    std::fs::write(
        &file.0,
        format!(
            "interval_s = 1\n[interface]\nname = \"{iface}\"\n\
             [[vip]]\naddress = \"{vip}/tcp\"\npool = \"{POOL}\"\n\
             [[vip]]\naddress = \"{vip}/udp\"\npool = \"{POOL}\"\n\
             [pool.{POOL}]\n[pool.{POOL}.check]\ntype = \"tcp\"\nport = {CHECK_PORT}\n\
             [registrar]\nasap_listen = [\"{registrar}\"]\n",
            iface = lab.lb.iface,
            registrar = registrar_addr(&lab),
        ),
    )
    .context("writing the daemon's configuration file")?;
    lab.start_daemon(&["--config", &file.0.to_string_lossy()])?;
    let sidecar = Sidecar {
        pool: POOL,
        port: PORT,
        policy: None,
    };
    let elements: Vec<String> = (0..3)
        .map(|i| SocketAddr::new(lab.server_hosts[i].v4.into(), PORT).to_string())
        .collect();
    let mut sidecars: Vec<ChildGuard> = (0..3)
        .map(|i| sidecar.start(&lab, i))
        .collect::<anyhow::Result<_>>()?;
    let all_in = |lab: &Lab| {
        wait_for_elements(
            &lab.rsplb,
            POOL,
            Duration::from_secs(20),
            "three healthy elements in the dataplane",
            |l| {
                Ok(contains_all(l, &elements)
                    && l.iter().all(|e| e.health == "up" && e.mac.is_some()))
            },
        )
    };
    all_in(&lab)?;

    // Long-lived connections, to check after every run.
    let client_ns = lab.client.netns.name().to_string();
    let mut conns: Vec<(TcpConn, String)> = Vec::new();
    for _ in 0..30 {
        let mut c = TcpConn::open(&client_ns, vip)?;
        let s = c.ask()?;
        conns.push((c, s));
    }

    let mut next_port = FIRST_PORT;
    let mut results: Vec<(Failure, f64)> = Vec::new();
    let mut broken = 0usize;
    let cases = [Failure::Crash, Failure::Silent, Failure::Check];
    for run in 0..runs {
        for (k, failure) in cases.into_iter().enumerate() {
            // The victim turns about: each case meets each server in turn.
            let victim = (run + k) % 3;
            let victim_name = format!("s{}", victim + 1);
            let pid = sidecars[victim].pid() as i32;
            let needed = ((BEFORE + failure.after()).as_millis() as u16).saturating_add(100);
            if next_port.saturating_add(needed) > LAST_PORT {
                next_port = FIRST_PORT;
            }
            let ports = next_port..next_port + needed;
            next_port = ports.end;
            let local: IpAddr = lab.client.v4.into();
            let service = checked.clone();
            let event = move || match failure {
                // SAFETY: kill(2) on a pid this program started and still holds.
                Failure::Crash => unsafe {
                    libc::kill(pid, libc::SIGKILL);
                },
                // SAFETY: as above.
                Failure::Silent => unsafe {
                    libc::kill(pid, libc::SIGSTOP);
                },
                Failure::Check => service.close(victim),
            };
            let after = failure.after();
            let sent = in_netns(&client_ns, move || {
                send_flows(local, vip, ports, after, event)
            })?;
            let ms = last_reached(&sent, &victim_name).map_or(0.0, |d| d.as_secs_f64() * 1e3);
            let reached_before = sent
                .iter()
                .filter(|f| f.before && f.server.as_deref() == Some(&victim_name))
                .count();
            if reached_before == 0 {
                bail!(
                    "run {run} {failure:?}: the victim {victim_name} got no flow before the event"
                );
            }
            let late = sent
                .iter()
                .filter(|f| !f.before && f.at > after - Duration::from_millis(200))
                .any(|f| f.server.as_deref() == Some(&victim_name));
            if late {
                bail!(
                    "run {run} {failure:?}: {victim_name} still got new flows {after:?} after the event"
                );
            }
            println!(
                "run {run} {failure:?} of {victim_name}: last new flow reached it {ms:.1} ms after the event"
            );
            results.push((failure, ms));
            // Survivors' connections: unbroken, on their server.
            for (c, first) in conns.iter_mut().filter(|(_, s)| *s != victim_name) {
                match c.ask() {
                    Ok(s) if s == *first => {}
                    _ => broken += 1,
                }
            }
            match failure {
                Failure::Crash | Failure::Silent => {
                    if failure == Failure::Silent {
                        // SAFETY: as above; it is then killed by the guard's drop.
                        unsafe { libc::kill(pid, libc::SIGCONT) };
                    }
                    // A new pool element process for the victim.
                    sidecars[victim] = sidecar.start(&lab, victim)?;
                }
                Failure::Check => checked.open(victim)?,
            }
            all_in(&lab)?;
        }
    }
    lab.check_daemons()?;
    let median_of = |f: Failure| median(results.iter().filter(|r| r.0 == f).map(|r| r.1).collect());
    Ok(vec![
        format!("failover_crash_ms={:.0}", median_of(Failure::Crash)),
        format!("failover_silent_ms={:.0}", median_of(Failure::Silent)),
        format!("failover_check_ms={:.0}", median_of(Failure::Check)),
        format!("flows_broken={broken}"),
        format!(
            "failover_method=one new UDP flow per ms to a DSR VIP of 3 sidecar-registered elements, rsplb run --config (embedded registrar with default timers; pool check tcp:{CHECK_PORT} with default interval 2000 ms, fast 500 ms, fall 3, drain); time from the event to the send time of the last datagram the victim answered; median of {runs} runs per case"
        ),
    ])
}

/// The service the balancer-side check probes: a TCP listener on [`CHECK_PORT`] in each
/// server's namespace, accepting and closing connections on a thread of its own. `close`
/// closes one (a check's connection is then refused), `open` listens again.
struct CheckedService {
    listeners: Arc<Vec<Mutex<Option<TcpListener>>>>,
    targets: Vec<(String, SocketAddr)>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CheckedService {
    fn start(lab: &Lab) -> anyhow::Result<CheckedService> {
        let targets: Vec<(String, SocketAddr)> = lab
            .server_hosts
            .iter()
            .map(|h| {
                (
                    h.netns.name().to_string(),
                    SocketAddr::new(h.v4.into(), CHECK_PORT),
                )
            })
            .collect();
        let listeners = targets
            .iter()
            .map(|(ns, addr)| Ok(Mutex::new(Some(listen(ns, *addr)?))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let listeners = Arc::new(listeners);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (listeners, stop) = (listeners.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for l in listeners.iter() {
                        let l = l.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(l) = l.as_ref() {
                            while let Ok((conn, _)) = l.accept() {
                                drop(conn);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Ok(CheckedService {
            listeners,
            targets,
            stop,
            thread: Some(thread),
        })
    }

    fn close(&self, i: usize) {
        drop(
            self.listeners[i]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }

    fn open(&self, i: usize) -> anyhow::Result<()> {
        let (ns, addr) = &self.targets[i];
        let l = listen(ns, *addr)?;
        *self.listeners[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
        Ok(())
    }
}

impl Drop for CheckedService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A non-blocking TCP listener on `addr` in namespace `ns`.
fn listen(ns: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    in_netns(ns, move || {
        let l = TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends one datagram per [`GAP`] from each port in turn ([`BEFORE`], then `event`, then
/// `after`), then collects the answers.
fn send_flows(
    local: IpAddr,
    vip: SocketAddr,
    ports: std::ops::Range<u16>,
    after: Duration,
    event: impl FnOnce(),
) -> anyhow::Result<Vec<SentAt>> {
    let mut socks: Vec<(UdpSocket, Instant)> = Vec::new();
    let start = Instant::now();
    let mut event = Some(event);
    let mut t0 = None;
    let mut ports = ports;
    let end = start + BEFORE + after;
    let mut next = start;
    while Instant::now() < end {
        if t0.is_none()
            && Instant::now() >= start + BEFORE
            && let Some(e) = event.take()
        {
            t0 = Some(Instant::now());
            e();
        }
        let Some(port) = ports.next() else { break };
        let Ok(s) = UdpSocket::bind(SocketAddr::new(local, port)) else {
            continue;
        };
        s.connect(vip)?;
        s.set_nonblocking(true)?;
        let at = Instant::now();
        if s.send(b"who").is_ok() {
            socks.push((s, at));
        }
        next += GAP;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let t0 = t0.context("the event never happened (too few ports?)")?;
    // Answers arrive within a few ms; give them 300.
    std::thread::sleep(Duration::from_millis(300));
    let mut out = Vec::with_capacity(socks.len());
    let mut buf = [0u8; 256];
    for (s, at) in socks {
        let server = s
            .recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
        out.push(SentAt {
            at: at.saturating_duration_since(t0),
            before: at < t0,
            server,
        });
    }
    Ok(out)
}

/// A datagram: its send time after the event (zero when before it) and who answered.
struct SentAt {
    at: Duration,
    before: bool,
    server: Option<String>,
}

/// The send time (after the event) of the last datagram `server` answered.
fn last_reached(sent: &[SentAt], server: &str) -> Option<Duration> {
    sent.iter()
        .filter(|s| !s.before && s.server.as_deref() == Some(server))
        .map(|s| s.at)
        .max()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `p` quantile (0..=1, nearest rank) of `v`; 0 when empty.
fn percentile(v: &[u64], p: f64) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    let i = ((v.len().saturating_sub(1)) as f64 * p).round() as usize;
    v.get(i).copied().unwrap_or(0)
}

/// One registered element of the reconcile phase: the runtime (server namespace) it lives on,
/// its handle, and the weight it registered last.
struct Registered {
    rt: usize,
    pool: usize,
    handle: Arc<PoolElementHandle>,
    weight: u32,
}

/// The reconcile phase; returns its `key=value` lines.
fn reconcile() -> anyhow::Result<Vec<String>> {
    let mut lab = Lab::build(LabConfig {
        servers: 3,
        ports: vec![PORT],
        verbose: true,
        ..LabConfig::default()
    })?;
    lab.attach(&["--max-vips", "128"])?;
    lab.warm_neighbours()?;
    let vip_ip = lab.vip4(1);
    let snat = lab.lb.v4.to_string();
    println!("adding {POOLS} NAT VIPs...");
    for p in 0..POOLS {
        let vip = format!("{vip_ip}:{}/tcp", 10_000 + p);
        lab.rsplb
            .vip_add(&vip, &format!("p{p}"), "nat", Some(&snat))?;
    }
    let registrar = registrar_addr(&lab);
    let log = TempFile(std::env::temp_dir().join(format!("{}daemon.log", lab.id.netns(""))));
    let mut daemon = {
        let mut cmd = lab
            .rsplb
            .daemon_command(&["--registrar", &registrar.to_string()]);
        cmd.env("RUST_LOG", "info,rsplb::control::reconcile=debug");
        let file = std::fs::File::create(&log.0).context("creating the daemon's log")?;
        ChildGuard::spawn_with_stderr(cmd, file.into())?
    };
    // One runtime per server namespace: each server's elements register from its own host.
    let rts: Vec<tokio::runtime::Runtime> = lab
        .server_hosts
        .iter()
        .map(|h| {
            in_netns(h.netns.name(), || {
                Ok(tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?)
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let result = reconcile_series(&lab, &mut daemon, &rts, registrar, &log.0);
    // Deregister (best effort) and stop the runtimes before the daemon and the lab go.
    for rt in rts {
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    drop(daemon);
    result
}

fn reconcile_series(
    lab: &Lab,
    daemon: &mut ChildGuard,
    rts: &[tokio::runtime::Runtime],
    registrar: SocketAddr,
    log: &std::path::Path,
) -> anyhow::Result<Vec<String>> {
    let hosts: Vec<IpAddr> = lab.server_hosts.iter().map(|h| h.v4.into()).collect();
    let mut next_id = 1u32;
    let mut register = |rt: usize, pool: usize, weight: u32| {
        let id = next_id;
        next_id += 1;
        let pe = PoolElementConfig {
            id: Some(PeId(id)),
            policy: Policy::WeightedRoundRobin { weight },
            ..PoolElementConfig::new(
                format!("p{pool}").parse().expect("a valid pool handle"),
                TransportAddress::Tcp {
                    port: 20_000 + (id % 40_000) as u16,
                    transport_use: TransportUse::DataOnly,
                    addr: hosts[rt],
                },
            )
        };
        // Spawned: its connection is made on the runtime's worker, in the server's namespace.
        rts[rt].spawn(PoolElementHandle::register(
            ClientConfig::with_registrars([registrar]),
            pe,
        ))
    };
    println!(
        "registering {} elements in {POOLS} pools...",
        POOLS * PER_POOL
    );
    let mut pending = Vec::new();
    for pool in 0..POOLS {
        for k in 0..PER_POOL {
            let rt = (pool * PER_POOL + k) % rts.len();
            pending.push((rt, pool, register(rt, pool, 1)));
        }
    }
    let mut elements: Vec<Registered> = Vec::new();
    for (rt, pool, join) in pending {
        let handle = rts[rt]
            .block_on(join)
            .context("a registration task")?
            .context("registering an element")?;
        elements.push(Registered {
            rt,
            pool,
            handle: Arc::new(handle),
            weight: 1,
        });
    }
    let total = POOLS * PER_POOL;
    let started = Instant::now();
    loop {
        let list = lab.rsplb.elements()?.elements;
        let ready = list.iter().filter(|e| e.mac.is_some()).count();
        if ready >= total {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{ready} of {total} registered elements reached the dataplane within 60 s");
        }
        daemon.check_running()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{total} elements in the dataplane {:.1} s after the last registration",
        started.elapsed().as_secs_f64()
    );
    let mut reader = LatencyLog::open(log)?;
    // Whatever the set-up logged is not part of the series: wait until its passes are over
    // (300 ms without a flip).
    reader.skip()?;
    let quiet = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        if reader.read()?.is_empty() && reader.partial.is_empty() {
            break;
        }
        if Instant::now() > quiet {
            bail!("the daemon's reconciler was still flipping tables 20 s after the set-up");
        }
    }

    let mut latencies: Vec<u64> = Vec::new();
    let mut events = 0usize;
    // Single weight and policy changes, one pool after another.
    for n in 0..SINGLE_UPDATES {
        let i = (n * 37) % elements.len();
        let e = &mut elements[i];
        let (policy, weight) = if n % 3 == 2 {
            (Policy::RoundRobin, 1)
        } else {
            let w = if e.weight == 1 { 2 + (n % 4) as u32 } else { 1 };
            (Policy::WeightedRoundRobin { weight: w }, w)
        };
        if weight == e.weight {
            continue;
        }
        e.weight = weight;
        let h = e.handle.clone();
        rts[e.rt]
            .block_on(h.update_policy(policy))
            .context("a re-registration")?;
        events += 1;
        latencies.extend(reader.wait_for(1, Duration::from_secs(5))?);
    }
    // Single deregistrations, each followed by a new registration in the same pool.
    for n in 0..SINGLE_REPLACEMENTS {
        let i = (n * 53 + 11) % elements.len();
        let old = elements.swap_remove(i);
        let (rt, pool) = (old.rt, old.pool);
        let handle = Arc::try_unwrap(old.handle)
            .map_err(|_| anyhow::anyhow!("an element handle is still shared"))?;
        rts[rt]
            .block_on(handle.deregister())
            .context("a deregistration")?;
        events += 1;
        latencies.extend(reader.wait_for(1, Duration::from_secs(5))?);
        let handle = rts[rt]
            .block_on(register(rt, pool, 1))
            .context("a registration task")?
            .context("registering an element")?;
        events += 1;
        latencies.extend(reader.wait_for(1, Duration::from_secs(5))?);
        elements.push(Registered {
            rt,
            pool,
            handle: Arc::new(handle),
            weight: 1,
        });
    }
    let single_latencies = latencies.clone();
    let mut burst_latencies: Vec<u64> = Vec::new();
    // Bursts: 10 weight changes in 10 pools at once (from one server's runtime).
    for b in 0..BURSTS {
        let rt = b % rts.len();
        let mut seen = std::collections::BTreeSet::new();
        let picked: Vec<usize> = (0..elements.len())
            .map(|k| (k * 7 + b * 101) % elements.len())
            .filter(|&i| elements[i].rt == rt && seen.insert(elements[i].pool))
            .take(BURST)
            .collect();
        let joins: Vec<_> = picked
            .iter()
            .map(|&i| {
                let e = &mut elements[i];
                e.weight = if e.weight == 1 { 3 } else { 1 };
                let (h, w) = (e.handle.clone(), e.weight);
                rts[rt].spawn(async move {
                    h.update_policy(Policy::WeightedRoundRobin { weight: w })
                        .await
                })
            })
            .collect();
        for j in joins {
            rts[rt]
                .block_on(j)
                .context("a re-registration task")?
                .context("a re-registration")?;
        }
        events += picked.len();
        let got = reader.wait_for(picked.len(), Duration::from_secs(5))?;
        burst_latencies.extend(&got);
        latencies.extend(got);
    }
    daemon.check_running()?;
    if latencies.len() != events {
        bail!(
            "{events} handlespace events, but the daemon logged {} latencies (a pass that carried more than the series' own events, or summed up a burst)",
            latencies.len()
        );
    }
    let in_dataplane = pool_elements(&lab.rsplb, "p0")?.len();
    Ok(vec![
        format!("reconcile_p50_us={}", percentile(&latencies, 0.5)),
        format!("reconcile_p99_us={}", percentile(&latencies, 0.99)),
        format!("reconcile_max_us={}", percentile(&latencies, 1.0)),
        format!(
            "reconcile_single_p50_us={}",
            percentile(&single_latencies, 0.5)
        ),
        format!(
            "reconcile_burst_p50_us={}",
            percentile(&burst_latencies, 0.5)
        ),
        format!("reconcile_events={events}"),
        format!(
            "reconcile_method=rsplb run --registrar (defaults), {total} elements in {POOLS} pools behind {POOLS} NAT VIPs (pool p0 has {in_dataplane} now), registered over ASAP/TCP by the registrar client library; {SINGLE_UPDATES} single re-registrations with a new weight or policy, {SINGLE_REPLACEMENTS} single deregistrations each followed by a registration, {BURSTS} bursts of {BURST} re-registrations in {BURST} pools; latency from the registrar core's change to the reconciler pass's last VIP flip, from the daemon's debug log"
        ),
    ])
}

/// The daemon's log, read from where the last read stopped, for its reconcile latency lines.
struct LatencyLog {
    file: std::io::BufReader<std::fs::File>,
    partial: String,
    /// The next complete line began before [`Self::skip`]: not ours.
    skip_partial: bool,
}

impl LatencyLog {
    fn open(path: &std::path::Path) -> anyhow::Result<LatencyLog> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(LatencyLog {
            file: std::io::BufReader::new(file),
            partial: String::new(),
            skip_partial: false,
        })
    }

    /// Skips what was written so far.
    fn skip(&mut self) -> anyhow::Result<()> {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut self.file, &mut sink)?;
        // A line being written is skipped too: its end comes first in the next read.
        self.partial = String::from_utf8_lossy(&sink)
            .rsplit_once('\n')
            .map_or(String::new(), |(_, tail)| tail.to_string());
        self.skip_partial = !self.partial.is_empty();
        Ok(())
    }

    /// The latencies (µs) in the lines written since the last read.
    fn read(&mut self) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.file.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') {
                // A line being written: the rest comes with the next read.
                self.partial.push_str(&line);
                break;
            }
            let line = std::mem::take(&mut self.partial) + &line;
            if std::mem::take(&mut self.skip_partial) {
                continue;
            }
            if let Some(rest) = line.split("reconcile latency_us=[").nth(1) {
                let list = rest.split(']').next().unwrap_or("");
                for v in list.split(',').filter(|v| !v.is_empty()) {
                    out.push(v.trim().parse().with_context(|| format!("in {line:?}"))?);
                }
            }
        }
        Ok(out)
    }

    /// Reads until `n` latencies came, for at most `bound`.
    fn wait_for(&mut self, n: usize, bound: Duration) -> anyhow::Result<Vec<u64>> {
        let started = Instant::now();
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(self.read()?);
            if got.len() >= n {
                break;
            }
            if started.elapsed() > bound {
                bail!(
                    "the daemon logged {} of {n} reconcile latencies within {bound:?}",
                    got.len()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(got)
    }
}

fn raise_fd_limit() {
    let l = libc::rlimit {
        rlim_cur: 65_536,
        rlim_max: 65_536,
    };
    // SAFETY: setrlimit with a valid struct; failure only leaves the limit as it was.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
}
