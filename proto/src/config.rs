//! The protocol core's configuration: plain values with documented defaults. The shell's file
//! format (TOML, in `rsplb-registrar`) embeds these sections unchanged, so a key means the same
//! in a file, on the command line and in a test that builds a core directly.
//!
//! Defaults are chosen for a load balancer, where an element that stops answering must leave the
//! pool in well under a second (rsplib waits 5 s + 5 s):
//! - keep-alive interval 250 ms, ack timeout 250 ms: a silent element is removed 250..500 ms
//!   after it last answered (median about 375 ms; `bench-registrar` measures 330-450 ms). The
//!   price is 4 keep-alives and 4 acks per second per element: with a 10-byte pool handle 32 +
//!   28 bytes of ASAP each way, about 240 bytes/s of ASAP, about 650 bytes/s on the wire with
//!   TCP/IP headers, per element. At 10,000 elements that is 80,000 messages per second through
//!   the registrar (it spends a few microseconds of CPU per message). Raise both for very
//!   large deployments: `bench-registrar` reports `keepalive_capacity_elements`, the population
//!   one registrar keeps alive at these timers without a false eviction, and
//!   `limits.max_home_elements` defaults to what it measured.
//! - A registrar that was itself stalled (its loop busy with a burst) must not remove elements
//!   whose acks were waiting unread: see [`TimerConfig::stall_grace_ms`].
//! - Handle resolution returns 3 elements when the PU does not ask for a count (rsplib's
//!   MaxHResItems: PUs built on rsplib size their caches and failover lists for it, and a reply of
//!   3 fits one small packet); a PU may ask for up to 128 (rsplib's hard cap) with the Handle
//!   Resolution Option.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the registrar core decides with. The shell builds it from its configuration file
/// and flags; tests build it directly.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreConfig {
    pub timers: TimerConfig,
    pub limits: LimitConfig,
    pub rate_limits: RateLimitConfig,
    pub security: SecurityConfig,
    pub resolution: ResolutionConfig,
    /// Cycle of ASAP Server Announces (rsplib: 1 s, jittered +-12.5 %); `None` sends none.
    pub announce_interval: Option<Duration>,
    /// ENRP: the registrars of one operation scope sharing the handlespace.
    pub enrp: EnrpConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            limits: LimitConfig::default(),
            rate_limits: RateLimitConfig::default(),
            security: SecurityConfig::default(),
            resolution: ResolutionConfig::default(),
            announce_interval: Some(Duration::from_secs(1)),
            enrp: EnrpConfig::default(),
        }
    }
}

/// A configuration value the core cannot work with, named by its key in the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidConfig {
    pub field: &'static str,
    pub problem: String,
}

impl InvalidConfig {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

impl CoreConfig {
    /// Check every value the core depends on.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let t = &self.timers;
        check_range(
            "timers.keepalive_interval_ms",
            t.keepalive_interval_ms,
            10,
            3_600_000,
        )?;
        check_range(
            "timers.keepalive_timeout_ms",
            t.keepalive_timeout_ms,
            10,
            3_600_000,
        )?;
        check_range("timers.stall_grace_ms", t.stall_grace_ms, 2, 60_000)?;
        let l = &self.limits;
        for (field, v) in [
            ("limits.max_pools", l.max_pools),
            ("limits.max_elements_per_pool", l.max_elements_per_pool),
            ("limits.max_elements", l.max_elements),
            ("limits.max_home_elements", l.max_home_elements),
            ("limits.max_elements_per_peer", l.max_elements_per_peer),
            ("limits.max_peers", l.max_peers),
            ("limits.max_peers_per_address", l.max_peers_per_address),
            ("limits.max_pending_messages", l.max_pending_messages),
        ] {
            if v == 0 {
                return Err(InvalidConfig::new(field, "must be at least 1"));
            }
        }
        if l.max_pending_messages <= l.max_elements_per_peer {
            return Err(InvalidConfig::new(
                "limits.max_pending_messages",
                format!(
                    "{} must exceed limits.max_elements_per_peer ({}): every element of a peer \
                     may have a keep-alive queued at once",
                    l.max_pending_messages, l.max_elements_per_peer
                ),
            ));
        }
        check_range(
            "limits.max_message_size",
            l.max_message_size as u64,
            64,
            65_535,
        )?;
        check_range("limits.max_errors", l.max_errors as u64, 1, u32::MAX as u64)?;
        check_range("limits.error_window_ms", l.error_window_ms, 1, 3_600_000)?;
        check_range(
            "limits.max_bad_pe_reports",
            l.max_bad_pe_reports as u64,
            1,
            u32::MAX as u64,
        )?;
        for (field, b) in [
            ("rate_limits.registration", self.rate_limits.registration),
            (
                "rate_limits.handle_resolution",
                self.rate_limits.handle_resolution,
            ),
            (
                "rate_limits.endpoint_unreachable",
                self.rate_limits.endpoint_unreachable,
            ),
        ] {
            if b.rate_per_s > 0 && b.burst == 0 {
                return Err(InvalidConfig::new(
                    field,
                    "burst 0 with a non-zero rate would refuse everything",
                ));
            }
        }
        let r = &self.resolution;
        check_range("resolution.max_items", r.max_items as u64, 1, 128)?;
        check_range(
            "resolution.default_items",
            r.default_items as u64,
            1,
            r.max_items as u64,
        )?;
        let e = &self.enrp;
        for (field, v, min, max) in [
            (
                "enrp.heartbeat_interval_ms",
                e.heartbeat_interval_ms,
                10,
                300_000,
            ),
            (
                "enrp.max_time_last_heard_ms",
                e.max_time_last_heard_ms,
                10,
                600_000,
            ),
            (
                "enrp.max_time_no_response_ms",
                e.max_time_no_response_ms,
                10,
                60_000,
            ),
            ("enrp.takeover_expiry_ms", e.takeover_expiry_ms, 10, 600_000),
            ("enrp.takeover_grace_ms", e.takeover_grace_ms, 10, 3_600_000),
            (
                "enrp.mentor_discovery_ms",
                e.mentor_discovery_ms,
                0,
                600_000,
            ),
            (
                "enrp.download_timeout_ms",
                e.download_timeout_ms,
                10,
                3_600_000,
            ),
            (
                "enrp.max_elements_per_table_response",
                e.max_elements_per_table_response as u64,
                1,
                4_096,
            ),
            (
                "enrp.max_table_response_bytes",
                e.max_table_response_bytes as u64,
                512,
                65_535,
            ),
            ("enrp.max_peers", e.max_peers as u64, 1, 4_096),
        ] {
            check_range(field, v, min, max)?;
        }
        if e.max_time_last_heard_ms <= e.heartbeat_interval_ms {
            return Err(InvalidConfig::new(
                "enrp.max_time_last_heard_ms",
                format!(
                    "{} must exceed enrp.heartbeat_interval_ms ({}): a live peer would be \
                     suspected between two heartbeats",
                    e.max_time_last_heard_ms, e.heartbeat_interval_ms
                ),
            ));
        }
        if let Some(g) = e.multicast_group
            && !g.ip().is_multicast()
        {
            return Err(InvalidConfig::new(
                "enrp.multicast_group",
                format!("{} is not a multicast address", g.ip()),
            ));
        }
        Ok(())
    }
}

fn check_range(field: &'static str, v: u64, min: u64, max: u64) -> Result<(), InvalidConfig> {
    if v < min || v > max {
        Err(InvalidConfig::new(
            field,
            format!("{v} is out of range {min}..={max}"),
        ))
    } else {
        Ok(())
    }
}

/// ENRP (RFC 5353): where this registrar meets its peers and how fast it judges them.
///
/// ENRP is off while `listen` is empty: the registrar is then alone and serves at once. With it,
/// the registrar first hunts for a mentor (`mentor_discovery_ms`), downloads the handlespace from
/// it, and only then answers clients and sends ASAP Server Announces.
///
/// The timer defaults detect a dead peer in about one second (rsplib: about 10 s with a 2.4 s
/// heartbeat), and that is safe because a wrong verdict costs little: a peer that is silent for
/// `max_time_last_heard_ms` (600 ms, three heartbeats) is asked for a Presence with the R flag;
/// only when that goes unanswered for `max_time_no_response_ms` (400 ms) more does a takeover
/// start, and a target that is alive cancels it by answering. No element is ever removed because
/// its registrar failed: a takeover only moves ownership. The price is one Presence of about 48
/// bytes per peer every 200 ms: 240 bytes/s per peer pair and direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrpConfig {
    /// Where peer registrars reach this one with ENRP over TCP (IANA port 9901). Empty = ENRP
    /// off.
    pub listen: Vec<SocketAddr>,
    /// Where peers reach this registrar with ENRP over SCTP (PPID 12), as rsplib's registrars
    /// do. `None` (the default): the `listen` addresses, when the kernel has SCTP; then this
    /// registrar's Server Information names its SCTP endpoint and it dials its peers over SCTP
    /// first (TCP when that fails). An empty list: TCP only. Several addresses make one
    /// multi-homed endpoint (one port, one family), named whole in the Server Information.
    pub sctp_listen: Option<Vec<SocketAddr>>,
    /// Static peers (their ENRP endpoints). Peers are also learned from multicast Presence and
    /// from List Responses.
    pub peers: Vec<SocketAddr>,
    /// Multicast group:port of ENRP Presence (rsplib's 239.0.0.51:9901); `None` = static peers
    /// only.
    pub multicast_group: Option<SocketAddr>,
    /// IPv4 address of the interface to send and receive multicast Presence on (`None` = the
    /// kernel's choice).
    pub interface: Option<Ipv4Addr>,
    /// Presence to every peer this often (ms, jittered +-12.5 % as rsplib does).
    pub heartbeat_interval_ms: u64,
    /// A peer not heard from for this long gets a Presence with the R flag (ms).
    pub max_time_last_heard_ms: u64,
    /// A peer that does not answer that Presence within this long is taken over (ms).
    pub max_time_no_response_ms: u64,
    /// A takeover not acknowledged by every live peer within this long is given up (ms).
    pub takeover_expiry_ms: u64,
    /// An element taken over from a dead registrar that this registrar cannot reach (no ASAP
    /// connection to it, as over TCP) keeps its place this long for its pool element to
    /// re-register somewhere; then it is removed (ms). rsplb's PE side re-registers as soon as
    /// its connection breaks, well within this.
    pub takeover_grace_ms: u64,
    /// How long a starting registrar looks for a mentor before it serves alone (ms).
    pub mentor_discovery_ms: u64,
    /// How long the download from the mentor may take before the registrar serves anyway (ms).
    pub download_timeout_ms: u64,
    /// Most elements in one Handle Table Response (rsplib: 128).
    pub max_elements_per_table_response: usize,
    /// Most bytes of one Handle Table Response (a chunk that would be larger is cut).
    pub max_table_response_bytes: usize,
    /// Most peer registrars this registrar keeps; Presence from more is ignored and counted.
    pub max_peers: usize,
}

impl Default for EnrpConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            sctp_listen: None,
            peers: Vec::new(),
            multicast_group: None,
            interface: None,
            heartbeat_interval_ms: 200,
            max_time_last_heard_ms: 600,
            max_time_no_response_ms: 400,
            takeover_expiry_ms: 2_000,
            takeover_grace_ms: 5_000,
            mentor_discovery_ms: 1_000,
            download_timeout_ms: 10_000,
            max_elements_per_table_response: 128,
            max_table_response_bytes: 16_384,
            max_peers: 64,
        }
    }
}

impl EnrpConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty() || self.sctp_listen.as_ref().is_some_and(|l| !l.is_empty())
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Self::ms(self.heartbeat_interval_ms)
    }

    pub fn max_time_last_heard(&self) -> Duration {
        Self::ms(self.max_time_last_heard_ms)
    }

    pub fn max_time_no_response(&self) -> Duration {
        Self::ms(self.max_time_no_response_ms)
    }

    pub fn takeover_expiry(&self) -> Duration {
        Self::ms(self.takeover_expiry_ms)
    }

    pub fn takeover_grace(&self) -> Duration {
        Self::ms(self.takeover_grace_ms)
    }

    pub fn mentor_discovery(&self) -> Duration {
        Self::ms(self.mentor_discovery_ms)
    }

    pub fn download_timeout(&self) -> Duration {
        Self::ms(self.download_timeout_ms)
    }
}

impl TimerConfig {
    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }

    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_timeout_ms)
    }

    pub fn stall_grace(&self) -> Duration {
        Duration::from_millis(self.stall_grace_ms)
    }
}

/// Endpoint monitoring timers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimerConfig {
    /// How often the home registrar sends ENDPOINT_KEEP_ALIVE to each element (ms).
    pub keepalive_interval_ms: u64,
    /// How long it waits for the ENDPOINT_KEEP_ALIVE_ACK before removing the element (ms).
    pub keepalive_timeout_ms: u64,
    /// Protection against the registrar's own stalls (ms, default 100). An ack deadline that the
    /// core handles more than half of this after it was due means the core was not being fed
    /// meanwhile (its loop was busy): the ack may be sitting unread in a socket or a queue. Such
    /// an element is not removed; its deadline moves to this long after the late handling, so
    /// the input that arrived meanwhile is read first. A dead element is still removed as soon
    /// as the registrar keeps its own time again (at most `keepalive_timeout_ms` plus this per
    /// stall later); no amount of load removes an element that answered.
    pub stall_grace_ms: u64,
}

/// Resource limits; exceeding one is answered with Lack of Resources (0x6), never a crash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitConfig {
    pub max_pools: usize,
    pub max_elements_per_pool: usize,
    /// Elements in the handlespace, this registrar's and its peers' (ENRP): a bound of memory
    /// (about 830 bytes each, `bench-registrar`'s `rss_bytes_per_pe`).
    pub max_elements: usize,
    /// Elements this registrar is home of: those it keeps alive over its own connections
    /// (elements learned from peer registrars cost no keep-alives and count against
    /// `max_elements` only). A registration beyond it gets Lack of Resources and the pool
    /// element hunts another registrar, instead of pushing this one past the population it can
    /// keep alive at the default timers without false evictions. The default is
    /// `bench-registrar`'s `keepalive_capacity_elements`; see [`LimitConfig::default`]. Raise
    /// it with `timers.keepalive_interval_ms` (the cost is per keep-alive).
    pub max_home_elements: usize,
    /// Elements one connection may register (a registrator is usually one PE or a sidecar).
    pub max_elements_per_peer: usize,
    /// Concurrent ASAP connections; more are refused with an ERROR (Lack of Resources).
    pub max_peers: usize,
    /// Concurrent ASAP connections from one source address (refused the same way), so that one
    /// host cannot take every connection slot or file descriptor.
    pub max_peers_per_address: usize,
    /// Largest ASAP message accepted (bytes, <= 65535).
    pub max_message_size: usize,
    /// Messages the registrar sends on its own (keep-alives) queued for one peer that does not
    /// read them; beyond this the peer is disconnected (it would not read a Lack of Resources
    /// either). Must exceed `max_elements_per_peer`.
    pub max_pending_messages: usize,
    /// Malformed messages a peer may send within `error_window_ms` before it is disconnected.
    pub max_errors: u32,
    pub error_window_ms: u64,
    /// Endpoint Unreachable reports (RFC 5352 MAX-BAD-PE-REPORT) that remove an element.
    pub max_bad_pe_reports: u32,
    /// Count at most one report per reporting source address and element (until the element
    /// re-registers), so that no single PU host can evict an element by repeating itself or by
    /// opening more connections (RFC 5355: a PE must not be removed on one report). rsplib
    /// counts every report; set false for that.
    /// Keep-alives still remove a dead element within `keepalive_interval + keepalive_timeout`.
    pub distinct_reporters: bool,
}

/// Token buckets against floods (RFC 5355 section 6 / reference section 4): per connection for
/// registrations and handle resolutions, per source address for Endpoint Unreachable reports
/// (a host gains nothing by opening more connections).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub registration: Bucket,
    pub handle_resolution: Bucket,
    pub endpoint_unreachable: Bucket,
}

/// A token bucket: `rate_per_s` tokens per second, at most `burst` saved. `rate_per_s = 0` means
/// unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub rate_per_s: u32,
    pub burst: u32,
}

/// Who may register what.
///
/// The allow lists are for networks without certificates (RFC 5355 wants TLS; until then the
/// source address is what a registrar can check). Each is a list of prefixes
/// (`"198.18.0.0/15"`, `"fd00::/8"`, a bare address is a /32 or /128); absent (the default) lets
/// every address take the role. See [`SecurityConfig::allows`].
/// - `allow_pe`: who may register (and deregister) pool elements. Others get Rejected Security
///   (0xa), the RFC's answer to a registration the registrar refuses on purpose.
/// - `allow_pu`: who may resolve pool handles and report Endpoint Unreachable (addresses allowed
///   as PE may too). A refused resolution is answered with Unknown Pool Handle (0x9), as for a
///   rate-limited one: rsplib PUs back off as for an empty pool and learn nothing of the
///   handlespace. Refused reports are dropped (they have no answer).
/// - `allow_registrar`: who may peer as a registrar (ENRP); checked by the ENRP procedures.
///
/// `identities` authorizes by authenticated identity (RFC 5355 section 3.2: who may register in
/// which pool): see [`IdentityRule`] and [`SecurityConfig::authorizes`], the one place where both
/// the address lists and the identity rules are applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Accept user transport addresses that are not addresses of the registering connection
    /// (e.g. a sidecar registering a server on another host). Off by default: a PE may only
    /// register itself (reference 4, RFC 5355); violations get Rejected Security (0xa).
    pub allow_foreign_addresses: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_pe: Option<Vec<Prefix>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_pu: Option<Vec<Prefix>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_registrar: Option<Vec<Prefix>>,
    /// Authorization of peers that authenticated with a certificate (TLS), by their identity:
    /// the certificate's first DNS subject alternative name, else its subject common name.
    /// Absent (the default): every peer whose certificate the configured CA vouches for may take
    /// every role. Present: such a peer may take a role only when a rule matching its identity
    /// grants it (rules add up; no rule matching = nothing allowed). Peers without a certificate
    /// (plain TCP listeners, kept for rsplib, which has no TLS) are judged by the address lists
    /// alone; `tls.require` removes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<IdentityRule>>,
}

/// What one authenticated identity (or a family of them) may do.
///
/// Patterns: `*` stands for any run of characters (`"pe-*.example.net"`, `"web-*"`, `"*"`);
/// anything else matches itself. Identities compare ignoring ASCII case (they are DNS names);
/// pool handles compare byte for byte.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    /// The identity this rule is for (a pattern).
    pub identity: String,
    /// Pools (pool handle patterns) it may register elements into and deregister them from. An
    /// identity that may register somewhere may also resolve.
    #[serde(default)]
    pub register: Vec<String>,
    /// May resolve pool handles and report unreachable elements.
    #[serde(default)]
    pub resolve: bool,
    /// May peer as a registrar (ENRP).
    #[serde(default)]
    pub registrar: bool,
}

impl IdentityRule {
    fn matches(&self, identity: &str) -> bool {
        glob(
            self.identity.to_ascii_lowercase().as_bytes(),
            identity.to_ascii_lowercase().as_bytes(),
        )
    }

    fn grants(&self, role: Role, pool: Option<&[u8]>) -> bool {
        match role {
            Role::PoolElement => match pool {
                Some(p) => self.register.iter().any(|pat| glob(pat.as_bytes(), p)),
                None => !self.register.is_empty(),
            },
            Role::PoolUser => self.resolve || !self.register.is_empty(),
            Role::Registrar => self.registrar,
        }
    }
}

/// Does `text` match `pattern`, where `*` in the pattern stands for any run of bytes?
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // The classic linear-time matcher: on a mismatch, let the last star absorb one more byte.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The roles a source address may be allowed to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Registers pool elements (ASAP registration, deregistration).
    PoolElement,
    /// Resolves pool handles, reports unreachable elements.
    PoolUser,
    /// Peers as a registrar (ENRP).
    Registrar,
}

impl SecurityConfig {
    /// May `addr` act as `role`? The one place every allow list is checked.
    pub fn allows(&self, role: Role, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let inside = |list: &Option<Vec<Prefix>>| {
            list.as_ref()
                .is_none_or(|l| l.iter().any(|p| p.contains(addr)))
        };
        let listed = |list: &Option<Vec<Prefix>>| {
            list.as_ref()
                .is_some_and(|l| l.iter().any(|p| p.contains(addr)))
        };
        match role {
            Role::PoolElement => inside(&self.allow_pe),
            Role::PoolUser => inside(&self.allow_pu) || listed(&self.allow_pe),
            Role::Registrar => inside(&self.allow_registrar),
        }
    }

    /// May a peer from `addr`, authenticated as `identity` (`None`: it showed no certificate),
    /// act as `role` (as a pool element: in `pool`, when the request names one)? The address
    /// lists ([`Self::allows`]) and, for an authenticated peer, the identity rules
    /// (`identities`) must both allow it. Every request the core serves is checked here.
    pub fn authorizes(
        &self,
        role: Role,
        addr: IpAddr,
        identity: Option<&str>,
        pool: Option<&[u8]>,
    ) -> bool {
        self.allows(role, addr) && self.identity_allows(role, identity, pool)
    }

    /// The identity rules alone (true for a peer without identity, or without rules).
    pub fn identity_allows(&self, role: Role, identity: Option<&str>, pool: Option<&[u8]>) -> bool {
        let (Some(rules), Some(identity)) = (&self.identities, identity) else {
            return true;
        };
        rules
            .iter()
            .any(|r| r.matches(identity) && r.grants(role, pool))
    }

    /// Whether any allow list restricts who may connect.
    pub fn has_allow_list(&self) -> bool {
        self.allow_pe.is_some() || self.allow_pu.is_some() || self.allow_registrar.is_some()
    }
}

/// An address prefix such as `198.18.0.0/15` or `fd00::/8` (written as that string in files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("prefix length {len} exceeds {max}"));
        }
        Ok(Self { addr, len })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|e| format!("{s:?}: not an address prefix ({e})"))?;
        let len = match l {
            Some(l) => l
                .trim()
                .parse()
                .map_err(|e| format!("{s:?}: bad prefix length ({e})"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Prefix::new(addr, len).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Handle resolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolutionConfig {
    /// Elements returned when the PU does not say (no Handle Resolution Option, or 0).
    pub default_items: u32,
    /// Most elements returned in one answer.
    pub max_items: u32,
    /// How many of the returned elements advance the policy's state (0 = the policy's default).
    pub max_increment: u32,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            keepalive_interval_ms: 250,
            keepalive_timeout_ms: 250,
            stall_grace_ms: 100,
        }
    }
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            max_pools: 10_000,
            max_elements_per_pool: 100_000,
            max_elements: 200_000,
            // What one registrar keeps alive at the default 250 ms timers, measured with
            // `cargo xtask bench registrar` (keepalive_capacity_elements: the largest of the
            // steps 2,000..96,000 kept 5 s without a removal, answering clients on the same 2
            // shared vCPUs) on 2026-12-03: medians 64,000, 96,000 and 96,000 in three runs, so
            // at least 96,000 on quiet cores. Rounds disturbed by other builds held 24,000 to
            // 64,000, and past its capacity a registrar loses nearly every element at once
            // (95,625 of 96,000 in one round): the default stays a third below the median.
            max_home_elements: 64_000,
            max_elements_per_peer: 1_000,
            max_peers: 20_000,
            max_peers_per_address: 1_000,
            max_message_size: 65_535,
            max_pending_messages: 2_048,
            max_errors: 10,
            error_window_ms: 10_000,
            max_bad_pe_reports: 3,
            distinct_reporters: true,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            // A PE registers once and re-registers for load updates: 100/s is far above need.
            registration: Bucket {
                rate_per_s: 100,
                burst: 200,
            },
            // PUs resolve per connection they open: generous, but bounded.
            handle_resolution: Bucket {
                rate_per_s: 20_000,
                burst: 2_000,
            },
            // A PU that reports more than a few failures per second is misbehaving.
            endpoint_unreachable: Bucket {
                rate_per_s: 10,
                burst: 20,
            },
        }
    }
}

impl Default for ResolutionConfig {
    fn default() -> Self {
        Self {
            default_items: 3,
            max_items: 128,
            max_increment: 0,
        }
    }
}
