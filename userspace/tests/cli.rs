//! The `rsplb` binary as a user runs it: bad input is refused with one clear `rsplb: ` line and a
//! non-zero status (never a panic), and attach / detach / re-adopt work on a veth pair inside
//! network namespaces that each test creates and always removes.

use std::{
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rsplb");

fn rsplb(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RSPLB_NETNS")
        .output()
        .expect("running the rsplb binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails the test unless the command failed the way the contract says.
fn assert_clean_failure(o: &Output, must_mention: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr: {err:?}");
    assert!(
        lines[0].starts_with("rsplb: "),
        "no `rsplb: ` prefix: {err:?}"
    );
    assert!(
        err.to_lowercase().contains(&must_mention.to_lowercase()),
        "stderr does not mention `{must_mention}`: {err:?}"
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn malformed_vips_are_refused() {
    for (vip, why) in [
        ("198.18.0.100-80/tcp", "not a VIP"),
        ("198.18.0.100:80", "not a VIP"),
        ("198.18.0.100:80/icmp", "unknown protocol"),
        ("198.18.0.100:0/tcp", "not a port"),
        ("198.18.0.100:65536/tcp", "not a port"),
        ("fd00::1:80/tcp", "not a VIP"),
        ("198.18.0.300:80/tcp", "not an IP address"),
    ] {
        let o = rsplb(&["-i", "nonexistent0", "vip", "add", vip, "--pool", "web"]);
        assert_clean_failure(&o, why);
    }
}

#[test]
fn bad_pool_weight_and_mode_are_refused() {
    let long = "p".repeat(33);
    let o = rsplb(&["-i", "x0", "element", "add", &long, "198.18.1.2"]);
    assert_clean_failure(&o, "1..=32 bytes");
    let o = rsplb(&[
        "-i",
        "x0",
        "element",
        "add",
        "web",
        "198.18.1.2",
        "--weight",
        "0",
    ]);
    assert_clean_failure(&o, "weight");
    let o = rsplb(&[
        "-i",
        "x0",
        "element",
        "add",
        "web",
        "198.18.1.2",
        "--weight",
        "65536",
    ]);
    assert_clean_failure(&o, "weight");
    let o = rsplb(&["-i", "x0", "element", "weight", "web", "198.18.1.2", "-3"]);
    assert!(!o.status.success());
    let o = rsplb(&["-i", "x0", "element", "add", "web", "198.18.1.2:0"]);
    assert_clean_failure(&o, "not a port");
    let o = rsplb(&[
        "-i",
        "x0",
        "vip",
        "add",
        "198.18.0.1:80/tcp",
        "--pool",
        "w",
        "--mode",
        "fast",
    ]);
    assert_clean_failure(&o, "unknown mode");
    let o = rsplb(&[
        "-i",
        "x0",
        "vip",
        "add",
        "198.18.0.1:80/tcp",
        "--pool",
        "w",
        "--hash",
        "source",
    ]);
    assert_clean_failure(&o, "unknown hash `source`: expected flow");
    let o = rsplb(&["attach", "lo", "--nat-ports", "9-3"]);
    assert_clean_failure(&o, "larger than MAX");
}

#[test]
fn help_teaches_with_examples() {
    let o = rsplb(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Examples:"), "{out}");
    for sub in [
        &["attach", "--help"][..],
        &["vip", "add", "--help"],
        &["element", "add", "--help"],
        &["stats", "--help"],
        &["run", "--help"],
    ] {
        let o = rsplb(sub);
        assert!(o.status.success(), "{sub:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("Example"), "{sub:?}: {out}");
    }
}

#[test]
fn non_prime_maglev_size_and_unknown_interface_are_refused() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let o = rsplb(&["attach", "d2nosuch0", "--maglev-size", "65536"]);
    assert_clean_failure(&o, "not a prime");
    // Slots that do not fit the maps' 16-bit fields, and an empty flow table.
    let o = rsplb(&["attach", "d2nosuch0", "--max-elements", "65536"]);
    assert_clean_failure(&o, "--max-elements is at most 65535");
    let o = rsplb(&["attach", "d2nosuch0", "--max-vips", "65536"]);
    assert_clean_failure(&o, "--max-vips is at most 65535");
    let o = rsplb(&["attach", "d2nosuch0", "--flow-capacity", "0"]);
    assert_clean_failure(&o, "--flow-capacity must be at least 1");
    let o = rsplb(&["attach", "d2nosuch0"]);
    assert_clean_failure(&o, "no such interface `d2nosuch0`");
    let o = rsplb(&["-i", "d2nosuch0", "vip", "list"]);
    assert_clean_failure(&o, "not attached");
    let o = rsplb(&["detach", "d2nosuch0"]);
    assert_clean_failure(&o, "not attached");
    let o = rsplb(&["--netns", "d2-no-such-netns", "list-interfaces"]);
    assert_clean_failure(&o, "d2-no-such-netns");
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Two namespaces joined by a veth pair (`lb` side attached by rsplb, `peer` side the element),
/// plus cleanup of whatever rsplb pinned, on every exit path including panics.
struct Lab {
    lb_ns: String,
    peer_ns: String,
    lb_if: String,
    peer_if: String,
    octet: u32,
}

fn sh(args: &[&str]) {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Lab {
    fn new() -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = std::process::id() % 100_000;
        let lab = Lab {
            lb_ns: format!("d2t-{id}-{n}-lb"),
            peer_ns: format!("d2t-{id}-{n}-pe"),
            lb_if: format!("d2l{id}x{n}"),
            peer_if: format!("d2p{id}x{n}"),
            // 198.18.(100+x).0/24, unique per test in this process.
            octet: 100 + (id * 7 + n) % 150,
        };
        sh(&["ip", "netns", "add", &lab.lb_ns]);
        sh(&["ip", "netns", "add", &lab.peer_ns]);
        sh(&[
            "ip",
            "link",
            "add",
            &lab.lb_if,
            "netns",
            &lab.lb_ns,
            "type",
            "veth",
            "peer",
            "name",
            &lab.peer_if,
            "netns",
            &lab.peer_ns,
        ]);
        sh(&[
            "ip",
            "-n",
            &lab.lb_ns,
            "addr",
            "add",
            &lab.addr(1, 24),
            "dev",
            &lab.lb_if,
        ]);
        sh(&[
            "ip",
            "-n",
            &lab.peer_ns,
            "addr",
            "add",
            &lab.addr(2, 24),
            "dev",
            &lab.peer_if,
        ]);
        sh(&["ip", "-n", &lab.lb_ns, "link", "set", &lab.lb_if, "up"]);
        sh(&["ip", "-n", &lab.peer_ns, "link", "set", &lab.peer_if, "up"]);
        lab
    }

    fn addr(&self, host: u32, prefix: u32) -> String {
        format!("198.18.{}.{host}/{prefix}", self.octet)
    }

    fn ip(&self, host: u32) -> String {
        format!("198.18.{}.{host}", self.octet)
    }

    fn rsplb(&self, args: &[&str]) -> Output {
        let mut full = vec!["--netns", &self.lb_ns];
        full.extend_from_slice(args);
        rsplb(&full)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.rsplb(args);
        assert!(o.status.success(), "rsplb {args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }

    fn pin_dir(&self) -> String {
        format!("/sys/fs/bpf/rsplb/{}", self.lb_if)
    }

    fn state_dir(&self) -> String {
        format!("/run/rsplb/{}", self.lb_if)
    }

    fn prog_id(&self) -> Option<u64> {
        let v = self.json(&["list-interfaces", "--json"]);
        v["interfaces"]
            .as_array()?
            .iter()
            .find(|i| i["interface"] == self.lb_if.as_str())?["prog_id"]
            .as_u64()
    }

    /// XDP program id on the interface according to `ip link`.
    fn xdp_on_link(&self) -> bool {
        let o = Command::new("ip")
            .args(["-n", &self.lb_ns, "-d", "link", "show", &self.lb_if])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&o.stdout).contains("prog/xdp")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["detach", &self.lb_if]).output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.lb_ns])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.peer_ns])
            .output();
        let _ = std::fs::remove_dir_all(self.pin_dir());
        let _ = std::fs::remove_dir_all(self.state_dir());
    }
}

#[test]
fn attach_configure_readopt_detach() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let lab = Lab::new();
    let small = [
        "--maglev-size",
        "251",
        "--max-vips",
        "4",
        "--max-elements",
        "16",
    ];
    let mut args = vec!["attach", lab.lb_if.as_str()];
    args.extend_from_slice(&small);
    lab.ok(&args);
    assert!(lab.xdp_on_link(), "no XDP program on {}", lab.lb_if);
    let first_prog = lab.prog_id().expect("prog id");

    let vip = format!("{}:80/tcp", lab.ip(100));
    lab.ok(&["-i", &lab.lb_if, "vip", "add", &vip, "--pool", "web"]);
    let el = lab.ip(2);
    lab.ok(&[
        "-i", &lab.lb_if, "element", "add", "web", &el, "--weight", "3",
    ]);
    // An address nobody answers for: added, with a warning, and shown unresolved.
    let ghost = lab.ip(9);
    let o = lab.rsplb(&[
        "-i",
        &lab.lb_if,
        "element",
        "add",
        "web",
        &format!("{ghost}:80"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("unresolved"), "{}", stderr(&o));
    // Adding the same element twice is an error.
    let o = lab.rsplb(&["-i", &lab.lb_if, "element", "add", "web", &el]);
    assert_clean_failure(&o, "already");

    let vips = lab.json(&["-i", &lab.lb_if, "vip", "list", "--json"]);
    assert_eq!(vips["interface"], lab.lb_if.as_str());
    assert_eq!(vips["vips"][0]["vip"], vip.as_str());
    assert_eq!(vips["vips"][0]["pool"], "web");
    assert_eq!(vips["vips"][0]["mode"], "dsr");
    assert_eq!(vips["vips"][0]["snat"], Value::Null);

    let els = lab.json(&["-i", &lab.lb_if, "element", "list", "web", "--json"]);
    let els = els["elements"].as_array().expect("elements");
    assert_eq!(els.len(), 2);
    let real = els
        .iter()
        .find(|e| e["address"] == el.as_str())
        .expect("element");
    assert_eq!(real["weight"], 3);
    assert_eq!(real["state"], "active");
    assert!(real["mac"].is_string(), "next hop not resolved: {real}");
    assert!(real["ifindex"].is_u64());
    let ghost_row = els
        .iter()
        .find(|e| e["address"] == format!("{ghost}:80").as_str())
        .expect("ghost element");
    assert_eq!(ghost_row["mac"], Value::Null);

    lab.ok(&["-i", &lab.lb_if, "element", "drain", "web", &el]);
    lab.ok(&["-i", &lab.lb_if, "element", "weight", "web", &el, "5"]);
    let els = lab.json(&["-i", &lab.lb_if, "element", "list", "--json"]);
    let real = els["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == el.as_str())
        .unwrap()
        .clone();
    assert_eq!(real["state"], "draining");
    assert_eq!(real["weight"], 5);

    // Re-attach: the pinned program is re-adopted, not reloaded, and the configuration stays.
    let mut args = vec!["attach", lab.lb_if.as_str()];
    args.extend_from_slice(&small);
    let o = lab.rsplb(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("re-adopted"), "{}", stderr(&o));
    assert_eq!(lab.prog_id(), Some(first_prog));
    let vips = lab.json(&["-i", &lab.lb_if, "vip", "list", "--json"]);
    assert_eq!(vips["vips"].as_array().unwrap().len(), 1);

    // --force reloads (new program) and keeps VIPs and elements.
    let mut args = vec!["attach", lab.lb_if.as_str(), "--force"];
    args.extend_from_slice(&small);
    lab.ok(&args);
    assert_ne!(lab.prog_id(), Some(first_prog));
    let els = lab.json(&["-i", &lab.lb_if, "element", "list", "--json"]);
    assert_eq!(els["elements"].as_array().unwrap().len(), 2);

    lab.ok(&["-i", &lab.lb_if, "element", "del", "web", &ghost]);
    lab.ok(&["-i", &lab.lb_if, "vip", "del", &vip]);
    let stats = lab.json(&["-i", &lab.lb_if, "stats", "--json"]);
    assert!(stats["global"]["action_tx"].is_u64());
    assert_eq!(stats["elements"].as_array().unwrap().len(), 1);

    lab.ok(&["detach", &lab.lb_if]);
    assert!(!std::path::Path::new(&lab.pin_dir()).exists());
    assert!(!std::path::Path::new(&lab.state_dir()).exists());
    assert!(!lab.xdp_on_link(), "XDP still attached after detach");
}

#[test]
fn same_interface_name_from_another_namespace_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let lab = Lab::new();
    lab.ok(&[
        "attach",
        &lab.lb_if,
        "--maglev-size",
        "251",
        "--max-vips",
        "2",
    ]);
    // An interface with the same name in a third namespace.
    let other = format!("{}-o", lab.peer_ns);
    sh(&["ip", "netns", "add", &other]);
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let _ns = Ns(other.clone());
    sh(&[
        "ip", "-n", &other, "link", "add", &lab.lb_if, "type", "veth", "peer", "name", "d2peer",
    ]);
    sh(&["ip", "-n", &other, "link", "set", &lab.lb_if, "up"]);
    let o = rsplb(&["--netns", &other, "attach", &lab.lb_if, "--generic"]);
    assert_clean_failure(&o, "already attached");
    assert!(stderr(&o).contains(&lab.lb_ns), "{}", stderr(&o));
    assert!(stderr(&o).contains(&other), "{}", stderr(&o));
    // The original attachment is untouched.
    assert!(lab.xdp_on_link());
}

/// Two balancers (two attachments in two namespaces) configured with the same VIP and pool, but
/// with the elements added in another order and after other elements came and went (so their
/// element slots differ), show the same table digest after every kind of change, and a
/// different one while they differ.
#[test]
fn two_balancers_with_the_same_pool_show_the_same_table_digest() {
    assert!(
        is_root(),
        "this test needs root: it attaches XDP in network namespaces"
    );
    let a = Lab::new();
    let b = Lab::new();
    for lab in [&a, &b] {
        lab.ok(&["attach", &lab.lb_if, "--generic", "--maglev-size", "4093"]);
        lab.ok(&["vip", "add", "198.18.99.100:80/tcp", "--pool", "web"]);
    }
    let digest = |lab: &Lab| -> String {
        let v = lab.json(&["vip", "list", "--json"]);
        v["vips"][0]["table_digest"]
            .as_str()
            .expect("a table digest")
            .to_string()
    };
    let els = ["198.18.99.2", "198.18.99.3", "198.18.99.4"];
    // b first sees another element come and go, then the three in reverse order.
    b.ok(&["element", "add", "web", "198.18.99.9"]);
    b.ok(&["element", "del", "web", "198.18.99.9"]);
    for e in els {
        a.ok(&["element", "add", "web", e]);
    }
    for e in els.iter().rev() {
        b.ok(&["element", "add", "web", e]);
    }
    let slots = |lab: &Lab| -> Vec<u64> {
        let v = lab.json(&["element", "list", "--json"]);
        v["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["slot"].as_u64().unwrap())
            .collect()
    };
    assert_ne!(slots(&a), slots(&b), "the test needs different slots");
    assert_eq!(digest(&a), digest(&b), "same elements, same table");
    let empty_a = digest(&a);
    // Each kind of change: differ on one, equal again once both made it.
    let changes: [&[&str]; 4] = [
        &["element", "weight", "web", "198.18.99.3", "3"],
        &["element", "drain", "web", "198.18.99.2"],
        &["element", "add", "web", "198.18.99.5", "--weight", "2"],
        &["element", "del", "web", "198.18.99.4"],
    ];
    for change in changes {
        a.ok(change);
        assert_ne!(
            digest(&a),
            digest(&b),
            "after {change:?} on one balancer only"
        );
        b.ok(change);
        assert_eq!(digest(&a), digest(&b), "after {change:?} on both");
    }
    assert_ne!(digest(&a), empty_a);
}

/// The addresses of the elements of `pool`, as `element list --json` shows them.
fn element_rows(lab: &Lab, pool: &str) -> Vec<Value> {
    let v = lab.json(&["-i", &lab.lb_if, "element", "list", pool, "--json"]);
    v["elements"].as_array().expect("elements").clone()
}

#[test]
fn a_drained_element_is_put_back_in_service_and_each_command_says_what_it_did() {
    let lab = Lab::new();
    lab.ok(&[
        "attach",
        &lab.lb_if,
        "--maglev-size",
        "251",
        "--max-vips",
        "4",
    ]);
    let vip = format!("{}:80/tcp", lab.ip(100));
    lab.ok(&["-i", &lab.lb_if, "vip", "add", &vip, "--pool", "web"]);
    let el = lab.ip(2);
    lab.ok(&[
        "-i", &lab.lb_if, "element", "add", "web", &el, "--weight", "3",
    ]);

    let o = lab.rsplb(&["-i", &lab.lb_if, "element", "drain", "web", &el]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("draining"), "{}", stderr(&o));
    assert_eq!(element_rows(&lab, "web")[0]["state"], "draining");

    // A weight change says the element is still draining, and how to undo that.
    let o = lab.rsplb(&["-i", &lab.lb_if, "element", "weight", "web", &el, "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("still draining"), "{}", stderr(&o));
    assert!(stderr(&o).contains("element undrain web"), "{}", stderr(&o));
    // Adding it again points at both commands.
    let o = lab.rsplb(&["-i", &lab.lb_if, "element", "add", "web", &el]);
    assert_clean_failure(&o, "element undrain");

    let o = lab.rsplb(&["-i", &lab.lb_if, "element", "undrain", "web", &el]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("back in service with weight 5"),
        "{}",
        stderr(&o)
    );
    let row = &element_rows(&lab, "web")[0];
    assert_eq!(
        (row["state"].as_str(), row["weight"].as_u64()),
        (Some("active"), Some(5))
    );

    let o = lab.rsplb(&["-i", &lab.lb_if, "element", "undrain", "web", &lab.ip(77)]);
    assert_clean_failure(&o, "no element");
    let o = rsplb(&["element", "undrain", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Example"));
}

#[test]
fn in_a_dsr_pool_an_element_is_its_address() {
    let lab = Lab::new();
    lab.ok(&[
        "attach",
        &lab.lb_if,
        "--maglev-size",
        "251",
        "--max-vips",
        "4",
    ]);
    let vip = format!("{}:80/tcp", lab.ip(100));
    lab.ok(&["-i", &lab.lb_if, "vip", "add", &vip, "--pool", "web"]);
    let el = lab.ip(3);
    // Written with the VIP's port: the same element as the bare address.
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "element",
        "add",
        "web",
        &format!("{el}:80"),
    ]);
    let o = lab.rsplb(&["-i", &lab.lb_if, "element", "add", "web", &el]);
    assert_clean_failure(&o, "already in pool web");
    let rows = element_rows(&lab, "web");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0]["address"],
        format!("{el}:80").as_str(),
        "as first written"
    );
    // Another port cannot work in DSR: refused, saying why.
    let o = lab.rsplb(&[
        "-i",
        &lab.lb_if,
        "element",
        "add",
        "web",
        &format!("{el}:8080"),
    ]);
    assert_clean_failure(&o, "DSR cannot change ports");
    let o = lab.rsplb(&[
        "-i",
        &lab.lb_if,
        "element",
        "add",
        "web",
        &format!("{}:8080", lab.ip(4)),
    ]);
    assert_clean_failure(&o, "DSR cannot change ports");
    // Found however it is written.
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "element",
        "drain",
        "web",
        &format!("{el}:80"),
    ]);
    assert_eq!(element_rows(&lab, "web")[0]["state"], "draining");
    lab.ok(&["-i", &lab.lb_if, "element", "undrain", "web", &el]);
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "element",
        "del",
        "web",
        &format!("{el}:80"),
    ]);
    assert!(element_rows(&lab, "web").is_empty());

    // Elements added before their DSR VIP: two spellings of one address are refused at `vip add`.
    lab.ok(&["-i", &lab.lb_if, "element", "add", "early", &el]);
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "element",
        "add",
        "early",
        &format!("{el}:80"),
    ]);
    let vip2 = format!("{}:80/tcp", lab.ip(101));
    let o = lab.rsplb(&["-i", &lab.lb_if, "vip", "add", &vip2, "--pool", "early"]);
    assert_clean_failure(&o, "one element");
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "element",
        "del",
        "early",
        &format!("{el}:80"),
    ]);
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "element",
        "add",
        "early",
        &format!("{}:8080", lab.ip(5)),
    ]);
    let o = lab.rsplb(&["-i", &lab.lb_if, "vip", "add", &vip2, "--pool", "early"]);
    assert_clean_failure(&o, "cannot change ports");
}

#[test]
fn nat_between_address_families_is_refused_naming_both() {
    let lab = Lab::new();
    lab.ok(&[
        "attach",
        &lab.lb_if,
        "--maglev-size",
        "251",
        "--max-vips",
        "4",
    ]);
    let vip = format!("{}:80/tcp", lab.ip(100));
    let snat = lab.ip(1);
    lab.ok(&[
        "-i", &lab.lb_if, "vip", "add", &vip, "--pool", "web", "--mode", "nat", "--snat", &snat,
    ]);
    let o = lab.rsplb(&["-i", &lab.lb_if, "element", "add", "web", "[fd00::2]:8080"]);
    assert_clean_failure(&o, "NAT does not translate between IPv4 and IPv6");
    assert!(stderr(&o).contains("IPv4 NAT VIP"), "{}", stderr(&o));
    assert!(stderr(&o).contains("is IPv6"), "{}", stderr(&o));
    assert!(element_rows(&lab, "web").is_empty());

    // The other way round: a pool of IPv6 elements, then an IPv4 NAT VIP on it.
    lab.ok(&["-i", &lab.lb_if, "element", "add", "v6pool", "fd00::5"]);
    let vip2 = format!("{}:81/tcp", lab.ip(100));
    let o = lab.rsplb(&[
        "-i", &lab.lb_if, "vip", "add", &vip2, "--pool", "v6pool", "--mode", "nat", "--snat", &snat,
    ]);
    assert_clean_failure(&o, "VIP");
    assert!(stderr(&o).contains("is IPv4"), "{}", stderr(&o));
    assert!(stderr(&o).contains("IPv6 element"), "{}", stderr(&o));
    // Nor may a DSR VIP on that pool become NAT.
    lab.ok(&["-i", &lab.lb_if, "vip", "add", &vip2, "--pool", "v6pool"]);
    let o = lab.rsplb(&[
        "-i", &lab.lb_if, "vip", "change", &vip2, "--mode", "nat", "--snat", &snat,
    ]);
    assert_clean_failure(&o, "NAT does not translate");
    // An SNAT address of the other family is refused too.
    let vip3 = format!("{}:82/tcp", lab.ip(100));
    let o = lab.rsplb(&[
        "-i", &lab.lb_if, "vip", "add", &vip3, "--pool", "p3", "--mode", "nat", "--snat", "fd00::1",
    ]);
    assert_clean_failure(&o, "--snat fd00::1 is IPv6");
}

/// What a state file can look like after a crash, a full disk or a careless hand: empty, not
/// JSON, cut off mid-way.
fn damaged_state_files(good: &str) -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("garbage", "\u{1}\u{2}not json at all".to_string()),
        ("truncated", good[..good.len() / 2].to_string()),
    ]
}

#[test]
fn attach_never_wipes_a_live_attachment_whose_state_file_is_damaged() {
    let lab = Lab::new();
    lab.ok(&[
        "attach",
        &lab.lb_if,
        "--maglev-size",
        "251",
        "--max-vips",
        "4",
    ]);
    let prog = lab.prog_id().expect("prog id");
    let dsr = format!("{}:80/tcp", lab.ip(100));
    let nat = format!("{}:8080/tcp", lab.ip(101));
    lab.ok(&["-i", &lab.lb_if, "vip", "add", &dsr, "--pool", "web"]);
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "vip",
        "add",
        &nat,
        "--pool",
        "api",
        "--mode",
        "nat",
        "--snat",
        &lab.ip(1),
        "--nat-timeout",
        "77",
        "--hash",
        "client",
    ]);
    lab.ok(&["-i", &lab.lb_if, "element", "add", "web", &lab.ip(2)]);
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "element",
        "add",
        "web",
        &lab.ip(3),
        "--weight",
        "2",
    ]);
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "element",
        "add",
        "api",
        &format!("{}:9000", lab.ip(4)),
    ]);
    let path = format!("{}/state.json", lab.state_dir());
    let good = std::fs::read_to_string(&path).unwrap();

    let mut cases = damaged_state_files(&good);
    cases.push(("missing", String::new()));
    for (what, text) in cases {
        if what == "missing" {
            std::fs::remove_file(&path).unwrap();
        } else {
            std::fs::write(&path, &text).unwrap();
        }
        let o = lab.rsplb(&[
            "attach",
            &lab.lb_if,
            "--maglev-size",
            "251",
            "--max-vips",
            "4",
        ]);
        assert_clean_failure(&o, &path);
        assert!(
            stderr(&o).contains("--recover-state"),
            "{what}: {}",
            stderr(&o)
        );
        // Nothing was touched: same program, still attached, pins in place.
        assert_eq!(lab.prog_id(), Some(prog), "{what}: program replaced");
        assert!(lab.xdp_on_link(), "{what}: detached");

        // The maps hold the truth: rebuild the state from them.
        let o = lab.rsplb(&["attach", &lab.lb_if, "--recover-state"]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("2 VIP(s), 3 element(s)"),
            "{what}: {}",
            stderr(&o)
        );
        assert_eq!(lab.prog_id(), Some(prog), "{what}: program replaced");
        let vips = lab.json(&["-i", &lab.lb_if, "vip", "list", "--json"]);
        let vips = vips["vips"].as_array().unwrap();
        let row = |v: &str| vips.iter().find(|r| r["vip"] == v).cloned().expect(v);
        assert_eq!(row(&dsr)["mode"], "dsr", "{what}");
        assert_eq!(row(&nat)["mode"], "nat", "{what}");
        assert_eq!(row(&nat)["snat"], lab.ip(1).as_str(), "{what}");
        assert_eq!(
            (row(&dsr)["hash"].as_str(), row(&nat)["hash"].as_str()),
            (Some("flow"), Some("client")),
            "{what}"
        );
        let els = lab.json(&["-i", &lab.lb_if, "element", "list", "--json"]);
        let els = els["elements"].as_array().unwrap();
        let el = |a: &str| els.iter().find(|r| r["address"] == a).cloned().expect(a);
        // The web pool (both elements, weights 1:2) and the api pool are told apart.
        let (e2, e3, e4) = (
            el(&lab.ip(2)),
            el(&lab.ip(3)),
            el(&format!("{}:9000", lab.ip(4))),
        );
        assert_eq!(e2["pool"], e3["pool"], "{what}");
        assert_ne!(e2["pool"], e4["pool"], "{what}");
        assert_eq!(row(&dsr)["pool"], e2["pool"], "{what}");
        assert_eq!(row(&nat)["pool"], e4["pool"], "{what}");
        assert_eq!(
            (e2["weight"].as_u64(), e3["weight"].as_u64()),
            (Some(1), Some(2))
        );
        // And the recovered state works: changes apply again.
        let pool = e2["pool"].as_str().unwrap().to_string();
        lab.ok(&[
            "-i",
            &lab.lb_if,
            "element",
            "weight",
            &pool,
            &lab.ip(2),
            "2",
        ]);
        lab.ok(&[
            "-i",
            &lab.lb_if,
            "element",
            "weight",
            &pool,
            &lab.ip(2),
            "1",
        ]);
    }
}

#[test]
fn a_running_daemon_whose_state_file_is_damaged_stops_and_says_so() {
    use std::{
        process::{Child, Stdio},
        time::{Duration, Instant},
    };
    struct Daemon(Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let lab = Lab::new();
    lab.ok(&[
        "attach",
        &lab.lb_if,
        "--maglev-size",
        "251",
        "--max-vips",
        "4",
    ]);
    let vip = format!("{}:80/tcp", lab.ip(100));
    lab.ok(&["-i", &lab.lb_if, "vip", "add", &vip, "--pool", "web"]);
    let path = format!("{}/state.json", lab.state_dir());
    let good = std::fs::read_to_string(&path).unwrap();
    for (what, text) in damaged_state_files(&good) {
        std::fs::write(&path, &good).unwrap();
        let log = std::env::temp_dir().join(format!("{}-{what}.log", lab.lb_ns));
        let mut daemon = Daemon(
            Command::new(BIN)
                .args([
                    "--netns",
                    &lab.lb_ns,
                    "-i",
                    &lab.lb_if,
                    "run",
                    "--interval",
                    "0.2",
                ])
                .env_remove("RSPLB_NETNS")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let started = Instant::now();
        while !read_log().contains("running on") {
            assert!(
                daemon.0.try_wait().unwrap().is_none(),
                "{what}: {}",
                read_log()
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what}: never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::write(&path, &text).unwrap();
        let damaged = Instant::now();
        let status = loop {
            if let Some(s) = daemon.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                damaged.elapsed() < Duration::from_secs(20),
                "{what}: the daemon kept running on a damaged state file: {}",
                read_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = read_log();
        let _ = std::fs::remove_file(&log);
        assert!(!status.success(), "{what}: exit status {status}: {err}");
        assert!(err.contains("ERROR"), "{what}: no error logged: {err}");
        assert!(
            err.contains(&path) && err.contains("--recover-state"),
            "{what}: {err}"
        );
        // The dataplane stays attached.
        assert!(lab.xdp_on_link(), "{what}");
    }
}

#[test]
fn attach_on_a_veth_warns_until_the_peer_can_take_its_frames() {
    let lab = Lab::new();
    struct PeerPins(String);
    impl Drop for PeerPins {
        fn drop(&mut self) {
            let _ = Command::new(BIN).args(["detach", &self.0]).output();
            let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/rsplb/{}", self.0));
            let _ = std::fs::remove_dir_all(format!("/run/rsplb/{}", self.0));
        }
    }
    let _peer_pins = PeerPins(lab.peer_if.clone());
    let small = ["--maglev-size", "251", "--max-vips", "2"];
    let attach = |args: &[&str]| {
        let mut full = vec!["attach", lab.lb_if.as_str()];
        full.extend_from_slice(args);
        let o = lab.rsplb(&full);
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    // A fresh veth pair: the peer has no XDP program and checksum offload on.
    let err = attach(&small);
    assert!(err.contains("warning"), "{err}");
    assert!(
        err.contains(&format!("peer {} has no XDP program", lab.peer_if)),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "ip -n {} link set dev {}",
            lab.peer_ns, lab.peer_if
        )),
        "{err}"
    );
    assert!(err.contains("checksum offload is on"), "{err}");
    assert!(
        err.contains(&format!("ethtool -K {} tx off", lab.peer_if)),
        "{err}"
    );

    // Checksum offload off: only the XDP part remains.
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.peer_ns,
        "ethtool",
        "-K",
        &lab.peer_if,
        "tx",
        "off",
    ]);
    let err = attach(&small);
    assert!(err.contains("has no XDP program"), "{err}");
    assert!(!err.contains("checksum offload"), "{err}");

    // An XDP program on the peer (here rsplb's own): no warning.
    let o = rsplb(&[
        "--netns",
        &lab.peer_ns,
        "attach",
        &lab.peer_if,
        "--maglev-size",
        "251",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = attach(&small);
    assert!(!err.contains("warning"), "{err}");
}

/// Pins, at `path`, a fresh BPF array of one `value_size`-byte value: the config map of an
/// older layout, as a previous version of rsplb left it.
fn pin_array(path: &str, value_size: u32) {
    fn bpf(cmd: libc::c_long, attr: &[u8; 128]) -> libc::c_long {
        // SAFETY: `attr` is a zero-padded bpf_attr of the command's layout, larger than any the
        // kernel reads for it.
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) }
    }
    let mut create = [0u8; 128];
    for (i, v) in [2u32 /* BPF_MAP_TYPE_ARRAY */, 4, value_size, 1]
        .into_iter()
        .enumerate()
    {
        create[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    let fd = bpf(0 /* BPF_MAP_CREATE */, &create);
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    let c_path = std::ffi::CString::new(path).unwrap();
    let mut pin = [0u8; 128];
    pin[..8].copy_from_slice(&(c_path.as_ptr() as u64).to_ne_bytes());
    pin[8..12].copy_from_slice(&(fd as u32).to_ne_bytes());
    let rc = bpf(6 /* BPF_OBJ_PIN */, &pin);
    assert_eq!(rc, 0, "BPF_OBJ_PIN: {}", std::io::Error::last_os_error());
    // SAFETY: closing the fd the kernel just gave us; the pin keeps the map.
    unsafe { libc::close(fd as i32) };
}

#[test]
fn pins_of_an_older_layout_are_named_and_attach_force_moves_forward_keeping_the_configuration() {
    assert!(
        is_root(),
        "this test attaches XDP: run it as root (cargo xtask test does)"
    );
    let lab = Lab::new();
    lab.ok(&[
        "attach",
        &lab.lb_if,
        "--maglev-size",
        "251",
        "--max-vips",
        "4",
    ]);
    let vip = format!("{}:80/tcp", lab.ip(100));
    lab.ok(&[
        "-i", &lab.lb_if, "vip", "add", &vip, "--pool", "web", "--mode", "dsr",
    ]);
    lab.ok(&[
        "-i",
        &lab.lb_if,
        "element",
        "add",
        "web",
        &lab.ip(2),
        "--weight",
        "2",
    ]);
    // What an attachment made before this version looks like: a 20-byte RSPLB_CONFIG.
    let config = format!("{}/RSPLB_CONFIG", lab.pin_dir());
    std::fs::remove_file(&config).unwrap();
    pin_array(&config, 20);

    let forward = format!("`rsplb attach {} --force`", lab.lb_if);
    for args in [
        vec!["-i", &lab.lb_if, "vip", "list"],
        vec!["attach", &lab.lb_if],
    ] {
        let o = lab.rsplb(&args);
        assert_clean_failure(&o, &forward);
        assert!(
            stderr(&o).contains("another version of rsplb"),
            "{}",
            stderr(&o)
        );
    }

    lab.ok(&[
        "attach",
        &lab.lb_if,
        "--maglev-size",
        "251",
        "--max-vips",
        "4",
        "--force",
    ]);
    let vips = lab.json(&["-i", &lab.lb_if, "vip", "list", "--json"]);
    assert_eq!(vips["vips"][0]["vip"], vip.as_str(), "{vips}");
    let elements = element_rows(&lab, "web");
    assert_eq!(elements.len(), 1);
    assert_eq!(elements[0]["weight"], 2);
}

#[test]
fn bad_allow_prefixes_are_refused_in_one_line() {
    for (prefix, why) in [
        ("198.18.0.0/33", "prefix length of an IPv4 prefix is 0..=32"),
        ("fd00::/129", "prefix length of an IPv6 prefix is 0..=128"),
        ("198.18.0.0/", "0..=32"),
        ("198.18.1.0/16", "did you mean 198.18.0.0/16?"),
        ("fd00::1/8", "did you mean fd00::/8?"),
        ("web/8", "not an address prefix"),
        ("198.18.0.0/16,198.19.0.0/16", "repeat --allow"),
    ] {
        let o = rsplb(&[
            "-i",
            "nonexistent0",
            "vip",
            "add",
            "198.18.0.100:80/tcp",
            "--pool",
            "web",
            "--allow",
            prefix,
        ]);
        assert_clean_failure(&o, why);
    }
    let o = rsplb(&[
        "-i",
        "nonexistent0",
        "vip",
        "change",
        "198.18.0.100:80/tcp",
        "--allow",
        "198.18.0.0/16",
        "--allow-all",
    ]);
    assert_clean_failure(&o, "--allow-all");
}

/// The prefixes of the pinned `RSPLB_ALLOW` of `lab`, as `ADDR/LEN` of VIP slot `slot`
/// (IPv4 VIPs).
fn pinned_allow_v4(lab: &Lab, slot: u32) -> Vec<String> {
    use aya::maps::{
        Map, MapData,
        lpm_trie::{Key, LpmTrie},
    };
    let data = MapData::from_pin(format!("{}/RSPLB_ALLOW", lab.pin_dir())).expect("pinned map");
    let map: LpmTrie<MapData, rsplb_common::AllowKey, u8> =
        Map::from_map_data(data).unwrap().try_into().unwrap();
    let mut out: Vec<String> = map
        .keys()
        .map(|k| k.unwrap())
        .filter(|k: &Key<rsplb_common::AllowKey>| k.data().vip_slot == slot.to_be())
        .map(|k| {
            let a = std::net::Ipv4Addr::from(k.data().addr[0].to_ne_bytes());
            format!("{a}/{}", k.prefix_len() - 32)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn allow_lists_are_set_changed_shown_and_recovered() {
    let lab = Lab::new();
    lab.ok(&[
        "attach",
        &lab.lb_if,
        "--maglev-size",
        "251",
        "--max-vips",
        "4",
    ]);
    let i = ["-i", lab.lb_if.as_str()];
    let vip = format!("{}:80/tcp", lab.ip(100));
    let open = format!("{}:81/tcp", lab.ip(100));
    let vip_list = |lab: &Lab| {
        let v = lab.json(&[i[0], i[1], "vip", "list", "--json"]);
        v["vips"].as_array().unwrap().clone()
    };
    let allow_of = |vips: &[Value], name: &str| -> Vec<String> {
        let v = vips.iter().find(|v| v["vip"] == name).expect("VIP listed");
        v["allow"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };

    // A prefix of the other family is refused before anything is written.
    let o = lab.rsplb(&[
        i[0],
        i[1],
        "vip",
        "add",
        &vip,
        "--pool",
        "web",
        "--allow",
        "198.18.0.0/16",
        "--allow",
        "fd00::/8",
    ]);
    assert_clean_failure(&o, "is IPv4 and --allow fd00::/8 is IPv6");
    assert!(vip_list(&lab).is_empty());

    lab.ok(&[
        i[0],
        i[1],
        "vip",
        "add",
        &vip,
        "--pool",
        "web",
        "--allow",
        "198.18.0.0/16",
        "--allow",
        "203.0.113.7",
    ]);
    lab.ok(&[i[0], i[1], "vip", "add", &open, "--pool", "web"]);
    let vips = vip_list(&lab);
    assert_eq!(allow_of(&vips, &vip), ["198.18.0.0/16", "203.0.113.7/32"]);
    assert!(allow_of(&vips, &open).is_empty(), "no list: everyone");
    let slot = vips.iter().find(|v| v["vip"] == vip.as_str()).unwrap()["slot"]
        .as_u64()
        .unwrap() as u32;
    assert_eq!(
        pinned_allow_v4(&lab, slot),
        ["198.18.0.0/16", "203.0.113.7/32"]
    );
    let table = lab.ok(&[i[0], i[1], "vip", "list"]);
    assert!(
        table.contains("allow: 198.18.0.0/16, 203.0.113.7/32"),
        "{table}"
    );
    let stats = lab.json(&[i[0], i[1], "stats", "--json"]);
    assert_eq!(stats["vips"][0]["drop_source_not_allowed"], 0);
    assert_eq!(stats["global"]["drop_source_not_allowed"], 0);
    assert_eq!(stats["global"]["flow_table_full_syn"], 0);

    // Change replaces the list; the stale prefix leaves the map.
    lab.ok(&[
        i[0],
        i[1],
        "vip",
        "change",
        &vip,
        "--allow",
        "198.18.0.0/15",
    ]);
    assert_eq!(allow_of(&vip_list(&lab), &vip), ["198.18.0.0/15"]);
    assert_eq!(pinned_allow_v4(&lab, slot), ["198.18.0.0/15"]);
    // A change of something else keeps it.
    lab.ok(&[i[0], i[1], "vip", "change", &vip, "--pool", "web2"]);
    assert_eq!(allow_of(&vip_list(&lab), &vip), ["198.18.0.0/15"]);

    // The list survives a lost state file (rebuilt from the maps).
    std::fs::remove_file(format!("{}/state.json", lab.state_dir())).unwrap();
    lab.ok(&["attach", &lab.lb_if, "--recover-state"]);
    assert_eq!(allow_of(&vip_list(&lab), &vip), ["198.18.0.0/15"]);
    // ... and a forced reload (new, empty maps written from the state).
    lab.ok(&["attach", &lab.lb_if, "--force"]);
    assert_eq!(pinned_allow_v4(&lab, slot), ["198.18.0.0/15"]);

    // --allow-all removes the list, from the state and the map.
    lab.ok(&[i[0], i[1], "vip", "change", &vip, "--allow-all"]);
    assert!(allow_of(&vip_list(&lab), &vip).is_empty());
    assert!(pinned_allow_v4(&lab, slot).is_empty());
    // Deleting a VIP removes its prefixes.
    lab.ok(&[
        i[0],
        i[1],
        "vip",
        "change",
        &vip,
        "--allow",
        "198.18.0.0/16",
    ]);
    lab.ok(&[i[0], i[1], "vip", "del", &vip]);
    assert!(pinned_allow_v4(&lab, slot).is_empty());
}

/// `rsplb config check` as an unprivileged user when the tests run as root (it needs no root).
fn config_check(args: &[&str]) -> Output {
    let mut cmd = if is_root() && std::path::Path::new("/usr/bin/setpriv").exists() {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.args(["config", "check"])
        .args(args)
        .env_remove("RSPLB_NETNS")
        .output()
        .expect("running rsplb config check")
}

#[test]
fn config_check_accepts_the_example_and_names_the_line_of_each_problem() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rsplb.toml");
    let o = config_check(&[example]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("valid") && out.contains("pools"), "{out}");
    let o = config_check(&[example, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert!(v["vips"].as_array().is_some_and(|a| !a.is_empty()));

    // A file the unprivileged user can read, with two problems.
    let dir = std::env::temp_dir().join(format!("rsplb-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[interface]\nname = \"eth1\"\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"wbe\"\n\
         [pool.web]\nelements = [\"198.18.1.2\"]\nweigth = 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    for p in [&dir, &bad] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = bad.to_str().unwrap();
    let o = config_check(&[path]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("{path}:8:1: unknown field `weigth`")),
        "{err}"
    );
    // Syntax first: fixed, the meaning is checked.
    std::fs::write(
        &bad,
        std::fs::read_to_string(&bad)
            .unwrap()
            .replace("weigth = 3\n", ""),
    )
    .unwrap();
    let o = config_check(&[path, "--json"]);
    assert!(!o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 5);
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("wbe"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reader that stops early (`rsplb … --json | head -c 1`) ends the command quietly, as with
/// other Unix tools: killed by SIGPIPE, never a panic in `println!` on EPIPE.
#[test]
fn a_reader_that_closes_early_does_not_make_rsplb_panic() {
    use std::os::unix::process::ExitStatusExt;
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rsplb.toml");
    let mut child = Command::new(BIN)
        .args(["config", "check", config, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running rsplb");
    // Close the read end before rsplb writes: its first write meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("waiting for rsplb");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "panic: {err}");
    // SIGPIPE (13 on Linux); success only if rsplb wrote before the pipe was closed.
    assert!(
        out.status.signal() == Some(13) || out.status.success(),
        "expected the end by SIGPIPE, got {:?}: {err}",
        out.status
    );
}

#[test]
fn a_bad_xdp_log_level_is_refused_naming_the_levels() {
    let o = rsplb(&["-i", "nonexistent0", "run", "--xdp-log", "loud"]);
    assert_clean_failure(&o, "`loud` is not an XDP log level");
    assert!(stderr(&o).contains("off, error, warn, info, debug, trace"));
    // The file says it instead: not both.
    let o = rsplb(&["run", "--config", "/nonexistent.toml", "--xdp-log", "warn"]);
    assert_clean_failure(&o, "--xdp-log");
    let help = rsplb(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--xdp-log <LEVEL>"));
}
