//! Health checks against real local services: a TCP listener closed to simulate failure, a UDP
//! responder, a small HTTP responder, and shell commands.

use std::net::SocketAddr;
use std::time::Duration;

use rsplb_registrar::sidecar::health::{Health, HealthCheck, HealthTracker, HttpTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn tcp_check_needs_a_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = HealthCheck::Tcp {
        target: listener.local_addr().unwrap(),
    };
    up.probe(TIMEOUT).await.expect("listener is up");
    // A port held by a socket that does not listen: connecting is refused. (Not the listener's
    // port after closing it: that port can be taken meanwhile by another test, or by the
    // probe's own ephemeral source port, since a TCP connection to a free local port can
    // connect to itself; and it cannot always be bound again at once.)
    let holder = tokio::net::TcpSocket::new_v4().unwrap();
    holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let down = HealthCheck::Tcp {
        target: holder.local_addr().unwrap(),
    };
    let err = down.probe(TIMEOUT).await.expect_err("nothing listens");
    assert!(err.to_string().contains("refused"), "{err}");
}

/// Answers each datagram with `reply`, `count` times.
async fn udp_responder(reply: &'static [u8], count: usize) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        for _ in 0..count {
            let Ok((_, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let _ = socket.send_to(reply, from).await;
        }
    });
    addr
}

#[tokio::test]
async fn udp_check_needs_the_expected_reply() {
    let target = udp_responder(b"PONG ok", 3).await;
    let good = HealthCheck::Udp {
        target,
        payload: b"PING".to_vec(),
        expect: Some(b"PONG".to_vec()),
    };
    good.probe(TIMEOUT).await.expect("expected reply");
    let any = HealthCheck::Udp {
        target,
        payload: b"PING".to_vec(),
        expect: None,
    };
    any.probe(TIMEOUT).await.expect("any reply");
    let wrong = HealthCheck::Udp {
        target,
        payload: b"PING".to_vec(),
        expect: Some(b"HELLO".to_vec()),
    };
    assert!(wrong.probe(TIMEOUT).await.is_err());
}

#[tokio::test]
async fn udp_check_fails_on_a_closed_port_and_on_silence() {
    // A closed port: ICMP port unreachable comes back as "connection refused".
    let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = closed.local_addr().unwrap();
    drop(closed);
    let check = HealthCheck::Udp {
        target,
        payload: b"x".to_vec(),
        expect: None,
    };
    assert!(check.probe(TIMEOUT).await.is_err());
    // A socket that never answers: the timeout decides.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let check = HealthCheck::Udp {
        target: silent.local_addr().unwrap(),
        payload: b"x".to_vec(),
        expect: None,
    };
    let err = check.probe(Duration::from_millis(200)).await.unwrap_err();
    assert!(err.to_string().contains("no answer"), "{err}");
}

/// Serves every connection with the given status line, `count` times.
async fn http_responder(status: &'static str, count: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..count {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let body = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok");
            let _ = s.write_all(body.as_bytes()).await;
        }
    });
    addr
}

#[tokio::test]
async fn http_check_accepts_2xx_and_3xx_only() {
    for (status, up) in [
        ("200 OK", true),
        ("204 No Content", true),
        ("302 Found", true),
        ("404 Not Found", false),
        ("503 Service Unavailable", false),
    ] {
        let addr = http_responder(status, 1).await;
        let target: HttpTarget = format!("http://{addr}/healthz").parse().unwrap();
        assert_eq!(target.path, "/healthz");
        let result = HealthCheck::Http(target).probe(TIMEOUT).await;
        assert_eq!(result.is_ok(), up, "{status}: {result:?}");
    }
}

#[tokio::test]
async fn http_check_rejects_garbage_and_closed_ports() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n").await;
        }
    });
    let check = HealthCheck::Http(addr.to_string().parse().unwrap());
    let err = check.probe(TIMEOUT).await.unwrap_err();
    assert!(err.to_string().contains("not an HTTP response"), "{err}");
    // Nothing listens there any more.
    assert!(check.probe(TIMEOUT).await.is_err());
}

#[test]
fn http_targets_parse_or_explain() {
    let t: HttpTarget = "127.0.0.1:8080".parse().unwrap();
    assert_eq!((t.addr.port(), t.path.as_str()), (8080, "/"));
    let t: HttpTarget = "http://[::1]:81/a/b?c".parse().unwrap();
    assert_eq!((t.addr.port(), t.path.as_str()), (81, "/a/b?c"));
    assert!(
        "https://127.0.0.1:443/"
            .parse::<HttpTarget>()
            .unwrap_err()
            .to_string()
            .contains("TLS")
    );
    assert!("localhost:80".parse::<HttpTarget>().is_err());
}

#[tokio::test]
async fn exec_check_uses_the_exit_status() {
    let ok = HealthCheck::Exec {
        command: "exit 0".into(),
    };
    ok.probe(TIMEOUT).await.unwrap();
    let bad = HealthCheck::Exec {
        command: "exit 1".into(),
    };
    let err = bad.probe(TIMEOUT).await.unwrap_err();
    assert!(err.to_string().contains("exit"), "{err}");
    let slow = HealthCheck::Exec {
        command: "sleep 5".into(),
    };
    let err = slow.probe(Duration::from_millis(200)).await.unwrap_err();
    assert!(err.to_string().contains("no answer"), "{err}");
}

#[test]
fn tracker_needs_rise_successes_and_fall_failures() {
    let mut t = HealthTracker::new(2, 3);
    assert_eq!(t.state(), None);
    assert_eq!(t.observe(true), None);
    assert_eq!(t.observe(true), Some(Health::Up));
    // Two failures, then a success: the streak restarts.
    assert_eq!(t.observe(false), None);
    assert_eq!(t.observe(false), None);
    assert_eq!(t.observe(true), None);
    assert_eq!(t.observe(false), None);
    assert_eq!(t.observe(false), None);
    assert_eq!(t.observe(false), Some(Health::Down));
    assert_eq!(t.observe(false), None);
    assert_eq!(t.observe(true), None);
    assert_eq!(t.observe(false), None);
    assert_eq!(t.observe(true), None);
    assert_eq!(t.observe(true), Some(Health::Up));
    assert_eq!(t.state(), Some(Health::Up));
}

#[test]
fn tracker_reports_a_down_service_at_once_at_start() {
    let mut t = HealthTracker::new(3, 3);
    assert_eq!(t.observe(false), Some(Health::Down));
    let mut t = HealthTracker::new(0, 0);
    assert_eq!(t.observe(true), Some(Health::Up));
    assert_eq!(t.observe(false), Some(Health::Down));
}
