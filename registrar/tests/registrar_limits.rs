//! What one peer may hold of a running registrar, over real loopback sockets: a peer that never
//! reads, a message left incomplete, an idle connection, an admin reader that never reads, and
//! the admin endpoint on a Unix socket. Every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsplb_registrar::config::{Bucket, RegistrarConfig};
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::shell::{Registrar, RegistrarControl};
use rsplb_registrar::types::{
    PeId, Policy, PoolElement, RegistrarId, TransportAddress, TransportUse,
};
use rsplb_registrar::wire::encode_asap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Bound of every wait (generous: the machine is shared).
const WAIT: Duration = Duration::from_secs(20);

struct Running {
    asap: SocketAddr,
    admin: Option<SocketAddr>,
    control: RegistrarControl,
    _stop: oneshot::Sender<()>,
}

async fn start(mut config: RegistrarConfig) -> Running {
    config.registrar_id = Some(9);
    config.asap_listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.announce.enabled = false;
    if config.admin_unix.is_none() {
        config.admin = Some("127.0.0.1:0".parse().unwrap());
    }
    let r = Registrar::bind(config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = Running {
        asap: r.asap_addrs()[0],
        admin: r.admin_addr(),
        control: r.control(),
        _stop: stop,
    };
    tokio::spawn(r.run(async move {
        let _ = stopped.await;
    }));
    running
}

/// Wait until the registrar has `n` peers.
async fn until_peers(c: &RegistrarControl, n: usize) {
    let t0 = Instant::now();
    loop {
        let peers = c.stats().await.unwrap().peers;
        if peers == n {
            return;
        }
        assert!(t0.elapsed() < WAIT, "{peers} peers, waiting for {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Read until EOF or reset; the bytes read. Bounded.
async fn read_to_end(s: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return total,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the registrar did not close the connection"),
        }
    }
}

#[tokio::test]
async fn a_peer_that_never_reads_its_replies_is_dropped() {
    let mut c = RegistrarConfig::default();
    c.connections.write_timeout_ms = 300;
    c.rate_limits.handle_resolution = Bucket {
        rate_per_s: 0,
        burst: 0,
    };
    let r = start(c).await;
    // A small receive buffer, so that the registrar's answers back up quickly.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(r.asap).await.unwrap();
    until_peers(&r.control, 1).await;
    let hr = encode_asap(&AsapMessage::HandleResolution {
        pool_handle: "web".parse().unwrap(),
        items: None,
    })
    .unwrap();
    let burst: Vec<u8> = hr.iter().copied().cycle().take(hr.len() * 1000).collect();
    // Pipeline resolutions and never read: the answers fill both socket buffers.
    let t0 = Instant::now();
    let mut sent = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(200), s.write_all(&burst)).await {
            Ok(Ok(())) => sent += burst.len(),
            Ok(Err(_)) => break, // reset by the registrar
            Err(_) => break,     // the registrar stopped reading: it is blocked writing
        }
        assert!(t0.elapsed() < WAIT && sent < 1 << 30, "never blocked");
    }
    // Within the write timeout (and a margin), the registrar lets go of the connection.
    until_peers(&r.control, 0).await;
    // The registrar still serves others.
    let mut other = TcpStream::connect(r.asap).await.unwrap();
    other.write_all(&hr).await.unwrap();
    let mut head = [0u8; 4];
    tokio::time::timeout(WAIT, other.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_incomplete_message_and_an_idle_connection_are_closed() {
    let mut c = RegistrarConfig::default();
    c.connections.partial_message_timeout_ms = 300;
    c.connections.idle_timeout_ms = 1_000;
    let r = start(c).await;
    // The header of a 60,000-byte message and 96 bytes of it, then nothing.
    let mut partial = TcpStream::connect(r.asap).await.unwrap();
    let mut m = vec![0x05, 0x00];
    m.extend(60_000u16.to_be_bytes());
    m.extend([0u8; 96]);
    partial.write_all(&m).await.unwrap();
    let t0 = Instant::now();
    read_to_end(&mut partial).await;
    let partial_closed = t0.elapsed();
    // A connection that sends nothing at all.
    let mut idle = TcpStream::connect(r.asap).await.unwrap();
    let t0 = Instant::now();
    read_to_end(&mut idle).await;
    let idle_closed = t0.elapsed();
    assert!(
        partial_closed >= Duration::from_millis(300),
        "{partial_closed:?}"
    );
    assert!(
        idle_closed >= Duration::from_millis(1_000),
        "{idle_closed:?}"
    );
    until_peers(&r.control, 0).await;
}

#[tokio::test]
async fn the_admin_endpoint_drops_a_reader_that_never_reads() {
    let mut c = RegistrarConfig::default();
    c.connections.admin_timeout_ms = 500;
    c.timers.keepalive_interval_ms = 100_000; // keep-alives are not the point here
    c.rate_limits.registration = Bucket {
        rate_per_s: 0,
        burst: 0,
    };
    let r = start(c).await;
    // 12,000 elements: a /handlespace answer of several megabytes, more than the socket
    // buffers hold.
    let mut conns = Vec::new();
    for k in 0..12u32 {
        let mut s = TcpStream::connect(r.asap).await.unwrap();
        let mut batch = Vec::new();
        for i in 0..1000u32 {
            let element = PoolElement {
                id: PeId(k * 1000 + i + 1),
                home_registrar: RegistrarId(0),
                registration_life_ms: 600_000,
                user_transport: TransportAddress::Tcp {
                    port: 80,
                    transport_use: TransportUse::DataOnly,
                    addr: "127.0.0.1".parse().unwrap(),
                },
                policy: Policy::RoundRobin,
                asap_transport: None,
            };
            batch.extend(
                encode_asap(&AsapMessage::Registration {
                    pool_handle: "web".parse().unwrap(),
                    element,
                })
                .unwrap(),
            );
        }
        s.write_all(&batch).await.unwrap();
        conns.push(s);
    }
    let t0 = Instant::now();
    while r.control.stats().await.unwrap().elements < 12_000 {
        assert!(t0.elapsed() < WAIT, "registrations did not complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut reader = sock.connect(r.admin.unwrap()).await.unwrap();
    reader
        .write_all(b"GET /handlespace HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Do not read for well past the admin timeout...
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // ...then the answer is cut short: the registrar dropped the connection.
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(WAIT, reader.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the admin endpoint kept the connection open"),
        }
    }
    let head = String::from_utf8_lossy(&got[..got.len().min(400)]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(usize::MAX);
    let body = got.len() - head.find("\r\n\r\n").map_or(0, |i| i + 4);
    assert!(
        body < length,
        "the whole answer ({body} of {length} bytes) was delivered to a reader that did not read"
    );
    drop(conns);
}

#[tokio::test]
async fn the_admin_endpoint_serves_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("rsplb-admin-test-{}", std::process::id()));
    let path = dir.join("admin.sock");
    let c = RegistrarConfig {
        admin_unix: Some(path.clone()),
        ..RegistrarConfig::default()
    };
    let r = start(c).await;
    assert_eq!(
        r.admin, None,
        "no TCP admin endpoint when a Unix socket is set"
    );
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\"registrar_id\":9"), "{answer}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}
