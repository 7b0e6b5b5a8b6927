//! Registrar configuration: one serde struct with documented defaults, read from a TOML file
//! (`--config FILE`) and overridden by command-line flags, then [`RegistrarConfig::validate`]d
//! before anything starts. The sections the protocol core decides with (`timers`, `limits`,
//! `rate_limits`, `security`, `resolution`) are `rserpool_proto::config`'s types, documented
//! there with their defaults; [`RegistrarConfig::core`] hands them to the core.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use rserpool_proto::config::{
    Bucket, CoreConfig, EnrpConfig, IdentityRule, LimitConfig, RateLimitConfig, ResolutionConfig,
    SecurityConfig, TimerConfig,
};

/// Default ASAP port (IANA).
pub const ASAP_PORT: u16 = 3863;
/// Default multicast group and port of ASAP Server Announces (rsplib's default).
pub const DEFAULT_ANNOUNCE_GROUP: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 0, 0, 50)), ASAP_PORT);
/// Default admin endpoint (loopback only: it has no authentication).
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 3870);

/// Everything the registrar process needs. Every field has a default, so an empty file is valid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// This registrar's 32-bit identifier; random (non-zero) when absent.
    pub registrar_id: Option<u32>,
    /// Where PEs and PUs reach the registrar with ASAP over TCP.
    pub asap_listen: Vec<SocketAddr>,
    /// Where PEs and PUs reach the registrar with ASAP over SCTP (PPID 11). Absent: the
    /// addresses and ports of `asap_listen` as bound, where the kernel has SCTP (without it the
    /// registrar says so once and serves TCP only); an empty list: no SCTP; addresses: exactly
    /// these, and an error when the kernel has no SCTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asap_sctp_listen: Option<Vec<SocketAddr>>,
    /// HTTP admin endpoint (`GET /handlespace`); `None` disables it.
    pub admin: Option<SocketAddr>,
    /// Serve the admin endpoint on this Unix socket instead of `admin` (created with mode 0600;
    /// a stale socket file is replaced). E.g. `"/run/rsplb/admin.sock"`;
    /// `curl --unix-socket /run/rsplb/admin.sock http://x/handlespace` reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_unix: Option<PathBuf>,
    pub connections: ConnectionConfig,
    pub announce: AnnounceConfig,
    pub timers: TimerConfig,
    pub limits: LimitConfig,
    pub rate_limits: RateLimitConfig,
    pub security: SecurityConfig,
    pub resolution: ResolutionConfig,
    pub enrp: EnrpConfig,
    /// TLS with mutual authentication (RFC 5355); absent = no TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// TLS for ASAP and ENRP over TCP (RFC 5355): the registrar presents `certificate` and accepts
/// only peers (pool elements, pool users, registrars) whose certificate chains to `ca`. What an
/// authenticated peer may do is `security.identities`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of this registrar, leaf first.
    pub certificate: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// PEM CA bundle that client and peer registrar certificates must chain to.
    pub ca: PathBuf,
    /// Where PEs and PUs reach the registrar with ASAP over TLS (IANA asap-tls: 3864). Plain
    /// `asap_listen` stays for clients without TLS (rsplib) unless `require`.
    #[serde(default = "default_asap_tls_listen")]
    pub asap_listen: Vec<SocketAddr>,
    /// ENRP over TLS: the `[enrp]` listeners accept TLS only and peers are dialled with TLS
    /// (then give `enrp.listen` IANA's enrp-tls port, 9902). Every registrar of a scope must
    /// agree.
    #[serde(default = "yes")]
    pub enrp: bool,
    /// No plain listener at all: the registrar refuses to start with a non-empty
    /// `asap_listen` or with `enrp = false` while ENRP is on.
    #[serde(default)]
    pub require: bool,
}

fn default_asap_tls_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        crate::tls::ASAP_TLS_PORT,
    )]
}

fn yes() -> bool {
    true
}

/// Per-connection timeouts of the shell: what one peer may hold, and for how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// A peer that does not take what is written to it for this long is dropped at once (its
    /// elements are removed with the connection): it cannot be serving anyone either (ms).
    pub write_timeout_ms: u64,
    /// A connection from which nothing arrives for this long is closed (ms). Keep-alive acks
    /// keep an element's connection busy, so this closes idle pool users and dead peers only.
    /// rsplib closes idle associations after 300 s.
    pub idle_timeout_ms: u64,
    /// A message that has begun to arrive must be complete within this long, or the connection
    /// is closed: a partial message holds up to 64 KiB of buffer (ms).
    pub partial_message_timeout_ms: u64,
    /// An admin request must be read and answered within this long, or its connection is
    /// dropped (a reader that never reads cannot hold a large answer in memory) (ms).
    pub admin_timeout_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            write_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            partial_message_timeout_ms: 10_000,
            admin_timeout_ms: 10_000,
        }
    }
}

impl ConnectionConfig {
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn partial_message_timeout(&self) -> Duration {
        Duration::from_millis(self.partial_message_timeout_ms)
    }
    pub fn admin_timeout(&self) -> Duration {
        Duration::from_millis(self.admin_timeout_ms)
    }
}

/// ASAP Server Announce (RFC 5352 section 3.6): how PEs and PUs discover the registrar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnounceConfig {
    /// Send announces at all.
    pub enabled: bool,
    /// Multicast group:port; `None` = static targets only.
    pub multicast_group: Option<SocketAddr>,
    /// IPv4 address of the interface to send multicast on (`None` = the kernel's choice).
    pub interface: Option<Ipv4Addr>,
    /// Multicast TTL (1..=255; rsplib's default 30).
    pub ttl: u32,
    /// Announce cycle in milliseconds (rsplib: 1000 ms with +-12.5 % jitter, which rsplb keeps).
    pub interval_ms: u64,
    /// Extra unicast destinations (UDP) that get every announce.
    pub targets: Vec<SocketAddr>,
    /// ASAP transports written into the announce. Empty = derived from `asap_listen` when that
    /// address is specific, else from `interface`; when neither is known the announce carries
    /// the server ID only and receivers use its source address (rsplib's behaviour).
    pub advertise: Vec<SocketAddr>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            registrar_id: None,
            asap_listen: vec![SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                ASAP_PORT,
            )],
            asap_sctp_listen: None,
            admin: Some(DEFAULT_ADMIN),
            admin_unix: None,
            connections: ConnectionConfig::default(),
            announce: AnnounceConfig::default(),
            timers: TimerConfig::default(),
            limits: LimitConfig::default(),
            rate_limits: RateLimitConfig::default(),
            security: SecurityConfig::default(),
            resolution: ResolutionConfig::default(),
            enrp: EnrpConfig::default(),
            tls: None,
        }
    }
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            multicast_group: Some(DEFAULT_ANNOUNCE_GROUP),
            interface: None,
            ttl: 30,
            interval_ms: 1000,
            targets: Vec::new(),
            advertise: Vec::new(),
        }
    }
}

/// What is wrong with a configuration, said so a person can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("parsing {path}: {cause}")]
    Parse {
        path: String,
        cause: Box<toml::de::Error>,
    },
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

impl RegistrarConfig {
    /// Read a TOML file; absent keys take their defaults. Does not validate (flags may still
    /// override values): call [`Self::validate`] last.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.display().to_string(),
            cause,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { cause, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                cause,
            },
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<config>".into(),
            cause: Box::new(e),
        })
    }

    /// Check every value a running registrar depends on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.registrar_id == Some(0) {
            return Err(invalid(
                "registrar_id",
                "0 means \"no registrar\" in RSerPool; choose 1..=4294967295 or leave it out",
            ));
        }
        let tls_listen = self.tls.as_ref().map_or(0, |t| t.asap_listen.len());
        if self.asap_listen.is_empty() && tls_listen == 0 {
            return Err(invalid(
                "asap_listen",
                "at least one address is needed (here or in tls.asap_listen)",
            ));
        }
        if let Some(t) = &self.tls
            && t.require
        {
            if !self.asap_listen.is_empty() {
                return Err(invalid(
                    "tls.require",
                    format!(
                        "plain ASAP listeners configured ({:?}): set asap_listen = [] to serve \
                         ASAP over TLS only (tls.asap_listen)",
                        self.asap_listen
                    ),
                ));
            }
            if self.enrp.enabled() && !t.enrp {
                return Err(invalid(
                    "tls.require",
                    "ENRP is on without TLS: set tls.enrp = true",
                ));
            }
        }
        self.core()
            .validate()
            .map_err(|e| invalid(e.field, e.problem))?;
        let c = &self.connections;
        check_range(
            "connections.write_timeout_ms",
            c.write_timeout_ms,
            10,
            3_600_000,
        )?;
        check_range(
            "connections.idle_timeout_ms",
            c.idle_timeout_ms,
            10,
            86_400_000,
        )?;
        check_range(
            "connections.partial_message_timeout_ms",
            c.partial_message_timeout_ms,
            10,
            3_600_000,
        )?;
        check_range(
            "connections.admin_timeout_ms",
            c.admin_timeout_ms,
            10,
            3_600_000,
        )?;
        if c.idle_timeout_ms <= self.timers.keepalive_interval_ms + self.timers.keepalive_timeout_ms
        {
            return Err(invalid(
                "connections.idle_timeout_ms",
                "must exceed timers.keepalive_interval_ms + keepalive_timeout_ms: a registered \
                 element's acks are what keeps its connection busy",
            ));
        }
        let a = &self.announce;
        check_range("announce.interval_ms", a.interval_ms, 100, 60_000)?;
        check_range("announce.ttl", a.ttl as u64, 1, 255)?;
        if let Some(group) = a.multicast_group
            && !group.ip().is_multicast()
        {
            return Err(invalid(
                "announce.multicast_group",
                format!("{} is not a multicast address", group.ip()),
            ));
        }
        Ok(())
    }

    pub fn keepalive_interval(&self) -> Duration {
        self.timers.keepalive_interval()
    }

    pub fn keepalive_timeout(&self) -> Duration {
        self.timers.keepalive_timeout()
    }

    /// What the protocol core decides with.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            timers: self.timers.clone(),
            limits: self.limits.clone(),
            rate_limits: self.rate_limits.clone(),
            security: self.security.clone(),
            resolution: self.resolution.clone(),
            announce_interval: self
                .announce
                .enabled
                .then(|| Duration::from_millis(self.announce.interval_ms)),
            enrp: self.enrp.clone(),
        }
    }
}

fn check_range(field: &'static str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        Err(invalid(field, format!("{v} is out of range {min}..={max}")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_an_empty_file_gives_them() {
        RegistrarConfig::default().validate().unwrap();
        assert_eq!(
            RegistrarConfig::from_toml("").unwrap(),
            RegistrarConfig::default()
        );
    }

    #[test]
    fn file_values_override_defaults() {
        let c = RegistrarConfig::from_toml(
            "registrar_id = 7\n[timers]\nkeepalive_interval_ms = 1000\n\
             [announce]\ntargets = [\"198.18.0.1:3863\"]\n",
        )
        .unwrap();
        assert_eq!(c.registrar_id, Some(7));
        assert_eq!(c.timers.keepalive_interval_ms, 1000);
        assert_eq!(c.timers.keepalive_timeout_ms, 250);
        assert_eq!(c.announce.targets, vec!["198.18.0.1:3863".parse().unwrap()]);
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_are_refused_with_their_field() {
        let mut c = RegistrarConfig::default();
        c.timers.keepalive_timeout_ms = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("timers.keepalive_timeout_ms"), "{e}");

        let mut c = RegistrarConfig::default();
        c.announce.multicast_group = Some("198.18.0.1:3863".parse().unwrap());
        assert!(c.validate().is_err());

        let mut c = RegistrarConfig::default();
        c.resolution.default_items = 200;
        assert!(c.validate().is_err());

        let c = RegistrarConfig {
            registrar_id: Some(0),
            ..RegistrarConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn tls_require_refuses_plain_listeners() {
        let text = "asap_listen = []\n[tls]\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"\n\
                    ca = \"ca.pem\"\nrequire = true\n";
        let c = RegistrarConfig::from_toml(text).unwrap();
        let t = c.tls.as_ref().unwrap();
        assert_eq!(t.asap_listen, vec!["0.0.0.0:3864".parse().unwrap()]);
        assert!(t.enrp);
        c.validate().unwrap();
        // The default plain listener left in place: refused, naming the key.
        let c = RegistrarConfig::from_toml(&text.replace("asap_listen = []\n", "")).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("tls.require") && e.contains("asap_listen"),
            "{e}"
        );
        // ENRP without TLS under require: refused.
        let mut c = RegistrarConfig::from_toml(text).unwrap();
        c.enrp.listen = vec!["127.0.0.1:9902".parse().unwrap()];
        c.tls.as_mut().unwrap().enrp = false;
        assert!(c.validate().unwrap_err().to_string().contains("tls.enrp"));
    }

    #[test]
    fn identity_rules_read_from_the_file() {
        let c = RegistrarConfig::from_toml(
            "[[security.identities]]\nidentity = \"web-*.pe.example\"\nregister = [\"web\"]\n\
             [[security.identities]]\nidentity = \"pr*.example\"\nregistrar = true\n",
        )
        .unwrap();
        let rules = c.security.identities.as_ref().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].register, vec!["web".to_string()]);
        assert!(!rules[0].resolve && rules[1].registrar);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_syntax_are_errors() {
        assert!(RegistrarConfig::from_toml("keepalive = 3").is_err());
        assert!(RegistrarConfig::from_toml("[timers]\nkeepalive_interval_ms = \"x\"").is_err());
    }
}
