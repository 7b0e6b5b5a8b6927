//! The lab's client: real TCP connections and UDP datagrams sent from inside a namespace, tallying
//! which server answered. Sockets are created on a thread that entered the client namespace, so a
//! long-lived [`TcpConn`] can be kept and used from any thread afterwards.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::netns::in_netns;

/// Timeout of one connect, request or datagram round trip.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// A burst gives up (counting the rest as failed) after this many failures in a row...
pub const MAX_FAILURES_IN_A_ROW: u32 = 5;
/// ...or after this long.
pub const BURST_DEADLINE: Duration = Duration::from_secs(120);

/// Which server answered how many requests, and how many got no answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub by_server: BTreeMap<String, u64>,
    pub failed: u64,
}

impl Tally {
    pub fn get(&self, server: &str) -> u64 {
        self.by_server.get(server).copied().unwrap_or(0)
    }

    pub fn answered(&self) -> u64 {
        self.by_server.values().sum()
    }

    /// Adds another tally's counts to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (k, v) in &other.by_server {
            *self.by_server.entry(k.clone()).or_default() += v;
        }
        self.failed += other.failed;
    }

    fn add(&mut self, answer: Option<String>) {
        match answer {
            Some(s) => *self.by_server.entry(s).or_default() += 1,
            None => self.failed += 1,
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, n)) in self.by_server.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{name}={n}")?;
        }
        if self.failed > 0 {
            write!(f, " failed={}", self.failed)?;
        }
        Ok(())
    }
}

/// A TCP connection to a VIP that stays open: each [`TcpConn::ask`] sends a line and returns the
/// name of the server that answered.
#[derive(Debug)]
pub struct TcpConn {
    reader: BufReader<TcpStream>,
    pub local: SocketAddr,
}

impl TcpConn {
    /// Opens a connection from namespace `ns` to `vip`.
    pub fn open(ns: &str, vip: SocketAddr) -> Result<Self> {
        in_netns(ns, move || Self::open_here(vip))
    }

    /// Opens a connection from address `local` (one of namespace `ns`'s) to `vip`.
    pub fn open_from(ns: &str, local: IpAddr, vip: SocketAddr) -> Result<Self> {
        in_netns(ns, move || Self::open_from_here(local, vip))
    }

    fn open_here(vip: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&vip, IO_TIMEOUT)
            .with_context(|| format!("connecting to {vip}"))?;
        Self::ready(stream)
    }

    fn open_from_here(local: IpAddr, vip: SocketAddr) -> Result<Self> {
        // std has no bind-before-connect: tokio's socket does it, on a runtime of this thread.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = rt
            .block_on(async {
                let sock = if local.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                sock.bind(SocketAddr::new(local, 0))?;
                match tokio::time::timeout(IO_TIMEOUT, sock.connect(vip)).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                }
            })
            .with_context(|| format!("connecting from {local} to {vip}"))?
            .into_std()?;
        stream.set_nonblocking(false)?;
        Self::ready(stream)
    }

    fn ready(stream: TcpStream) -> Result<Self> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        Ok(Self {
            reader: BufReader::new(stream),
            local,
        })
    }

    /// Sends one request and returns the answering server's name.
    pub fn ask(&mut self) -> Result<String> {
        self.reader
            .get_mut()
            .write_all(b"who\n")
            .with_context(|| format!("sending on the connection from {}", self.local))?;
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .with_context(|| format!("reading on the connection from {}", self.local))?;
        if n == 0 {
            bail!("the connection from {} was closed by the peer", self.local);
        }
        Ok(line.trim().to_string())
    }
}

/// Opens `count` short TCP connections from `ns` to `vip` (one request each, then close) and
/// tallies the answers.
pub fn tcp_burst(ns: &str, vip: SocketAddr, count: u32) -> Result<Tally> {
    burst(ns, None, vip, count)
}

/// [`tcp_burst`] from address `local` of namespace `ns`.
pub fn tcp_burst_from(ns: &str, local: IpAddr, vip: SocketAddr, count: u32) -> Result<Tally> {
    burst(ns, Some(local), vip, count)
}

fn burst(ns: &str, local: Option<IpAddr>, vip: SocketAddr, count: u32) -> Result<Tally> {
    in_netns(ns, move || {
        let mut tally = Tally::default();
        let mut give_up = GiveUp::new();
        for _ in 0..count {
            if give_up.now() {
                tally.failed += 1;
                continue;
            }
            let conn = match local {
                Some(l) => TcpConn::open_from_here(l, vip),
                None => TcpConn::open_here(vip),
            };
            let answer = conn.and_then(|mut c| c.ask()).ok();
            give_up.record(answer.is_some());
            tally.add(answer);
        }
        Ok(tally)
    })
}

/// Sends one datagram from each source port in `ports` (bound on `local`) to `vip`, waits for the
/// answer (one retry), and returns which server answered each port.
pub fn udp_flows(
    ns: &str,
    local: IpAddr,
    vip: SocketAddr,
    ports: std::ops::Range<u16>,
) -> Result<Vec<(u16, Option<String>)>> {
    in_netns(ns, move || {
        let mut out = Vec::with_capacity(ports.len());
        let mut give_up = GiveUp::new();
        for port in ports {
            if give_up.now() {
                out.push((port, None));
                continue;
            }
            let sock = UdpSocket::bind(SocketAddr::new(local, port))
                .with_context(|| format!("binding UDP {local}:{port}"))?;
            sock.set_read_timeout(Some(IO_TIMEOUT / 2))?;
            sock.connect(vip)?;
            let mut answer = None;
            for _attempt in 0..2 {
                sock.send(b"who")?;
                let mut buf = [0u8; 256];
                if let Ok(n) = sock.recv(&mut buf) {
                    answer = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                    break;
                }
            }
            give_up.record(answer.is_some());
            out.push((port, answer));
        }
        Ok(out)
    })
}

/// [`udp_flows`] summed up per server.
pub fn udp_burst(
    ns: &str,
    local: IpAddr,
    vip: SocketAddr,
    ports: std::ops::Range<u16>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    for (_, answer) in udp_flows(ns, local, vip, ports)? {
        tally.add(answer);
    }
    Ok(tally)
}

/// Bounds a burst in time when the path is broken: no test waits for hundreds of timeouts.
struct GiveUp {
    deadline: std::time::Instant,
    failures_in_a_row: u32,
}

impl GiveUp {
    fn new() -> Self {
        Self {
            deadline: std::time::Instant::now() + BURST_DEADLINE,
            failures_in_a_row: 0,
        }
    }

    fn now(&self) -> bool {
        self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW || std::time::Instant::now() > self.deadline
    }

    fn record(&mut self, ok: bool) {
        self.failures_in_a_row = if ok { 0 } else { self.failures_in_a_row + 1 };
    }
}
