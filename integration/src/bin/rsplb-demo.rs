//! `cargo xtask demo`: a lab of network namespaces (a client, a balancer, three servers on one
//! bridge) with rsplb in front of real TCP servers. It defines a DSR VIP and a NAT VIP (weights
//! 1/2/3), sends real connections, shows rsplb's counters, removes a server, shows the traffic
//! move, and removes everything again, also when interrupted (Ctrl-C, SIGTERM).

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use rsplb_integration::{
    Lab, LabConfig, Tally, cleanup_leftovers, cli::sibling_bin, cmd::ip, stats::check_proportions,
    tcp_burst,
};

const CONNECTIONS: u32 = 300;
const WEIGHTS: [u32; 3] = [1, 2, 3];

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
                 server and shows the traffic move, then removes everything.\n\
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
            ports: vec![80, 8080],
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
        println!("    rsplb binary: {}", lab.rsplb.bin.display());
        checkpoint()?;
        let summary = scenario(&mut lab)?;
        step(&format!("detaching rsplb from {}...", lab.lb.iface));
        lab.detach()?;
        step("removing namespaces...");
        (summary, names, pin_dir)
        // `lab` drops here: servers stop, namespaces go.
    };
    let listed = ip(["netns", "list"])?;
    if let Some(left) = names.iter().find(|n| listed.contains(n.as_str())) {
        bail!("namespace {left} was left behind");
    }
    if pin_dir.exists() {
        bail!("{} was left behind", pin_dir.display());
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

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
