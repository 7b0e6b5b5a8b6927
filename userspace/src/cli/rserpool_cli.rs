//! The RSerPool subcommands of `rsplb`: `pe register` (the health-checking sidecar), `resolve`
//! (one handle resolution) and `handlespace` (a registrar's handlespace from its admin
//! endpoint). Definitions (clap) and runners; the library work is in `rsplb_registrar`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use rsplb_registrar::client::{
    self, AnnounceConfig, AsapTransport, CacheConfig, ClientConfig, PoolElementConfig, PoolUser,
};
use rsplb_registrar::shell::admin::{HandlespaceSnapshot, RegistrarsSnapshot, policy_name};
use rsplb_registrar::sidecar::health::{HealthCheck, HttpTarget};
use rsplb_registrar::sidecar::{self, SidecarConfig};
use rsplb_registrar::types::{
    PeId, Policy, PoolElement, PoolHandle, TransportAddress, TransportUse,
};

/// The RSerPool subcommands.
#[derive(Subcommand, Debug)]
pub enum RserpoolCommand {
    /// Pool element tools (register a server that knows nothing of RSerPool).
    #[command(subcommand)]
    Pe(PeCommand),
    /// Resolve a pool handle at a registrar (one ASAP handle resolution) and print the elements.
    #[command(after_long_help = RESOLVE_EXAMPLES)]
    Resolve(ResolveArgs),
    /// Show a registrar's handlespace (pools, elements, policies, load, home registrar, age).
    #[command(after_long_help = HANDLESPACE_EXAMPLES)]
    Handlespace(DumpArgs),
    /// Show the registrars of a registrar's operation scope (ENRP peers: state, last heard,
    /// checksums, mentor) and whether it is synchronised.
    #[command(after_long_help = REGISTRARS_EXAMPLES)]
    Registrars(HandlespaceArgs),
}

#[derive(Subcommand, Debug)]
pub enum PeCommand {
    /// Register ADDR:PORT into POOL and keep it registered while a local health check passes.
    ///
    /// The sidecar registers the server with a registrar (found by --registrar or by listening
    /// for ASAP announces), re-registers it before its life runs out and answers keep-alives.
    /// With --check it probes the server every --check-interval: after --fall consecutive
    /// failures it deregisters the server, after --rise consecutive successes it registers it
    /// again. SIGINT or SIGTERM deregister and exit.
    #[command(after_long_help = PE_REGISTER_EXAMPLES)]
    Register(PeRegisterArgs),
}

const PE_REGISTER_EXAMPLES: &str = "\
Examples:
  rsplb pe register web 198.18.1.2:80 --registrar 198.18.0.1:3863
  rsplb pe register web 198.18.1.2:80 --policy weighted-round-robin:3 \\
        --check http --check-target http://198.18.1.2:80/healthz --rise 2 --fall 3
  rsplb pe register dns 198.18.1.2:53 --transport udp --check udp --check-send ping --check-expect pong
  rsplb pe register EchoPool 0.0.0.0:7 --transport sctp --asap-transport sctp --registrar 198.18.0.1:3863
  rsplb pe register batch 198.18.1.2:9000 --policy least-used:20 --check exec \\
        --check-target 'systemctl is-active batch'

Policies (rsplib names such as WeightedRoundRobin:3 work too):
  round-robin, random, weighted-round-robin:W, weighted-random:W, priority:P,
  least-used[:LOAD%], randomized-least-used[:LOAD%], least-used-degradation:DEG%[:LOAD%],
  priority-least-used:DEG%[:LOAD%]";

const RESOLVE_EXAMPLES: &str = "\
Examples:
  rsplb resolve web
  rsplb resolve web --registrar 198.18.0.1:3863 --items 10 --json
  rsplb resolve EchoPool --registrar 198.18.0.1:3863 --asap-transport sctp   # an rsplib registrar";

const HANDLESPACE_EXAMPLES: &str = "\
Examples:
  rsplb handlespace
  rsplb handlespace --admin 198.18.0.1:3870 --json
  rsplb handlespace --registrar 198.18.0.2:9901     # over ENRP, any registrar of the scope

The CHECKSUMS lines give the RFC 5353 PE checksum of each home registrar's elements as this \
registrar holds them: two registrars of one scope with equal lines hold equal handlespaces.";

const REGISTRARS_EXAMPLES: &str = "\
Examples:
  rsplb registrars
  rsplb registrars --admin 198.18.0.1:3870 --json

STATE is alive, probing (silent too long; asked for a Presence), taking_over (this registrar is \
becoming the home of the peer's elements) or auditing (repairing a checksum difference). \
THEIRS is the checksum in the peer's last Presence, OURS the checksum of what this registrar \
holds for it: they differ only briefly, while an update or an audit is under way.";

/// Transport protocol of the registered server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    Tcp,
    Udp,
    Sctp,
}

/// Transport of ASAP between this program and the registrar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AsapTransportKind {
    /// TCP, each message framed by its own length (rsplb's registrars; hosts without SCTP).
    Tcp,
    /// Kernel SCTP with PPID 11 (RFC 5352; rsplib's registrars speak only this).
    Sctp,
}

impl From<AsapTransportKind> for AsapTransport {
    fn from(k: AsapTransportKind) -> Self {
        match k {
            AsapTransportKind::Tcp => AsapTransport::Tcp,
            AsapTransportKind::Sctp => AsapTransport::Sctp,
        }
    }
}

/// How the sidecar checks the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckKind {
    /// A TCP connect (target: ADDR:PORT, default the registered address).
    Tcp,
    /// A datagram that must be answered (target: ADDR:PORT, default the registered address).
    Udp,
    /// HTTP GET expecting 2xx/3xx (target: [http://]ADDR:PORT[/path], default http://ADDR:PORT/).
    Http,
    /// A shell command that must exit 0 (target: the command; required).
    Exec,
}

#[derive(Args, Debug)]
pub struct PeRegisterArgs {
    /// Pool handle (1 to 32 bytes).
    #[arg(value_parser = parse_pool_handle)]
    pub pool: PoolHandle,
    /// Where pool users reach the server (IPv6 in brackets: [fd00::2]:80).
    #[arg(value_parser = parse_socket_addr)]
    pub addr: SocketAddr,
    /// Transport protocol of the server. With sctp and an unspecified address (0.0.0.0:PORT),
    /// every local address of the SCTP association to the registrar is registered.
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp)]
    pub transport: TransportKind,
    /// How to talk ASAP to the registrar: tcp (rsplb registrars) or sctp (RFC 5352, rsplib
    /// registrars; needs kernel SCTP).
    #[arg(long, value_enum, default_value_t = AsapTransportKind::Tcp)]
    pub asap_transport: AsapTransportKind,
    /// Pool member selection policy with its values (see below).
    #[arg(long, value_parser = parse_policy, default_value = "round-robin")]
    pub policy: Policy,
    /// Health check; none = registered until shutdown.
    #[arg(long, value_enum)]
    pub check: Option<CheckKind>,
    /// What the check probes (see --check).
    #[arg(long, requires = "check")]
    pub check_target: Option<String>,
    /// UDP check: payload to send.
    #[arg(long, default_value = "ping")]
    pub check_send: String,
    /// UDP check: bytes the reply must contain (default: any reply).
    #[arg(long)]
    pub check_expect: Option<String>,
    /// Milliseconds between two probes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub check_interval: u64,
    /// Milliseconds allowed for one probe.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub check_timeout: u64,
    /// Consecutive successes before a down server is registered again.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rise: u32,
    /// Consecutive failures before an up server is deregistered.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub fall: u32,
    /// A registrar (repeatable); without one, registrars are found by their announces.
    #[arg(long = "registrar", value_name = "ADDR:PORT", value_parser = parse_registrar)]
    pub registrars: Vec<SocketAddr>,
    /// Where to listen for registrar announces when no --registrar is given: a multicast group,
    /// or a local unicast address that registrars send announces to (`--announce-target`).
    #[arg(long, value_name = "GROUP:PORT", default_value = "239.0.0.50:3863")]
    pub announce: SocketAddrV4,
    /// Pool element identifier (decimal or 0x-hex); random by default.
    #[arg(long, value_parser = parse_pe_id)]
    pub id: Option<PeId>,
    /// Registration life in milliseconds (re-registration every third of it).
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u32).range(100..=2_147_483_647))]
    pub lifetime: u32,
}

#[derive(Args, Debug)]
pub struct ResolveArgs {
    /// Pool handle.
    #[arg(value_parser = parse_pool_handle)]
    pub pool: PoolHandle,
    /// The registrar to ask (repeatable: the first that answers is used).
    #[arg(long = "registrar", value_name = "ADDR:PORT", value_parser = parse_registrar, default_value = "127.0.0.1:3863")]
    pub registrars: Vec<SocketAddr>,
    /// How to talk ASAP to the registrar: tcp (rsplb registrars) or sctp (RFC 5352, rsplib
    /// registrars; needs kernel SCTP).
    #[arg(long, value_enum, default_value_t = AsapTransportKind::Tcp)]
    pub asap_transport: AsapTransportKind,
    /// How many elements to ask for (default: the registrar's choice).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub items: Option<u32>,
    /// Milliseconds to wait for the registrar.
    #[arg(long, default_value_t = 3000)]
    pub timeout: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    #[command(flatten)]
    pub admin: HandlespaceArgs,
    /// Read the handlespace over ENRP from this registrar's ENRP endpoint instead (as rsplib's
    /// hsdump does; works with any registrar of the scope, without its admin endpoint).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    pub registrar: Option<SocketAddr>,
    /// How to reach --registrar: sctp (rsplib's registrars speak only SCTP), tcp, or auto (SCTP
    /// where this kernel has it, else or failing that TCP; rsplb's registrars speak both).
    #[arg(long, value_enum, default_value_t = EnrpTransportKind::Auto, requires = "registrar")]
    pub enrp_transport: EnrpTransportKind,
}

/// `--enrp-transport` of `rsplb handlespace --registrar`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EnrpTransportKind {
    Auto,
    Sctp,
    Tcp,
}

#[derive(Args, Debug)]
pub struct HandlespaceArgs {
    /// The registrar's admin endpoint [default: the HTTP endpoint of the `rsplb run` with an
    /// embedded registrar on this host, when exactly one serves one; else 127.0.0.1:3870,
    /// `rsp-registrar`'s default].
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    pub admin: Option<SocketAddr>,
    /// Milliseconds to wait for the registrar.
    #[arg(long, default_value_t = 3000)]
    pub timeout: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl HandlespaceArgs {
    /// `--admin`, else the one daemon with an embedded registrar and an HTTP endpoint (which
    /// serves the registrar's admin paths), else `rsp-registrar`'s default.
    pub fn endpoint(&self) -> SocketAddr {
        self.admin.unwrap_or_else(|| {
            let running = std::fs::read_dir(rsplb::state::STATE_ROOT)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|d| {
                    let iface = d.file_name().into_string().ok()?;
                    rsplb::daemon::status::DaemonStatus::read(&iface).ok()?
                });
            registrar_endpoint(running)
        })
    }
}

/// The HTTP endpoint of the one daemon among `running` with an embedded registrar and one,
/// else `rsp-registrar`'s default admin endpoint.
fn registrar_endpoint(
    running: impl Iterator<Item = rsplb::daemon::status::DaemonStatus>,
) -> SocketAddr {
    let found: Vec<SocketAddr> = running
        .filter_map(|st| st.registrar.as_ref().and(st.http))
        .collect();
    match found.as_slice() {
        [one] => *one,
        _ => rsplb_registrar::config::DEFAULT_ADMIN,
    }
}

/// Runs one RSerPool subcommand (builds its own tokio runtime: call it outside any runtime).
pub fn run(cmd: RserpoolCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cmd {
        RserpoolCommand::Pe(PeCommand::Register(args)) => {
            let config = sidecar_config(&args)?;
            runtime.block_on(async {
                sidecar::run(config, rsplb_registrar::shell::shutdown_signal())
                    .await
                    .context("pool element sidecar")
            })
        }
        RserpoolCommand::Resolve(args) => {
            let out = runtime.block_on(resolve(&args))?;
            print!("{out}");
            Ok(())
        }
        RserpoolCommand::Registrars(args) => {
            let snapshot = fetch_registrars(args.endpoint(), Duration::from_millis(args.timeout))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&snapshot)?);
            } else {
                print!("{}", registrars_table(&snapshot));
            }
            Ok(())
        }
        RserpoolCommand::Handlespace(DumpArgs {
            registrar: Some(addr),
            admin: args,
            enrp_transport,
        }) => {
            use rsplb_registrar::client::enrp_dump::{DumpTransport, dump_with};
            let transport = match enrp_transport {
                EnrpTransportKind::Auto => DumpTransport::Auto,
                EnrpTransportKind::Sctp => DumpTransport::Sctp,
                EnrpTransportKind::Tcp => DumpTransport::Tcp,
            };
            let d = runtime.block_on(dump_with(
                addr,
                Duration::from_millis(args.timeout),
                transport,
            ))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&dump_json(&d))?);
            } else {
                print!("{}", dump_table(&d));
            }
            Ok(())
        }
        RserpoolCommand::Handlespace(DumpArgs { admin: args, .. }) => {
            let snapshot = fetch_handlespace(args.endpoint(), Duration::from_millis(args.timeout))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&snapshot)?);
            } else {
                print!("{}", handlespace_table(&snapshot));
            }
            Ok(())
        }
    }
}

/// The sidecar configuration the command line describes, or what is wrong with it.
pub fn sidecar_config(args: &PeRegisterArgs) -> Result<SidecarConfig> {
    let client = if args.registrars.is_empty() {
        ClientConfig {
            announce: Some(AnnounceConfig {
                group: args.announce,
                ..AnnounceConfig::default()
            }),
            ..ClientConfig::default()
        }
    } else {
        ClientConfig::with_registrars(args.registrars.iter().copied())
    };
    let client = ClientConfig {
        transport: args.asap_transport.into(),
        ..client
    };
    let transport = match args.transport {
        TransportKind::Tcp => TransportAddress::Tcp {
            port: args.addr.port(),
            transport_use: TransportUse::DataOnly,
            addr: args.addr.ip(),
        },
        TransportKind::Udp => TransportAddress::Udp {
            port: args.addr.port(),
            addr: args.addr.ip(),
        },
        TransportKind::Sctp => TransportAddress::Sctp {
            port: args.addr.port(),
            transport_use: TransportUse::DataOnly,
            addrs: vec![args.addr.ip()],
        },
    };
    if args.addr.port() == 0 {
        bail!("{}: the server's port must not be 0", args.addr);
    }
    let mut element = PoolElementConfig::new(args.pool.clone(), transport);
    element.policy = args.policy.clone();
    element.id = args.id;
    element.registration_life = Duration::from_millis(u64::from(args.lifetime));
    let check = match (args.check, args.check_target.as_deref()) {
        (None, _) => None,
        (Some(CheckKind::Tcp), target) => Some(HealthCheck::Tcp {
            target: check_addr(target, args.addr)?,
        }),
        (Some(CheckKind::Udp), target) => Some(HealthCheck::Udp {
            target: check_addr(target, args.addr)?,
            payload: args.check_send.as_bytes().to_vec(),
            expect: args.check_expect.as_ref().map(|s| s.as_bytes().to_vec()),
        }),
        (Some(CheckKind::Http), target) => {
            let text = target
                .map(str::to_string)
                .unwrap_or_else(|| format!("http://{}/", args.addr));
            let target: HttpTarget = text
                .parse()
                .with_context(|| format!("--check-target {text:?}"))?;
            Some(HealthCheck::Http(target))
        }
        (Some(CheckKind::Exec), Some(command)) if !command.trim().is_empty() => {
            Some(HealthCheck::Exec {
                command: command.to_string(),
            })
        }
        (Some(CheckKind::Exec), _) => {
            bail!("--check exec needs --check-target COMMAND (run with sh -c; exit 0 = healthy)")
        }
    };
    if args.check_expect.is_some() && args.check != Some(CheckKind::Udp) {
        bail!("--check-expect applies to --check udp only");
    }
    let mut config = SidecarConfig::new(client, element);
    config.check = check;
    config.interval = Duration::from_millis(args.check_interval);
    config.timeout = Duration::from_millis(args.check_timeout);
    config.rise = args.rise;
    config.fall = args.fall;
    Ok(config)
}

fn check_addr(target: Option<&str>, default: SocketAddr) -> Result<SocketAddr> {
    match target {
        None => Ok(default),
        Some(t) => parse_socket_addr(t).map_err(|e| anyhow!("--check-target: {e}")),
    }
}

async fn resolve(args: &ResolveArgs) -> Result<String> {
    let timeout = Duration::from_millis(args.timeout.max(1));
    let client = ClientConfig {
        registrars: args.registrars.clone(),
        transport: args.asap_transport.into(),
        connect_timeout: timeout,
        request_timeout: timeout,
        hunt_timeout: timeout,
        request_attempts: 1,
        ..ClientConfig::default()
    };
    let pu = PoolUser::new(client, CacheConfig::default())?;
    let r = pu
        .resolve_fresh(&args.pool, args.items)
        .await
        .with_context(|| format!("resolving pool {}", args.pool))?;
    Ok(if args.json {
        let json = serde_json::json!({
            "pool": r.pool_handle.to_string(),
            "registrar": r.registrar.to_string(),
            "policy": r.policy.as_ref().map(policy_json),
            "elements": r.elements.iter().map(element_json).collect::<Vec<_>>(),
        });
        format!("{}\n", serde_json::to_string_pretty(&json)?)
    } else {
        resolution_table(&r.pool_handle, r.registrar, r.policy.as_ref(), &r.elements)
    })
}

fn policy_json(p: &Policy) -> serde_json::Value {
    let mut v = serde_json::json!({
        "name": policy_name(p.type_code()),
        "policy_type": p.type_code(),
    });
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in p.named_values() {
            obj.insert(k.to_string(), serde_json::json!(val));
        }
    }
    v
}

fn element_json(e: &PoolElement) -> serde_json::Value {
    serde_json::json!({
        "id": e.id.0,
        "id_hex": e.id.to_string(),
        "address": transport_address(&e.user_transport),
        "addresses": e.user_transport.addrs(),
        "port": e.user_transport.port(),
        "protocol": protocol_name(&e.user_transport),
        "policy": policy_json(&e.policy),
        "home_registrar": e.home_registrar.0,
        "registration_life_ms": e.registration_life_ms,
    })
}

/// `name` or `name weight=3 load=12.5%`.
fn policy_text(p: &Policy) -> String {
    let mut s = policy_name(p.type_code());
    for (k, v) in p.named_values() {
        if k.starts_with("load") || k.ends_with("dpf") {
            let _ = write!(s, " {k}={:.1}%", percent(v));
        } else {
            let _ = write!(s, " {k}={v}");
        }
    }
    s
}

fn percent(fraction: u32) -> f64 {
    f64::from(fraction) * 100.0 / f64::from(u32::MAX)
}

fn protocol_name(t: &TransportAddress) -> &'static str {
    use rsplb_registrar::types::TransportProtocol as P;
    match t.protocol() {
        P::Tcp => "tcp",
        P::Udp => "udp",
        P::Sctp => "sctp",
        P::UdpLite => "udplite",
        P::Dccp => "dccp",
    }
}

fn transport_address(t: &TransportAddress) -> String {
    match t.addrs().first() {
        Some(ip) => SocketAddr::new(*ip, t.port()).to_string(),
        None => format!("*:{}", t.port()),
    }
}

fn resolution_table(
    pool: &PoolHandle,
    registrar: SocketAddr,
    policy: Option<&Policy>,
    elements: &[PoolElement],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pool {pool}: policy {}, {} element(s) from registrar {registrar}",
        policy.map_or_else(|| "unknown".to_string(), policy_text),
        elements.len()
    );
    let _ = writeln!(
        out,
        "{:<10} {:<40} {:<6} {:<10} {:>10}  POLICY",
        "ID", "ADDRESS", "PROTO", "HOME", "LIFE_MS"
    );
    for e in elements {
        let _ = writeln!(
            out,
            "{:<10} {:<40} {:<6} {:<10} {:>10}  {}",
            e.id.to_string(),
            transport_address(&e.user_transport),
            protocol_name(&e.user_transport),
            e.home_registrar.to_string(),
            e.registration_life_ms,
            policy_text(&e.policy)
        );
    }
    out
}

/// GET /handlespace from a registrar's admin endpoint.
pub fn fetch_handlespace(admin: SocketAddr, timeout: Duration) -> Result<HandlespaceSnapshot> {
    let body = http_get(admin, "/handlespace", timeout)
        .with_context(|| format!("asking the registrar's admin endpoint at {admin}"))?;
    serde_json::from_slice(&body).with_context(|| {
        format!("reading the handlespace from {admin} (not rsplb's admin endpoint?)")
    })
}

/// GET /registrars from a registrar's admin endpoint.
pub fn fetch_registrars(admin: SocketAddr, timeout: Duration) -> Result<RegistrarsSnapshot> {
    let body = http_get(admin, "/registrars", timeout)
        .with_context(|| format!("asking the registrar's admin endpoint at {admin}"))?;
    serde_json::from_slice(&body).with_context(|| {
        format!("reading the registrars from {admin} (not rsplb's admin endpoint?)")
    })
}

fn registrars_table(s: &RegistrarsSnapshot) -> String {
    let mut out = String::new();
    let state = match s.sync_state {
        None => "alone (ENRP off)".to_string(),
        Some(st) => serde_json::to_value(st)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    };
    let _ = writeln!(
        out,
        "registrar {}: {state}, {} own element(s), checksum 0x{:04x}",
        s.registrar_id_hex, s.own_elements, s.checksum
    );
    if s.peers.is_empty() {
        let _ = writeln!(out, "no peers");
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<10} {:<28} {:<12} {:>10} {:>7} {:>7} {:>9} {:<6}",
        "ID", "ENDPOINT", "STATE", "HEARD", "THEIRS", "OURS", "ELEMENTS", "MENTOR"
    );
    for p in &s.peers {
        let state = serde_json::to_value(p.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<10} {:<28} {:<12} {:>10} {:>7} {:>7} {:>9} {:<6}",
            p.registrar_id_hex,
            p.endpoint,
            state,
            format!("{} ago", human_ms(p.last_heard_ms)),
            p.checksum
                .map_or_else(|| "-".to_string(), |c| format!("{c:04x}")),
            format!("{:04x}", p.local_checksum),
            p.owned_elements,
            if p.mentor { "yes" } else { "" }
        );
    }
    out
}

fn dump_json(d: &rsplb_registrar::client::enrp_dump::EnrpDump) -> serde_json::Value {
    serde_json::json!({
        "registrar_id": d.registrar.0,
        "registrar_id_hex": d.registrar.to_string(),
        "checksum": d.checksum,
        "peers": d.peers.iter().map(|p| serde_json::json!({
            "registrar_id": p.id.0,
            "registrar_id_hex": p.id.to_string(),
            "endpoint": transport_address(&p.transport),
        })).collect::<Vec<_>>(),
        "pools": d.pools.iter().map(|(h, els)| serde_json::json!({
            "handle": h.to_string(),
            "elements": els.iter().map(|e| {
                let mut j = element_json(e);
                j["home_registrar"] = serde_json::json!(e.home_registrar.0);
                j
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn dump_table(d: &rsplb_registrar::client::enrp_dump::EnrpDump) -> String {
    let mut out = String::new();
    let n: usize = d.pools.iter().map(|(_, e)| e.len()).sum();
    let _ = writeln!(
        out,
        "registrar {} (over ENRP): {} pool(s), {n} element(s), own checksum {}",
        d.registrar,
        d.pools.len(),
        d.checksum
            .map_or_else(|| "unknown".to_string(), |c| format!("0x{c:04x}"))
    );
    for p in &d.peers {
        let _ = writeln!(out, "peer {} at {}", p.id, transport_address(&p.transport));
    }
    for (h, els) in &d.pools {
        let _ = writeln!(out, "\npool {h} ({} element(s))", els.len());
        let _ = writeln!(
            out,
            "  {:<10} {:<40} {:<6} {:<24} {:<10}",
            "ID", "ADDRESS", "PROTO", "POLICY", "HOME"
        );
        for e in els {
            let _ = writeln!(
                out,
                "  {:<10} {:<40} {:<6} {:<24} {:<10}",
                e.id.to_string(),
                transport_address(&e.user_transport),
                protocol_name(&e.user_transport),
                policy_text(&e.policy),
                e.home_registrar.to_string()
            );
        }
    }
    out
}

fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Vec<u8>> {
    // A bounded read: a handlespace of 100,000 elements is some tens of MB at most.
    let body = rsplb_registrar::shell::http::get_blocking(
        addr,
        path,
        256 << 20,
        timeout.max(Duration::from_millis(1)),
    )?;
    Ok(body.to_vec())
}

fn handlespace_table(s: &HandlespaceSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "registrar {}: {} pool(s), {} element(s)",
        s.registrar_id_hex, s.pool_count, s.element_count
    );
    for pool in &s.pools {
        let _ = writeln!(
            out,
            "\npool {} (policy {}, {} element(s))",
            pool.handle,
            pool.policy,
            pool.elements.len()
        );
        let _ = writeln!(
            out,
            "  {:<10} {:<40} {:<6} {:<22} {:>7} {:<10} {:>10} {:>10}",
            "ID", "ADDRESS", "PROTO", "POLICY", "LOAD", "HOME", "AGE", "EXPIRES"
        );
        for e in &pool.elements {
            let p = &e.policy;
            let value = match (p.weight, p.priority) {
                (Some(w), _) => format!("{}:{w}", p.name),
                (_, Some(pr)) => format!("{}:{pr}", p.name),
                _ => p.name.clone(),
            };
            let load = p
                .load
                .map_or_else(|| "-".to_string(), |l| format!("{:.1}%", percent(l)));
            let expires = e
                .expires_in_ms
                .map_or_else(|| "never".to_string(), human_ms);
            let _ = writeln!(
                out,
                "  {:<10} {:<40} {:<6} {:<22} {:>7} {:<10} {:>10} {:>10}",
                e.id_hex,
                e.address,
                e.protocol,
                value,
                load,
                format!("{:08x}", e.home_registrar),
                human_ms(e.age_ms),
                expires
            );
        }
    }
    if !s.checksums.is_empty() {
        let _ = writeln!(out, "\nCHECKSUMS (home registrar: elements, PE checksum)");
        for c in &s.checksums {
            let _ = writeln!(
                out,
                "  {}: {} element(s), 0x{:04x}",
                c.registrar_id_hex, c.elements, c.checksum
            );
        }
    }
    out
}

fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

// ---- value parsers (clear errors for bad command lines) ----

fn parse_pool_handle(s: &str) -> Result<PoolHandle, String> {
    s.parse::<PoolHandle>()
        .map_err(|e| format!("{e} (a pool handle is 1 to 32 bytes)"))
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?} is not ADDR:PORT (an IP address and a port; IPv6 in brackets: [fd00::2]:80)")
    })
}

/// ADDR:PORT, or ADDR alone for the ASAP port.
fn parse_registrar(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, client::ASAP_PORT));
    }
    parse_socket_addr(s)
}

fn parse_pe_id(s: &str) -> Result<PeId, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse::<u32>(),
    };
    parsed
        .map(PeId)
        .map_err(|_| format!("{s:?} is not a 32-bit identifier (decimal or 0x-hex)"))
}

/// A policy spec: `NAME[:VALUE[:VALUE]]`, names in rsplb's kebab-case or rsplib's CamelCase.
/// Loads and degradations are percentages (0-100, decimals allowed).
pub fn parse_policy(spec: &str) -> Result<Policy, String> {
    let mut parts = spec.split(':');
    let name: String = parts
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    let values: Vec<&str> = parts.collect();
    let int = |i: usize, what: &str| -> Result<u32, String> {
        let v = values
            .get(i)
            .ok_or_else(|| format!("policy {spec:?} needs a {what} (e.g. {name}:3)"))?;
        v.parse::<u32>()
            .map_err(|_| format!("policy {spec:?}: {what} {v:?} is not a whole number"))
    };
    let frac = |i: usize, what: &str, default: Option<f64>| -> Result<u32, String> {
        let pct = match (values.get(i), default) {
            (Some(v), _) => v
                .trim_end_matches('%')
                .parse::<f64>()
                .map_err(|_| format!("policy {spec:?}: {what} {v:?} is not a percentage"))?,
            (None, Some(d)) => d,
            (None, None) => {
                return Err(format!(
                    "policy {spec:?} needs a {what} in percent (e.g. {name}:10)"
                ));
            }
        };
        if !(0.0..=100.0).contains(&pct) {
            return Err(format!("policy {spec:?}: {what} {pct}% is outside 0-100%"));
        }
        Ok((pct / 100.0 * f64::from(u32::MAX)).round() as u32)
    };
    let max_values = match name.as_str() {
        "roundrobin" | "rr" | "random" => 0,
        "weightedroundrobin"
        | "wrr"
        | "weightedrandom"
        | "wrand"
        | "priority"
        | "leastused"
        | "lu"
        | "randomizedleastused"
        | "rlu" => 1,
        _ => 2,
    };
    if values.len() > max_values {
        return Err(format!("policy {spec:?}: too many values"));
    }
    let policy = match name.as_str() {
        "roundrobin" | "rr" => Policy::RoundRobin,
        "random" => Policy::Random,
        "weightedroundrobin" | "wrr" => Policy::WeightedRoundRobin {
            weight: nonzero_weight(int(0, "weight")?, spec)?,
        },
        "weightedrandom" | "wrand" => Policy::WeightedRandom {
            weight: nonzero_weight(int(0, "weight")?, spec)?,
        },
        "priority" => Policy::Priority {
            priority: int(0, "priority")?,
        },
        "leastused" | "lu" => Policy::LeastUsed {
            load: frac(0, "load", Some(0.0))?,
        },
        "randomizedleastused" | "rlu" => Policy::RandomizedLeastUsed {
            load: frac(0, "load", Some(0.0))?,
        },
        "leastuseddegradation" | "lud" => Policy::LeastUsedDegradation {
            degradation: frac(0, "load degradation", None)?,
            load: frac(1, "load", Some(0.0))?,
        },
        "priorityleastused" | "plu" => Policy::PriorityLeastUsed {
            degradation: frac(0, "load degradation", None)?,
            load: frac(1, "load", Some(0.0))?,
        },
        _ => {
            return Err(format!(
                "unknown policy {spec:?}; known: round-robin, random, weighted-round-robin:W, \
                 weighted-random:W, priority:P, least-used[:LOAD%], randomized-least-used[:LOAD%], \
                 least-used-degradation:DEG%[:LOAD%], priority-least-used:DEG%[:LOAD%]"
            ));
        }
    };
    Ok(policy)
}

fn nonzero_weight(w: u32, spec: &str) -> Result<u32, String> {
    if w == 0 {
        Err(format!("policy {spec:?}: the weight must be at least 1"))
    } else {
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: RserpoolCommand,
    }

    fn parse(args: &[&str]) -> Result<RserpoolCommand, String> {
        let mut argv = vec!["rsplb"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|c| c.cmd)
            .map_err(|e| e.to_string())
    }

    fn pe_args(args: &[&str]) -> Result<PeRegisterArgs, String> {
        let mut argv = vec!["pe", "register"];
        argv.extend_from_slice(args);
        match parse(&argv)? {
            RserpoolCommand::Pe(PeCommand::Register(a)) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn policy_specs_parse_in_both_spellings() {
        assert_eq!(parse_policy("round-robin"), Ok(Policy::RoundRobin));
        assert_eq!(parse_policy("RoundRobin"), Ok(Policy::RoundRobin));
        assert_eq!(
            parse_policy("weighted-round-robin:3"),
            Ok(Policy::WeightedRoundRobin { weight: 3 })
        );
        assert_eq!(
            parse_policy("WeightedRoundRobin:3"),
            Ok(Policy::WeightedRoundRobin { weight: 3 })
        );
        assert_eq!(
            parse_policy("priority:7"),
            Ok(Policy::Priority { priority: 7 })
        );
        assert_eq!(
            parse_policy("least-used"),
            Ok(Policy::LeastUsed { load: 0 })
        );
        assert_eq!(
            parse_policy("least-used:100"),
            Ok(Policy::LeastUsed { load: u32::MAX })
        );
        let Ok(Policy::LeastUsedDegradation { load, degradation }) =
            parse_policy("least-used-degradation:50:0")
        else {
            panic!()
        };
        assert_eq!(load, 0);
        assert!(degradation.abs_diff(u32::MAX / 2) <= 1);
    }

    #[test]
    fn bad_policy_specs_explain_themselves() {
        for (spec, says) in [
            ("fastest", "unknown policy"),
            ("weighted-round-robin", "needs a weight"),
            ("weighted-round-robin:x", "not a whole number"),
            ("weighted-round-robin:0", "at least 1"),
            ("least-used:150", "outside 0-100%"),
            ("round-robin:3", "too many values"),
            ("least-used-degradation", "needs a load degradation"),
        ] {
            let err = parse_policy(spec).unwrap_err();
            assert!(err.contains(says), "{spec}: {err}");
        }
        let err = pe_args(&["web", "127.0.0.1:80", "--policy", "fastest"]).unwrap_err();
        assert!(err.contains("unknown policy"), "{err}");
    }

    #[test]
    fn bad_addresses_and_identifiers_are_refused() {
        let err = pe_args(&["web", "localhost:80"]).unwrap_err();
        assert!(err.contains("is not ADDR:PORT"), "{err}");
        let err = pe_args(&["web", "127.0.0.1"]).unwrap_err();
        assert!(err.contains("is not ADDR:PORT"), "{err}");
        let err = pe_args(&["web", "127.0.0.1:80", "--registrar", "nowhere:3863"]).unwrap_err();
        assert!(err.contains("is not ADDR:PORT"), "{err}");
        let err = pe_args(&["web", "127.0.0.1:80", "--id", "0xzz"]).unwrap_err();
        assert!(err.contains("32-bit identifier"), "{err}");
        let long = "p".repeat(33);
        let err = pe_args(&[&long, "127.0.0.1:80"]).unwrap_err();
        assert!(err.contains("32"), "{err}");
        let err = pe_args(&["web", "127.0.0.1:80", "--rise", "0"]).unwrap_err();
        assert!(err.contains("--rise"), "{err}");
        let args = pe_args(&["web", "127.0.0.1:0"]).unwrap();
        let err = sidecar_config(&args).unwrap_err().to_string();
        assert!(err.contains("port must not be 0"), "{err}");
    }

    #[test]
    fn checks_need_what_they_cannot_guess() {
        let args = pe_args(&["web", "127.0.0.1:80", "--check", "exec"]).unwrap();
        let err = sidecar_config(&args).unwrap_err().to_string();
        assert!(err.contains("--check exec needs --check-target"), "{err}");
        let err = pe_args(&["web", "127.0.0.1:80", "--check-target", "127.0.0.1:81"]).unwrap_err();
        assert!(err.contains("--check"), "{err}");
        let args = pe_args(&[
            "web",
            "127.0.0.1:80",
            "--check",
            "tcp",
            "--check-target",
            "db:5432",
        ])
        .unwrap();
        let err = sidecar_config(&args).unwrap_err().to_string();
        assert!(err.contains("--check-target"), "{err}");
        let args = pe_args(&[
            "web",
            "127.0.0.1:80",
            "--check",
            "http",
            "--check-target",
            "https://127.0.0.1/",
        ])
        .unwrap();
        let err = format!("{:#}", sidecar_config(&args).unwrap_err());
        assert!(err.contains("TLS"), "{err}");
    }

    #[test]
    fn a_full_command_line_becomes_the_sidecar_configuration() {
        let args = pe_args(&[
            "web",
            "198.18.1.2:8080",
            "--policy",
            "priority:5",
            "--check",
            "http",
            "--check-interval",
            "250",
            "--check-timeout",
            "100",
            "--rise",
            "4",
            "--fall",
            "5",
            "--registrar",
            "198.18.0.1:3863",
            "--registrar",
            "198.18.0.2",
            "--id",
            "0x10",
            "--lifetime",
            "9000",
        ])
        .unwrap();
        let c = sidecar_config(&args).unwrap();
        assert_eq!(
            c.client.registrars,
            vec![
                "198.18.0.1:3863".parse::<SocketAddr>().unwrap(),
                "198.18.0.2:3863".parse().unwrap()
            ]
        );
        assert!(c.client.announce.is_none());
        assert_eq!(c.element.policy, Policy::Priority { priority: 5 });
        assert_eq!(c.element.id, Some(PeId(0x10)));
        assert_eq!(c.element.registration_life, Duration::from_secs(9));
        assert_eq!(c.element.user_transport.port(), 8080);
        let Some(HealthCheck::Http(t)) = &c.check else {
            panic!("{:?}", c.check)
        };
        assert_eq!(
            (t.addr, t.path.as_str()),
            ("198.18.1.2:8080".parse().unwrap(), "/")
        );
        assert_eq!((c.rise, c.fall), (4, 5));
        assert_eq!(c.interval, Duration::from_millis(250));
        // Without --registrar: announces on the default group.
        let c = sidecar_config(&pe_args(&["web", "198.18.1.2:80"]).unwrap()).unwrap();
        assert_eq!(
            c.client.announce.map(|a| a.group),
            Some(client::DEFAULT_ANNOUNCE_GROUP)
        );
    }

    #[test]
    fn resolve_and_handlespace_arguments() {
        let RserpoolCommand::Resolve(r) =
            parse(&["resolve", "web", "--items", "5", "--json"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.items, Some(5));
        assert!(r.json);
        assert_eq!(
            r.registrars,
            vec!["127.0.0.1:3863".parse::<SocketAddr>().unwrap()]
        );
        let RserpoolCommand::Handlespace(h) = parse(&["handlespace"]).unwrap() else {
            panic!()
        };
        assert_eq!(h.admin.admin, None);
        assert_eq!(h.registrar, None);
        let RserpoolCommand::Handlespace(h) =
            parse(&["handlespace", "--registrar", "198.18.0.2:9901"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(h.registrar, Some("198.18.0.2:9901".parse().unwrap()));
        assert!(parse(&["handlespace", "--admin", "x"]).is_err());
        assert!(parse(&["handlespace", "--registrar", "x"]).is_err());
        assert!(parse(&["resolve", "web", "--items", "0"]).is_err());
    }

    /// Without --admin, the one daemon that embeds a registrar and serves HTTP is asked;
    /// none, or several, leave rsp-registrar's default.
    #[test]
    fn handlespace_finds_the_daemons_endpoint() {
        use rsplb::daemon::status::{DaemonStatus, RegistrarStatus};
        let daemon = |http: Option<&str>, registrar: bool| DaemonStatus {
            pid: 1,
            interface: "eth1".into(),
            started_unix_ms: 0,
            updated_unix_ms: 0,
            interval_ms: 5000,
            http: http.map(|h| h.parse().unwrap()),
            registrar: registrar.then(|| RegistrarStatus {
                id: "1".into(),
                asap: vec![],
                answering: true,
                pools: 0,
                elements: 0,
                asap_connections: 0,
                sync_state: None,
                enrp_peers: vec![],
            }),
            reconcile: None,
        };
        let default: SocketAddr = "127.0.0.1:3870".parse().unwrap();
        let with = |l: Vec<DaemonStatus>| registrar_endpoint(l.into_iter());
        assert_eq!(with(vec![]), default);
        assert_eq!(
            with(vec![
                daemon(Some("127.0.0.1:9464"), true),
                daemon(Some("127.0.0.1:9465"), false),
                daemon(None, true),
            ]),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            with(vec![
                daemon(Some("127.0.0.1:9464"), true),
                daemon(Some("127.0.0.1:9466"), true),
            ]),
            default
        );
    }

    #[test]
    fn the_asap_transport_is_tcp_unless_sctp_is_asked_for() {
        let RserpoolCommand::Resolve(r) = parse(&["resolve", "web"]).unwrap() else {
            panic!()
        };
        assert_eq!(r.asap_transport, AsapTransportKind::Tcp);
        let RserpoolCommand::Resolve(r) =
            parse(&["resolve", "web", "--asap-transport", "sctp"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.asap_transport, AsapTransportKind::Sctp);
        let args = pe_args(&[
            "EchoPool",
            "0.0.0.0:7",
            "--transport",
            "sctp",
            "--asap-transport",
            "sctp",
            "--registrar",
            "198.18.0.1:3863",
        ])
        .unwrap();
        let c = sidecar_config(&args).unwrap();
        assert_eq!(c.client.transport, AsapTransport::Sctp);
        assert_eq!(
            c.element.user_transport.protocol(),
            rsplb_registrar::types::TransportProtocol::Sctp
        );
        assert!(parse(&["resolve", "web", "--asap-transport", "udp"]).is_err());
    }

    #[test]
    fn durations_print_for_people() {
        assert_eq!(human_ms(250), "250ms");
        assert_eq!(human_ms(1500), "1.5s");
        assert_eq!(human_ms(61_000), "1m01s");
        assert_eq!(human_ms(3_660_000), "1h01m");
    }

    /// `resolve` and `handlespace` against a real registrar (in-process, loopback ports).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resolve_and_handlespace_show_a_registered_element() {
        use rsplb_registrar::client::PoolElementHandle;
        use rsplb_registrar::config::RegistrarConfig;
        use rsplb_registrar::shell::Registrar;

        let mut config = RegistrarConfig {
            asap_listen: vec!["127.0.0.1:0".parse().unwrap()],
            admin: Some("127.0.0.1:0".parse().unwrap()),
            ..RegistrarConfig::default()
        };
        config.announce.enabled = false;
        let registrar = Registrar::bind(config).await.unwrap();
        let asap = registrar.asap_addrs()[0];
        let admin = registrar.admin_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(registrar.run(async {
            let _ = stopped.await;
        }));

        let args = pe_args(&[
            "cli",
            "127.0.0.1:8080",
            "--policy",
            "weighted-round-robin:3",
            "--id",
            "0xabc",
        ])
        .unwrap();
        let mut sidecar = sidecar_config(&args).unwrap();
        sidecar.client = ClientConfig::with_registrars([asap]);
        let pe = PoolElementHandle::register(sidecar.client, sidecar.element)
            .await
            .unwrap();

        let resolve_args = |json| ResolveArgs {
            pool: "cli".parse().unwrap(),
            registrars: vec![asap],
            asap_transport: AsapTransportKind::Tcp,
            items: None,
            timeout: 5000,
            json,
        };
        let table = resolve(&resolve_args(false)).await.unwrap();
        assert!(table.contains("weighted_round_robin"), "{table}");
        assert!(
            table.contains("00000abc") && table.contains("127.0.0.1:8080"),
            "{table}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&resolve(&resolve_args(true)).await.unwrap()).unwrap();
        assert_eq!(json["elements"][0]["id"], 0xabc);
        assert_eq!(json["elements"][0]["policy"]["weight"], 3);
        assert_eq!(json["policy"]["name"], "weighted_round_robin");

        let snapshot =
            tokio::task::spawn_blocking(move || fetch_handlespace(admin, Duration::from_secs(5)))
                .await
                .unwrap()
                .unwrap();
        let table = handlespace_table(&snapshot);
        assert!(table.contains("pool cli"), "{table}");
        assert!(
            table.contains("00000abc") && table.contains("weighted_round_robin:3"),
            "{table}"
        );

        pe.deregister().await.unwrap();
        let err = resolve(&resolve_args(false)).await.unwrap_err();
        assert!(format!("{err:#}").contains("unknown"), "{err:#}");
        let _ = stop.send(());
        let _ = running.await;
    }
}
