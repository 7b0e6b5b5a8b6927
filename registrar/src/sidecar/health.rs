//! Local health checks of a service that knows nothing of RSerPool, and the rise/fall hysteresis
//! that turns single probe results into "up" and "down" transitions.
//!
//! Every probe is bounded by a timeout and never panics: a failure is a [`ProbeFailure`] saying
//! what went wrong (refused, timed out, wrong reply, exit status...), which the sidecar logs.

use std::fmt;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};

/// How the service is probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheck {
    /// Up when a TCP connection to the target is accepted.
    Tcp { target: SocketAddr },
    /// Up when a datagram sent to the target is answered (by a reply containing `expect`, when
    /// given). UDP has no connection: only an answer proves the service is there.
    Udp {
        target: SocketAddr,
        payload: Vec<u8>,
        expect: Option<Vec<u8>>,
    },
    /// Up when `GET path` answers with a 2xx or 3xx status.
    Http(HttpTarget),
    /// Up when `sh -c command` exits with status 0.
    Exec { command: String },
}

/// Where an HTTP check connects and what it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    /// Sent in the Host header (the text given by the operator, or the address).
    pub host: String,
    /// Request target, starting with `/`.
    pub path: String,
}

/// Why an HTTP check target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpTargetError {
    #[error("only http:// is supported (no TLS), got {0:?}")]
    Scheme(String),
    #[error("{0:?} is not an IP address and port (names are not resolved: give ADDR:PORT)")]
    Address(String),
}

impl std::str::FromStr for HttpTarget {
    type Err = HttpTargetError;

    /// `http://ADDR:PORT/path`, `ADDR:PORT/path` or `ADDR:PORT` (path `/`); IPv6 in brackets.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = match s.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => return Err(HttpTargetError::Scheme(scheme.to_string())),
            None => s,
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority
            .parse()
            .map_err(|_| HttpTargetError::Address(authority.to_string()))?;
        Ok(Self {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { target } => write!(f, "tcp {target}"),
            Self::Udp { target, .. } => write!(f, "udp {target}"),
            Self::Http(t) => write!(f, "http http://{}{}", t.host, t.path),
            Self::Exec { command } => write!(f, "exec {command:?}"),
        }
    }
}

/// Why one probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFailure {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("reply does not contain the expected bytes")]
    UnexpectedReply,
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    #[error("not an HTTP response: {0}")]
    BadHttpResponse(String),
    #[error("command exited with {0}")]
    ExitStatus(std::process::ExitStatus),
}

/// Largest reply read by the UDP check (only the beginning matters).
const MAX_REPLY: usize = 4096;

impl HealthCheck {
    /// Runs one probe, bounded by `timeout` (an exec'd command still running then is killed).
    pub async fn probe(&self, timeout: Duration) -> Result<(), ProbeFailure> {
        match tokio::time::timeout(timeout, self.probe_unbounded()).await {
            Ok(result) => result,
            Err(_) => Err(ProbeFailure::Timeout(timeout)),
        }
    }

    async fn probe_unbounded(&self) -> Result<(), ProbeFailure> {
        match self {
            Self::Tcp { target } => {
                TcpStream::connect(target).await?;
                Ok(())
            }
            Self::Udp {
                target,
                payload,
                expect,
            } => probe_udp(*target, payload, expect.as_deref()).await,
            Self::Http(target) => probe_http(target).await,
            Self::Exec { command } => {
                let status = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await?;
                if status.success() {
                    Ok(())
                } else {
                    Err(ProbeFailure::ExitStatus(status))
                }
            }
        }
    }
}

async fn probe_udp(
    target: SocketAddr,
    payload: &[u8],
    expect: Option<&[u8]>,
) -> Result<(), ProbeFailure> {
    let local: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    // connect() makes the kernel report ICMP port unreachable as ECONNREFUSED on recv, so a
    // closed port fails at once instead of at the timeout.
    socket.connect(target).await?;
    socket.send(payload).await?;
    let mut buf = vec![0u8; MAX_REPLY];
    let n = socket.recv(&mut buf).await?;
    match expect {
        Some(want) if !contains(&buf[..n], want) => Err(ProbeFailure::UnexpectedReply),
        _ => Ok(()),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

async fn probe_http(target: &HttpTarget) -> Result<(), ProbeFailure> {
    use crate::shell::http::{self, GetError};
    // The status is all a check needs; the probe's own timeout bounds the exchange.
    match http::get(
        target.addr,
        &target.host,
        &target.path,
        0,
        Duration::from_secs(3600),
    )
    .await
    {
        Ok((status, _)) if (200..400).contains(&status.as_u16()) => Ok(()),
        Ok((status, _)) => Err(ProbeFailure::HttpStatus(status.as_u16())),
        Err(GetError::Connect(_, e)) => Err(ProbeFailure::Io(e)),
        Err(e) => Err(ProbeFailure::BadHttpResponse(e.to_string())),
    }
}

/// What the service is believed to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Down => "down",
        })
    }
}

/// Rise/fall hysteresis: `rise` consecutive successes turn a down (or not yet known) service up,
/// `fall` consecutive failures turn an up service down. A single flap changes nothing.
#[derive(Clone, Debug)]
pub struct HealthTracker {
    rise: u32,
    fall: u32,
    state: Option<Health>,
    streak: u32,
}

impl HealthTracker {
    /// `rise` and `fall` of 0 count as 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            state: None,
            streak: 0,
        }
    }

    /// The current belief; `None` until the first decision. The first decision takes one probe
    /// for "down" at start-up (nothing to deregister, so no reason to wait) and `rise` for "up".
    pub fn state(&self) -> Option<Health> {
        self.state
    }

    /// Records one probe result; returns the new state when it changed.
    pub fn observe(&mut self, ok: bool) -> Option<Health> {
        let (toward, needed) = match (self.state, ok) {
            (Some(Health::Up), true) | (Some(Health::Down), false) => {
                self.streak = 0;
                return None;
            }
            (Some(Health::Up), false) => (Health::Down, self.fall),
            (Some(Health::Down), true) | (None, true) => (Health::Up, self.rise),
            (None, false) => (Health::Down, 1),
        };
        // Only results pointing away from the current state extend the streak; a result that
        // agrees with it has reset the streak above, so the streak is always consecutive.
        self.streak += 1;
        if self.streak >= needed {
            self.state = Some(toward);
            self.streak = 0;
            Some(toward)
        } else {
            None
        }
    }
}
