//! `bench-registrar`: the registrar's throughput, memory and failure detection, over loopback TCP
//! against a registrar in a separate process (this binary re-executed with `--serve`, which runs
//! the `rsplb_registrar::shell` library exactly as `rsp-registrar` does), so that the clients'
//! memory is not counted. Prints `key=value` lines (medians of several rounds):
//!
//! - `reg_per_s`: registrations answered per second, 1,000 concurrent PEs each registering and
//!   then re-registering (updates) back to back, one request outstanding per PE.
//! - `hres_per_s`: handle resolutions answered per second, 100 concurrent PUs against a pool of
//!   1,000 elements, one request outstanding per PU (`--hr-window` for more).
//! - `rss_bytes_per_pe`: registrar RSS growth / elements, at 100,000 registered elements (100
//!   connections x 1,000; keep-alive interval raised to 60 s for this round only, so that the
//!   client is not busy acking 400,000 keep-alives per second: memory per element does not
//!   depend on it).
//! - `keepalive_detect_ms`: default settings (250 ms + 250 ms): time from an element going silent
//!   (stops acking keep-alives, keeps its connection) to a resolution no longer returning it,
//!   polled every millisecond.
//!
//! - `false_evictions_under_load`: 10,000 healthy elements (100 connections that answer every
//!   keep-alive at the default 250 ms timers) while the registrar is driven by the bursts that
//!   used to stall it: pipelined handle resolutions (50 connections x 2,000 in one write), 3,000
//!   connections opened and closed at once, and `/handlespace` reads, for about 3 s. Counts the
//!   keep-alive removals (`keepalive_timeouts` in `/stats`): every one is false. Must be 0.
//!   `deferred_deadlines_under_load` says how often the stall protection stepped in.
//! - `keepalive_capacity_elements`: the largest population (stepped 2,000, 4,000, 8,000, 12,000,
//!   16,000, 24,000, 32,000, 48,000, 64,000, 96,000; the first step with a removal ends the
//!   round) that one registrar keeps alive at the default 250 ms timers for 5 s with no
//!   keep-alive removal. The answering clients run in this process on the same shared cores,
//!   so this is a lower bound of the registrar's own capacity.
//!
//! - `reg_registrar_cpu_ns`, `hres_registrar_cpu_ns`: the registrar process's CPU time (user +
//!   system) per answered request: what the registrar costs independently of the client load
//!   generator, which shares the same cores.
//!
//! The bench registrar disables the per-peer rate limits (they would measure the limiter) and
//! raises the per-peer element limit; everything else is default.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rsplb_registrar::config::{Bucket, RegistrarConfig};
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::types::{
    PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress, TransportUse,
};
use rsplb_registrar::wire::{decode_asap, encode_asap, frame_length};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};

const UNLIMITED: Bucket = Bucket {
    rate_per_s: 0,
    burst: 0,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        let ka: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(250);
        // The same runtime as `rsp-registrar`.
        let rt = rsplb_registrar::shell::runtime()?;
        return rt.block_on(serve(ka));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut opts = Opts::default();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> anyhow::Result<usize> {
            it.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{what} needs a number"))
        };
        match a.as_str() {
            "--rounds" => opts.rounds = num("--rounds")?,
            "--pes" => opts.pes = num("--pes")?,
            "--pus" => opts.pus = num("--pus")?,
            "--hr-window" => opts.hr_window = num("--hr-window")?,
            "--rss-elements" => opts.rss_elements = num("--rss-elements")?,
            "-h" | "--help" => {
                println!(
                    "bench-registrar [--rounds N] [--pes N] [--pus N] [--hr-window N] \
                     [--rss-elements N]\nPrints reg_per_s, hres_per_s, rss_bytes_per_pe, \
                     keepalive_detect_ms (medians)."
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    rt.block_on(bench(opts))
}

struct Opts {
    rounds: usize,
    pes: usize,
    pus: usize,
    hr_window: usize,
    rss_elements: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            rounds: 3,
            pes: 1000,
            pus: 100,
            hr_window: 1,
            rss_elements: 100_000,
        }
    }
}

/// The registrar process: loopback, no announces, no rate limits; prints its addresses.
async fn serve(keepalive_ms: u64) -> anyhow::Result<()> {
    let mut c = RegistrarConfig {
        registrar_id: Some(1),
        asap_listen: vec!["127.0.0.1:0".parse()?],
        admin: Some("127.0.0.1:0".parse()?),
        ..RegistrarConfig::default()
    };
    c.announce.enabled = false;
    c.timers.keepalive_interval_ms = keepalive_ms;
    c.rate_limits.registration = UNLIMITED;
    c.rate_limits.handle_resolution = UNLIMITED;
    c.rate_limits.endpoint_unreachable = UNLIMITED;
    c.limits.max_elements_per_peer = 1_000_000;
    c.limits.max_pending_messages = 1_000_001;
    c.limits.max_elements = 1_000_000;
    c.limits.max_home_elements = 1_000_000; // the capacity round looks for the limit itself
    c.limits.max_elements_per_pool = 1_000_000;
    c.limits.max_peers_per_address = 1_000_000;
    let r = rsplb_registrar::shell::Registrar::bind(c).await?;
    println!(
        "asap={} admin={} pid={}",
        r.asap_addrs()[0],
        r.admin_addr().context("admin")?,
        std::process::id()
    );
    r.run(async {
        // Stops when the parent closes our stdin.
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    })
    .await
}

struct Server {
    child: Child,
    asap: SocketAddr,
    admin: SocketAddr,
    pid: u32,
}

async fn spawn_server(keepalive_ms: u64) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--serve")
        .arg(keepalive_ms.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the registrar process")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .context("registrar did not start within 10 s")??;
    let field = |k: &str| -> anyhow::Result<String> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .map(str::to_string)
            .with_context(|| format!("no {k} in {line:?}"))
    };
    Ok(Server {
        asap: field("asap=")?.parse()?,
        admin: field("admin=")?.parse()?,
        pid: field("pid=")?.parse()?,
        child,
    })
}

impl Server {
    /// User + system CPU time of the registrar process.
    fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time_of(&self.pid.to_string())
    }
}

/// User + system CPU time of a process (`self` for this one).
fn cpu_time_of(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).context("utime")?;
    let sticks: u64 = f.get(12).and_then(|v| v.parse().ok()).context("stime")?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_micros((ticks + sticks) * 1_000_000 / hz))
}

impl Server {
    fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS")?;
        Ok(kb * 1024)
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// One ASAP connection with its own reader (framing) and writer.
struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: Vec<u8>,
    start: usize,
    /// Keep-alives answered automatically while true (false = the element went silent).
    ack: Arc<AtomicBool>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (rd, wr) = s.into_split();
        Ok(Self {
            rd,
            wr,
            buf: Vec::with_capacity(8192),
            start: 0,
            ack: Arc::new(AtomicBool::new(true)),
        })
    }

    async fn send(&mut self, m: &AsapMessage) -> anyhow::Result<()> {
        self.wr.write_all(&encode_asap(m)?).await?;
        Ok(())
    }

    async fn send_bytes(&mut self, b: &[u8]) -> anyhow::Result<()> {
        self.wr.write_all(b).await?;
        Ok(())
    }

    /// The next answer that is not a keep-alive.
    async fn recv(&mut self) -> anyhow::Result<AsapMessage> {
        loop {
            let avail = &self.buf[self.start..];
            if let Some(len) = frame_length(avail, 65535)?
                && avail.len() >= len
            {
                let m = decode_asap(&avail[..len])?.message;
                self.start += len;
                if let AsapMessage::EndpointKeepAlive {
                    pool_handle, id, ..
                } = m
                {
                    if self.ack.load(Ordering::Relaxed) {
                        self.send(&AsapMessage::EndpointKeepAliveAck { pool_handle, id })
                            .await?;
                    }
                    continue;
                }
                return Ok(m);
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(8192);
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                bail!("registrar closed the connection");
            }
        }
    }
}

fn element(id: u32) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(0),
        registration_life_ms: 3_600_000,
        user_transport: TransportAddress::Tcp {
            port: 8080,
            transport_use: TransportUse::DataOnly,
            addr: "127.0.0.1".parse().expect("literal"),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

fn registration(pool: &PoolHandle, id: u32) -> AsapMessage {
    AsapMessage::Registration {
        pool_handle: pool.clone(),
        element: element(id),
    }
}

fn expect_registered(m: &AsapMessage) -> anyhow::Result<()> {
    match m {
        AsapMessage::RegistrationResponse { reject: false, .. } => Ok(()),
        other => bail!("registration failed: {other:?}"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn bench(o: Opts) -> anyhow::Result<()> {
    let server = spawn_server(250).await?;
    let (mut reg, mut reg_cpu) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let (rate, cpu) = bench_registrations(&server, o.pes, round).await?;
        reg.push(rate);
        reg_cpu.push(cpu);
    }
    println!("reg_per_s={:.0}", median(reg));
    println!("reg_registrar_cpu_ns={:.0}", median(reg_cpu));
    let (mut hr, mut hr_cpu) = (Vec::new(), Vec::new());
    // The 1,000-element pool stays up for all rounds.
    let pool_conns = setup_pool(&server, "hres", 1000, 10).await?;
    for _ in 0..o.rounds {
        let (rate, cpu) = bench_resolutions(&server, o.pus, o.hr_window).await?;
        hr.push(rate);
        hr_cpu.push(cpu);
    }
    for t in pool_conns {
        t.abort();
    }
    println!("hres_per_s={:.0}", median(hr));
    println!("hres_registrar_cpu_ns={:.0}", median(hr_cpu));
    let mut ka = Vec::new();
    for _ in 0..(o.rounds * 2 + 1) {
        ka.push(bench_keepalive_detect(&server).await?);
    }
    println!("keepalive_detect_ms={:.0}", median(ka));
    server.stop().await;

    // A fresh registrar per round: memory freed by an earlier round stays with the allocator
    // and would hide the cost.
    let mut rss = Vec::new();
    for _ in 0..o.rounds {
        let server = spawn_server(60_000).await?;
        rss.push(bench_rss(&server, o.rss_elements).await?);
        server.stop().await;
    }
    println!("rss_bytes_per_pe={:.0}", median(rss));

    let (mut fe, mut deferred) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        let server = spawn_server(250).await?;
        let (f, d) = bench_false_evictions(&server, 10_000).await?;
        fe.push(f as f64);
        deferred.push(d as f64);
        server.stop().await;
    }
    println!("false_evictions_under_load={:.0}", median(fe));
    println!("deferred_deadlines_under_load={:.0}", median(deferred));
    let mut cap = Vec::new();
    for _ in 0..o.rounds {
        cap.push(bench_keepalive_capacity().await? as f64);
    }
    println!("keepalive_capacity_elements={:.0}", median(cap));
    Ok(())
}

/// A counter of the registrar's `GET /stats`.
async fn stat(server: &Server, key: &str) -> anyhow::Result<u64> {
    let body = admin_get(server, "/stats").await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("no {key} in /stats"))
}

async fn admin_get(server: &Server, path: &str) -> anyhow::Result<Vec<u8>> {
    use rsplb_registrar::shell::http;
    let (status, body) =
        http::get(server.admin, "x", path, 1 << 30, Duration::from_secs(30)).await?;
    anyhow::ensure!(status.is_success(), "{path}: HTTP status {status}");
    Ok(body.to_vec())
}

/// `elements` healthy elements under bursts; (keep-alive removals, deferred deadlines).
async fn bench_false_evictions(server: &Server, elements: usize) -> anyhow::Result<(u64, u64)> {
    let keepers = setup_pool(server, "load", elements, 100).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = stat(server, "keepalive_timeouts").await?;
    let deferred0 = stat(server, "keepalive_deadlines_deferred").await?;
    let hr = encode_asap(&AsapMessage::HandleResolution {
        pool_handle: "load".parse()?,
        items: None,
    })?;
    let burst = hr.repeat(2000);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        // Pipelined resolutions: 50 connections, 2,000 each in one write.
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (asap, burst) = (server.asap, burst.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = Conn::connect(asap).await?;
                c.send_bytes(&burst).await?;
                for _ in 0..2000 {
                    c.recv().await?;
                }
                anyhow::Ok(())
            }));
        }
        // Large admin reads meanwhile.
        for _ in 0..3 {
            admin_get(server, "/handlespace").await?;
        }
        for t in tasks {
            t.await??;
        }
        // 3,000 connections opened, then closed at once.
        let mut idle = Vec::new();
        for _ in 0..3000 {
            idle.push(TcpStream::connect(server.asap).await?);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(idle);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = stat(server, "keepalive_timeouts").await?;
    let deferred = stat(server, "keepalive_deadlines_deferred").await? - deferred0;
    for k in keepers {
        k.abort();
    }
    eprintln!(
        "(load round: {} false evictions of {elements}, {deferred} deadlines deferred)",
        after - before
    );
    Ok((after - before, deferred))
}

/// The largest stepped population kept alive for 5 s without a keep-alive removal.
async fn bench_keepalive_capacity() -> anyhow::Result<usize> {
    let mut best = 0;
    for n in [
        2_000, 4_000, 8_000, 12_000, 16_000, 24_000, 32_000, 48_000, 64_000, 96_000,
    ] {
        let server = spawn_server(250).await?;
        let keepers = setup_pool(&server, "cap", n, (n / 100).max(1)).await?;
        let before = stat(&server, "keepalive_timeouts").await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let evicted = stat(&server, "keepalive_timeouts").await? - before;
        let deferred = stat(&server, "keepalive_deadlines_deferred").await?;
        for k in keepers {
            k.abort();
        }
        server.stop().await;
        eprintln!("(capacity step {n}: {evicted} removed, {deferred} deadlines deferred)");
        if evicted > 0 {
            break;
        }
        best = n;
    }
    Ok(best)
}

/// `pes` connections register one element each, then re-register it for about 2 s.
async fn bench_registrations(
    server: &Server,
    pes: usize,
    round: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut conns = Vec::new();
    for _ in 0..pes {
        conns.push(Conn::connect(server.asap).await?);
    }
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = server.cpu_time()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        let (count, stop) = (count.clone(), stop.clone());
        let pool: PoolHandle = format!("reg{round}-{}", i % 10).parse()?;
        let id = i as u32 + 1;
        tasks.push(tokio::spawn(async move {
            let msg = encode_asap(&registration(&pool, id))?;
            while !stop.load(Ordering::Relaxed) {
                c.send_bytes(&msg).await?;
                expect_registered(&c.recv().await?)?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(c)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await??);
    }
    let n = count.load(Ordering::Relaxed) as f64;
    let rate = n / start.elapsed().as_secs_f64();
    let cpu = (server.cpu_time()? - cpu0).as_secs_f64() * 1e9 / n.max(1.0);
    drop(conns); // connection loss removes the elements
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok((rate, cpu))
}

/// `n` elements in one pool over `conns` connections that keep answering keep-alives.
async fn setup_pool(
    server: &Server,
    pool: &str,
    n: usize,
    conns: usize,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let pool: PoolHandle = pool.parse()?;
    let mut out = Vec::new();
    for c in 0..conns {
        let mut conn = Conn::connect(server.asap).await?;
        for k in 0..n / conns {
            conn.send(&registration(&pool, (c * n / conns + k) as u32 + 1))
                .await?;
            expect_registered(&conn.recv().await?)?;
        }
        // Keep answering keep-alives until dropped (aborted).
        out.push(tokio::spawn(async move {
            let _ = conn.recv().await;
        }));
    }
    Ok(out)
}

async fn bench_resolutions(
    server: &Server,
    pus: usize,
    window: usize,
) -> anyhow::Result<(f64, f64)> {
    let pool: PoolHandle = "hres".parse()?;
    let req = encode_asap(&AsapMessage::HandleResolution {
        pool_handle: pool,
        items: None,
    })?;
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::new();
    for _ in 0..pus {
        conns.push(Conn::connect(server.asap).await?);
    }
    let cpu0 = server.cpu_time()?;
    let own0 = cpu_time_of("self")?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut c in conns {
        let (count, stop, req) = (count.clone(), stop.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            let batch: Vec<u8> = req.repeat(window.max(1));
            while !stop.load(Ordering::Relaxed) {
                c.send_bytes(&batch).await?;
                for _ in 0..window.max(1) {
                    match c.recv().await? {
                        AsapMessage::HandleResolutionResponse {
                            elements,
                            error: None,
                            ..
                        } if elements.len() == 3 => {}
                        other => bail!("bad resolution answer: {other:?}"),
                    }
                }
                count.fetch_add(window.max(1) as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let n = count.load(Ordering::Relaxed) as f64;
    let cpu = (server.cpu_time()? - cpu0).as_secs_f64() * 1e9 / n.max(1.0);
    let own = (cpu_time_of("self")? - own0).as_secs_f64() * 1e9 / n.max(1.0);
    eprintln!(
        "(hres round: {:.0}/s, registrar {cpu:.0} ns/req, clients {own:.0} ns/req)",
        n / start.elapsed().as_secs_f64()
    );
    Ok((n / start.elapsed().as_secs_f64(), cpu))
}

/// One element acks keep-alives for a random 300..700 ms, then goes silent (connection kept);
/// a PU resolves every millisecond until the element is gone.
async fn bench_keepalive_detect(server: &Server) -> anyhow::Result<f64> {
    let pool: PoolHandle = format!("ka{}", rand_u32() % 1_000_000).parse()?;
    let mut pe = Conn::connect(server.asap).await?;
    pe.send(&registration(&pool, 1)).await?;
    expect_registered(&pe.recv().await?)?;
    let live_for = Duration::from_millis(300 + u64::from(rand_u32() % 400));
    let ack = pe.ack.clone();
    // Answers keep-alives while `ack` holds, then reads them without answering.
    let keeper = tokio::spawn(async move {
        let _ = pe.recv().await;
    });
    tokio::time::sleep(live_for).await;
    ack.store(false, Ordering::Relaxed);
    let silent_at = Instant::now();
    let mut pu = Conn::connect(server.asap).await?;
    let req = encode_asap(&AsapMessage::HandleResolution {
        pool_handle: pool,
        items: None,
    })?;
    let deadline = silent_at + Duration::from_secs(10);
    let detected = loop {
        pu.send_bytes(&req).await?;
        if let AsapMessage::HandleResolutionResponse { error: Some(_), .. } = pu.recv().await? {
            break silent_at.elapsed();
        }
        if Instant::now() > deadline {
            bail!("element still resolvable 10 s after going silent");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    keeper.abort();
    Ok(detected.as_secs_f64() * 1000.0)
}

async fn bench_rss(server: &Server, elements: usize) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = server.rss_bytes()?;
    let conns = 100usize;
    let per = elements / conns;
    let round = rand_u32();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let asap = server.asap;
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(asap).await?;
            // Pipelined in batches of 100 registrations.
            for chunk in 0..per.div_ceil(100) {
                let ids = (chunk * 100)..((chunk + 1) * 100).min(per);
                let mut bytes = Vec::new();
                for k in ids.clone() {
                    let pool: PoolHandle = format!("rss{round}-{}", k % 100).parse()?;
                    bytes.extend(encode_asap(&registration(&pool, (c * per + k) as u32 + 1))?);
                }
                conn.send_bytes(&bytes).await?;
                for _ in ids {
                    expect_registered(&conn.recv().await?)?;
                }
            }
            anyhow::Ok(conn)
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        held.push(t.await??);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = server.rss_bytes()?;
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(after.saturating_sub(before) as f64 / (conns * per) as f64)
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}
