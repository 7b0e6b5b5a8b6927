//! `bench-enrp` (`cargo xtask bench enrp`): ENRP between rsplb registrars over loopback TCP.
//! Each registrar runs on its own thread with its own single-threaded runtime, as `rsp-registrar`
//! does, except the one killed for the takeover figure, which is a separate process (this binary
//! re-executed with `--serve`) so that SIGKILL is real. Prints `key=value` lines:
//!
//! - `sync_100k_ms`: a registrar starts with the mentor of a scope whose handlespace holds
//!   100,000 elements (100 pools of 1,000) as its only peer; time from its start until it serves
//!   with all 100,000 (median of 3; chunks of 128 elements, at most 16 KiB, as the defaults).
//! - `update_propagation_ms`: a registration at one registrar until the element is in its peer's
//!   handlespace (the peer's ElementAdded event), median of 200, one at a time.
//! - `takeover_ms`: 50 pool elements (the PE library, hunting as configured for production:
//!   both registrars are candidates, the first to answer wins, so about half land at each) and
//!   the registrar that is home of some of them is SIGKILLed: time until the last of those has
//!   answered a keep-alive from its new home (the survivor; default ENRP and keep-alive timers).
//!   Median of 3.
//! - `failover_registrar_dataplane_changes`: while that happens, the balancer's reconciler model
//!   (`rsplb::reconcile::Model`, fed with every handlespace event of the survivor) is asked after
//!   each event whether any pool's desired table differs from before the kill: the number of
//!   such changes. A registrar failure must change nothing in a balancer: 0.
//!
//! The registrars' ASAP registration rate limit is lifted and the per-connection element limit
//! raised (the sync round registers 100,000 elements over 10 connections); keep-alives in the
//! sync round run every 60 s (the figure is about ENRP, and 400,000 keep-alives per second would
//! only measure the client answering them).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rsplb::reconcile::Model;
use rsplb_registrar::client::{ClientConfig, PeState, PoolElementConfig, PoolElementHandle};
use rsplb_registrar::config::{Bucket, RegistrarConfig};
use rsplb_registrar::core::{HandlespaceEvent, SyncState};
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::shell::{Registrar, RegistrarControl};
use rsplb_registrar::types::{
    PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress, TransportUse,
};
use rsplb_registrar::wire::{encode_asap, frame_length};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const UNLIMITED: Bucket = Bucket {
    rate_per_s: 0,
    burst: 0,
};

fn lo(net: u8, i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 78, net, i))
}

fn config(net: u8, i: u8, peers: &[u8], keepalive_ms: u64) -> RegistrarConfig {
    let mut c = RegistrarConfig {
        registrar_id: Some(0x5000 + ((net as u32) << 8) + i as u32),
        asap_listen: vec![SocketAddr::new(lo(net, i), 3863)],
        admin: None,
        ..RegistrarConfig::default()
    };
    c.announce.enabled = false;
    c.rate_limits.registration = UNLIMITED;
    c.limits.max_elements_per_peer = 20_000;
    c.limits.max_home_elements = 1_000_000; // 100,000 at one registrar, keep-alives slowed
    c.limits.max_pending_messages = 40_000;
    c.timers.keepalive_interval_ms = keepalive_ms;
    c.enrp.listen = vec![SocketAddr::new(lo(net, i), 9901)];
    c.enrp.peers = peers
        .iter()
        .map(|p| SocketAddr::new(lo(net, *p), 9901))
        .collect();
    c
}

/// A registrar on its own thread and runtime; dropping the handle stops it.
struct Local {
    control: RegistrarControl,
    asap: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Local {
    fn start(config: RegistrarConfig) -> anyhow::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = rsplb_registrar::shell::runtime().expect("runtime");
            rt.block_on(async move {
                match Registrar::bind(config).await {
                    Ok(r) => {
                        let _ = tx.send(Ok((r.control(), r.asap_addrs()[0])));
                        let _ = r
                            .run(async {
                                let _ = stopped.await;
                            })
                            .await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let (control, asap) = rx.recv().context("registrar thread")??;
        Ok(Self {
            control,
            asap,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn wait_ready(c: &RegistrarControl, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while c.registrars().await?.sync_state != Some(SyncState::Ready) {
        if Instant::now() > deadline {
            bail!("registrar not synchronised within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn element(id: u32) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(0),
        registration_life_ms: 600_000,
        user_transport: TransportAddress::Tcp {
            port: 10_000 + (id % 50_000) as u16,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

/// Register `ids` in pools of 1,000 (`p<N>`) over one connection, pipelined; waits for every
/// answer. Returns the connection (closing it would remove the elements).
async fn register_many(
    asap: SocketAddr,
    ids: std::ops::Range<u32>,
    from: IpAddr,
) -> anyhow::Result<TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    let mut s = sock.connect(asap).await?;
    let n = ids.len();
    let mut out = Vec::with_capacity(n * 64);
    for id in ids {
        let pool: PoolHandle = format!("p{}", id / 1_000).parse().unwrap();
        let mut el = element(id);
        el.user_transport = TransportAddress::Tcp {
            port: 10_000 + (id % 50_000) as u16,
            transport_use: TransportUse::DataOnly,
            addr: from,
        };
        out.extend(encode_asap(&AsapMessage::Registration {
            pool_handle: pool,
            element: el,
        })?);
    }
    let (mut rd, mut wr) = s.split();
    let write = async {
        wr.write_all(&out).await?;
        anyhow::Ok(())
    };
    let read = async {
        let mut buf = Vec::new();
        let mut got = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        while got < n {
            let k = rd.read(&mut chunk).await?;
            if k == 0 {
                bail!("registrar closed the connection after {got} answers");
            }
            buf.extend_from_slice(&chunk[..k]);
            let mut start = 0;
            while let Some(len) = frame_length(&buf[start..], 65_535)? {
                if buf.len() - start < len {
                    break;
                }
                if buf[start] == 0x03 {
                    if buf[start + 1] & 1 != 0 {
                        bail!("a registration was rejected");
                    }
                    got += 1;
                }
                start += len;
            }
            buf.drain(..start);
        }
        anyhow::Ok(())
    };
    tokio::try_join!(write, read)?;
    Ok(s)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn sync_round() -> anyhow::Result<f64> {
    let mentor = Local::start(config(1, 1, &[], 60_000))?;
    wait_ready(&mentor.control, Duration::from_secs(5)).await?;
    let mut conns = Vec::new();
    let mut tasks = Vec::new();
    for c in 0..10u32 {
        let asap = mentor.asap;
        tasks.push(tokio::spawn(async move {
            register_many(asap, 1 + c * 10_000..1 + (c + 1) * 10_000, lo(1, 200)).await
        }));
    }
    for t in tasks {
        conns.push(t.await??);
    }
    let n = mentor.control.stats().await?.elements;
    if n != 100_000 {
        bail!("the mentor holds {n} elements, not 100,000");
    }
    let mut runs = Vec::new();
    for round in 0..3u8 {
        let started = Instant::now();
        let late = Local::start(config(1, 10 + round, &[1], 60_000))?;
        wait_ready(&late.control, Duration::from_secs(60)).await?;
        let took = started.elapsed();
        let got = late.control.stats().await?.elements;
        if got != 100_000 {
            bail!("the new registrar serves with {got} of 100,000 elements");
        }
        runs.push(took.as_secs_f64() * 1e3);
        drop(late);
    }
    drop(conns);
    Ok(median(runs))
}

async fn propagation_round() -> anyhow::Result<f64> {
    let a = Local::start(config(2, 1, &[2], 250))?;
    let b = Local::start(config(2, 2, &[1], 250))?;
    wait_ready(&a.control, Duration::from_secs(5)).await?;
    wait_ready(&b.control, Duration::from_secs(5)).await?;
    // Both must know each other before the first update.
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.control.registrars().await?.peers.is_empty()
        || b.control.registrars().await?.peers.is_empty()
    {
        if Instant::now() > deadline {
            bail!("the registrars did not peer");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut events = b.control.subscribe();
    let s = TcpStream::connect(a.asap).await?;
    let (rd, mut wr) = s.into_split();
    // Keep-alives of the elements are answered by nobody: 200 registrations take 200 x about
    // 1 ms, well within the 500 ms a silent element keeps its place; drain the answers.
    let drain = tokio::spawn(async move {
        let mut rd = BufReader::new(rd);
        let mut sink = Vec::new();
        while rd.read_until(0xff, &mut sink).await.is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    let mut runs = Vec::new();
    for k in 0..200u32 {
        let id = 900_000 + k;
        let msg = encode_asap(&AsapMessage::Registration {
            pool_handle: "prop".parse().unwrap(),
            element: element(id),
        })?;
        let t = Instant::now();
        wr.write_all(&msg).await?;
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .context("no ElementAdded at the peer within 5 s")??;
            if let HandlespaceEvent::ElementAdded { element, .. } = ev.event
                && element.id == PeId(id)
            {
                break;
            }
        }
        runs.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drain.abort();
    Ok(median(runs))
}

/// Round `round` uses addresses and element identifiers of its own: the pool elements of an
/// earlier round, still winding down, never meet this round's registrars.
async fn takeover_round(exe: &std::path::Path, round: u8) -> anyhow::Result<(f64, u64)> {
    let net = 3 + round;
    let survivor = Local::start(config(net, 1, &[2], 250))?;
    let victim_cfg = config(net, 2, &[1], 250);
    let mut child = tokio::process::Command::new(exe)
        .arg("--serve")
        .arg(serde_json::to_string(&victim_cfg)?)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("the victim registrar did not start")??;
    if ready.as_deref() != Some("ready") {
        bail!("victim: {ready:?}");
    }
    wait_ready(&survivor.control, Duration::from_secs(5)).await?;
    let victim_asap = victim_cfg.asap_listen[0];
    let mut pes = Vec::new();
    for k in 0..50u32 {
        let client = ClientConfig {
            registrars: vec![victim_asap, survivor.asap],
            ..ClientConfig::default()
        };
        let mut c = PoolElementConfig::new(
            format!("t{}", k % 5).parse().unwrap(),
            element(700_000 + k).user_transport,
        );
        c.id = Some(PeId(700_000 + 1_000 * round as u32 + k));
        pes.push(PoolElementHandle::register(client, c).await?);
    }
    // The PE library hunts in parallel, so some elements land at the survivor: the figure is
    // about those whose home is the victim. Wait until every PE knows its home and the
    // survivor holds the victim's elements as the victim's.
    let victim_id = RegistrarId(victim_cfg.registrar_id.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let homes_known = pes
            .iter()
            .all(|p| matches!(p.state(), PeState::Registered { home, .. } if home.0 != 0));
        let at_victim = pes
            .iter()
            .filter(|p| matches!(p.state(), PeState::Registered { home, .. } if home == victim_id))
            .count();
        let snap = survivor.control.snapshot().await?;
        let victim_owned = snap
            .pools
            .iter()
            .flat_map(|p| &p.elements)
            .filter(|e| e.home_registrar == victim_id.0)
            .count();
        if homes_known && at_victim > 0 && victim_owned == at_victim && snap.element_count == 50 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "setup: {at_victim} PEs at the victim, the survivor holds {victim_owned} of them"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The others stay registered (and alive) throughout: dropping one would deregister it.
    let (pes, others): (Vec<_>, Vec<_>) = pes
        .into_iter()
        .partition(|p| matches!(p.state(), PeState::Registered { home, .. } if home == victim_id));
    eprintln!("bench-enrp: {} elements at the victim", pes.len());
    let mut model = Model::from_snapshot(&survivor.control.snapshot().await?);
    let pools: Vec<_> = model.pools().cloned().collect();
    let before: Vec<_> = pools.iter().map(|p| model.desired(p)).collect();
    let mut events = survivor.control.subscribe();

    let killed = Instant::now();
    child.start_kill()?;
    let survivor_id = survivor.control.id();
    let mut changes = 0u64;
    let deadline = killed + Duration::from_secs(20);
    loop {
        while let Ok(ev) = events.try_recv().map(|n| n.event) {
            if model.apply(&ev).is_some() {
                let now: Vec<_> = pools.iter().map(|p| model.desired(p)).collect();
                if now != before {
                    if std::env::var_os("BENCH_DEBUG").is_some() {
                        eprintln!("change after {ev:?}");
                    }
                    changes += 1;
                }
            }
        }
        if pes
            .iter()
            .all(|p| matches!(p.state(), PeState::Registered { home, .. } if home == survivor_id))
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the victim's elements did not all find their new home within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = killed.elapsed().as_secs_f64() * 1e3;
    // Events that arrive right after the last PE moved count too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(ev) = events.try_recv().map(|n| n.event) {
        if model.apply(&ev).is_some() {
            let now: Vec<_> = pools.iter().map(|p| model.desired(p)).collect();
            if now != before {
                changes += 1;
            }
        }
    }
    let _ = child.wait().await;
    for p in pes.into_iter().chain(others) {
        let _ = p.deregister().await;
    }
    Ok((took, changes))
}

fn serve(config_json: &str) -> anyhow::Result<()> {
    let config: RegistrarConfig = serde_json::from_str(config_json)?;
    let rt = rsplb_registrar::shell::runtime()?;
    rt.block_on(async {
        let r = Registrar::bind(config).await?;
        println!("ready");
        r.run(std::future::pending()).await
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        return serve(args.get(2).context("--serve CONFIG_JSON")?);
    }
    let exe = std::env::current_exe()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        eprintln!("bench-enrp: update propagation (200 registrations)...");
        let prop = propagation_round().await?;
        println!("update_propagation_ms={prop:.3}");
        eprintln!("bench-enrp: takeover (50 elements, SIGKILL)...");
        let mut takes = Vec::new();
        let mut changes = 0;
        for round in 0..3 {
            let (t, c) = takeover_round(&exe, round).await?;
            takes.push(t);
            changes += c;
        }
        println!("takeover_ms={:.0}", median(takes));
        println!("failover_registrar_dataplane_changes={changes}");
        eprintln!("bench-enrp: handlespace download (100,000 elements, 3 runs)...");
        let sync = sync_round().await?;
        println!("sync_100k_ms={sync:.0}");
        anyhow::Ok(())
    })
}
