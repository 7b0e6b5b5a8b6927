//! The registrar shell over real loopback sockets: ASAP over TCP, announces over UDP, the admin
//! endpoint, handlespace events. Every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use rsplb_registrar::config::RegistrarConfig;
use rsplb_registrar::core::{HandlespaceEvent, RemovalReason};
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::shell::{HandlespaceSnapshot, Registrar, RegistrarControl};
use rsplb_registrar::types::{
    CauseCode, PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress, TransportUse,
};
use rsplb_registrar::wire::{decode_asap, encode_asap, frame_length};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

struct Running {
    asap: SocketAddr,
    admin: SocketAddr,
    control: RegistrarControl,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

async fn start(config: RegistrarConfig) -> Running {
    start_on(config, "127.0.0.1:0".parse().unwrap()).await
}

async fn start_on(mut config: RegistrarConfig, asap: SocketAddr) -> Running {
    config.registrar_id = Some(77);
    config.asap_listen = vec![asap];
    config.admin = Some("127.0.0.1:0".parse().unwrap());
    let r = Registrar::bind(config).await.unwrap();
    let asap = r.asap_addrs()[0];
    let admin = r.admin_addr().unwrap();
    let control = r.control();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(r.run(async move {
        let _ = stopped.await;
    }));
    Running {
        asap,
        admin,
        control,
        stop: Some(stop),
        task,
    }
}

fn quiet() -> RegistrarConfig {
    let mut c = RegistrarConfig::default();
    c.announce.enabled = false;
    c
}

struct Peer {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, m: &AsapMessage) {
        self.s.write_all(&encode_asap(m).unwrap()).await.unwrap();
    }

    /// The next message, or None at EOF.
    async fn recv(&mut self) -> Option<AsapMessage> {
        loop {
            if let Some(len) = frame_length(&self.buf, 65535).unwrap()
                && self.buf.len() >= len
            {
                let m = decode_asap(&self.buf[..len]).unwrap().message;
                self.buf.drain(..len);
                return Some(m);
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(WAIT, self.s.read(&mut chunk))
                .await
                .expect("no answer within 5 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message that is not a keep-alive (keep-alives are answered when `ack`).
    async fn recv_answer(&mut self, ack: bool) -> Option<AsapMessage> {
        loop {
            match self.recv().await? {
                AsapMessage::EndpointKeepAlive {
                    pool_handle, id, ..
                } => {
                    if ack {
                        self.send(&AsapMessage::EndpointKeepAliveAck { pool_handle, id })
                            .await;
                    }
                }
                m => return Some(m),
            }
        }
    }

    async fn register(&mut self, pool: &str, id: u32) -> AsapMessage {
        self.send(&AsapMessage::Registration {
            pool_handle: ph(pool),
            element: pe(id),
        })
        .await;
        self.recv_answer(true).await.unwrap()
    }

    async fn resolve(&mut self, pool: &str) -> AsapMessage {
        self.send(&AsapMessage::HandleResolution {
            pool_handle: ph(pool),
            items: None,
        })
        .await;
        self.recv_answer(false).await.unwrap()
    }
}

fn ph(s: &str) -> PoolHandle {
    s.parse().unwrap()
}

fn pe(id: u32) -> PoolElement {
    pe_at(id, "127.0.0.1")
}

fn pe_at(id: u32, addr: &str) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(0),
        registration_life_ms: 60_000,
        user_transport: TransportAddress::Tcp {
            port: 8080,
            transport_use: TransportUse::DataOnly,
            addr: addr.parse().unwrap(),
        },
        policy: Policy::RoundRobin,
        asap_transport: None,
    }
}

fn resolved_ids(m: &AsapMessage) -> Vec<u32> {
    match m {
        AsapMessage::HandleResolutionResponse { elements, .. } => {
            elements.iter().map(|e| e.id.0).collect()
        }
        other => panic!("{other:?}"),
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<rsplb_registrar::shell::Notification>,
) -> HandlespaceEvent {
    timeout(WAIT, rx.recv()).await.unwrap().unwrap().event
}

#[tokio::test]
async fn register_resolve_and_read_the_admin_endpoint() {
    let r = start(quiet()).await;
    let mut events = r.control.subscribe();
    let mut pe1 = Peer::connect(r.asap).await;
    let m = pe1.register("web", 11).await;
    assert!(
        matches!(m, AsapMessage::RegistrationResponse { reject: false, id, .. } if id == PeId(11))
    );
    assert!(matches!(
        next_event(&mut events).await,
        HandlespaceEvent::ElementAdded { element, .. } if element.id == PeId(11)
    ));
    let mut pu = Peer::connect(r.asap).await;
    assert_eq!(resolved_ids(&pu.resolve("web").await), vec![11]);
    match pu.resolve("nope").await {
        AsapMessage::HandleResolutionResponse { error: Some(c), .. } => {
            assert_eq!(c[0].code, CauseCode::UnknownPoolHandle)
        }
        other => panic!("{other:?}"),
    }

    let (status, body) = http_get(r.admin, "/handlespace").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let snap: HandlespaceSnapshot = serde_json::from_str(&body).unwrap();
    assert_eq!(snap.registrar_id, 77);
    assert_eq!(snap.element_count, 1);
    let pool = &snap.pools[0];
    assert_eq!(pool.handle, "web");
    assert_eq!(pool.policy, "round_robin");
    let e = &pool.elements[0];
    assert_eq!(e.id, 11);
    assert_eq!(e.address, "127.0.0.1:8080");
    assert_eq!(e.protocol, "tcp");
    assert_eq!(e.home_registrar, 77);
    assert_eq!(e.registration_life_ms, 60_000);
    // Same thing through the embedding API.
    assert_eq!(r.control.snapshot().await.unwrap().element_count, 1);

    let (status, body) = http_get(r.admin, "/stats").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["registrations"], 1);
    assert_eq!(stats["peers"], 2);
    let (status, _) = http_get(r.admin, "/other").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[tokio::test]
async fn keepalives_keep_an_element_and_silence_removes_it() {
    let r = start(quiet()).await;
    let mut events = r.control.subscribe();
    let mut pe1 = Peer::connect(r.asap).await;
    pe1.register("web", 5).await;
    next_event(&mut events).await;
    // Answer keep-alives for about a second.
    let mut acked = 0;
    while acked < 4 {
        match pe1.recv().await.unwrap() {
            AsapMessage::EndpointKeepAlive {
                server_id,
                pool_handle,
                id,
                ..
            } => {
                assert_eq!(server_id, RegistrarId(77));
                pe1.send(&AsapMessage::EndpointKeepAliveAck { pool_handle, id })
                    .await;
                acked += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(r.control.snapshot().await.unwrap().element_count, 1);
    // Stop answering but keep the connection: the element goes, and its connection is closed
    // (it had no other element), so the element learns of it at once.
    assert_eq!(
        next_event(&mut events).await,
        HandlespaceEvent::ElementRemoved {
            pool: ph("web"),
            id: PeId(5),
            reason: RemovalReason::KeepAliveTimeout
        }
    );
    let mut pu = Peer::connect(r.asap).await;
    assert!(matches!(
        pu.resolve("web").await,
        AsapMessage::HandleResolutionResponse { error: Some(_), .. }
    ));
    // What was queued (the unanswered keep-alive) arrives, then the end of the stream.
    let mut seen = 0;
    while let Some(m) = pe1.recv().await {
        assert!(matches!(m, AsapMessage::EndpointKeepAlive { .. }), "{m:?}");
        seen += 1;
        assert!(seen < 10, "the connection was not closed");
    }
    // A new connection registers again.
    let mut pe1 = Peer::connect(r.asap).await;
    let m = pe1.register("web", 5).await;
    assert!(matches!(
        m,
        AsapMessage::RegistrationResponse { reject: false, .. }
    ));
}

#[tokio::test]
async fn connection_loss_removes_the_elements() {
    let r = start(quiet()).await;
    let mut events = r.control.subscribe();
    let mut pe1 = Peer::connect(r.asap).await;
    pe1.register("web", 1).await;
    pe1.register("web", 2).await;
    next_event(&mut events).await;
    next_event(&mut events).await;
    drop(pe1);
    for _ in 0..2 {
        assert!(matches!(
            next_event(&mut events).await,
            HandlespaceEvent::ElementRemoved {
                reason: RemovalReason::ConnectionLost,
                ..
            }
        ));
    }
    assert_eq!(r.control.snapshot().await.unwrap().element_count, 0);
}

#[tokio::test]
async fn a_garbage_peer_is_disconnected_while_another_is_served() {
    let r = start(quiet()).await;
    let mut good = Peer::connect(r.asap).await;
    good.register("web", 1).await;
    let mut bad = Peer::connect(r.asap).await;
    let mut errors = 0;
    // Well-framed garbage (unknown message type): ERRORs until the registrar hangs up.
    for _ in 0..100 {
        if bad.s.write_all(&[0x77, 0, 0, 8, 1, 2, 3, 4]).await.is_err() {
            break;
        }
        match bad.recv().await {
            Some(AsapMessage::Error { causes }) => {
                assert_eq!(causes[0].code, CauseCode::UnrecognizedMessage);
                errors += 1;
            }
            Some(other) => panic!("{other:?}"),
            None => break,
        }
        assert_eq!(resolved_ids(&good.resolve("web").await), vec![1]);
    }
    assert_eq!(
        errors, 10,
        "max_errors ERRORs, then the connection is closed"
    );
    assert_eq!(bad.recv().await, None);
    assert_eq!(resolved_ids(&good.resolve("web").await), vec![1]);

    // A stream that cannot be delimited (Length 2): one ERROR, then closed.
    let mut bad2 = Peer::connect(r.asap).await;
    bad2.s.write_all(&[0x05, 0, 0, 2]).await.unwrap();
    assert!(matches!(bad2.recv().await, Some(AsapMessage::Error { .. })));
    assert_eq!(bad2.recv().await, None);
    assert_eq!(resolved_ids(&good.resolve("web").await), vec![1]);
}

#[tokio::test]
async fn announces_reach_static_targets() {
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = RegistrarConfig::default();
    c.announce.multicast_group = None;
    c.announce.targets = vec![sink.local_addr().unwrap()];
    c.announce.interval_ms = 100;
    let r = start(c).await;
    for _ in 0..3 {
        let mut buf = [0u8; 1500];
        let (n, _) = timeout(WAIT, sink.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = decode_asap(&buf[..n]).unwrap().message;
        assert_eq!(
            m,
            AsapMessage::ServerAnnounce {
                server_id: RegistrarId(77),
                transports: vec![TransportAddress::Tcp {
                    port: r.asap.port(),
                    transport_use: TransportUse::DataOnly,
                    addr: "127.0.0.1".parse().unwrap(),
                }]
            }
        );
    }
}

#[tokio::test]
async fn ipv6_peers_register_their_own_addresses() {
    // A missing IPv6 loopback fails the test with the reason: it does not pass by skipping.
    let probe = tokio::net::TcpListener::bind("[::1]:0")
        .await
        .expect("this test needs an IPv6 loopback ([::1]); enable IPv6 on lo");
    drop(probe);
    let r = start_on(quiet(), "[::1]:0".parse().unwrap()).await;
    let mut pe1 = Peer::connect(r.asap).await;
    pe1.send(&AsapMessage::Registration {
        pool_handle: ph("v6"),
        element: pe_at(3, "::1"),
    })
    .await;
    assert!(matches!(
        pe1.recv_answer(true).await.unwrap(),
        AsapMessage::RegistrationResponse { reject: false, .. }
    ));
    // Another host's address is refused (Rejected Security).
    pe1.send(&AsapMessage::Registration {
        pool_handle: ph("v6"),
        element: pe_at(4, "fd00::4"),
    })
    .await;
    match pe1.recv_answer(true).await.unwrap() {
        AsapMessage::RegistrationResponse {
            reject: true,
            error: Some(c),
            ..
        } => assert_eq!(c[0].code, CauseCode::RejectedSecurity),
        other => panic!("{other:?}"),
    }
    let mut pu = Peer::connect(r.asap).await;
    match pu.resolve("v6").await {
        AsapMessage::HandleResolutionResponse { elements, .. } => {
            assert_eq!(elements.len(), 1);
            assert_eq!(
                elements[0].user_transport.addrs(),
                &["::1".parse::<std::net::IpAddr>().unwrap()]
            );
        }
        other => panic!("{other:?}"),
    }
}
