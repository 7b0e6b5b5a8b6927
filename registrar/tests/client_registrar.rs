//! The client side against the real registrar (its tokio shell, in-process, on loopback ports):
//! register, keep-alives answered, load update, resolution, Endpoint Unreachable, deregister,
//! and registrar loss with re-registration at the other registrar.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rsplb_registrar::client::{
    CacheConfig, ClientConfig, ClientError, PeState, PoolElementConfig, PoolElementHandle, PoolUser,
};
use rsplb_registrar::config::RegistrarConfig;
use rsplb_registrar::shell::{Registrar, RegistrarControl};
use rsplb_registrar::types::{PeId, Policy, PoolHandle, TransportAddress, TransportUse};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    addr: SocketAddr,
    control: RegistrarControl,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start() -> Self {
        let mut config = RegistrarConfig {
            asap_listen: vec!["127.0.0.1:0".parse().unwrap()],
            admin: None,
            ..RegistrarConfig::default()
        };
        config.announce.enabled = false;
        let registrar = Registrar::bind(config).await.unwrap();
        let addr = registrar.asap_addrs()[0];
        let control = registrar.control();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(registrar.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            control,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(WAIT, &mut self.task).await;
    }

    /// The element's id, policy name and load as the registrar holds them, if it does.
    async fn element(&self, pool: &str, id: PeId) -> Option<(String, Option<u32>, u32)> {
        let snap = self.control.snapshot().await.unwrap();
        snap.pools
            .iter()
            .filter(|p| p.handle == pool)
            .flat_map(|p| p.elements.iter())
            .find(|e| e.id == id.0)
            .map(|e| (e.policy.name.clone(), e.policy.load, e.home_registrar))
    }
}

fn element(pool: &str, id: u32, policy: Policy) -> PoolElementConfig {
    let transport = TransportAddress::Tcp {
        port: 8080,
        transport_use: TransportUse::DataOnly,
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let mut pe = PoolElementConfig::new(pool.parse().unwrap(), transport);
    pe.id = Some(PeId(id));
    pe.policy = policy;
    pe
}

async fn wait_until<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn register_resolve_update_report_deregister() {
    let registrar = Running::start().await;
    let client = ClientConfig::with_registrars([registrar.addr]);
    let pe = PoolElementHandle::register(
        client.clone(),
        element("e2e", 0x42, Policy::LeastUsed { load: 0 }),
    )
    .await
    .expect("registered at the real registrar");
    let pool: PoolHandle = "e2e".parse().unwrap();

    // The registrar's keep-alives (every 250 ms, 250 ms to answer) name it as home; the element
    // survives many keep-alive rounds, so the acks arrive.
    let home = registrar.control.id();
    let mut states = pe.watch();
    tokio::time::timeout(
        WAIT,
        states.wait_for(|s| matches!(s, PeState::Registered { home: h, .. } if *h == home)),
    )
    .await
    .expect("home registrar learnt from keep-alives")
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = registrar
        .element("e2e", PeId(0x42))
        .await
        .expect("still registered");
    assert_eq!(held.2, home.0);

    // Load update: re-registration with the new value.
    pe.update_load(&Policy::LeastUsed { load: 0 }, u32::MAX / 4)
        .await
        .unwrap();
    let held = registrar.element("e2e", PeId(0x42)).await.unwrap();
    assert_eq!(held.1, Some(u32::MAX / 4));

    // Resolution.
    let pu = PoolUser::new(
        client.clone(),
        CacheConfig {
            stale_after: Duration::ZERO,
            items: None,
        },
    )
    .unwrap();
    let r = pu.resolve(&pool).await.unwrap();
    assert_eq!(r.elements.len(), 1);
    assert_eq!(r.elements[0].id, PeId(0x42));
    assert_eq!(
        r.elements[0].policy,
        Policy::LeastUsed { load: u32::MAX / 4 }
    );
    assert_eq!(r.registrar, registrar.addr);
    assert_eq!(pu.select(&pool).await.unwrap().id, PeId(0x42));

    // An unreachable report is accepted (one report is below the removal threshold).
    pu.report_unreachable(&pool, PeId(0x42)).await.unwrap();

    // Deregistration: the pool is gone.
    pe.deregister().await.unwrap();
    assert!(registrar.element("e2e", PeId(0x42)).await.is_none());
    let err = pu.resolve(&pool).await.unwrap_err();
    assert!(matches!(err, ClientError::UnknownPool(_)), "{err}");
    registrar.stop().await;
}

#[tokio::test]
async fn re_registers_at_another_registrar_when_its_registrar_stops() {
    let a = Running::start().await;
    let b = Running::start().await;
    let mut client = ClientConfig::with_registrars([a.addr, b.addr]);
    client.hunt_retry_delay = Duration::from_millis(50);
    let pe = PoolElementHandle::register(client, element("failover", 7, Policy::RoundRobin))
        .await
        .unwrap();
    let PeState::Registered {
        registrar: first, ..
    } = pe.state()
    else {
        panic!("{:?}", pe.state())
    };
    let (gone, other) = if first == a.addr { (a, b) } else { (b, a) };
    gone.stop().await;
    let moved = wait_until(|| async { other.element("failover", PeId(7)).await.is_some() }).await;
    assert!(
        moved,
        "the element re-registered at the surviving registrar"
    );
    let mut states = pe.watch();
    tokio::time::timeout(
        WAIT,
        states.wait_for(
            |s| matches!(s, PeState::Registered { registrar, .. } if *registrar == other.addr),
        ),
    )
    .await
    .expect("the element reports its new registrar")
    .unwrap();
    pe.deregister().await.unwrap();
    assert!(other.element("failover", PeId(7)).await.is_none());
    other.stop().await;
}
