//! `rsplb run --config` in the lab: the file's VIPs and pools reach the dataplane; the
//! balancer-side checks take a server whose service stopped out of it (no new connection
//! reaches it, established connections to the others go on) and bring it back after `rise`
//! successes; an HTTP check with the wrong status fails its elements; `rsplb reload` applies the
//! difference of the file without breaking a long-lived connection to an unchanged element (a
//! VIP's `hash` included: a change places the next connections); a bad file changes nothing and
//! says which line is wrong.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use rsplb_integration::{
    Lab, LabConfig, Tally, TcpConn,
    cli::ElementInfo,
    rserpool::{pool_elements, wait_for_elements},
    tcp_burst,
};

/// Generous bounds for a shared, noisy machine (the measured times are printed).
const START_BOUND: Duration = Duration::from_secs(20);
const HEALTH_BOUND: Duration = Duration::from_secs(10);

fn lab() -> Lab {
    let mut lab = Lab::build(LabConfig {
        ports: vec![80, 8080],
        http_ports: vec![8081],
        server_bin: Some(env!("CARGO_BIN_EXE_rsplb-testserver").into()),
        ..LabConfig::default()
    })
    .expect("building the lab");
    lab.attach(&[]).expect("rsplb attach");
    lab
}

/// How many of the three servers answered connections of `t`.
fn servers_used(t: &Tally) -> usize {
    (1..=3).filter(|i| t.get(&format!("s{i}")) > 0).count()
}

/// Server `i`'s IPv4 address (a DSR element: no port).
fn server(lab: &Lab, i: usize) -> String {
    lab.server_hosts[i].v4.to_string()
}

/// The lab's config file path (unique per lab; removed by the guard).
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(lab: &Lab) -> ConfigFile {
        ConfigFile(std::env::temp_dir().join(format!("{}rsplb.toml", lab.id.netns(""))))
    }
    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).expect("writing the config file");
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn head(lab: &Lab) -> String {
    format!("interval_s = 1\n[interface]\nname = \"{}\"\n", lab.lb.iface)
}

fn list(v: &[String]) -> String {
    let quoted: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The `check` of element `addr` in `rsplb status --json`, which must say a check decides its
/// health.
fn check_of(lab: &Lab, addr: &str) -> serde_json::Value {
    let st: serde_json::Value =
        serde_json::from_str(&lab.rsplb.run(&["status", "--json"]).unwrap()).unwrap();
    let e = st["elements"]
        .as_array()
        .and_then(|l| {
            l.iter().find(|e| {
                e["address"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&format!("{addr}:")) || a == addr)
            })
        })
        .unwrap_or_else(|| panic!("{addr} not in `rsplb status --json`: {st}"))
        .clone();
    assert_eq!(e["health_by"], "check", "{e}");
    e["check"].clone()
}

fn health_of(l: &[ElementInfo], addr: &str) -> Option<String> {
    l.iter()
        .find(|e| e.address == addr)
        .map(|e| e.health.clone())
}

/// Every element of `pool` is among `addrs`, all there, up, with a resolved next hop.
fn all_up(l: &[ElementInfo], addrs: &[String]) -> bool {
    l.len() == addrs.len()
        && addrs.iter().all(|a| {
            l.iter()
                .any(|e| &e.address == a && e.health == "up" && e.mac.is_some())
        })
}

#[test]
fn a_check_takes_a_stopped_server_out_and_rise_brings_it_back() {
    let mut lab = lab();
    let file = ConfigFile::new(&lab);
    let vip_ip: IpAddr = lab.vip4(0).into();
    let vip = SocketAddr::new(vip_ip, 80);
    let servers: Vec<String> = (0..3).map(|i| server(&lab, i)).collect();
    file.write(&format!(
        "{}[[vip]]\naddress = \"{vip}/tcp\"\npool = \"web\"\n\
         [pool.web]\nelements = {}\n\
         [pool.web.check]\ntype = \"tcp\"\nport = 80\ninterval_ms = 300\nfast_interval_ms = 100\n\
         timeout_ms = 200\nrise = 2\nfall = 2\n",
        head(&lab),
        list(&servers)
    ));
    let check = lab
        .rsplb
        .run(&["config", "check", file.path()])
        .expect("config check");
    assert!(check.contains("valid"), "{check}");
    lab.start_daemon(&["--config", file.path()]).unwrap();
    let took = wait_for_elements(&lab.rsplb, "web", START_BOUND, "the file's elements", |l| {
        Ok(all_up(l, &servers))
    })
    .unwrap();
    println!("config_to_dataplane_s={:.3}", took.as_secs_f64());
    for e in pool_elements(&lab.rsplb, "web").unwrap() {
        assert_eq!(e.owner, "config", "{}", e.address);
    }
    let t = tcp_burst(lab.client.netns.name(), vip, 300).unwrap();
    assert_eq!(t.failed, 0, "{t}");
    assert!((1..=3).all(|i| t.get(&format!("s{i}")) > 0), "{t}");

    // Long-lived connections to s1 and s2.
    let mut long: Vec<(TcpConn, String)> = Vec::new();
    for _ in 0..60 {
        let mut c = TcpConn::open(lab.client.netns.name(), vip).unwrap();
        let s = c.ask().unwrap();
        long.push((c, s));
        let on = |n: &str| long.iter().filter(|(_, s)| s == n).count();
        if on("s1") >= 1 && on("s2") >= 1 {
            break;
        }
    }
    long.retain(|(_, s)| s != "s3");
    assert!(long.iter().any(|(_, s)| s == "s1") && long.iter().any(|(_, s)| s == "s2"));

    // s3's service stops (its host stays): the check takes it out.
    lab.stop_server(2).unwrap();
    let took = wait_for_elements(&lab.rsplb, "web", HEALTH_BOUND, "s3 down", |l| {
        Ok(health_of(l, &servers[2]).as_deref() == Some("down"))
    })
    .unwrap();
    println!("service_stop_to_down_s={:.3}", took.as_secs_f64());
    // `rsplb status` says which signal took it out, and why.
    let c = check_of(&lab, &servers[2]);
    assert_eq!(c["check"], format!("tcp {}:80", servers[2]), "{c}");
    let reason = c["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("2 failures in a row (last: ") && c["since_unix_ms"].is_u64(),
        "{c}"
    );
    let text = lab.rsplb.run(&["status"]).unwrap();
    assert!(
        text.contains("down (check)")
            && text.contains(&format!("tcp {}:80; down: 2 failures", servers[2])),
        "{text}"
    );
    let t = tcp_burst(lab.client.netns.name(), vip, 200).unwrap();
    assert_eq!(t.failed, 0, "connections failed with s3 down: {t}");
    assert_eq!(t.get("s3"), 0, "a new connection reached s3: {t}");
    for (c, s) in long.iter_mut() {
        assert_eq!(&c.ask().expect("a connection to a healthy server broke"), s);
    }

    // It comes back after `rise` successes, and takes new connections again.
    lab.restart_server(2).unwrap();
    let took = wait_for_elements(&lab.rsplb, "web", HEALTH_BOUND, "s3 up again", |l| {
        Ok(all_up(l, &servers))
    })
    .unwrap();
    println!("service_restart_to_up_s={:.3}", took.as_secs_f64());
    assert_eq!(
        check_of(&lab, &servers[2])["reason"],
        "2 successes in a row"
    );
    assert_eq!(
        check_of(&lab, &servers[0])["reason"],
        serde_json::Value::Null
    );
    let t = tcp_burst(lab.client.netns.name(), vip, 300).unwrap();
    assert_eq!(t.failed, 0, "{t}");
    assert!(t.get("s3") > 0, "s3 gets no new connection: {t}");
    for (c, s) in long.iter_mut() {
        assert_eq!(&c.ask().expect("a connection to a healthy server broke"), s);
    }
    lab.check_daemons().unwrap();
}

#[test]
fn reload_applies_the_difference_and_a_bad_file_changes_nothing() {
    let mut lab = lab();
    let file = ConfigFile::new(&lab);
    let web_vip = SocketAddr::new(lab.vip4(0).into(), 80);
    let web_vip2 = SocketAddr::new(lab.vip4(0).into(), 8080);
    let api_vip = SocketAddr::new(lab.vip4(1).into(), 8080);
    let s: Vec<String> = (0..3).map(|i| server(&lab, i)).collect();
    let head = head(&lab);
    // `extra_vip`: web's second VIP, and client affinity on web's first (`hash = "client"`).
    let config = |web: &[String], api: &[String], status_path: &str, extra_vip: bool| {
        format!(
            "{}[[vip]]\naddress = \"{web_vip}/tcp\"\npool = \"web\"\nhash = \"{}\"\n\
             [[vip]]\naddress = \"{api_vip}/tcp\"\npool = \"api\"\n{}\
             [pool.web]\nelements = {}\n\
             [pool.api]\nelements = {}\nwhen_none_healthy = \"drop\"\n\
             [pool.api.check]\ntype = \"http\"\nport = 8081\npath = \"{status_path}\"\n\
             expect_status = 200\nbody_contains = \"ok\"\ninterval_ms = 200\nfast_interval_ms = 100\n\
             timeout_ms = 200\nrise = 1\nfall = 1\n",
            head,
            if extra_vip { "client" } else { "flow" },
            if extra_vip {
                format!("[[vip]]\naddress = \"{web_vip2}/tcp\"\npool = \"web\"\n")
            } else {
                String::new()
            },
            list(web),
            list(api),
        )
    };

    // The HTTP check of api asks for a status the servers do not give: every element fails,
    // and `drop` leaves the VIP without elements.
    file.write(&config(&s[..2], &s, "/status/500", false));
    lab.start_daemon(&["--config", file.path()]).unwrap();
    wait_for_elements(&lab.rsplb, "web", START_BOUND, "web up", |l| {
        Ok(all_up(l, &s[..2]))
    })
    .unwrap();
    wait_for_elements(&lab.rsplb, "api", HEALTH_BOUND, "api down", |l| {
        Ok(l.len() == 3 && l.iter().all(|e| e.health == "down"))
    })
    .unwrap();
    assert!(
        TcpConn::open(lab.client.netns.name(), api_vip).is_err(),
        "a connection went through a VIP whose every element failed its check"
    );

    // A long-lived connection through web, to s1 or s2.
    let mut long = TcpConn::open(lab.client.netns.name(), web_vip).unwrap();
    let home = long.ask().unwrap();

    // Reload: web gets s3, a second VIP and client affinity, api loses s2 and its check now
    // passes.
    file.write(&config(&s, &[s[0].clone(), s[2].clone()], "/health", true));
    let out = lab.rsplb.on(&["reload"]).expect("rsplb reload");
    let _ = out;
    wait_for_elements(&lab.rsplb, "api", HEALTH_BOUND, "api up", |l| {
        Ok(all_up(l, &[s[0].clone(), s[2].clone()]))
    })
    .unwrap();
    wait_for_elements(&lab.rsplb, "web", HEALTH_BOUND, "web with s3", |l| {
        Ok(all_up(l, &s))
    })
    .unwrap();
    assert_eq!(long.ask().expect("the long-lived connection broke"), home);
    let t = tcp_burst(lab.client.netns.name(), api_vip, 100).unwrap();
    assert_eq!(t.failed, 0, "{t}");
    assert_eq!(t.get("s2"), 0, "s2 left api: {t}");
    let t = tcp_burst(lab.client.netns.name(), web_vip2, 100).unwrap();
    assert_eq!(t.failed, 0, "the added VIP: {t}");
    // The client's new connections all go to one server (its long-lived one stayed above).
    let t = tcp_burst(lab.client.netns.name(), web_vip, 30).unwrap();
    assert_eq!(t.failed, 0, "{t}");
    assert_eq!(
        servers_used(&t),
        1,
        "30 connections of one client with hash = \"client\": {t}"
    );

    // Reload: the second VIP and s3 leave web again.
    file.write(&config(
        &s[..2],
        &[s[0].clone(), s[2].clone()],
        "/health",
        false,
    ));
    lab.rsplb.on(&["reload"]).expect("rsplb reload");
    let vips = lab.rsplb.on(&["vip", "list", "--json"]).unwrap();
    assert!(!vips.contains(&format!("{web_vip2}/tcp")), "{vips}");
    wait_for_elements(&lab.rsplb, "web", HEALTH_BOUND, "web without s3", |l| {
        Ok(all_up(l, &s[..2]))
    })
    .unwrap();
    assert_eq!(long.ask().expect("the long-lived connection broke"), home);
    // Back to hash = "flow": one client's connections spread again.
    let t = tcp_burst(lab.client.netns.name(), web_vip, 30).unwrap();
    assert_eq!(t.failed, 0, "{t}");
    assert!(
        servers_used(&t) > 1,
        "30 connections of one client with hash = \"flow\": {t}"
    );

    // A bad file: the reload is refused, names the line, and nothing changes.
    let before = (
        lab.rsplb.on(&["vip", "list", "--json"]).unwrap(),
        lab.rsplb.on(&["element", "list", "--json"]).unwrap(),
    );
    let bad = config(&s, &s, "/health", true).replace("pool = \"api\"", "pool = \"apj\"");
    file.write(&bad);
    let out = lab.rsplb.try_run(&["-i", &lab.lb.iface, "reload"]).unwrap();
    assert!(!out.success, "a bad file was reloaded: {}", out.stderr);
    let line = bad
        .lines()
        .position(|l| l.contains("apj"))
        .map(|i| i + 1)
        .unwrap();
    assert!(
        out.stderr.contains(&format!("rsplb.toml:{line}:")) && out.stderr.contains("apj"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing changed"), "{}", out.stderr);
    let after = (
        lab.rsplb.on(&["vip", "list", "--json"]).unwrap(),
        lab.rsplb.on(&["element", "list", "--json"]).unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(long.ask().expect("the long-lived connection broke"), home);
    lab.check_daemons().unwrap();

    // A daemon refuses to start on a bad file, before touching anything.
    lab.stop_daemons();
    let out = lab
        .rsplb
        .try_run(&["run", "--config", file.path()])
        .unwrap();
    assert!(!out.success);
    assert!(
        out.stderr.contains(&format!("rsplb.toml:{line}:")),
        "{}",
        out.stderr
    );
    assert_eq!(
        lab.rsplb.on(&["element", "list", "--json"]).unwrap(),
        before.1
    );
}

#[test]
fn below_min_healthy_the_vip_uses_the_backup_pool() {
    let mut lab = lab();
    let file = ConfigFile::new(&lab);
    let vip = SocketAddr::new(lab.vip4(0).into(), 80);
    let s: Vec<String> = (0..3).map(|i| server(&lab, i)).collect();
    file.write(&format!(
        "{}[[vip]]\naddress = \"{vip}/tcp\"\npool = \"web\"\n\
         [pool.web]\nelements = {}\nmin_healthy = 2\nbackup = \"sorry\"\n\
         [pool.web.check]\ntype = \"tcp\"\nport = 80\ninterval_ms = 200\nfast_interval_ms = 100\n\
         timeout_ms = 100\nrise = 2\nfall = 2\n\
         [pool.sorry]\nelements = {}\n",
        head(&lab),
        list(&s[..2]),
        list(&s[2..])
    ));
    lab.start_daemon(&["--config", file.path()]).unwrap();
    wait_for_elements(&lab.rsplb, "web", START_BOUND, "web up", |l| {
        Ok(all_up(l, &s[..2]))
    })
    .unwrap();
    wait_for_elements(&lab.rsplb, "sorry", START_BOUND, "sorry up", |l| {
        Ok(all_up(l, &s[2..]))
    })
    .unwrap();
    let t = tcp_burst(lab.client.netns.name(), vip, 200).unwrap();
    assert_eq!(t.failed, 0, "{t}");
    assert_eq!(
        t.get("s3"),
        0,
        "the backup serves while web is healthy: {t}"
    );
    assert!(t.get("s1") > 0 && t.get("s2") > 0, "{t}");

    // s1's service stops: web has 1 healthy element, fewer than 2: the backup serves alone.
    lab.stop_server(0).unwrap();
    wait_for_elements(&lab.rsplb, "web", HEALTH_BOUND, "s1 down", |l| {
        Ok(health_of(l, &s[0]).as_deref() == Some("down"))
    })
    .unwrap();
    let t = tcp_burst(lab.client.netns.name(), vip, 100).unwrap();
    assert_eq!(t.failed, 0, "{t}");
    assert_eq!(t.get("s3"), 100, "only the backup pool serves: {t}");
    let status: serde_json::Value =
        serde_json::from_str(&lab.rsplb.on(&["status", "--json"]).unwrap()).unwrap();
    assert_eq!(
        status["vips"][0]["backup_pool_serving"], "sorry",
        "{status}"
    );
    assert_eq!(status["vips"][0]["elements_in_service"], 1, "{status}");
    assert_eq!(status["daemon"]["config"]["applied"], true, "{status}");

    // Back: web serves again.
    lab.restart_server(0).unwrap();
    wait_for_elements(&lab.rsplb, "web", HEALTH_BOUND, "s1 up", |l| {
        Ok(all_up(l, &s[..2]))
    })
    .unwrap();
    let t = tcp_burst(lab.client.netns.name(), vip, 200).unwrap();
    assert_eq!(t.failed, 0, "{t}");
    assert_eq!(t.get("s3"), 0, "{t}");
    lab.check_daemons().unwrap();
}
