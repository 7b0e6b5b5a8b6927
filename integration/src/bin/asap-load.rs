//! `asap-load`: an ASAP load generator over kernel SCTP for `cargo xtask bench interop`, run in
//! the interop lab's guest against rsplib's `rspregistrar` and rsplb's `rsp-registrar` alike.
//!
//! Each client is one SCTP association (PPID 11) with one request in flight: it sends, waits for
//! the answer, sends again. `--op resolve`: Handle Resolutions of a pool that one more
//! association keeps three elements registered in (answering the registrar's keep-alives);
//! `--op register`: each client re-registers its own element. Prints `ops_per_s=`, `ops=`,
//! `secs=`, `clients=`, `op=` as `key=value` lines; fails when a request is refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::sctp::{Incoming, PPID_ASAP, SctpSocket};
use rsplb_registrar::types::{
    PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress, TransportUse,
};
use rsplb_registrar::wire::{decode_asap, encode_asap};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Op {
    Resolve,
    Register,
}

#[derive(Parser, Debug)]
#[command(about = "ASAP load over SCTP: one request in flight per client")]
struct Opts {
    /// The registrar's ASAP endpoint (SCTP).
    #[arg(long)]
    registrar: SocketAddr,
    #[arg(long, value_enum)]
    op: Op,
    /// Concurrent clients (associations).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Seconds measured (after a warm-up of 0.5 s).
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// How long to wait for the registrar to answer at all (rsplib's stays silent during its
    /// 5 s mentor hunt).
    #[arg(long, default_value_t = 20.0)]
    ready_secs: f64,
}

/// One association, with the registrar's keep-alives answered on the way.
struct Client {
    sock: SctpSocket,
    element: Option<PoolElement>,
}

impl Client {
    async fn connect(to: SocketAddr) -> anyhow::Result<Self> {
        let sock = SctpSocket::connect(to, PPID_ASAP, 65_536)
            .await
            .with_context(|| format!("associating with {to}"))?;
        Ok(Self {
            sock,
            element: None,
        })
    }

    /// An element on this association's local address (rsplib keeps only the association's
    /// own addresses of a registration).
    fn element(&self, id: u32) -> anyhow::Result<PoolElement> {
        let local = self.sock.local_addrs()?;
        let first = local
            .first()
            .context("the association has no local address")?;
        Ok(PoolElement {
            id: PeId(id),
            home_registrar: RegistrarId(0),
            registration_life_ms: 300_000,
            user_transport: TransportAddress::Sctp {
                port: 7,
                transport_use: TransportUse::DataOnly,
                addrs: vec![first.ip()],
            },
            policy: Policy::RoundRobin,
            asap_transport: None,
        })
    }

    async fn send(&self, m: &AsapMessage) -> anyhow::Result<()> {
        self.sock.send(&encode_asap(m)?, 0).await?;
        Ok(())
    }

    /// The next message that is not a keep-alive (those are acknowledged).
    async fn recv(&mut self) -> anyhow::Result<AsapMessage> {
        loop {
            match self.sock.recv().await? {
                Incoming::Message { bytes, .. } => {
                    let m = decode_asap(&bytes)
                        .map_err(|e| anyhow::anyhow!("undecodable answer: {e}"))?
                        .message;
                    if let AsapMessage::EndpointKeepAlive {
                        pool_handle, id, ..
                    } = &m
                    {
                        let ack = AsapMessage::EndpointKeepAliveAck {
                            pool_handle: pool_handle.clone(),
                            id: self.element.as_ref().map_or(*id, |e| e.id),
                        };
                        self.send(&ack).await?;
                        continue;
                    }
                    return Ok(m);
                }
                Incoming::Notification(_) => continue,
                Incoming::TooLarge { len } => bail!("an answer of {len} bytes or more"),
                Incoming::Closed => bail!("the registrar closed the association"),
            }
        }
    }

    async fn register(&mut self, pool: &PoolHandle, id: u32) -> anyhow::Result<()> {
        let element = match &self.element {
            Some(e) => e.clone(),
            None => self.element(id)?,
        };
        self.element = Some(element.clone());
        self.send(&AsapMessage::Registration {
            pool_handle: pool.clone(),
            element,
        })
        .await?;
        match self.recv().await? {
            AsapMessage::RegistrationResponse { reject: false, .. } => Ok(()),
            other => bail!("registration refused: {other:?}"),
        }
    }

    async fn resolve(&mut self, pool: &PoolHandle) -> anyhow::Result<usize> {
        self.send(&AsapMessage::HandleResolution {
            pool_handle: pool.clone(),
            items: None,
        })
        .await?;
        match self.recv().await? {
            AsapMessage::HandleResolutionResponse {
                elements,
                error: None,
                ..
            } => Ok(elements.len()),
            other => bail!("resolution failed: {other:?}"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let o = Opts::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(o))
}

async fn run(o: Opts) -> anyhow::Result<()> {
    let pool: PoolHandle = "asap-load".parse().expect("literal pool handle");
    let base = rand::random::<u32>() & 0x0fff_ffff;
    // The pool to resolve: three elements kept registered by an association of their own.
    let mut holder = None;
    if o.op == Op::Resolve {
        let ready = Instant::now() + Duration::from_secs_f64(o.ready_secs);
        let mut h = loop {
            let attempt = async {
                let mut h = Client::connect(o.registrar).await?;
                h.register(&pool, base).await?;
                anyhow::Ok(h)
            };
            match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(h)) => break h,
                Ok(Err(e)) if Instant::now() > ready => return Err(e),
                Err(_) if Instant::now() > ready => bail!("the registrar never answered"),
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        for k in 1..3 {
            let mut extra = Client::connect(o.registrar).await?;
            extra.register(&pool, base + k).await?;
            // Each element's association answers its keep-alives.
            tokio::spawn(async move { while extra.recv().await.is_ok() {} });
        }
        h.resolve(&pool).await?;
        holder = Some(tokio::spawn(async move { while h.recv().await.is_ok() {} }));
    }

    let ops = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..o.clients {
        let (ops, counting, stop, pool) =
            (ops.clone(), counting.clone(), stop.clone(), pool.clone());
        let to = o.registrar;
        let op = o.op;
        let ready_secs = o.ready_secs;
        tasks.spawn(async move {
            let mut client = Client::connect(to).await?;
            let id = base + 0x1000 + c as u32;
            if op == Op::Register {
                // The first registration may meet rsplib's mentor hunt: retry until ready.
                let ready = Instant::now() + Duration::from_secs_f64(ready_secs);
                loop {
                    match tokio::time::timeout(Duration::from_secs(3), client.register(&pool, id))
                        .await
                    {
                        Ok(Ok(())) => break,
                        _ if Instant::now() > ready => bail!("client {c}: never registered"),
                        _ => {
                            client = Client::connect(to).await?;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
            while !stop.load(Ordering::Relaxed) {
                match op {
                    Op::Resolve => {
                        client.resolve(&pool).await?;
                    }
                    Op::Register => client.register(&pool, id).await?,
                }
                if counting.load(Ordering::Relaxed) {
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    counting.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    let start = ops.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(o.secs)).await;
    let n = ops.load(Ordering::Relaxed) - start;
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.context("a client panicked")?.context("a client failed")?;
    }
    if let Some(h) = holder {
        h.abort();
    }
    if n == 0 {
        bail!("no request was answered in {secs:.1} s");
    }
    println!("op={:?}", o.op);
    println!("clients={}", o.clients);
    println!("ops={n}");
    println!("secs={secs:.3}");
    println!("ops_per_s={:.0}", n as f64 / secs);
    Ok(())
}
