//! The sidecar against a scripted fake registrar and a real local TCP service: service down ->
//! deregistered, back up -> registered again (same element), shutdown -> deregistered.

#[path = "client_fake/mod.rs"]
mod client_fake;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use client_fake::{FakeConn, FakeRegistrar};
use rsplb_registrar::client::{ClientConfig, PoolElementConfig};
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::sidecar::health::HealthCheck;
use rsplb_registrar::sidecar::{self, SidecarConfig};
use rsplb_registrar::types::{PeId, TransportAddress, TransportUse};
use tokio::net::TcpListener;

async fn expect_deregistration(conn: &mut FakeConn) -> PeId {
    match conn.recv().await {
        AsapMessage::Deregistration { pool_handle, id } => {
            conn.send(&AsapMessage::DeregistrationResponse {
                pool_handle,
                id,
                error: None,
            })
            .await;
            id
        }
        other => panic!("expected a deregistration, got {other:?}"),
    }
}

fn registered_id(msg: &AsapMessage) -> PeId {
    match msg {
        AsapMessage::Registration { element, .. } => element.id,
        other => panic!("expected a registration, got {other:?}"),
    }
}

#[tokio::test]
async fn follows_the_service_down_and_up_and_deregisters_on_shutdown() {
    let mut fake = FakeRegistrar::start().await;
    let service = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_addr = service.local_addr().unwrap();

    let transport = TcpAddr(service_addr.port()).into();
    let mut element = PoolElementConfig::new("side".parse().unwrap(), transport);
    element.registration_life = Duration::from_secs(30);
    let mut config = SidecarConfig::new(ClientConfig::with_registrars([fake.addr]), element);
    config.check = Some(HealthCheck::Tcp {
        target: service_addr,
    });
    config.interval = Duration::from_millis(50);
    config.timeout = Duration::from_millis(500);
    config.rise = 2;
    config.fall = 2;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sidecar = tokio::spawn(sidecar::run(config, async {
        let _ = stopped.await;
    }));

    // Up: registered.
    let mut conn = fake.accept().await;
    let first_id = registered_id(&conn.accept_registration().await);

    // Down: deregistered.
    drop(service);
    assert_eq!(expect_deregistration(&mut conn).await, first_id);

    // Back up: registered again, as the same element.
    let service = TcpListener::bind(service_addr).await.unwrap();
    let mut conn = fake.accept().await;
    assert_eq!(registered_id(&conn.accept_registration().await), first_id);

    // Shutdown: deregistered, and the sidecar ends cleanly.
    stop.send(()).unwrap();
    assert_eq!(expect_deregistration(&mut conn).await, first_id);
    tokio::time::timeout(client_fake::WAIT, sidecar)
        .await
        .expect("sidecar ends")
        .unwrap()
        .unwrap();
    drop(service);
}

#[tokio::test]
async fn a_service_down_at_start_is_not_registered_until_it_comes_up() {
    let mut fake = FakeRegistrar::start().await;
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_addr = probe.local_addr().unwrap();
    drop(probe);
    let element =
        PoolElementConfig::new("late".parse().unwrap(), TcpAddr(service_addr.port()).into());
    let mut config = SidecarConfig::new(ClientConfig::with_registrars([fake.addr]), element);
    config.check = Some(HealthCheck::Tcp {
        target: service_addr,
    });
    config.interval = Duration::from_millis(50);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sidecar = tokio::spawn(sidecar::run(config, async {
        let _ = stopped.await;
    }));
    // Several probe rounds fail: nothing registers meanwhile.
    assert!(
        fake.accept_within(Duration::from_millis(400))
            .await
            .is_none()
    );
    let _service = TcpListener::bind(service_addr).await.unwrap();
    let mut conn = fake.accept().await;
    conn.accept_registration().await;
    stop.send(()).unwrap();
    expect_deregistration(&mut conn).await;
    sidecar.await.unwrap().unwrap();
}

/// A TCP user transport on 127.0.0.1.
struct TcpAddr(u16);

impl From<TcpAddr> for TransportAddress {
    fn from(a: TcpAddr) -> Self {
        TransportAddress::Tcp {
            port: a.0,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}
