//! The pool element side against a scripted fake registrar (RFC 5352 procedures).

mod client_fake;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use client_fake::{FakeRegistrar, WAIT};
use rsplb_registrar::client::{
    ClientConfig, ClientError, PeState, PoolElementConfig, PoolElementHandle,
};
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::types::{
    CauseCode, ErrorCause, PeId, Policy, PoolHandle, RegistrarId, TransportAddress, TransportUse,
};

fn element(pool: &str, id: u32) -> PoolElementConfig {
    let transport = TransportAddress::Tcp {
        port: 8080,
        transport_use: TransportUse::DataOnly,
        addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)),
    };
    let mut pe = PoolElementConfig::new(pool.parse().unwrap(), transport);
    pe.id = Some(PeId(id));
    pe
}

fn client(fakes: &[&FakeRegistrar]) -> ClientConfig {
    let mut c = ClientConfig::with_registrars(fakes.iter().map(|f| f.addr));
    c.request_timeout = Duration::from_secs(5);
    c.hunt_retry_delay = Duration::from_millis(50);
    c
}

async fn wait_state(handle: &PoolElementHandle, want: impl Fn(&PeState) -> bool) -> PeState {
    let mut rx = handle.watch();
    tokio::time::timeout(WAIT, rx.wait_for(|s| want(s)))
        .await
        .expect("state reached within the bound")
        .expect("task alive")
        .clone()
}

#[tokio::test]
async fn registers_with_the_configured_values_and_deregisters() {
    let mut fake = FakeRegistrar::start().await;
    let mut pe = element("web", 0x1234);
    pe.policy = Policy::WeightedRoundRobin { weight: 7 };
    pe.registration_life = Duration::from_secs(30);
    let registering = tokio::spawn(PoolElementHandle::register(client(&[&fake]), pe));
    let mut conn = fake.accept().await;
    let reg = conn.accept_registration().await;
    let AsapMessage::Registration {
        pool_handle,
        element,
    } = reg
    else {
        unreachable!()
    };
    assert_eq!(pool_handle, "web".parse::<PoolHandle>().unwrap());
    assert_eq!(element.id, PeId(0x1234));
    assert_eq!(element.registration_life_ms, 30_000);
    assert_eq!(element.policy, Policy::WeightedRoundRobin { weight: 7 });
    assert_eq!(element.user_transport.port(), 8080);
    assert_eq!(element.home_registrar, RegistrarId(0));

    let handle = registering.await.unwrap().expect("registered");
    assert!(
        matches!(handle.state(), PeState::Registered { registrar, .. } if registrar == fake.addr)
    );

    let deregistering = tokio::spawn(handle.deregister());
    match conn.recv().await {
        AsapMessage::Deregistration { pool_handle, id } => {
            assert_eq!(
                (pool_handle.to_string().as_str(), id),
                ("web", PeId(0x1234))
            );
            conn.send(&AsapMessage::DeregistrationResponse {
                pool_handle,
                id,
                error: None,
            })
            .await;
        }
        other => panic!("expected a deregistration, got {other:?}"),
    }
    deregistering.await.unwrap().expect("deregistered");
}

#[tokio::test]
async fn dropping_the_handle_deregisters() {
    let mut fake = FakeRegistrar::start().await;
    let registering = tokio::spawn(PoolElementHandle::register(
        client(&[&fake]),
        element("drop", 5),
    ));
    let mut conn = fake.accept().await;
    conn.accept_registration().await;
    let handle = registering.await.unwrap().unwrap();
    drop(handle);
    assert!(matches!(
        conn.recv().await,
        AsapMessage::Deregistration { id: PeId(5), .. }
    ));
}

#[tokio::test]
async fn re_registers_before_the_life_runs_out() {
    let mut fake = FakeRegistrar::start().await;
    let mut pe = element("rereg", 9);
    // Re-registration every third of the life: at least two more within one life.
    pe.registration_life = Duration::from_millis(1500);
    let registering = tokio::spawn(PoolElementHandle::register(client(&[&fake]), pe));
    let mut conn = fake.accept().await;
    conn.accept_registration().await;
    let _handle = registering.await.unwrap().unwrap();
    for _ in 0..2 {
        let next = tokio::time::timeout(Duration::from_millis(1500), conn.accept_registration())
            .await
            .expect("a re-registration arrives before the registration life runs out");
        let AsapMessage::Registration { element, .. } = next else {
            unreachable!()
        };
        assert_eq!(element.id, PeId(9));
    }
}

#[tokio::test]
async fn answers_keep_alives_and_follows_a_new_home() {
    let mut fake = FakeRegistrar::start().await;
    let registering = tokio::spawn(PoolElementHandle::register(
        client(&[&fake]),
        element("ka", 3),
    ));
    let mut conn = fake.accept().await;
    conn.accept_registration().await;
    let handle = registering.await.unwrap().unwrap();
    let pool: PoolHandle = "ka".parse().unwrap();

    conn.send(&AsapMessage::EndpointKeepAlive {
        home: false,
        server_id: RegistrarId(0x11),
        pool_handle: pool.clone(),
        id: PeId(3),
    })
    .await;
    assert_eq!(
        conn.recv().await,
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: pool.clone(),
            id: PeId(3)
        }
    );
    wait_state(&handle, |s| {
        matches!(
            s,
            PeState::Registered {
                home: RegistrarId(0x11),
                ..
            }
        )
    })
    .await;

    // Another registrar took the element over: keep-alive with the H flag.
    conn.send(&AsapMessage::EndpointKeepAlive {
        home: true,
        server_id: RegistrarId(0x22),
        pool_handle: pool.clone(),
        id: PeId(3),
    })
    .await;
    assert_eq!(
        conn.recv().await,
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: pool.clone(),
            id: PeId(3)
        }
    );
    wait_state(&handle, |s| {
        matches!(
            s,
            PeState::Registered {
                home: RegistrarId(0x22),
                ..
            }
        )
    })
    .await;

    // A keep-alive without H from someone else does not move the home.
    conn.send(&AsapMessage::EndpointKeepAlive {
        home: false,
        server_id: RegistrarId(0x33),
        pool_handle: pool.clone(),
        id: PeId(3),
    })
    .await;
    assert!(matches!(
        conn.recv().await,
        AsapMessage::EndpointKeepAliveAck { .. }
    ));
    assert!(matches!(
        handle.state(),
        PeState::Registered {
            home: RegistrarId(0x22),
            ..
        }
    ));
}

#[tokio::test]
async fn hunts_again_and_re_registers_when_the_registrar_is_lost() {
    let mut a = FakeRegistrar::start().await;
    let mut b = FakeRegistrar::start().await;
    let registering = tokio::spawn(PoolElementHandle::register(
        client(&[&a, &b]),
        element("loss", 77),
    ));
    // The hunt connects to both at once; whichever the PE talks to is its registrar.
    let (mut first_is_a, mut conn) = tokio::select! {
        c = a.accept() => (true, c),
        c = b.accept() => (false, c),
    };
    conn.accept_registration().await;
    let handle = registering.await.unwrap().unwrap();
    // The registrar dies: connection and listener go away.
    drop(conn);
    let (lost, survivor) = if first_is_a { (a, &mut b) } else { (b, &mut a) };
    let lost_addr = lost.addr;
    drop(lost);
    let mut conn = survivor.accept().await;
    let reg = conn.accept_registration().await;
    assert!(matches!(reg, AsapMessage::Registration { element, .. } if element.id == PeId(77)));
    let state = wait_state(
        &handle,
        |s| matches!(s, PeState::Registered { registrar, .. } if *registrar != lost_addr),
    )
    .await;
    assert!(matches!(state, PeState::Registered { registrar, .. } if registrar == survivor.addr));
    first_is_a = !first_is_a;
    let _ = first_is_a;
}

#[tokio::test]
async fn load_updates_re_register_at_once() {
    let mut fake = FakeRegistrar::start().await;
    let mut pe = element("lu", 4);
    pe.policy = Policy::LeastUsed { load: 0 };
    let registering = tokio::spawn(PoolElementHandle::register(client(&[&fake]), pe));
    let mut conn = fake.accept().await;
    conn.accept_registration().await;
    let handle = registering.await.unwrap().unwrap();
    let updating = tokio::spawn(async move {
        let r = handle
            .update_load(&Policy::LeastUsed { load: 0 }, u32::MAX / 2)
            .await;
        (handle, r)
    });
    let reg = conn.accept_registration().await;
    assert!(matches!(reg, AsapMessage::Registration { element, .. }
        if element.policy == Policy::LeastUsed { load: u32::MAX / 2 }));
    let (handle, r) = updating.await.unwrap();
    r.unwrap();
    // A policy without a load value cannot take a load update.
    let err = handle
        .update_load(&Policy::RoundRobin, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err}");
}

#[tokio::test]
async fn a_refused_registration_is_reported_with_its_cause() {
    let mut fake = FakeRegistrar::start().await;
    let registering = tokio::spawn(PoolElementHandle::register(
        client(&[&fake]),
        element("rej", 8),
    ));
    let mut conn = fake.accept().await;
    let AsapMessage::Registration {
        pool_handle,
        element,
    } = conn.recv().await
    else {
        panic!()
    };
    conn.send(&AsapMessage::RegistrationResponse {
        reject: true,
        pool_handle,
        id: element.id,
        error: Some(vec![ErrorCause::new(CauseCode::InconsistentPoolingPolicy)]),
    })
    .await;
    let err = registering.await.unwrap().unwrap_err();
    match &err {
        ClientError::Rejected { causes, .. } => {
            assert_eq!(causes[0].code, CauseCode::InconsistentPoolingPolicy)
        }
        other => panic!("expected a rejection, got {other}"),
    }
    assert!(
        err.to_string().contains("inconsistent pooling policy"),
        "{err}"
    );
}

#[tokio::test]
async fn no_registrar_is_a_clear_error() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut c = ClientConfig::with_registrars([addr]);
    c.hunt_timeout = Duration::from_millis(300);
    c.hunt_retry_delay = Duration::from_millis(50);
    let err = PoolElementHandle::register(c, element("none", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NoRegistrar { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    let empty = PoolElementHandle::start(ClientConfig::default(), element("none", 1)).unwrap_err();
    assert!(matches!(empty, ClientError::Config(_)), "{empty}");
}

#[tokio::test]
async fn re_registers_when_keep_alives_stop() {
    let mut fake = FakeRegistrar::start().await;
    let mut pe = element("quiet", 4);
    // The next scheduled re-registration is 20 s away: far beyond this test.
    pe.registration_life = Duration::from_secs(60);
    let registering = tokio::spawn(PoolElementHandle::register(client(&[&fake]), pe));
    let mut conn = fake.accept().await;
    conn.accept_registration().await;
    let _handle = registering.await.unwrap().unwrap();
    let pool: PoolHandle = "quiet".parse().unwrap();
    // Keep-alives every 100 ms, answered...
    for _ in 0..4 {
        conn.send(&AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: RegistrarId(0x11),
            pool_handle: pool.clone(),
            id: PeId(4),
        })
        .await;
        assert!(matches!(
            conn.recv().await,
            AsapMessage::EndpointKeepAliveAck { .. }
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...then none: the registrar dropped the element without a word. The element notices
    // and registers again on its own, long before its re-registration interval.
    let t0 = std::time::Instant::now();
    let m = conn.recv().await;
    assert!(
        matches!(m, AsapMessage::Registration { .. }),
        "expected a registration, got {m:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}
