//! The `rsplb` command line: a thin layer over `rsplb::loader` and `rsplb::control::Balancer`,
//! plus the RSerPool tools (`pe register`, `resolve`, `handlespace`) of `rserpool_cli`.

mod ops;
mod rserpool_cli;

use std::{net::IpAddr, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use rsplb::dataplane::events::XdpLogLevel;
use rsplb::{
    addr::{ElementAddr, Mode, PoolHandle, Vip, VipHash, parse_port_range, parse_weight},
    allow::Prefix,
    control::Balancer,
    daemon::{self, configured},
    loader, output,
    state::{AttachOptions, ElementState},
};
use rsplb_registrar::config::RegistrarConfig;

#[derive(Parser)]
#[command(
    name = "rsplb",
    version,
    about = "RSerPool load balancer with an XDP dataplane",
    long_about = "rsplb steers the packets of virtual services (VIPs) to the elements of RSerPool \
        pools with an XDP program and weighted Maglev hashing.\n\n\
        The program and its maps are pinned under /sys/fs/bpf/rsplb/<IFACE>/ and the control-plane \
        state lives in /run/rsplb/<IFACE>/state.json, so every command works with or without the \
        daemon, and the dataplane keeps forwarding when no rsplb process runs.",
    after_long_help = "Examples:\n  \
        rsplb attach eth1\n  \
        rsplb vip add 198.18.0.100:80/tcp --pool web\n  \
        rsplb element add web 198.18.1.2 --weight 3\n  \
        rsplb element add web 198.18.1.3\n  \
        rsplb stats --watch\n  \
        rsplb --netns lb vip list --json\n  \
        rsplb detach eth1"
)]
struct Cli {
    /// Enter the network namespace /run/netns/NAME first (network namespace only; the bpffs
    /// pins stay the host's). Use this rather than `ip netns exec`.
    #[arg(long, global = true, env = "RSPLB_NETNS", value_name = "NAME")]
    netns: Option<String>,
    /// Interface to work on; may be omitted when exactly one interface is attached.
    #[arg(short = 'i', long = "interface", global = true, value_name = "IFACE")]
    iface: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load the XDP program and attach it to an interface (re-adopts an existing attachment).
    #[command(
        after_long_help = "The process exits after attaching: the pinned link keeps the \
        program attached. Attaching an interface that rsplb already attached re-adopts it \
        without reloading, so no flow is dropped; --force reloads (keeping VIPs and elements).\n\n\
        Idle flows age out: a DSR flow entry after --dsr-tcp-timeout (TCP, SCTP) or \
        --dsr-udp-timeout, a NAT translation after --nat-tcp-timeout or --nat-udp-timeout (or the \
        VIP's own --nat-timeout); the flow's next packet is then placed as a new flow.\n\n\
        On a veth, frames sent back out (XDP_TX, XDP_REDIRECT) reach the peer only if the peer has \
        an XDP program of its own (XDP_PASS is enough) and the veths that send to this one have \
        checksum offload off (`ethtool -K PEER tx off`); attach warns when it can see otherwise.\n\n\
        Examples:\n  rsplb attach eth1\n  rsplb attach veth0 --generic --maglev-size 4093 --max-vips 8\n  \
        rsplb attach eth1 --dsr-tcp-timeout 900 --dsr-udp-timeout 60\n  \
        rsplb --netns lb attach veth-lb\n  \
        rsplb attach eth1 --recover-state   (state.json lost or damaged: rebuild it from the maps)"
    )]
    Attach(AttachArgs),
    /// Remove the program, its link, maps and state from an interface.
    #[command(after_long_help = "Example:\n  rsplb detach eth1")]
    Detach {
        /// Interface to detach from.
        iface: String,
    },
    /// Manage virtual services.
    #[command(subcommand)]
    Vip(VipCmd),
    /// Manage pool elements (a pool is created by its first element).
    #[command(subcommand)]
    Element(ElementCmd),
    /// Show counters per VIP, per element and global.
    #[command(after_long_help = "Examples:\n  rsplb stats\n  rsplb stats --json\n  \
        rsplb stats --watch 2\n  rsplb stats --watch --json   (one JSON object per line, with rates)")]
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Refresh every SECS seconds (default 1) and show per-second rates.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
        watch: Option<f64>,
    },
    /// Run the daemon: keep next hops resolved, expire NAT state, serve metrics.
    #[command(
        after_long_help = "Stop it with SIGINT or SIGTERM: the dataplane keeps forwarding.\n\n\
        With --registrar, servers register into pools at this host (`rsplb pe register POOL \
        ADDR:PORT --registrar THIS-HOST:3863 --check tcp`, or any RSerPool pool element) and \
        each pool's registered elements become the elements of the rsplb pool of the same name \
        (the pool handle), so VIPs on that pool reach them; an element that deregisters or \
        stops answering keep-alives leaves the dataplane at once. Weights follow the element's \
        policy: weighted round robin / weighted random: its weight; round robin / random: 1; \
        priority: weight 1 for the highest priority of the pool, the others drained; least \
        used: from 100 (idle) down to 1 (fully loaded). Elements added by hand with `element \
        add` are never changed or removed by the registrar.\n\n\
        With --enrp, the embedded registrar joins an operation scope as a full ENRP peer (static \
        --peer registrars, or the [enrp] section of --registrar-config): the pools follow the \
        whole scope's handlespace, whichever registrar an element registered at, and balancers \
        serving the same VIPs from the same scope build the same tables (compare the TABLE \
        DIGEST of `rsplb vip list`). A registrar failure changes nothing in the dataplane.\n\n\
        Examples:\n  rsplb run\n  rsplb -i eth1 run --metrics 127.0.0.1:9464\n  \
        rsplb -i eth1 run --registrar\n  \
        rsplb -i eth1 run --registrar 198.18.0.1:3863 --registrar-config /etc/rsplb/registrar.toml\n  \
        rsplb -i eth1 run --registrar 198.18.0.1:3863 --enrp 198.18.0.1:9901 --peer 198.18.0.2:9901\n  \
        rsplb run --config /etc/rsplb/rsplb.toml\n\n\
        With --config FILE the file declares everything (interface, VIPs, pools and their \
        health checks, the registrar, metrics; see deploy/rsplb.toml): the daemon validates it \
        whole, checks that it applies, attaches the interface if needed, applies it, and only \
        then serves; a file with any error stops it before it changes anything. SIGHUP (or \
        `rsplb reload`) applies the difference of the file as it is then.\n\n\
        Owners: VIPs and elements declared in the file belong to it: a reload changes or \
        removes them. An element that is already there with another owner (added by hand with \
        `element add`, or registered at the registrar) is left as it is; the registrar's \
        elements follow the registrar, hand-added ones stay until `element del`. A VIP added by \
        hand that the file declares is taken over by the file. The command line can still \
        change any element: a change to a file's element lasts until the file changes it."
    )]
    Run {
        /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<SocketAddr>,
        /// Seconds between next-hop refreshes and NAT expiry passes.
        #[arg(long, default_value_t = 5.0, value_name = "SECS")]
        interval: f64,
        /// Run an RSerPool registrar listening for ASAP on ADDR:PORT (default 0.0.0.0:3863, or
        /// the `asap_listen` of --registrar-config) and serve each pool's registered elements.
        #[arg(long, value_name = "ADDR:PORT", num_args = 0..=1)]
        registrar: Option<Option<SocketAddr>>,
        /// The registrar's TOML configuration (the format of `rsp-registrar --config`);
        /// implies --registrar.
        #[arg(long, value_name = "FILE")]
        registrar_config: Option<PathBuf>,
        /// The embedded registrar's ENRP listen address (repeatable; port 9901): join an
        /// operation scope. Implies --registrar.
        #[arg(long = "enrp", value_name = "ADDR:PORT")]
        enrp: Vec<SocketAddr>,
        /// A peer registrar of the scope (its ENRP endpoint; repeatable).
        #[arg(long = "peer", value_name = "ADDR:PORT", requires = "enrp")]
        peers: Vec<SocketAddr>,
        /// The XDP program's event log while the daemon runs: off, error, warn, info, debug or
        /// trace. Events (an empty pool, an unresolved next hop, a table read out of range, ...)
        /// are printed with target `xdp`, at most 3 per second per CPU and kind.
        #[arg(long, value_name = "LEVEL", default_value = "warn")]
        xdp_log: XdpLogLevel,
        /// Everything from this TOML file (see deploy/rsplb.toml); the other options of `run`
        /// are then in the file.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with_all = ["metrics", "registrar", "registrar_config", "enrp", "peers", "interval", "xdp_log"]
        )]
        config: Option<PathBuf>,
    },
    /// Configuration files of `rsplb run --config`.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Have the daemon re-read its configuration file and apply the difference.
    #[command(
        after_long_help = "Signals the daemon serving the interface (SIGHUP, to the pid in \
        /run/rsplb/IFACE/daemon.pid) and waits for its outcome: what it added, changed and \
        removed, or, for a file with any error, why it changed nothing (exit status 1). VIPs \
        and elements the file did not change are not touched: their flows go on. \
        `systemctl reload rsplb` sends the same signal, without waiting for the outcome (see \
        `journalctl -u rsplb` or `rsplb status`).\n\n\
        Examples:\n  rsplb reload\n  rsplb -i eth1 reload --json"
    )]
    Reload {
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for the daemon's outcome.
        #[arg(long, default_value_t = 30.0, value_name = "SECS")]
        wait: f64,
    },
    /// One interface at a glance: VIPs, elements, counters and the daemon serving it.
    #[command(
        after_long_help = "Each VIP with its pool, mode, Maglev table digest, elements \
        in service and counters; each element with its state (active, draining), weight, owner \
        (registrar, or manual: added by hand), next hop and counters; whether `rsplb run` serves \
        the interface (from /run/rsplb/IFACE/daemon.json, which a running daemon refreshes), with \
        its start time, endpoint, embedded registrar and last reconcile. Works without a daemon.\n\n\
        Examples:\n  rsplb status\n  rsplb -i eth1 status --json\n  rsplb --netns lb status"
    )]
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where flows go (`flow get`).
    #[command(subcommand)]
    Flow(ops::FlowCmd),
    #[command(flatten)]
    Rserpool(rserpool_cli::RserpoolCommand),
    /// List the interfaces rsplb is attached to.
    ListInterfaces {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a configuration file without touching anything (no root needed).
    #[command(
        after_long_help = "Reads the file and checks everything `rsplb run --config` \
        would: syntax, unknown keys (a misspelt key is an error), every value, and what they \
        mean together (a VIP naming an undeclared pool, a NAT VIP without `snat`, an element of \
        the other address family, a DSR element with another port, duplicates, a check with no \
        port to go to, the registrar's own options). Every problem is printed as \
        FILE:LINE:COLUMN: PROBLEM; the exit status is 1 if there is any, else a summary is \
        printed.\n\n\
        Examples:\n  rsplb config check /etc/rsplb/rsplb.toml\n  \
        rsplb config check deploy/rsplb.toml --json"
    )]
    Check {
        file: PathBuf,
        /// Print the summary (or the problems) as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct AttachArgs {
    /// Interface to attach to.
    iface: String,
    /// Generic (SKB) mode instead of native (driver) mode.
    #[arg(long)]
    generic: bool,
    /// Entries per Maglev table (a prime).
    #[arg(long, default_value_t = rsplb_common::DEFAULT_MAGLEV_SIZE, value_name = "N")]
    maglev_size: u32,
    /// Number of VIP slots (at most 65535).
    #[arg(long, default_value_t = rsplb_common::DEFAULT_MAX_VIPS, value_name = "N")]
    max_vips: u32,
    /// Number of element slots, all pools together (at most 65535: Maglev entries are 16 bits).
    #[arg(long, default_value_t = rsplb_common::DEFAULT_MAX_ELEMENTS, value_name = "N")]
    max_elements: u32,
    /// Flows the flow table keeps pinned to their element (64 bytes each). The table is 4-way
    /// set-associative: a new flow whose set is full replaces the set's least recently used
    /// flow, which Maglev places on the same element again while its pool is unchanged.
    #[arg(long, default_value_t = rsplb_common::DEFAULT_FLOW_CAPACITY, value_name = "N")]
    flow_capacity: u32,
    /// SNAT source ports for NAT VIPs, inclusive.
    #[arg(long, default_value = "20000-60999", value_name = "MIN-MAX", value_parser = parse_port_range)]
    nat_ports: (u16, u16),
    /// DSR: seconds a TCP or SCTP flow may stay idle before its flow entry ages out (its next
    /// packet is then placed by Maglev like a new flow's).
    #[arg(long, default_value_t = rsplb::state::DEFAULT_TCP_TIMEOUT_S, value_name = "SECS")]
    dsr_tcp_timeout: u32,
    /// DSR: the same for UDP flows.
    #[arg(long, default_value_t = rsplb::state::DEFAULT_UDP_TIMEOUT_S, value_name = "SECS")]
    dsr_udp_timeout: u32,
    /// NAT: seconds a TCP translation may stay idle (a VIP's --nat-timeout overrides it).
    #[arg(long, default_value_t = rsplb::state::DEFAULT_TCP_TIMEOUT_S, value_name = "SECS")]
    nat_tcp_timeout: u32,
    /// NAT: the same for UDP translations.
    #[arg(long, default_value_t = rsplb::state::DEFAULT_UDP_TIMEOUT_S, value_name = "SECS")]
    nat_udp_timeout: u32,
    /// Reload even if already attached (or attached from another network namespace).
    #[arg(long)]
    force: bool,
    /// When /run/rsplb/IFACE/state.json is missing or damaged while the program is attached,
    /// rebuild it from the pinned maps instead of refusing (pool names become recovered-N,
    /// weights come back as the Maglev table's proportions).
    #[arg(long)]
    recover_state: bool,
}

#[derive(Subcommand)]
enum VipCmd {
    /// Add a VIP pointing at a pool.
    #[command(
        after_long_help = "Examples:\n  rsplb vip add 198.18.0.100:80/tcp --pool web\n  \
        rsplb vip add [fd00::100]:53/udp --pool dns --mode nat --snat fd00::1 --nat-timeout 30\n  \
        rsplb vip add 198.18.0.100:443/tcp --pool web --allow 198.18.0.0/16 --allow 203.0.113.7\n  \
        rsplb vip add 198.18.0.100:443/tcp --pool web --hash client   (client affinity)"
    )]
    Add {
        /// ADDR:PORT/PROTO (tcp, udp, sctp); IPv6 in brackets.
        vip: Vip,
        /// Pool handle (1..32 bytes).
        #[arg(long)]
        pool: PoolHandle,
        /// dsr (default) or nat.
        #[arg(long, default_value = "dsr")]
        mode: Mode,
        /// NAT: source address toward the elements.
        #[arg(long, value_name = "ADDR")]
        snat: Option<IpAddr>,
        /// NAT: idle seconds before a translation expires (default: 300 TCP, 30 UDP).
        #[arg(long, value_name = "SECS")]
        nat_timeout: Option<u32>,
        /// Only sources in this prefix may reach the VIP (repeatable; ADDR/LEN or one address,
        /// of the VIP's family). Without --allow, everyone may. Packets from other sources are
        /// dropped in XDP and counted as drop_source_not_allowed (`rsplb stats`, per VIP and
        /// globally); `rsplb vip list` shows the list.
        #[arg(long = "allow", value_name = "PREFIX")]
        allow: Vec<Prefix>,
        /// How new connections are placed: flow (by the 5-tuple: each connection on its own)
        /// or client (by the client's address only: every connection of one client goes to
        /// the same element while the pool is unchanged; one busy client then loads one
        /// element). Established flows stay pinned either way.
        #[arg(long, value_name = "flow|client", default_value = "flow")]
        hash: VipHash,
    },
    /// Change a VIP's pool, mode, SNAT address, allow list or hash (tables switch atomically).
    #[command(
        after_long_help = "Examples:\n  rsplb vip change 198.18.0.100:80/tcp --pool web-v2\n  \
        rsplb vip change 198.18.0.100:80/tcp --allow 198.18.0.0/15   (replaces the list)\n  \
        rsplb vip change 198.18.0.100:80/tcp --allow-all             (removes the list)\n  \
        rsplb vip change 198.18.0.100:80/tcp --hash client           (new connections by client)"
    )]
    Change {
        vip: Vip,
        #[arg(long)]
        pool: Option<PoolHandle>,
        #[arg(long)]
        mode: Option<Mode>,
        #[arg(long, value_name = "ADDR")]
        snat: Option<IpAddr>,
        /// Replace the VIP's allow list with these prefixes (repeatable).
        #[arg(long = "allow", value_name = "PREFIX")]
        allow: Vec<Prefix>,
        /// Remove the VIP's allow list: everyone may reach it.
        #[arg(long, conflicts_with = "allow")]
        allow_all: bool,
        /// flow or client (see `vip add --help`); applies to new connections, established
        /// ones stay where they are.
        #[arg(long, value_name = "flow|client")]
        hash: Option<VipHash>,
    },
    /// Delete a VIP.
    #[command(after_long_help = "Example:\n  rsplb vip del 198.18.0.100:80/tcp")]
    Del { vip: Vip },
    /// List VIPs.
    #[command(after_long_help = "Example:\n  rsplb vip list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ElementCmd {
    /// Add an element to a pool (creates the pool).
    #[command(
        after_long_help = "The port defaults to the VIP's port. DSR cannot change ports: in a \
        pool served by a DSR VIP an element is its address (198.18.1.2 and 198.18.1.2:80 are the \
        same element of a VIP on port 80) and another port is refused. A NAT VIP's elements must \
        be of the VIP's address family.\n\n\
        Owners: an element added here is the command line's: the registrar and the \
        configuration file of `rsplb run --config` leave it as it is (also when they declare \
        the same address), and it stays until `element del`. `element weight`, `drain` and \
        `del` work on any element; on a registrar's or the file's element a change lasts until \
        that owner applies its own view again (the reconciler's next pass, the next reload).\n\n\
        Examples:\n  rsplb element add web 198.18.1.2 --weight 3\n  rsplb element add dns [fd00::2]:5353"
    )]
    Add {
        pool: PoolHandle,
        /// ADDR or ADDR:PORT ([V6]:PORT).
        addr: ElementAddr,
        /// 1..=65535.
        #[arg(long, default_value = "1", value_parser = parse_weight)]
        weight: u16,
    },
    /// Change an element's weight (a draining element stays draining: see `element undrain`).
    #[command(after_long_help = "Example:\n  rsplb element weight web 198.18.1.2 10")]
    Weight {
        pool: PoolHandle,
        addr: ElementAddr,
        #[arg(value_parser = parse_weight)]
        weight: u16,
    },
    /// Stop giving an element new flows; its existing flows stay.
    #[command(
        after_long_help = "In a pool served by a DSR VIP an element is its address: \
        198.18.1.2 and 198.18.1.2:80 name the same element.\n\n\
        Examples:\n  rsplb element drain web 198.18.1.2\n  rsplb element undrain web 198.18.1.2"
    )]
    Drain { pool: PoolHandle, addr: ElementAddr },
    /// Put a drained element back in service with its weight (new flows reach it again).
    #[command(after_long_help = "Example:\n  rsplb element undrain web 198.18.1.2")]
    Undrain { pool: PoolHandle, addr: ElementAddr },
    /// Remove an element; its flows are re-selected.
    #[command(after_long_help = "Example:\n  rsplb element del web 198.18.1.2")]
    Del { pool: PoolHandle, addr: ElementAddr },
    /// List elements (of one pool, or all).
    #[command(after_long_help = "Examples:\n  rsplb element list\n  rsplb element list web --json")]
    List {
        pool: Option<PoolHandle>,
        #[arg(long)]
        json: bool,
    },
}

fn pick_iface(explicit: Option<String>) -> Result<String> {
    if let Some(i) = explicit {
        return Ok(i);
    }
    // Only interfaces attached from this network namespace are candidates: pins are global,
    // but `-i` names an interface here.
    let here = loader::netns_inode().ok();
    let attached: Vec<String> = loader::attached_interfaces()
        .into_iter()
        .filter(|i| {
            rsplb::state::State::load(&rsplb::state::state_dir(i).join("state.json"))
                .map(|st| Some(st.netns_inode) == here)
                .unwrap_or(false)
        })
        .collect();
    match attached.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            bail!("no interface is attached in this network namespace (run `rsplb attach IFACE`)")
        }
        many => bail!(
            "several interfaces are attached ({}): choose one with -i IFACE",
            many.join(", ")
        ),
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, as every other error: clap's first line without its "error: " prefix.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid command line");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("rsplb: {first} (see `rsplb --help`)");
            return ExitCode::from(2);
        }
    };
    // The sidecar and the daemon are long-running services whose state transitions (registered,
    // deregistered, next hop resolved) are what an operator watches: info by default there.
    let default_level = match &cli.cmd {
        Cmd::Rserpool(_) | Cmd::Run { .. } | Cmd::Reload { .. } => "info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_timestamp_millis()
        .init();
    // A command whose output goes to a reader that stops early (`rsplb vip list --json | head`)
    // ends quietly, as other Unix tools do, instead of panicking in `println!` on EPIPE. The
    // long-running services keep SIGPIPE ignored: a closed peer must not kill them.
    if !matches!(cli.cmd, Cmd::Rserpool(_) | Cmd::Run { .. }) {
        // SAFETY: restoring a signal's default disposition has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsplb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(ns) = &cli.netns {
        loader::enter_netns(ns)?;
    }
    match cli.cmd {
        Cmd::Rserpool(cmd) => rserpool_cli::run(cmd),
        Cmd::Status { json } => ops::status(&pick_iface(cli.iface)?, json),
        Cmd::Flow(f) => ops::flow(&pick_iface(cli.iface)?, f),
        Cmd::Attach(a) => {
            let opts = AttachOptions {
                maglev_size: a.maglev_size,
                max_vips: a.max_vips,
                max_elements: a.max_elements,
                flow_capacity: a.flow_capacity,
                nat_port_min: a.nat_ports.0,
                nat_port_max: a.nat_ports.1,
                generic: a.generic,
                dsr_tcp_timeout_s: a.dsr_tcp_timeout,
                dsr_udp_timeout_s: a.dsr_udp_timeout,
                nat_tcp_timeout_s: a.nat_tcp_timeout,
                nat_udp_timeout_s: a.nat_udp_timeout,
                ..AttachOptions::default()
            };
            let recovery = if a.recover_state {
                loader::StateRecovery::FromMaps
            } else {
                loader::StateRecovery::Refuse
            };
            let outcome = loader::attach(&a.iface, &opts, a.force, cli.netns.clone(), recovery)?;
            if !a.generic
                && let Some(w) = loader::ifindex(&a.iface)
                    .ok()
                    .and_then(|i| rsplb::veth::warning(&a.iface, i))
            {
                eprintln!("rsplb: warning: {w}");
            }
            match outcome {
                loader::AttachOutcome::Loaded { prog_id } => eprintln!(
                    "rsplb: attached to {} in {} mode (program id {prog_id})",
                    a.iface,
                    if a.generic { "generic" } else { "native" }
                ),
                loader::AttachOutcome::Recovered {
                    prog_id,
                    vips,
                    elements,
                } => eprintln!(
                    "rsplb: {} is attached (program id {prog_id}); rebuilt its state from the pinned maps: {vips} VIP(s), {elements} element(s). Pool names are recovered-N and weights the Maglev tables' proportions: check `rsplb element list` and `rsplb vip list`",
                    a.iface
                ),
                loader::AttachOutcome::Readopted { prog_id } => eprintln!(
                    "rsplb: {} was already attached; re-adopted the pinned program (id {prog_id}) without reloading",
                    a.iface
                ),
            }
            Ok(())
        }
        Cmd::Detach { iface } => {
            loader::detach(&iface).with_context(|| format!("detaching from {iface}"))?;
            eprintln!("rsplb: detached from {iface}");
            Ok(())
        }
        Cmd::ListInterfaces { json } => {
            let ifaces = loader::attached_interfaces();
            if json {
                let rows: Vec<_> = ifaces
                    .iter()
                    .map(|i| {
                        let st = Balancer::open(i).and_then(|b| b.state()).ok();
                        serde_json::json!({
                            "interface": i,
                            "ifindex": st.as_ref().map(|s| s.ifindex),
                            "netns": st.as_ref().and_then(|s| s.netns_name.clone()),
                            "mode": st.as_ref().map(|s| if s.options.generic { "generic" } else { "native" }),
                            "prog_id": loader::pinned_link_prog_id(i),
                        })
                    })
                    .collect();
                print_json(&serde_json::json!({ "interfaces": rows }));
            } else {
                for i in ifaces {
                    println!("{i}");
                }
            }
            Ok(())
        }
        Cmd::Vip(v) => {
            let iface = pick_iface(cli.iface)?;
            let mut b = Balancer::open(&iface)?;
            match v {
                VipCmd::Add {
                    vip,
                    pool,
                    mode,
                    snat,
                    nat_timeout,
                    allow,
                    hash,
                } => {
                    b.add_vip(vip, &pool, mode, snat, nat_timeout, &allow, hash)
                        .with_context(|| format!("adding VIP {vip} on {iface}"))?;
                }
                VipCmd::Change {
                    vip,
                    pool,
                    mode,
                    snat,
                    allow,
                    allow_all,
                    hash,
                } => b
                    .change_vip(
                        vip,
                        pool.as_ref(),
                        mode,
                        snat,
                        (allow_all || !allow.is_empty()).then_some(allow.as_slice()),
                        hash,
                    )
                    .with_context(|| format!("changing VIP {vip} on {iface}"))?,
                VipCmd::Del { vip } => b
                    .del_vip(vip)
                    .with_context(|| format!("deleting VIP {vip} on {iface}"))?,
                VipCmd::List { json } => {
                    let vips = b.list_vips()?;
                    let digests = b.vip_digests()?;
                    if json {
                        print_json(&output::vips_json(&iface, &vips, &digests));
                    } else {
                        print!("{}", output::vips_table(&vips, &digests));
                    }
                }
            }
            Ok(())
        }
        Cmd::Element(e) => {
            let iface = pick_iface(cli.iface)?;
            let mut b = Balancer::open(&iface)?;
            let warn = |addr: &ElementAddr, r: &rsplb::control::ElementReport| {
                if let Some(why) = &r.unresolved {
                    eprintln!(
                        "rsplb: warning: next hop of {addr} unresolved ({why}); its packets are dropped until it resolves (`rsplb run` keeps retrying)"
                    );
                }
            };
            match e {
                ElementCmd::Add { pool, addr, weight } => {
                    let r = b
                        .add_element(&pool, addr, weight)
                        .with_context(|| format!("adding {addr} to pool {pool} on {iface}"))?;
                    warn(&addr, &r);
                }
                ElementCmd::Weight { pool, addr, weight } => {
                    let r = b
                        .set_weight(&pool, addr, weight)
                        .with_context(|| format!("weighting {addr} in pool {pool} on {iface}"))?;
                    warn(&addr, &r);
                    let e = &r.element;
                    match e.state {
                        ElementState::Active => eprintln!(
                            "rsplb: {} in pool {pool}: weight {}",
                            e.element_addr(),
                            e.weight
                        ),
                        ElementState::Draining => eprintln!(
                            "rsplb: {} in pool {pool}: weight {}; it is still draining (no new flows): `rsplb element undrain {pool} {}` puts it back in service",
                            e.element_addr(),
                            e.weight,
                            e.element_addr()
                        ),
                    }
                }
                ElementCmd::Drain { pool, addr } => {
                    let e = b
                        .drain_element(&pool, addr)
                        .with_context(|| format!("draining {addr} in pool {pool} on {iface}"))?;
                    eprintln!(
                        "rsplb: {} in pool {pool} is draining: no new flows, its existing flows stay (`rsplb element undrain {pool} {}` undoes it)",
                        e.element_addr(),
                        e.element_addr()
                    );
                }
                ElementCmd::Undrain { pool, addr } => {
                    let e = b
                        .undrain_element(&pool, addr)
                        .with_context(|| format!("undraining {addr} in pool {pool} on {iface}"))?;
                    eprintln!(
                        "rsplb: {} in pool {pool} is back in service with weight {}",
                        e.element_addr(),
                        e.weight
                    );
                }
                ElementCmd::Del { pool, addr } => b
                    .remove_element(&pool, addr)
                    .with_context(|| format!("removing {addr} from pool {pool} on {iface}"))?,
                ElementCmd::List { pool, json } => {
                    let els = b.list_elements(pool.as_ref())?;
                    if json {
                        print_json(&output::elements_json(&iface, &els));
                    } else {
                        print!("{}", output::elements_table(&els));
                    }
                }
            }
            Ok(())
        }
        Cmd::Stats { json, watch } => {
            let iface = pick_iface(cli.iface)?;
            let b = Balancer::open(&iface)?;
            let Some(secs) = watch else {
                let s = b.stats()?;
                if json {
                    print_json(&output::stats_json(&s, None));
                } else {
                    print!("{}", output::stats_table(&s, None));
                }
                return Ok(());
            };
            if !(secs.is_finite() && secs > 0.0) {
                bail!("--watch needs a positive number of seconds");
            }
            let mut prev = b.stats()?;
            loop {
                std::thread::sleep(Duration::from_secs_f64(secs));
                let cur = b.stats()?;
                if json {
                    print_json(&output::stats_json(&cur, Some(&prev)));
                } else {
                    print!("\x1b[2J\x1b[H{}", output::stats_table(&cur, Some(&prev)));
                }
                prev = cur;
            }
        }
        Cmd::Config(ConfigCmd::Check { file, json }) => config_check(&file, json),
        Cmd::Reload { json, wait } => {
            let iface = pick_iface(cli.iface)?;
            if !(wait.is_finite() && wait > 0.0) {
                bail!("--wait needs a positive number of seconds");
            }
            let s = configured::request_reload(&iface, Duration::from_secs_f64(wait))?;
            if json {
                print_json(&serde_json::to_value(&s)?);
            } else {
                eprintln!("rsplb: {}", s.message);
            }
            if !s.applied {
                bail!("the daemon kept its configuration");
            }
            Ok(())
        }
        Cmd::Run {
            config: Some(path), ..
        } => run_with_config(&path, cli.iface, cli.netns),
        Cmd::Run {
            metrics,
            interval,
            registrar,
            registrar_config,
            enrp,
            peers,
            xdp_log,
            config: None,
        } => {
            let iface = pick_iface(cli.iface)?;
            if !(interval.is_finite() && interval > 0.0) {
                bail!("--interval needs a positive number of seconds");
            }
            let registrar = registrar_config_from(registrar, registrar_config, enrp, peers)?;
            daemon::run(
                &iface,
                daemon::RunOptions {
                    metrics,
                    interval: Duration::from_secs_f64(interval),
                    registrar,
                    config: None,
                    xdp_log,
                },
            )
        }
    }
}

/// `rsplb config check FILE`.
fn config_check(file: &std::path::Path, json: bool) -> Result<()> {
    match rsplb::config::load(file) {
        Ok(cfg) => {
            if json {
                let mut v = rsplb::config::summary(&cfg);
                v["valid"] = true.into();
                v["file"] = file.display().to_string().into();
                print_json(&v);
            } else {
                print!(
                    "{}",
                    rsplb::config::summary_text(&file.display().to_string(), &cfg)
                );
            }
            Ok(())
        }
        Err(e) => {
            if json {
                let problems: Vec<serde_json::Value> = match e.problems() {
                    [] => vec![serde_json::json!({
                        "file": file.display().to_string(), "line": null, "column": null,
                        "message": e.to_string(),
                    })],
                    p => p
                        .iter()
                        .map(|l| {
                            serde_json::json!({
                                "file": l.file, "line": l.line, "column": l.column,
                                "message": l.message,
                            })
                        })
                        .collect(),
                };
                print_json(&serde_json::json!({ "valid": false, "errors": problems }));
                bail!("{} is not valid", file.display());
            }
            Err(e.into())
        }
    }
}

/// `rsplb run --config FILE`: validate the whole file, check that it applies, attach, run.
fn run_with_config(
    path: &std::path::Path,
    iface: Option<String>,
    netns: Option<String>,
) -> Result<()> {
    let source = configured::load(path)?;
    let cfg = &source.file;
    let name = cfg.interface.name.clone();
    if let Some(i) = iface
        && i != name
    {
        bail!(
            "-i {i} and the file's interface {name} differ ({})",
            path.display()
        );
    }
    configured::preflight(&name, cfg)?;
    let opts = cfg
        .interface
        .attach_options()
        .map_err(|e| anyhow::anyhow!("{}: interface: {e}", path.display()))?;
    match loader::attach(&name, &opts, false, netns, loader::StateRecovery::Refuse)? {
        loader::AttachOutcome::Loaded { prog_id } => eprintln!(
            "rsplb: attached to {name} in {} mode (program id {prog_id})",
            if opts.generic { "generic" } else { "native" }
        ),
        loader::AttachOutcome::Readopted { prog_id }
        | loader::AttachOutcome::Recovered { prog_id, .. } => {
            eprintln!("rsplb: {name} is attached (program id {prog_id}); re-adopted it")
        }
    }
    daemon::run(
        &name,
        daemon::RunOptions {
            metrics: cfg.metrics,
            interval: Duration::from_secs_f64(cfg.interval_s),
            registrar: cfg.registrar.clone(),
            xdp_log: cfg.xdp_log,
            config: Some(source),
        },
    )
}

/// The embedded registrar's configuration: defaults, then the file, then the listen address.
fn registrar_config_from(
    listen: Option<Option<SocketAddr>>,
    file: Option<PathBuf>,
    enrp: Vec<SocketAddr>,
    peers: Vec<SocketAddr>,
) -> Result<Option<RegistrarConfig>> {
    if listen.is_none() && file.is_none() && enrp.is_empty() {
        return Ok(None);
    }
    let mut config = match &file {
        Some(path) => RegistrarConfig::from_file(path)?,
        None => RegistrarConfig::default(),
    };
    if let Some(Some(addr)) = listen {
        config.asap_listen = vec![addr];
    }
    if !enrp.is_empty() {
        config.enrp.listen = enrp;
    }
    config.enrp.peers.extend(peers);
    config
        .validate()
        .context("invalid registrar configuration")?;
    Ok(Some(config))
}
