//! The RSerPool client side (RFC 5352, ASAP): pool elements (PEs) that register with a registrar
//! and stay registered, and pool users (PUs) that resolve pool handles with a cache.
//!
//! - [`RegistrarTable`]: where the registrars are (a static list and/or ASAP Server Announces
//!   heard on a multicast group) and the registrar hunt (up to three connects in parallel, the
//!   first that answers wins).
//! - [`PoolElementHandle`]: a background task that registers one element, re-registers before
//!   its life runs out, answers keep-alives, follows a new home registrar, hunts again when the
//!   registrar is lost, and deregisters on [`PoolElementHandle::deregister`] or drop.
//! - [`PoolUser`]: handle resolution with a PU-side cache of bounded staleness, selection among
//!   the cached elements by their policy, and Endpoint Unreachable reports.
//!
//! Defaults follow rsplib's ASAP instance (reference 3.3) where a load balancer has no reason to
//! differ; each one is documented on [`ClientConfig`].

mod channel;
pub mod enrp_dump;
mod hunt;
mod pe;
mod pu;
mod transport;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

pub use channel::{AsapChannel, AsapTransport, SctpAsap};
pub use hunt::{RegistrarConnection, RegistrarTable};
pub use pe::{PeState, PoolElementConfig, PoolElementHandle};
pub use pu::{CacheConfig, PoolUser, Resolution};
pub use transport::AsapStream;

use crate::types::{ErrorCause, PoolHandle};
use crate::wire::{DecodeError, EncodeError};

/// rsplib's ASAP announce group and port (reference 0).
pub const DEFAULT_ANNOUNCE_GROUP: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::new(239, 0, 0, 50), 3863);

/// The ASAP port registrars listen on.
pub const ASAP_PORT: u16 = 3863;

/// How a client finds and talks to registrars.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Registrars configured statically (rsplib `-registrar=`). Tried before announced ones.
    pub registrars: Vec<SocketAddr>,
    /// The transport of ASAP to registrars: TCP (default) or SCTP (RFC 5352; what rsplib's
    /// registrars speak). Announces name the registrar's endpoint for either: an SCTP or TCP
    /// transport parameter, or (rsplib) the announce's UDP source address and port.
    pub transport: AsapTransport,
    /// Listen for ASAP Server Announces on this group (rsplib `-asapannounce=`, default
    /// 239.0.0.50:3863 when no static registrar is given). `None` = static list only.
    pub announce: Option<AnnounceConfig>,
    /// How long a registrar heard in an announce stays a candidate: 5 s (rsplib
    /// `-registrarannouncetimeout`, five announce cycles).
    pub announce_timeout: Duration,
    /// Time allowed for one connect (TCP) or association setup (SCTP) to a registrar: 7.5 s (rsplib
    /// `-registrarconnecttimeout`). A refused connect fails at once, so this only bounds
    /// registrars that silently drop packets.
    pub connect_timeout: Duration,
    /// Registrars connected to at once during a hunt: 3 (rsplib `MAX_SIMULTANEOUS_REQUESTS`).
    pub parallel_connects: usize,
    /// Time allowed for a registrar to answer a request: 3 s (rsplib
    /// `-registrarrequesttimeout`/`-registrarresponsetimeout`).
    pub request_timeout: Duration,
    /// Attempts per request, each on a freshly hunted registrar after a timeout or a lost
    /// connection: 2. (rsplib makes one trial; RFC 5352's MAX-REQUEST-RETRANSMIT allows two
    /// retransmissions. One retry rides over the common case, a registrar that just died, without
    /// making a dead pool look alive for long.)
    pub request_attempts: u32,
    /// How long a hunt may take before a request (handle resolution, first registration) gives
    /// up with [`ClientError::NoRegistrar`]: 10 s. A registered PE keeps hunting forever.
    pub hunt_timeout: Duration,
    /// Pause between two hunts that found nothing: 500 ms, doubled up to 5 s.
    pub hunt_retry_delay: Duration,
    /// TLS towards every registrar (RFC 5355: this client's certificate, the CA the registrar's
    /// must chain to, the name it must be valid for); `None` = plain TCP (rsplib's registrars
    /// have no TLS). The handshake counts against `connect_timeout`.
    pub tls: Option<crate::tls::ClientTls>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            registrars: Vec::new(),
            transport: AsapTransport::Tcp,
            announce: None,
            announce_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(7500),
            parallel_connects: 3,
            request_timeout: Duration::from_secs(3),
            request_attempts: 2,
            hunt_timeout: Duration::from_secs(10),
            hunt_retry_delay: Duration::from_millis(500),
            tls: None,
        }
    }
}

impl ClientConfig {
    /// A configuration with static registrars only.
    pub fn with_registrars(registrars: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            registrars: registrars.into_iter().collect(),
            ..Self::default()
        }
    }

    /// A configuration that listens for announces on rsplib's default group.
    pub fn with_announces() -> Self {
        Self {
            announce: Some(AnnounceConfig::default()),
            ..Self::default()
        }
    }
}

/// Where ASAP Server Announces are heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Multicast group and port (or a unicast port to bind when the group is not multicast).
    pub group: SocketAddrV4,
    /// Local interface address for the group membership (UNSPECIFIED = the kernel's choice).
    pub interface: Ipv4Addr,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            group: DEFAULT_ANNOUNCE_GROUP,
            interface: Ipv4Addr::UNSPECIFIED,
        }
    }
}

/// What went wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No registrar could be reached: none configured or announced, or every connect failed.
    #[error("no registrar reachable{}", describe_tried(.tried))]
    NoRegistrar { tried: Vec<(SocketAddr, String)> },
    /// The registrar did not answer in time.
    #[error("{what}: no answer from registrar {registrar} within {after:?}")]
    Timeout {
        what: &'static str,
        registrar: SocketAddr,
        after: Duration,
    },
    /// The registrar refused the registration (R flag) for these causes.
    #[error("registration of {pool} refused: {}", describe_causes(.causes))]
    Rejected {
        pool: PoolHandle,
        causes: Vec<ErrorCause>,
    },
    /// The registrar knows no pool of that handle (or it has no element).
    #[error("pool {0} is unknown to the registrar or has no element")]
    UnknownPool(PoolHandle),
    /// The registrar answered a request with an error.
    #[error("registrar error for pool {pool}: {}", describe_causes(.causes))]
    Registrar {
        pool: PoolHandle,
        causes: Vec<ErrorCause>,
    },
    /// The registrar sent something this request does not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("registrar connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("undecodable message from the registrar: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode the message: {0}")]
    Encode(#[from] EncodeError),
    /// The pool element's background task has ended (after deregistration or a fatal error).
    #[error("the pool element task has stopped")]
    Stopped,
    /// Invalid configuration given to the library.
    #[error("invalid configuration: {0}")]
    Config(String),
}

fn describe_tried(tried: &[(SocketAddr, String)]) -> String {
    if tried.is_empty() {
        " (none configured or announced)".to_string()
    } else {
        let parts: Vec<String> = tried.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        format!(" (tried {})", parts.join("; "))
    }
}

fn describe_causes(causes: &[ErrorCause]) -> String {
    if causes.is_empty() {
        return "no cause given".to_string();
    }
    let parts: Vec<String> = causes.iter().map(|c| c.code.to_string()).collect();
    parts.join(", ")
}

/// Whether an error means "this registrar is gone or broken": the request may be retried on
/// another one.
pub(crate) fn is_registrar_failure(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Timeout { .. }
            | ClientError::Io(_)
            | ClientError::Decode(_)
            | ClientError::Protocol(_)
    )
}

/// `request_timeout`, or 1 ms when zero was configured (a zero timeout would fail everything).
pub(crate) fn nonzero(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}
