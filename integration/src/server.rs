//! The lab's real servers (`rsplb-testserver`): tokio TCP and UDP servers that answer every
//! request with their own name and count what they saw, plus the harness side that starts one in a
//! namespace and asks it for its counts.
//!
//! Protocol: TCP, every line received is answered with `<name>\n` on the same connection; UDP,
//! every datagram is answered with `<name>` from the address it was sent to (sockets are bound to
//! explicit addresses, so a DSR reply leaves from the VIP); HTTP (`--http PORT`, hyper), `GET
//! /status/NNN` is answered with status NNN, any other path with 200 and `<name> ok`. Control:
//! a TCP connection to `127.0.0.1:<control>` receives the counts as one JSON object.

use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::netns::{ChildGuard, Netns};

/// Control port of every test server (on its namespace's loopback).
pub const CONTROL_PORT: u16 = 7999;

/// What a server saw on one port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// TCP connections accepted.
    pub tcp_connections: u64,
    /// TCP request lines answered.
    pub tcp_requests: u64,
    /// UDP datagrams answered.
    pub udp_datagrams: u64,
    /// Distinct UDP peers (address, port): the UDP flows.
    pub udp_flows: u64,
}

/// Counts of one server, per local port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStats {
    pub name: String,
    pub ports: BTreeMap<u16, PortStats>,
}

impl ServerStats {
    pub fn port(&self, port: u16) -> PortStats {
        self.ports.get(&port).cloned().unwrap_or_default()
    }
}

#[derive(Default)]
struct Shared {
    stats: ServerStats,
    udp_peers: BTreeMap<u16, HashSet<SocketAddr>>,
}

/// Configuration of `rsplb-testserver`.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    pub name: String,
    /// TCP ports, bound on `[::]` (IPv4 and IPv6).
    pub tcp_ports: Vec<u16>,
    /// UDP sockets, bound to these exact addresses.
    pub udp: Vec<SocketAddr>,
    /// HTTP ports, bound on `[::]`.
    pub http_ports: Vec<u16>,
    pub control_port: u16,
}

impl ServerConfig {
    /// Parses `--name N --tcp PORT... --udp ADDR:PORT... [--control PORT]`.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut cfg = Self {
            control_port: CONTROL_PORT,
            ..Self::default()
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--name" => cfg.name = value()?,
                "--tcp" => cfg.tcp_ports.push(value()?.parse().context("--tcp PORT")?),
                "--udp" => cfg.udp.push(value()?.parse().context("--udp ADDR:PORT")?),
                "--http" => cfg
                    .http_ports
                    .push(value()?.parse().context("--http PORT")?),
                "--control" => cfg.control_port = value()?.parse().context("--control PORT")?,
                "-h" | "--help" => bail!(
                    "usage: rsplb-testserver --name NAME [--tcp PORT]... [--udp ADDR:PORT]... \
                     [--http PORT]... [--control PORT]"
                ),
                other => bail!("unknown argument {other:?}"),
            }
        }
        if cfg.name.is_empty() {
            bail!("--name is required");
        }
        Ok(cfg)
    }

    /// The command line that [`ServerConfig::from_args`] parses back.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec!["--name".to_string(), self.name.clone()];
        for p in &self.tcp_ports {
            v.extend(["--tcp".to_string(), p.to_string()]);
        }
        for a in &self.udp {
            v.extend(["--udp".to_string(), a.to_string()]);
        }
        for p in &self.http_ports {
            v.extend(["--http".to_string(), p.to_string()]);
        }
        v.extend(["--control".to_string(), self.control_port.to_string()]);
        v
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Runs the servers until SIGTERM/SIGINT, then prints the counts as JSON on stdout.
pub async fn serve(cfg: ServerConfig) -> Result<()> {
    use tokio::{
        io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
        net::{TcpListener, UdpSocket},
    };

    let shared = Arc::new(Mutex::new(Shared {
        stats: ServerStats {
            name: cfg.name.clone(),
            ports: BTreeMap::new(),
        },
        ..Shared::default()
    }));
    let reply_line = Arc::new(format!("{}\n", cfg.name));

    for &port in &cfg.tcp_ports {
        let listener = TcpListener::bind((IpAddr::from([0u16; 8]), port))
            .await
            .with_context(|| format!("binding TCP [::]:{port}"))?;
        let shared = shared.clone();
        let reply = reply_line.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _peer)) = listener.accept().await else {
                    continue;
                };
                shared
                    .lock()
                    .map(|mut s| s.stats.ports.entry(port).or_default().tcp_connections += 1)
                    .ok();
                let shared = shared.clone();
                let reply = reply.clone();
                tokio::spawn(async move {
                    let (rd, mut wr) = stream.into_split();
                    let mut lines = BufReader::new(rd).lines();
                    while let Ok(Some(_line)) = lines.next_line().await {
                        shared
                            .lock()
                            .map(|mut s| s.stats.ports.entry(port).or_default().tcp_requests += 1)
                            .ok();
                        if wr.write_all(reply.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    for &addr in &cfg.udp {
        let sock = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding UDP {addr}"))?;
        let shared = shared.clone();
        let name = cfg.name.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((_, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                if let Ok(mut s) = shared.lock() {
                    let port = addr.port();
                    let new = s.udp_peers.entry(port).or_default().insert(canonical(peer));
                    let entry = s.stats.ports.entry(port).or_default();
                    entry.udp_datagrams += 1;
                    if new {
                        entry.udp_flows += 1;
                    }
                }
                let _ = sock.send_to(name.as_bytes(), peer).await;
            }
        });
    }

    for &port in &cfg.http_ports {
        let listener = TcpListener::bind((IpAddr::from([0u16; 8]), port))
            .await
            .with_context(|| format!("binding HTTP [::]:{port}"))?;
        let name = Arc::new(cfg.name.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let name = name.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let name = name.clone();
                        async move { Ok::<_, std::convert::Infallible>(http_answer(&name, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }

    let control = TcpListener::bind(("127.0.0.1", cfg.control_port))
        .await
        .with_context(|| format!("binding control 127.0.0.1:{}", cfg.control_port))?;
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = control.accept().await else {
                    continue;
                };
                let json = shared
                    .lock()
                    .ok()
                    .and_then(|s| serde_json::to_string(&s.stats).ok())
                    .unwrap_or_default();
                let _ = stream.write_all(json.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    if let Ok(s) = shared.lock() {
        println!("{}", serde_json::to_string(&s.stats).unwrap_or_default());
    }
    Ok(())
}

/// `GET /status/NNN`: status NNN; anything else: 200 and `<name> ok`.
fn http_answer<B>(
    name: &str,
    req: &hyper::Request<B>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let status = req
        .uri()
        .path()
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| hyper::StatusCode::from_u16(s).ok())
        .unwrap_or(hyper::StatusCode::OK);
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(format!(
        "{name} ok\n"
    ))));
    *resp.status_mut() = status;
    resp
}

/// A test server running in a namespace (killed on drop).
#[derive(Debug)]
pub struct ServerHandle {
    pub name: String,
    pub netns: String,
    control_port: u16,
    _child: ChildGuard,
}

impl ServerHandle {
    /// Starts `rsplb-testserver` (the binary at `bin`) in `ns` and waits (bounded) until its
    /// control port answers.
    pub fn start(ns: &Netns, bin: &str, cfg: &ServerConfig) -> Result<Self> {
        let args = cfg.to_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = ns.spawn(bin, &args)?;
        let handle_ns = ns.name().to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            child.check_running()?;
            let port = cfg.control_port;
            let ready = crate::netns::in_netns(&handle_ns, move || {
                Ok(std::net::TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                )
                .is_ok())
            })?;
            if ready {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("test server {} did not start within 10 s", cfg.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            name: cfg.name.clone(),
            netns: handle_ns,
            control_port: cfg.control_port,
            _child: child,
        })
    }

    /// The server's counts so far.
    pub fn stats(&self) -> Result<ServerStats> {
        let port = self.control_port;
        let name = self.name.clone();
        crate::netns::in_netns(&self.netns, move || {
            use std::io::Read as _;
            let mut s = std::net::TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(2),
            )
            .with_context(|| format!("connecting to the control port of {name}"))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut buf = String::new();
            s.read_to_string(&mut buf)?;
            serde_json::from_str(&buf).with_context(|| format!("stats of {name}: {buf:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_its_command_line() {
        let cfg = ServerConfig {
            name: "s1".into(),
            tcp_ports: vec![80, 8080],
            udp: vec![
                "198.18.1.11:53".parse().unwrap(),
                "[fd00::1]:53".parse().unwrap(),
            ],
            http_ports: vec![8081],
            control_port: 7000,
        };
        let back = ServerConfig::from_args(cfg.to_args()).unwrap();
        assert_eq!(back.name, "s1");
        assert_eq!(back.tcp_ports, cfg.tcp_ports);
        assert_eq!(back.udp, cfg.udp);
        assert_eq!(back.http_ports, cfg.http_ports);
        assert_eq!(back.control_port, 7000);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(ServerConfig::from_args(["--tcp".to_string()]).is_err());
        assert!(
            ServerConfig::from_args(["--name".into(), "x".into(), "--tcp".into(), "no".into()])
                .is_err()
        );
        assert!(ServerConfig::from_args(Vec::<String>::new()).is_err());
    }
}
