//! ENRP over real TCP sockets: three registrars (the tokio shell, in-process, on loopback
//! addresses of their own), pool elements registering through the PE library, and a registrar
//! killed mid-way. Every handlespace must be the same after start, after changes, after a late
//! registrar joins, and after the takeover; no element may leave a surviving handlespace
//! because its registrar died.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rsplb_registrar::client::{ClientConfig, PoolElementConfig, PoolElementHandle};
use rsplb_registrar::config::RegistrarConfig;
use rsplb_registrar::core::{HandlespaceEvent, SyncState};
use rsplb_registrar::shell::{Registrar, RegistrarControl};
use rsplb_registrar::types::{PeId, PoolHandle, TransportAddress, TransportUse};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(15);

/// Registrar `i` of test `net` lives on 127.77.net.i.
fn ip(net: u8, i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 77, net, i))
}

struct Running {
    asap: SocketAddr,
    control: RegistrarControl,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(net: u8, i: u8, peers: &[u8]) -> Running {
    let mut config = RegistrarConfig {
        asap_listen: vec![SocketAddr::new(ip(net, i), 0)],
        admin: None,
        registrar_id: Some(0x1000 + i as u32),
        ..RegistrarConfig::default()
    };
    config.announce.enabled = false;
    config.enrp.listen = vec![SocketAddr::new(ip(net, i), 9901)];
    config.enrp.peers = peers
        .iter()
        .map(|p| SocketAddr::new(ip(net, *p), 9901))
        .collect();
    let registrar = Registrar::bind(config).await.unwrap();
    let asap = registrar.asap_addrs()[0];
    let control = registrar.control();
    // Never completes: the registrar stops when its task is aborted (as by SIGKILL: every
    // socket closes at once, nothing is said).
    let task = tokio::spawn(registrar.run(std::future::pending()));
    Running {
        asap,
        control,
        task,
    }
}

/// (pool, id, owner) of every element, and the per-owner checksums.
async fn view(r: &Running) -> (Vec<(String, u32, u32)>, Vec<(u32, u16)>) {
    let s = r.control.snapshot().await.unwrap();
    let mut v: Vec<_> = s
        .pools
        .iter()
        .flat_map(|p| {
            p.elements
                .iter()
                .map(move |e| (p.handle.clone(), e.id, e.home_registrar))
        })
        .collect();
    v.sort();
    let sums = s
        .checksums
        .iter()
        .map(|c| (c.registrar_id, c.checksum))
        .collect();
    (v, sums)
}

async fn wait_converged(rs: &[&Running], expect: usize) -> Vec<(String, u32, u32)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut views = Vec::new();
        for r in rs {
            views.push(view(r).await);
        }
        if views[0].0.len() == expect && views.iter().all(|v| *v == views[0]) {
            return views.swap_remove(0).0;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "handlespaces did not converge on {expect} elements: {:?}",
            views.iter().map(|v| v.0.len()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pe(registrars: Vec<SocketAddr>, pool: &str, host: u8, id: u32) -> PoolElementHandle {
    let client = ClientConfig {
        registrars,
        hunt_retry_delay: Duration::from_millis(100),
        ..ClientConfig::default()
    };
    let mut config = PoolElementConfig::new(
        pool.parse::<PoolHandle>().unwrap(),
        TransportAddress::Tcp {
            port: 8000 + host as u16,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
    );
    config.id = Some(PeId(id));
    PoolElementHandle::register(client, config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_registrars_share_one_handlespace_and_survive_the_loss_of_one() {
    let net = 1;
    let r1 = start(net, 1, &[2, 3]).await;
    let r2 = start(net, 2, &[1, 3]).await;
    let r3 = start(net, 3, &[1, 2]).await;
    for r in [&r1, &r2, &r3] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while r.control.registrars().await.unwrap().sync_state != Some(SyncState::Ready) {
            assert!(tokio::time::Instant::now() < deadline, "never synchronised");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // 30 elements, each registered at one registrar (the first in its list), spread over three.
    let asap = [r1.asap, r2.asap, r3.asap];
    let mut pes = Vec::new();
    for k in 0..30u32 {
        let home = (k % 3) as usize;
        let order: Vec<SocketAddr> = (0..3).map(|j| asap[(home + j) % 3]).collect();
        pes.push(
            pe(
                order,
                if k % 2 == 0 { "web" } else { "dns" },
                k as u8,
                1 + k,
            )
            .await,
        );
    }
    let before = wait_converged(&[&r1, &r2, &r3], 30).await;
    let owners: BTreeSet<u32> = before.iter().map(|e| e.2).collect();
    assert_eq!(owners.len(), 3, "{owners:?}");

    // Any registrar's handlespace can be read over ENRP, as rsplib's hsdump does.
    let d = rsplb_registrar::client::enrp_dump::dump(SocketAddr::new(ip(net, 2), 9901), WAIT)
        .await
        .unwrap();
    assert_eq!(d.registrar.0, 0x1002);
    let mut dumped: Vec<_> = d
        .pools
        .iter()
        .flat_map(|(h, els)| {
            els.iter()
                .map(move |e| (h.to_string(), e.id.0, e.home_registrar.0))
        })
        .collect();
    dumped.sort();
    assert_eq!(dumped, before);
    let peer_ids: BTreeSet<u32> = d.peers.iter().map(|p| p.id.0).collect();
    assert_eq!(peer_ids, [0x1001, 0x1003].into_iter().collect());

    // A late registrar downloads everything from its mentor.
    let r4 = start(net, 4, &[1]).await;
    wait_converged(&[&r1, &r2, &r3, &r4], 30).await;

    // Watch the survivors for removals from here on.
    let mut watch1 = r1.control.subscribe();
    let mut watch2 = r2.control.subscribe();

    // Kill registrar 3: its elements' PEs hunt and re-register at another registrar, or the
    // takeover moves them; either way they never leave a surviving handlespace.
    r3.task.abort();
    let _ = r3.task.await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (v, _) = view(&r1).await;
        if v.len() == 30 && v.iter().all(|e| e.2 != 0x1003) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "registrar 3 still owns elements: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_converged(&[&r1, &r2, &r4], 30).await;
    for w in [&mut watch1, &mut watch2] {
        loop {
            match w.try_recv().map(|n| n.event) {
                Ok(HandlespaceEvent::ElementRemoved { pool, id, reason }) => {
                    panic!("{pool}/{id} removed ({reason:?}) because its registrar died")
                }
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    // The survivors forget the dead registrar.
    let deadline = tokio::time::Instant::now() + WAIT;
    while r1
        .control
        .registrars()
        .await
        .unwrap()
        .peers
        .iter()
        .any(|p| p.registrar_id == 0x1003)
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A deregistration still reaches every survivor.
    let gone = pes.remove(0);
    gone.deregister().await.unwrap();
    wait_converged(&[&r1, &r2, &r4], 29).await;
    for r in [r1, r2, r4] {
        r.task.abort();
    }
}

/// An ENRP connection that starts a message and never finishes it, or says nothing, is closed
/// after the shell's timeouts; the registrar keeps serving its scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_enrp_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let net = 2;
    let mut config = RegistrarConfig {
        asap_listen: vec![SocketAddr::new(ip(net, 1), 0)],
        admin: None,
        registrar_id: Some(0x2001),
        ..RegistrarConfig::default()
    };
    config.announce.enabled = false;
    config.enrp.listen = vec![SocketAddr::new(ip(net, 1), 9901)];
    config.connections.partial_message_timeout_ms = 300;
    config.connections.idle_timeout_ms = 600;
    let registrar = Registrar::bind(config).await.unwrap();
    let task = tokio::spawn(registrar.run(std::future::pending()));
    let enrp = SocketAddr::new(ip(net, 1), 9901);
    // Half of a 64-byte Presence header...
    let mut partial = tokio::net::TcpStream::connect(enrp).await.unwrap();
    partial
        .write_all(&[0x01, 0x00, 0x00, 0x40, 0, 0])
        .await
        .unwrap();
    let mut idle = tokio::net::TcpStream::connect(enrp).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(WAIT, partial.read(&mut b))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the partial connection stays: {n:?}"
    );
    let partial_closed = started.elapsed();
    let n = tokio::time::timeout(WAIT, idle.read(&mut b)).await.unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the idle connection stays: {n:?}"
    );
    let idle_closed = started.elapsed();
    assert!(
        partial_closed >= Duration::from_millis(250),
        "{partial_closed:?}"
    );
    assert!(idle_closed >= Duration::from_millis(550), "{idle_closed:?}");
    // Still serving.
    let d = rsplb_registrar::client::enrp_dump::dump(enrp, WAIT)
        .await
        .unwrap();
    assert_eq!(d.registrar.0, 0x2001);
    task.abort();
}

/// A dump follows the M flag through many chunks (the handlespace here needs several).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_reads_a_handlespace_of_many_chunks() {
    let _ = env_logger::builder().is_test(true).try_init();
    let net = 3;
    let r = start(net, 1, &[]).await;
    let mut pes = Vec::new();
    for k in 0..300u32 {
        pes.push(pe(vec![r.asap], "bulk", (k % 200) as u8, 10_000 + k).await);
    }
    let d = rsplb_registrar::client::enrp_dump::dump(SocketAddr::new(ip(net, 1), 9901), WAIT)
        .await
        .unwrap();
    let n: usize = d.pools.iter().map(|(_, e)| e.len()).sum();
    assert_eq!(n, 300);
    r.task.abort();
}
