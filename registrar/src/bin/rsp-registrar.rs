//! `rsp-registrar`: an RSerPool registrar (ASAP, RFC 5352) over SCTP and TCP, with server announces over
//! UDP multicast and a JSON admin endpoint.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use rsplb_registrar::config::RegistrarConfig;
use rsplb_registrar::shell::Registrar;

#[derive(Parser, Debug)]
#[command(
    name = "rsp-registrar",
    version,
    about = "RSerPool registrar: pool elements register here, pool users resolve pools here",
    long_about = "RSerPool registrar (ASAP, RFC 5352; ENRP, RFC 5353).\n\n\
        Pool elements (servers) register into named pools over ASAP; pool users (clients, and the \
        rsplb load balancer) resolve pools into elements. The registrar monitors every element it \
        is home of with keep-alives (default every 250 ms, 250 ms to answer) and removes it when \
        it stops answering, when its connection closes, when its registration life runs out, or \
        after 3 Endpoint Unreachable reports.\n\n\
        ASAP runs over SCTP (PPID 11; what rsplib and the RFC speak) and over TCP (each message \
        framed by its own length field; for hosts without SCTP), both on port 3863 by default: \
        without --asap-sctp, SCTP listens on the addresses and ports TCP got, where the kernel \
        has SCTP (without it the registrar says so once and serves TCP only). The registrar \
        announces itself with ASAP Server Announces to UDP multicast 239.0.0.50:3863 every second. \
        Operators read the handlespace as JSON from the admin endpoint (GET /handlespace, GET \
        /stats, GET /registrars; default 127.0.0.1:3870).\n\n\
        With --enrp, several registrars of one operation scope share the handlespace (ENRP, port \
        9901, over SCTP with PPID 12 as rsplib's registrars speak it, and over TCP on hosts \
        without SCTP: without --enrp-sctp, SCTP listens where TCP does when the kernel has it, \
        the registrar names its SCTP endpoint to its peers and dials them over SCTP first, TCP \
        when no association comes up): any of them serves any client, and when one dies another becomes the \
        home of its elements within about a second (no element leaves a pool because its \
        registrar failed). A starting registrar first looks for a mentor (--peer, \
        --enrp-multicast), downloads the handlespace from it, and answers clients only then.\n\n\
        With a [tls] section in the configuration file, ASAP (IANA port 3864) and ENRP are served \
        over TLS with mutual authentication (RFC 5355), and [[security.identities]] says which \
        certificate identities may register in which pools, resolve, or peer as registrars.\n\n\
        Settings come from defaults, then the TOML file of --config, then the flags below.",
    after_long_help = "Examples:\n  \
        rsp-registrar\n  \
        rsp-registrar --asap 198.18.0.1:3863 --announce-interface 198.18.0.1\n  \
        rsp-registrar --asap-sctp 198.18.0.1:3863 --asap-sctp 198.18.1.1:3863   # SCTP on these only\n  \
        rsp-registrar --no-asap-sctp                                             # TCP only\n  \
        rsp-registrar --config /etc/rsplb/registrar.toml --keepalive-interval 1000\n  \
        rsp-registrar --no-announce --admin 127.0.0.1:3870 --id 0x10\n  \
        rsp-registrar --enrp 198.18.0.1:9901 --peer 198.18.0.2:9901 --peer 198.18.0.3:9901\n  \
        rsp-registrar --enrp 0.0.0.0:9901 --enrp-multicast 239.0.0.51:9901 --enrp-interface 198.18.0.1\n  \
        rsp-registrar --enrp 198.18.0.1:9901 --no-enrp-sctp --peer 198.18.0.2:9901   # ENRP over TCP only\n  \
        curl -s http://127.0.0.1:3870/handlespace\n  \
        curl -s http://127.0.0.1:3870/registrars\n\n\
        A configuration file (every key optional; these are the defaults, as in \
        registrar/rsp-registrar.example.toml; lines with # are examples of keys unset by default):\n  \
        # registrar_id = 0x0a0b0c0d\n  \
        asap_listen = [\"0.0.0.0:3863\"]\n  \
        # asap_sctp_listen = [\"0.0.0.0:3863\"]\n  \
        admin = \"127.0.0.1:3870\"\n  \
        # admin_unix = \"/run/rsplb/admin.sock\"\n  \
        [connections]\n  \
        write_timeout_ms = 10000\n  \
        idle_timeout_ms = 300000\n  \
        partial_message_timeout_ms = 10000\n  \
        admin_timeout_ms = 10000\n  \
        [announce]\n  \
        enabled = true\n  \
        multicast_group = \"239.0.0.50:3863\"\n  \
        # interface = \"198.18.0.1\"\n  \
        ttl = 30\n  \
        interval_ms = 1000\n  \
        targets = []\n  \
        advertise = []\n  \
        [timers]\n  \
        keepalive_interval_ms = 250\n  \
        keepalive_timeout_ms = 250\n  \
        stall_grace_ms = 100\n  \
        [limits]\n  \
        max_pools = 10000\n  \
        max_elements_per_pool = 100000\n  \
        max_elements = 200000\n  \
        max_home_elements = 64000\n  \
        max_elements_per_peer = 1000\n  \
        max_peers = 20000\n  \
        max_peers_per_address = 1000\n  \
        max_message_size = 65535\n  \
        max_pending_messages = 2048\n  \
        max_errors = 10\n  \
        error_window_ms = 10000\n  \
        max_bad_pe_reports = 3\n  \
        distinct_reporters = true\n  \
        [rate_limits]\n  \
        registration = { rate_per_s = 100, burst = 200 }\n  \
        handle_resolution = { rate_per_s = 20000, burst = 2000 }\n  \
        endpoint_unreachable = { rate_per_s = 10, burst = 20 }\n  \
        [security]\n  \
        allow_foreign_addresses = false\n  \
        # allow_pe = [\"198.18.1.0/24\"]\n  \
        # allow_pu = [\"198.18.0.0/15\"]\n  \
        # allow_registrar = [\"198.18.0.0/28\"]\n  \
        # [[security.identities]]\n  \
        # identity = \"web-*.pe.example.net\"\n  \
        # register = [\"web\", \"web-*\"]\n  \
        # [[security.identities]]\n  \
        # identity = \"*.pu.example.net\"\n  \
        # resolve = true\n  \
        # [[security.identities]]\n  \
        # identity = \"pr*.example.net\"\n  \
        # registrar = true\n  \
        [resolution]\n  \
        default_items = 3\n  \
        max_items = 128\n  \
        max_increment = 0\n  \
        [enrp]\n  \
        listen = []\n  \
        # sctp_listen = [\"0.0.0.0:9901\"]\n  \
        peers = []\n  \
        # multicast_group = \"239.0.0.51:9901\"\n  \
        # interface = \"198.18.0.1\"\n  \
        heartbeat_interval_ms = 200\n  \
        max_time_last_heard_ms = 600\n  \
        max_time_no_response_ms = 400\n  \
        takeover_expiry_ms = 2000\n  \
        takeover_grace_ms = 5000\n  \
        mentor_discovery_ms = 1000\n  \
        download_timeout_ms = 10000\n  \
        max_elements_per_table_response = 128\n  \
        max_table_response_bytes = 16384\n  \
        max_peers = 64\n  \
        # [tls]\n  \
        # certificate = \"/etc/rsplb/registrar.crt\"\n  \
        # private_key = \"/etc/rsplb/registrar.key\"\n  \
        # ca = \"/etc/rsplb/ca.crt\"\n  \
        # asap_listen = [\"0.0.0.0:3864\"]\n  \
        # enrp = true\n  \
        # require = false\n\n\
        Logging: RUST_LOG=debug (default info)."
)]
struct Cli {
    /// TOML configuration file; flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Registrar identifier (decimal or 0x-hex, not 0); random when absent.
    #[arg(long, value_name = "ID", value_parser = parse_u32)]
    id: Option<u32>,
    /// ASAP listen address (repeatable) [default 0.0.0.0:3863].
    #[arg(long = "asap", value_name = "ADDR:PORT")]
    asap: Vec<SocketAddr>,
    /// ASAP-over-SCTP listen address (repeatable; an unspecified address is every local
    /// address, multi-homed) [default: the --asap addresses and ports, where the kernel has
    /// SCTP].
    #[arg(
        long = "asap-sctp",
        value_name = "ADDR:PORT",
        conflicts_with = "no_asap_sctp"
    )]
    asap_sctp: Vec<SocketAddr>,
    /// Serve ASAP over TCP only.
    #[arg(long)]
    no_asap_sctp: bool,
    /// Admin endpoint address [default 127.0.0.1:3870].
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "no_admin")]
    admin: Option<SocketAddr>,
    /// Do not serve the admin endpoint.
    #[arg(long)]
    no_admin: bool,
    /// Do not send server announces.
    #[arg(long)]
    no_announce: bool,
    /// Multicast group for announces [default 239.0.0.50:3863].
    #[arg(long, value_name = "GROUP:PORT")]
    announce_group: Option<SocketAddr>,
    /// IPv4 address of the interface to send multicast announces on.
    #[arg(long, value_name = "ADDR")]
    announce_interface: Option<Ipv4Addr>,
    /// Multicast TTL of announces (1-255) [default 30].
    #[arg(long, value_name = "TTL")]
    announce_ttl: Option<u32>,
    /// Announce cycle in milliseconds [default 1000].
    #[arg(long, value_name = "MS")]
    announce_interval: Option<u64>,
    /// Also send every announce to this unicast UDP address (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    announce_target: Vec<SocketAddr>,
    /// Keep-alive interval in milliseconds [default 250].
    #[arg(long, value_name = "MS")]
    keepalive_interval: Option<u64>,
    /// Keep-alive ack timeout in milliseconds [default 250].
    #[arg(long, value_name = "MS")]
    keepalive_timeout: Option<u64>,
    /// Endpoint Unreachable reports that remove an element [default 3].
    #[arg(long, value_name = "N")]
    max_bad_pe_reports: Option<u32>,
    /// Accept user transport addresses that are not the registering connection's.
    #[arg(long)]
    allow_foreign_addresses: bool,
    /// ENRP listen address (repeatable; IANA port 9901): join an operation scope with the
    /// registrars of --peer and/or --enrp-multicast. Without it the registrar is alone.
    #[arg(long = "enrp", value_name = "ADDR:PORT")]
    enrp: Vec<SocketAddr>,
    /// Serve ENRP over SCTP on ADDR:PORT only (repeatable: one multi-homed endpoint, every
    /// address with the same port) [default: where --enrp listens, when the kernel has SCTP].
    #[arg(
        long = "enrp-sctp",
        value_name = "ADDR:PORT",
        requires = "enrp",
        conflicts_with = "no_enrp_sctp"
    )]
    enrp_sctp: Vec<SocketAddr>,
    /// ENRP over TCP only.
    #[arg(long, requires = "enrp")]
    no_enrp_sctp: bool,
    /// A peer registrar's ENRP endpoint (repeatable).
    #[arg(long = "peer", value_name = "ADDR:PORT", requires = "enrp")]
    peers: Vec<SocketAddr>,
    /// Find peers by ENRP Presence on this multicast group (rsplib's is 239.0.0.51:9901).
    #[arg(long, value_name = "GROUP:PORT", requires = "enrp")]
    enrp_multicast: Option<SocketAddr>,
    /// IPv4 address of the interface for ENRP multicast.
    #[arg(long, value_name = "ADDR", requires = "enrp_multicast")]
    enrp_interface: Option<Ipv4Addr>,
    /// ENRP Presence cycle in milliseconds [default 200].
    #[arg(long, value_name = "MS", requires = "enrp")]
    peer_heartbeat: Option<u64>,
    /// Silence before a peer is asked for a Presence, in milliseconds [default 600].
    #[arg(long, value_name = "MS", requires = "enrp")]
    peer_max_last_heard: Option<u64>,
    /// Time to answer that before the peer is taken over, in milliseconds [default 400].
    #[arg(long, value_name = "MS", requires = "enrp")]
    peer_max_no_response: Option<u64>,
    /// How long a starting registrar looks for a mentor, in milliseconds [default 1000].
    #[arg(long, value_name = "MS", requires = "enrp")]
    mentor_discovery: Option<u64>,
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a 32-bit number: {e}"))
}

fn build_config(cli: &Cli) -> anyhow::Result<RegistrarConfig> {
    let mut c = match &cli.config {
        Some(path) => RegistrarConfig::from_file(path)?,
        None => RegistrarConfig::default(),
    };
    if cli.id.is_some() {
        c.registrar_id = cli.id;
    }
    if !cli.asap.is_empty() {
        c.asap_listen = cli.asap.clone();
    }
    if !cli.asap_sctp.is_empty() {
        c.asap_sctp_listen = Some(cli.asap_sctp.clone());
    }
    if cli.no_asap_sctp {
        c.asap_sctp_listen = Some(Vec::new());
    }
    if let Some(a) = cli.admin {
        c.admin = Some(a);
    }
    if cli.no_admin {
        c.admin = None;
    }
    if cli.no_announce {
        c.announce.enabled = false;
    }
    if let Some(g) = cli.announce_group {
        c.announce.multicast_group = Some(g);
    }
    if let Some(i) = cli.announce_interface {
        c.announce.interface = Some(i);
    }
    if let Some(t) = cli.announce_ttl {
        c.announce.ttl = t;
    }
    if let Some(i) = cli.announce_interval {
        c.announce.interval_ms = i;
    }
    c.announce
        .targets
        .extend(cli.announce_target.iter().copied());
    if let Some(i) = cli.keepalive_interval {
        c.timers.keepalive_interval_ms = i;
    }
    if let Some(t) = cli.keepalive_timeout {
        c.timers.keepalive_timeout_ms = t;
    }
    if let Some(n) = cli.max_bad_pe_reports {
        c.limits.max_bad_pe_reports = n;
    }
    if cli.allow_foreign_addresses {
        c.security.allow_foreign_addresses = true;
    }
    if !cli.enrp.is_empty() {
        c.enrp.listen = cli.enrp.clone();
    }
    if !cli.enrp_sctp.is_empty() {
        c.enrp.sctp_listen = Some(cli.enrp_sctp.clone());
    }
    if cli.no_enrp_sctp {
        c.enrp.sctp_listen = Some(Vec::new());
    }
    c.enrp.peers.extend(cli.peers.iter().copied());
    if let Some(g) = cli.enrp_multicast {
        c.enrp.multicast_group = Some(g);
    }
    if let Some(i) = cli.enrp_interface {
        c.enrp.interface = Some(i);
    }
    if let Some(v) = cli.peer_heartbeat {
        c.enrp.heartbeat_interval_ms = v;
    }
    if let Some(v) = cli.peer_max_last_heard {
        c.enrp.max_time_last_heard_ms = v;
    }
    if let Some(v) = cli.peer_max_no_response {
        c.enrp.max_time_no_response_ms = v;
    }
    if let Some(v) = cli.mentor_discovery {
        c.enrp.mentor_discovery_ms = v;
    }
    c.validate()?;
    Ok(c)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = build_config(&cli).context("configuration")?;
    let registrar = Registrar::bind(config).await?;
    log::info!(
        "registrar {} ready: ASAP on {:?}, admin on {:?}",
        registrar.id(),
        registrar.asap_addrs(),
        registrar.admin_addr()
    );
    registrar
        .run(rsplb_registrar::shell::shutdown_signal())
        .await
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match rsplb_registrar::shell::raise_nofile_limit() {
        Ok(n) => log::debug!("open-file limit: {n}"),
        Err(e) => log::warn!("cannot raise the open-file limit (RLIMIT_NOFILE): {e}"),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rsp-registrar: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("rsp-registrar: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("rsp-registrar").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("rsp-registrar-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("r.toml");
        std::fs::write(
            &file,
            "registrar_id = 5\n[timers]\nkeepalive_interval_ms = 1000\nkeepalive_timeout_ms = 700\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let c = build_config(&cli(&["--config", path, "--keepalive-interval", "300"])).unwrap();
        assert_eq!(c.registrar_id, Some(5));
        assert_eq!(c.timers.keepalive_interval_ms, 300, "flag wins");
        assert_eq!(c.timers.keepalive_timeout_ms, 700, "file value kept");
        assert_eq!(c.limits.max_bad_pe_reports, 3, "default kept");
        let c = build_config(&cli(&["--config", path, "--id", "0x10", "--no-admin"])).unwrap();
        assert_eq!(c.registrar_id, Some(16));
        assert_eq!(c.admin, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_command_lines_are_clear_errors() {
        let e = build_config(&cli(&["--keepalive-timeout", "0"])).unwrap_err();
        assert!(
            format!("{e:#}").contains("timers.keepalive_timeout_ms"),
            "{e:#}"
        );
        assert!(Cli::try_parse_from(["rsp-registrar", "--id", "zz"]).is_err());
        assert!(Cli::try_parse_from(["rsp-registrar", "--asap", "nowhere"]).is_err());
        let e = build_config(&cli(&["--config", "/nonexistent/r.toml"])).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/r.toml"), "{e:#}");
    }
}
