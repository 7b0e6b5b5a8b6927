//! `cargo xtask demo`: a lab of network namespaces (a client, a balancer, three servers on one
//! bridge) with rsplb in front of real TCP servers. It defines a DSR VIP and a NAT VIP (weights
//! 1/2/3), sends real connections, shows rsplb's counters, removes a server, shows the traffic
//! move. Then RSerPool as an operator runs it: `rsplb run --config` with a configuration file
//! that declares the embedded registrar, a DSR VIP on pool `rsp` with no element added by hand
//! and a balancer-side TCP check of the pool; one `rsplb pe register` sidecar per server
//! registers it; real connections; a server whose service stops is taken out by the balancer's
//! check (the time it took is measured) and brought back when it answers again. Everything is
//! removed again, also when interrupted (Ctrl-C, SIGTERM).

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use rsplb_integration::{
    Lab, LabConfig, Tally, cleanup_leftovers,
    cli::{ElementInfo, sibling_bin},
    cmd::ip,
    netns::ChildGuard,
    rserpool::{
        Sidecar, contains_all, pool_elements, registrar_addr, server_addr, wait_for_elements,
    },
    stats::check_proportions,
    tcp_burst,
};

const CONNECTIONS: u32 = 300;
const WEIGHTS: [u32; 3] = [1, 2, 3];
/// The RSerPool part: its pool (handle) and the port of its VIP and of the servers' service.
const RSP_POOL: &str = "rsp";
const RSP_PORT: u16 = 9000;
/// Bounds of the RSerPool waits (generous for a shared machine; the measured times are printed).
const REGISTER_BOUND: Duration = Duration::from_secs(20);
const LEAVE_BOUND: Duration = Duration::from_secs(10);
const DEREGISTER_BOUND: Duration = Duration::from_secs(10);
/// The balancer-side check of pool `rsp` in the demo's configuration file.
const CHECK_MS: u64 = 200;
const FAST_MS: u64 = 100;
const RISE: u32 = 2;
const FALL: u32 = 2;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Fails when a signal arrived: the caller returns, and the lab's guards clean up.
fn checkpoint() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: cleaning up");
    }
    Ok(())
}

fn step(msg: &str) {
    println!("==> {msg}");
}

fn rsplb(lab: &Lab, args: &[&str]) -> Result<String> {
    println!(
        "    $ rsplb --netns {} -i {} {}",
        lab.rsplb.netns,
        lab.rsplb.iface,
        args.join(" ")
    );
    lab.rsplb.on(args)
}

fn show_tally(what: &str, t: &Tally) {
    println!("    {what}: {t}");
}

fn main() {
    install_signal_handlers();
    let started = Instant::now();
    match run() {
        Ok(summary) => {
            println!("\n{summary}");
            println!(
                "demo finished in {:.1} s; every namespace, program and pin was removed.",
                started.elapsed().as_secs_f64()
            );
        }
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => {
            // A Ctrl-C also reaches the servers, sidecars and rsplb commands (one process
            // group): whatever step failed first, the cause is the interruption.
            eprintln!("rsplb-demo: interrupted; the lab was removed");
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("rsplb-demo: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<String> {
    if let Some(a) = std::env::args().nth(1) {
        if a == "-h" || a == "--help" {
            println!(
                "rsplb-demo: builds a namespace lab (client, balancer, three servers), puts rsplb \
                 in front (a DSR and a NAT VIP, weights 1/2/3), sends real connections, removes a \
                 server and shows the traffic move; then runs `rsplb run --config` with an \
                 embedded RSerPool registrar and a balancer-side check, lets the servers join a \
                 pool by registering through sidecars, stops one server's service and shows how \
                 fast the check takes it out and brings it back; then removes everything.\n\
                 Needs root. Uses $RSPLB_BIN (default: target/{{release,debug}}/rsplb)."
            );
            return Ok(String::new());
        }
        bail!("unknown argument {a:?} (see --help)");
    }
    step("removing leftovers of earlier interrupted runs...");
    let n = cleanup_leftovers();
    if n > 0 {
        println!("    removed {n}");
    }
    let server_bin = sibling_bin("rsplb-testserver")?;
    let (summary, names, pin_dir) = {
        let mut lab = Lab::build(LabConfig {
            ports: vec![80, 8080, RSP_PORT],
            server_bin: Some(server_bin),
            verbose: true,
            ..LabConfig::default()
        })
        .context("building the lab")?;
        let names: Vec<String> = ["client", "lb", "sw", "s1", "s2", "s3"]
            .iter()
            .map(|r| lab.id.netns(r))
            .collect();
        let pin_dir = lab.pin_dir();
        let state_dir = lab.state_dir();
        println!("    rsplb binary: {}", lab.rsplb.bin.display());
        checkpoint()?;
        let mut summary = scenario(&mut lab)?;
        summary.push_str(&rserpool(&mut lab)?);
        step(&format!(
            "stopping the daemon (rsplb run) on {}...",
            lab.lb.iface
        ));
        lab.stop_daemons();
        step(&format!("detaching rsplb from {}...", lab.lb.iface));
        lab.detach()?;
        step("removing namespaces...");
        (summary, names, [pin_dir, state_dir])
        // `lab` drops here: servers stop, namespaces go.
    };
    let listed = ip(["netns", "list"])?;
    if let Some(left) = names.iter().find(|n| listed.contains(n.as_str())) {
        bail!("namespace {left} was left behind");
    }
    if let Some(dir) = pin_dir.iter().find(|d| d.exists()) {
        bail!("{} was left behind", dir.display());
    }
    Ok(summary)
}

fn scenario(lab: &mut Lab) -> Result<String> {
    let iface = lab.lb.iface.clone();
    step(&format!(
        "attaching rsplb to {iface} in namespace {} (native XDP)...",
        lab.lb.netns.name()
    ));
    println!("    $ rsplb --netns {} attach {iface}", lab.lb.netns.name());
    lab.attach(&[])?;
    checkpoint()?;

    let vip = lab.vip4(0);
    let dsr = SocketAddr::new(vip.into(), 80);
    let nat = SocketAddr::new(vip.into(), 8080);
    step(&format!(
        "defining VIP {dsr}/tcp (DSR, pool web) and {nat}/tcp (NAT, pool api), weights 1/2/3..."
    ));
    rsplb(
        lab,
        &[
            "vip",
            "add",
            &format!("{dsr}/tcp"),
            "--pool",
            "web",
            "--mode",
            "dsr",
        ],
    )?;
    let snat = lab.lb.v4.to_string();
    rsplb(
        lab,
        &[
            "vip",
            "add",
            &format!("{nat}/tcp"),
            "--pool",
            "api",
            "--mode",
            "nat",
            "--snat",
            &snat,
        ],
    )?;
    for (i, w) in WEIGHTS.iter().enumerate() {
        let addr = lab.server_hosts[i].v4;
        let w = w.to_string();
        rsplb(
            lab,
            &[
                "element",
                "add",
                "web",
                &format!("{addr}:80"),
                "--weight",
                &w,
            ],
        )?;
        rsplb(
            lab,
            &[
                "element",
                "add",
                "api",
                &format!("{addr}:8080"),
                "--weight",
                &w,
            ],
        )?;
    }
    checkpoint()?;

    let client = lab.client.netns.name().to_string();
    step(&format!(
        "sending {CONNECTIONS} real TCP connections to each VIP from the client namespace..."
    ));
    let t_dsr = tcp_burst(&client, dsr, CONNECTIONS)?;
    show_tally(&format!("{dsr} (dsr)"), &t_dsr);
    let t_nat = tcp_burst(&client, nat, CONNECTIONS)?;
    show_tally(&format!("{nat} (nat)"), &t_nat);
    for (what, t) in [("DSR", &t_dsr), ("NAT", &t_nat)] {
        if t.failed > 0 {
            bail!("{what}: {} connections got no answer", t.failed);
        }
        let counts: Vec<u64> = (1..=3).map(|i| t.get(&format!("s{i}"))).collect();
        check_proportions(&counts, &WEIGHTS)
            .map_err(|e| anyhow::anyhow!("{what} split does not follow the weights: {e}"))?;
    }
    step("rsplb's counters:");
    println!("{}", indent(&lab.rsplb.stats_table()?));
    checkpoint()?;

    let s1 = lab.server_hosts[0].v4;
    step("removing s1 from both pools...");
    rsplb(lab, &["element", "del", "web", &format!("{s1}:80")])?;
    rsplb(lab, &["element", "del", "api", &format!("{s1}:8080")])?;
    step(&format!(
        "sending {CONNECTIONS} more connections to each VIP..."
    ));
    let a_dsr = tcp_burst(&client, dsr, CONNECTIONS)?;
    show_tally(&format!("{dsr} (dsr)"), &a_dsr);
    let a_nat = tcp_burst(&client, nat, CONNECTIONS)?;
    show_tally(&format!("{nat} (nat)"), &a_nat);
    for (what, t) in [("DSR", &a_dsr), ("NAT", &a_nat)] {
        if t.failed > 0 || t.get("s1") > 0 {
            bail!("{what} after removing s1: {t}");
        }
    }
    step("rsplb's counters after the removal:");
    println!("{}", indent(&lab.rsplb.stats_table()?));
    checkpoint()?;

    Ok(format!(
        "Summary\n\
         - rsplb attached in native XDP mode to {iface}, in front of 3 real servers\n\
         - DSR {dsr}: {t_dsr}  (weights 1/2/3)\n\
         - NAT {nat}: {t_nat}  (weights 1/2/3)\n\
         - after removing s1: DSR {a_dsr}; NAT {a_nat}\n\
         - every connection answered; splits within the statistical tolerance of the weights"
    ))
}

/// The RSerPool part, as an operator runs it: `rsplb run --config` with a configuration file
/// that declares the registrar, a VIP on pool `rsp` (no element by hand) and a balancer-side
/// check of the pool; servers join by registering through sidecars; one server's service stops
/// and the balancer's check takes it out, then brings it back. Returns its summary lines.
fn rserpool(lab: &mut Lab) -> Result<String> {
    step("RSerPool: rsplb run --config, servers that register, balancer-side checks");
    let registrar = registrar_addr(lab);
    let vip = SocketAddr::new(lab.vip4(0).into(), RSP_PORT);
    let file = ConfigFile(std::env::temp_dir().join(format!("{}rsplb.toml", lab.id.netns(""))));
    let text = format!(
        "# The demo's daemon configuration (see deploy/rsplb.toml for every key).\n\
         interval_s = 1\n\n\
         [interface]\nname = \"{iface}\"\nxdp_mode = \"native\"\n\n\
         [[vip]]\naddress = \"{vip}/tcp\"\npool = \"{RSP_POOL}\"\nmode = \"dsr\"\n\n\
         # No element by hand: servers register at the registrar below.\n\
         [pool.{RSP_POOL}]\non_failure = \"drain\"\n\n\
         [pool.{RSP_POOL}.check]\ntype = \"tcp\"\ninterval_ms = {CHECK_MS}\n\
         fast_interval_ms = {FAST_MS}\ntimeout_ms = {FAST_MS}\nrise = {RISE}\nfall = {FALL}\n\n\
         [registrar]\nasap_listen = [\"{registrar}\"]\n",
        iface = lab.lb.iface
    );
    std::fs::write(&file.0, &text).context("writing the demo's configuration file")?;
    step(&format!("the configuration file {}:", file.0.display()));
    println!("{}", indent(&text));
    let path = file.0.to_string_lossy().to_string();
    println!("    $ rsplb config check {path}");
    println!("{}", indent(&lab.rsplb.run(&["config", "check", &path])?));
    checkpoint()?;

    step("starting the daemon from the file...");
    println!(
        "    $ rsplb --netns {} run --config {path}",
        lab.rsplb.netns
    );
    lab.start_daemon(&["--config", &path])?;
    checkpoint()?;

    step(&format!(
        "starting one sidecar per server: it registers the server's :{RSP_PORT} (weights 1/2/3 \
         through its policy); no check of its own: the balancer checks every {CHECK_MS} ms..."
    ));
    // Dropped (SIGTERM: they deregister) before the lab, on every path.
    let mut sidecars: Vec<ChildGuard> = Vec::new();
    for (i, w) in WEIGHTS.iter().enumerate() {
        let sidecar = Sidecar {
            pool: RSP_POOL,
            port: RSP_PORT,
            policy: Some(format!("weighted-round-robin:{w}")),
        };
        println!(
            "    $ rsplb {}",
            sidecar.args_without_check(lab, i)?.join(" ")
        );
        sidecars.push(sidecar.start_without_check(lab, i)?);
    }
    let addrs: Vec<String> = (0..WEIGHTS.len())
        .map(|i| server_addr(lab, i, RSP_PORT).map(|a| a.to_string()))
        .collect::<Result<_>>()?;

    step("waiting for the three registrations to reach the dataplane...");
    let cli = lab.rsplb.clone();
    let took = wait_for_elements(
        &cli,
        RSP_POOL,
        REGISTER_BOUND,
        "the three servers registered",
        |list| {
            alive(lab, &mut sidecars)?;
            Ok(contains_all(list, &addrs)
                && list.iter().all(|e| e.health == "up" && e.mac.is_some()))
        },
    )?;
    println!(
        "    all three in the dataplane {:.2} s after the sidecars started",
        took.as_secs_f64()
    );
    println!("{}", indent(&rsplb(lab, &["element", "list", RSP_POOL])?));
    check_registered(&pool_elements(&cli, RSP_POOL)?, &addrs)?;
    checkpoint()?;

    let client = lab.client.netns.name().to_string();
    step(&format!(
        "sending {CONNECTIONS} real TCP connections to {vip}..."
    ));
    let before = tcp_burst(&client, vip, CONNECTIONS)?;
    show_tally(&format!("{vip} (dsr, registered)"), &before);
    if before.failed > 0 {
        bail!("{} connections to {vip} got no answer", before.failed);
    }
    let counts: Vec<u64> = (1..=3).map(|i| before.get(&format!("s{i}"))).collect();
    check_proportions(&counts, &WEIGHTS).map_err(|e| {
        anyhow::anyhow!("the split on {vip} does not follow the registered weights: {e}")
    })?;
    checkpoint()?;

    step(
        "stopping s3's service (its test server; its sidecar stays registered): the balancer's \
         check fails...",
    );
    lab.stop_server(2)?;
    let down = wait_for_elements(&cli, RSP_POOL, LEAVE_BOUND, "s3 checked down", |list| {
        alive(lab, &mut sidecars)?;
        Ok(list
            .iter()
            .any(|e| e.address == addrs[2] && e.health == "down"))
    })?;
    println!(
        "    the balancer's check took s3 out {} ms after its service stopped (check every \
         {CHECK_MS} ms, every {FAST_MS} ms once failing, out after {FALL} failures); it stays \
         registered",
        down.as_millis()
    );
    println!("{}", indent(&rsplb(lab, &["status"])?));
    checkpoint()?;

    step(&format!(
        "sending {CONNECTIONS} more connections to {vip}..."
    ));
    let after = tcp_burst(&client, vip, CONNECTIONS)?;
    show_tally(&format!("{vip} (dsr, registered)"), &after);
    if after.failed > 0 || after.get("s3") > 0 {
        bail!("{vip} after s3 failed its check: {after}");
    }
    check_proportions(&[after.get("s1"), after.get("s2")], &WEIGHTS[..2]).map_err(|e| {
        anyhow::anyhow!("the split on {vip} after s3 failed does not follow the weights: {e}")
    })?;
    checkpoint()?;

    step("starting s3's service again: it is back once the check passes twice...");
    lab.restart_server(2)?;
    let up = wait_for_elements(&cli, RSP_POOL, LEAVE_BOUND, "s3 checked up", |list| {
        alive(lab, &mut sidecars)?;
        Ok(list.iter().all(|e| e.health == "up") && contains_all(list, &addrs))
    })?;
    println!(
        "    s3 back in the dataplane {} ms after its service started ({RISE} successes)",
        up.as_millis()
    );
    let back = tcp_burst(&client, vip, CONNECTIONS)?;
    show_tally(&format!("{vip} (dsr, registered)"), &back);
    if back.failed > 0 || back.get("s3") == 0 {
        bail!("{vip} after s3 came back: {back}");
    }
    checkpoint()?;

    step("stopping the sidecars: they deregister, the pool empties...");
    for s in &mut sidecars {
        s.stop();
    }
    let gone = wait_for_elements(
        &cli,
        RSP_POOL,
        DEREGISTER_BOUND,
        "the deregistered servers leaving",
        |list| {
            checkpoint()?;
            Ok(list.is_empty())
        },
    )?;
    println!(
        "    pool {RSP_POOL} empty {} ms after the sidecars stopped",
        gone.as_millis()
    );

    Ok(format!(
        "\n- RSerPool with rsplb run --config: DSR {vip}, pool {RSP_POOL}: 3 servers registered \
         through sidecars, in the dataplane {:.2} s after they started: {before}  (weights \
         1/2/3 from their policy)\n\
         - s3's service stopped: the balancer's tcp check took it out after {} ms; then {after}\n\
         - s3's service started again: back after {} ms; then {back}",
        took.as_secs_f64(),
        down.as_millis(),
        up.as_millis()
    ))
}

/// The demo's configuration file, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Fails when interrupted, or when the daemon or a sidecar has exited.
fn alive(lab: &mut Lab, sidecars: &mut [ChildGuard]) -> Result<()> {
    checkpoint()?;
    lab.check_daemons()?;
    sidecars.iter_mut().try_for_each(ChildGuard::check_running)
}

/// Every element of `addrs` is registrar-owned, active, with the weight of its policy.
fn check_registered(list: &[ElementInfo], addrs: &[String]) -> Result<()> {
    for (addr, w) in addrs.iter().zip(WEIGHTS) {
        let Some(e) = list.iter().find(|e| &e.address == addr) else {
            bail!("{addr} is not in pool {RSP_POOL}");
        };
        if e.owner != "registrar" || e.state != "active" || e.weight != w {
            bail!(
                "{addr}: owner {}, state {}, weight {} (expected registrar, active, {w})",
                e.owner,
                e.state,
                e.weight
            );
        }
    }
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
