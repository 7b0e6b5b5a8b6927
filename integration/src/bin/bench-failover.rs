//! `bench-failover` (`cargo xtask bench failover`): how long a failed pool element keeps getting
//! new flows through the balancer, with defaults, in the namespace lab (client, balancer with
//! `rsplb run --registrar`, three servers each registered by its `rsplb pe register` sidecar).
//!
//! The client sends one UDP datagram per millisecond to a DSR VIP, each from a new source port:
//! each is a new flow that Maglev places. The servers answer every datagram with their name, so
//! the client knows which element each datagram reached. At the event (time 0) the victim's pool
//! element fails; the figure is the send time of the last datagram that still reached it: the
//! last packet the balancer sent to that element (a datagram crosses the balancer within a
//! fraction of a millisecond; the server process itself keeps answering, so every datagram that
//! reached it is seen).
//!
//! - `failover_crash_ms`: the pool element process (the sidecar) is SIGKILLed: its ASAP
//!   connection resets and the registrar removes its element at once.
//! - `failover_silent_ms`: the pool element process is SIGSTOPped: it answers no keep-alive, and
//!   the registrar's keep-alive timers (250 ms + 250 ms) remove it.
//! - `flows_broken`: 30 TCP connections through the VIP opened before the runs, asked again
//!   after each run: those to surviving servers that failed or moved (must be 0).
//!
//! Medians of `--runs` runs per case (default 5). Needs root (namespaces, XDP).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rsplb_integration::{
    Lab, LabConfig, TcpConn, in_netns,
    netns::ChildGuard,
    rserpool::{Sidecar, contains_all, registrar_addr, wait_for_elements},
};

const POOL: &str = "web";
const PORT: u16 = 80;
/// Datagrams before the event, and after it.
const BEFORE: Duration = Duration::from_millis(300);
const AFTER: Duration = Duration::from_millis(1_800);
const GAP: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Crash,
    Silent,
}

fn main() -> anyhow::Result<()> {
    let mut runs = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .context("--runs needs a number")?
                    .parse()
                    .context("--runs")?;
            }
            "-h" | "--help" => {
                println!(
                    "bench-failover [--runs N]: failover_crash_ms, failover_silent_ms, flows_broken (see the source's header)"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    raise_fd_limit();
    let mut lab = Lab::build(LabConfig {
        servers: 3,
        ports: vec![PORT],
        verbose: true,
        ..LabConfig::default()
    })?;
    lab.attach(&[])?;
    let vip_ip: IpAddr = lab.vip4(0).into();
    let vip_tcp = format!("{}/tcp", SocketAddr::new(vip_ip, PORT));
    let vip_udp = format!("{}/udp", SocketAddr::new(vip_ip, PORT));
    for v in [&vip_tcp, &vip_udp] {
        lab.rsplb.on(&["vip", "add", v, "--pool", POOL])?;
    }
    let registrar = registrar_addr(&lab).to_string();
    lab.start_daemon(&["--registrar", &registrar, "--interval", "1"])?;
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
            "three elements in the dataplane",
            |l| Ok(contains_all(l, &elements)),
        )
    };
    all_in(&lab)?;

    // Long-lived connections, to check after every run.
    let vip = SocketAddr::new(vip_ip, PORT);
    let client_ns = lab.client.netns.name().to_string();
    let mut conns: Vec<(TcpConn, String)> = Vec::new();
    for _ in 0..30 {
        let mut c = TcpConn::open(&client_ns, vip)?;
        let s = c.ask()?;
        conns.push((c, s));
    }

    let mut next_port: u16 = 20_000;
    let mut results: Vec<(Failure, f64)> = Vec::new();
    let mut broken = 0usize;
    for run in 0..runs {
        for failure in [Failure::Crash, Failure::Silent] {
            // The victim turns about: s1, s2, s3.
            let victim = (run * 2 + usize::from(failure == Failure::Silent)) % 3;
            let victim_name = format!("s{}", victim + 1);
            let pid = sidecars[victim].pid() as i32;
            let ports = next_port..next_port.saturating_add(2_500);
            next_port = ports.end;
            if next_port > 60_000 {
                next_port = 20_000;
            }
            let local: IpAddr = lab.client.v4.into();
            let event = move || {
                let sig = match failure {
                    Failure::Crash => libc::SIGKILL,
                    Failure::Silent => libc::SIGSTOP,
                };
                // SAFETY: kill(2) on a pid this program started and still holds.
                unsafe { libc::kill(pid, sig) };
            };
            let sent = in_netns(&client_ns, move || send_flows(local, vip, ports, event))?;
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
            // A new pool element process for the victim.
            if failure == Failure::Silent {
                // SAFETY: as above; it is then killed by the guard's drop.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
            sidecars[victim] = sidecar.start(&lab, victim)?;
            all_in(&lab)?;
        }
    }
    lab.check_daemons()?;
    let median = |f: Failure| {
        let mut v: Vec<f64> = results.iter().filter(|r| r.0 == f).map(|r| r.1).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("failover_crash_ms={:.0}", median(Failure::Crash));
    println!("failover_silent_ms={:.0}", median(Failure::Silent));
    println!("flows_broken={broken}");
    println!(
        "method=one new UDP flow per ms to a DSR VIP of 3 sidecar-registered elements, rsplb run --registrar with default timers; time from the event to the send time of the last datagram the victim answered; median of {runs} runs per case"
    );
    Ok(())
}

/// Sends one datagram per [`GAP`] from each port in turn ([`BEFORE`], then `event`, then
/// [`AFTER`]), then collects the answers.
fn send_flows(
    local: IpAddr,
    vip: SocketAddr,
    ports: std::ops::Range<u16>,
    event: impl FnOnce(),
) -> anyhow::Result<Vec<SentAt>> {
    let mut socks: Vec<(UdpSocket, Instant)> = Vec::new();
    let start = Instant::now();
    let mut event = Some(event);
    let mut t0 = None;
    let mut ports = ports;
    let end = start + BEFORE + AFTER;
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

fn raise_fd_limit() {
    let l = libc::rlimit {
        rlim_cur: 65_536,
        rlim_max: 65_536,
    };
    // SAFETY: setrlimit with a valid struct; failure only leaves the limit as it was.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) };
}
