//! The pool user side against a scripted fake registrar: resolution, cache staleness, selection,
//! Endpoint Unreachable reports, registrars found by announce.

mod client_fake;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use client_fake::{FakeConn, FakeRegistrar};
use rsplb_registrar::client::{AnnounceConfig, CacheConfig, ClientConfig, ClientError, PoolUser};
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::types::{
    CauseCode, ErrorCause, PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress,
    TransportUse,
};

fn pe(id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(1),
        registration_life_ms: 30_000,
        user_transport: TransportAddress::Tcp {
            port: 80,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, id as u8)),
        },
        policy,
        asap_transport: None,
    }
}

/// Answers every handle resolution on `conn` with `elements(n)` for the n-th request (from 1),
/// and forwards every other message to the returned channel.
fn serve(
    mut conn: FakeConn,
    elements: impl Fn(u32) -> Vec<PoolElement> + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<AsapMessage> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            match conn.recv().await {
                AsapMessage::HandleResolution { pool_handle, .. } => {
                    n += 1;
                    let elements = elements(n);
                    let (policy, error) = if elements.is_empty() {
                        (
                            None,
                            Some(vec![ErrorCause::new(CauseCode::UnknownPoolHandle)]),
                        )
                    } else {
                        (Some(elements[0].policy.clone()), None)
                    };
                    conn.send(&AsapMessage::HandleResolutionResponse {
                        pool_handle,
                        policy,
                        elements,
                        error,
                    })
                    .await;
                }
                other => {
                    if tx.send(other).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn client(fake: &FakeRegistrar) -> ClientConfig {
    let mut c = ClientConfig::with_registrars([fake.addr]);
    c.request_timeout = Duration::from_secs(5);
    c
}

#[tokio::test]
async fn cache_answers_until_stale_then_asks_again() {
    let mut fake = FakeRegistrar::start().await;
    let cache = CacheConfig {
        stale_after: Duration::from_millis(1500),
        items: Some(4),
    };
    let pu = PoolUser::new(client(&fake), cache).unwrap();
    let pool: PoolHandle = "web".parse().unwrap();
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { (pu.resolve(&pool).await, pu) }
    });
    let conn = fake.accept().await;
    // The n-th answer names element n: which answer the PU returns shows whether it asked.
    let _others = serve(conn, |n| vec![pe(n, Policy::RoundRobin)]);
    let (r1, pu) = first.await.unwrap();
    let r1 = r1.unwrap();
    assert_eq!(r1.elements[0].id, PeId(1));
    assert_eq!(r1.policy, Some(Policy::RoundRobin));
    let r2 = pu.resolve(&pool).await.unwrap();
    assert_eq!(r2.elements[0].id, PeId(1), "a fresh cache entry is used");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r3 = pu.resolve(&pool).await.unwrap();
    assert_eq!(
        r3.elements[0].id,
        PeId(2),
        "a stale cache entry is refreshed"
    );
    let r4 = pu.resolve_fresh(&pool, None).await.unwrap();
    assert_eq!(r4.elements[0].id, PeId(3), "resolve_fresh always asks");
}

#[tokio::test]
async fn unknown_pool_is_a_typed_error() {
    let mut fake = FakeRegistrar::start().await;
    let pu = PoolUser::new(client(&fake), CacheConfig::default()).unwrap();
    let asking = tokio::spawn(async move { pu.resolve(&"nope".parse().unwrap()).await });
    let _rx = serve(fake.accept().await, |_| Vec::new());
    let err = asking.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, ClientError::UnknownPool(p) if p.to_string() == "nope"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_reports_reach_the_registrar_and_leave_the_cache() {
    let mut fake = FakeRegistrar::start().await;
    let cache = CacheConfig {
        stale_after: Duration::from_secs(60),
        items: None,
    };
    let pu = std::sync::Arc::new(PoolUser::new(client(&fake), cache).unwrap());
    let pool: PoolHandle = "eu".parse().unwrap();
    let asking = tokio::spawn({
        let (pu, pool) = (pu.clone(), pool.clone());
        async move { pu.select(&pool).await }
    });
    let mut others = serve(fake.accept().await, |_| {
        (1..=3).map(|i| pe(i, Policy::RoundRobin)).collect()
    });
    let chosen = asking.await.unwrap().unwrap();
    pu.report_unreachable(&pool, chosen.id).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), others.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        report,
        AsapMessage::EndpointUnreachable {
            pool_handle: pool.clone(),
            id: chosen.id
        }
    );
    let cached = pu.cached(&pool).await.unwrap();
    assert_eq!(cached.elements.len(), 2);
    for _ in 0..6 {
        assert_ne!(pu.select(&pool).await.unwrap().id, chosen.id);
    }
}

#[tokio::test]
async fn selection_follows_the_pool_policy() {
    let mut fake = FakeRegistrar::start().await;
    let pu = std::sync::Arc::new(
        PoolUser::new(
            client(&fake),
            CacheConfig {
                stale_after: Duration::from_secs(60),
                items: None,
            },
        )
        .unwrap(),
    );
    let asking = tokio::spawn({
        let pu = pu.clone();
        async move { pu.select(&"prio".parse().unwrap()).await }
    });
    let _rx = serve(fake.accept().await, |_| {
        vec![
            pe(1, Policy::Priority { priority: 1 }),
            pe(2, Policy::Priority { priority: 9 }),
            pe(3, Policy::Priority { priority: 9 }),
        ]
    });
    let first = asking.await.unwrap().unwrap();
    let prio: PoolHandle = "prio".parse().unwrap();
    let mut seen = vec![first.id];
    for _ in 0..3 {
        seen.push(pu.select(&prio).await.unwrap().id);
    }
    // The two of highest priority, taken in turn; never the low one.
    assert_eq!(seen, vec![PeId(2), PeId(3), PeId(2), PeId(3)]);
}

#[tokio::test]
async fn least_used_picks_the_lowest_load() {
    let mut fake = FakeRegistrar::start().await;
    let pu = std::sync::Arc::new(
        PoolUser::new(
            client(&fake),
            CacheConfig {
                stale_after: Duration::from_secs(60),
                items: None,
            },
        )
        .unwrap(),
    );
    let asking = tokio::spawn({
        let pu = pu.clone();
        async move { pu.select(&"lu".parse().unwrap()).await }
    });
    let _rx = serve(fake.accept().await, |_| {
        vec![
            pe(1, Policy::LeastUsed { load: 500 }),
            pe(2, Policy::LeastUsed { load: 100 }),
            pe(3, Policy::LeastUsed { load: 900 }),
        ]
    });
    assert_eq!(asking.await.unwrap().unwrap().id, PeId(2));
    assert_eq!(pu.select(&"lu".parse().unwrap()).await.unwrap().id, PeId(2));
}

#[tokio::test]
async fn a_registrar_heard_in_an_announce_is_used() {
    let mut fake = FakeRegistrar::start().await;
    // Announces to a unicast loopback port (no multicast leaves this host in a test).
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let c = ClientConfig {
        announce: Some(AnnounceConfig {
            group: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            interface: Ipv4Addr::UNSPECIFIED,
        }),
        hunt_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let pu = PoolUser::new(c, CacheConfig::default()).unwrap();
    let asking = tokio::spawn(async move { pu.resolve(&"ann".parse().unwrap()).await });
    let announce = rsplb_registrar::wire::encode_asap(&AsapMessage::ServerAnnounce {
        server_id: RegistrarId(0xabc),
        transports: vec![TransportAddress::Tcp {
            port: fake.addr.port(),
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }],
    })
    .unwrap();
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Announce until the PU connects (it may not be listening yet at the first one).
    let mut conn = None;
    for _ in 0..50 {
        sender.send_to(&announce, target).await.unwrap();
        conn = fake.accept_within(Duration::from_millis(200)).await;
        if conn.is_some() {
            break;
        }
    }
    let conn = conn.expect("the PU connects to the announced registrar");
    let _rx = serve(conn, |_| vec![pe(1, Policy::RoundRobin)]);
    let r = asking.await.unwrap().unwrap();
    assert_eq!(r.registrar, fake.addr);
    assert_eq!(r.elements[0].id, PeId(1));
}
