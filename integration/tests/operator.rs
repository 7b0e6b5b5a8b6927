//! The operator's view, checked against reality in the lab: `rsplb run`'s metrics scraped over
//! real HTTP and held to the OpenMetrics text format, `rsplb status` with and without a daemon,
//! and `rsplb flow get` against where real connections and datagrams went.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use common::*;
use rsplb_integration::{Lab, TcpConn, in_netns, tcp_burst, udp_flows};
use rsplb_registrar::shell::http;
use serde_json::Value;

const METRICS: &str = "127.0.0.1:9464";

/// `GET path` from the daemon's endpoint in the balancer's namespace: (status, body).
fn scrape(lab: &Lab, path: &'static str) -> anyhow::Result<(u16, String)> {
    in_netns(lab.lb.netns.name(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let addr: SocketAddr = METRICS.parse()?;
        let (status, body) = rt.block_on(http::get(
            addr,
            "x",
            path,
            16 << 20,
            Duration::from_secs(10),
        ))?;
        Ok((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
    })
}

fn status_json(lab: &Lab) -> Value {
    let out = lab.rsplb.on(&["status", "--json"]).expect("rsplb status");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out}"))
}

/// Holds a scrape to the OpenMetrics text format as prometheus-client writes it and Prometheus
/// reads it: every family has one HELP and one TYPE, before its samples; counter samples end in
/// `_total`, histogram samples in `_bucket`, `_sum` and `_count`; every sample belongs to a
/// declared family and has a number; `# EOF` ends it.
/// Returns the samples, `name{labels}` to value.
fn parse_openmetrics(text: &str) -> BTreeMap<String, f64> {
    let mut help = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(help.insert(name.clone()), "HELP of {name} twice");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let (name, ty) = (p.next().unwrap().to_string(), p.next().unwrap().to_string());
            assert!(help.contains(&name), "TYPE of {name} before its HELP");
            assert!(
                types.insert(name.clone(), ty).is_none(),
                "TYPE of {name} twice"
            );
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample without a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}"));
            let name = series.split('{').next().unwrap();
            let family = types
                .iter()
                .find(|(f, ty)| match ty.as_str() {
                    "counter" => name == format!("{f}_total"),
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name == format!("{f}{s}")),
                    _ => name == f.as_str(),
                })
                .map(|(f, _)| f.clone());
            assert!(
                family.is_some(),
                "sample {name} belongs to no declared family (counters end in _total)"
            );
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "{series} twice"
            );
        }
    }
    // A histogram's buckets are cumulative, and its +Inf bucket is its count.
    for (f, _) in types.iter().filter(|(_, t)| t.as_str() == "histogram") {
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{f}_bucket{{")))
            .map(|(k, v)| {
                let le = k.split("le=\"").nth(1).and_then(|r| r.split('"').next());
                let le = match le {
                    Some("+Inf") => f64::INFINITY,
                    Some(x) => x.parse().unwrap_or_else(|_| panic!("bad le in {k}")),
                    None => panic!("bucket without le: {k}"),
                };
                (le, *v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{f}: buckets not cumulative: {buckets:?}"
        );
        if let (Some(&(le, n)), Some(count)) = (buckets.last(), samples.get(&format!("{f}_count")))
        {
            assert!(
                le.is_infinite() && n == *count,
                "{f}: +Inf bucket {n}, count {count}"
            );
        }
    }
    samples
}

fn sum(samples: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn daemon_metrics_and_status_over_real_http() {
    let mut lab = attached_lab();
    let vip_addr: IpAddr = lab.vip4(0).into();
    add_pool(&lab, "web", vip_addr, 80, &[1, 1, 1]);
    add_vips(&lab, vip_addr, 80, "web", "dsr");

    // No daemon: status says so, and still shows the dataplane.
    let s = status_json(&lab);
    assert_eq!(s["daemon"]["running"], false, "{s}");
    assert_eq!(s["vips"].as_array().unwrap().len(), 2, "{s}");
    let text = lab.rsplb.on(&["status"]).unwrap();
    assert!(text.contains("daemon: none runs"), "{text}");

    let ns = lab.client.netns.name().to_string();
    let vip = SocketAddr::new(vip_addr, 80);
    let t = tcp_burst(&ns, vip, 30).unwrap();
    assert_eq!(t.failed, 0, "{t}");

    lab.start_daemon(&["--metrics", METRICS, "--interval", "1"])
        .unwrap();
    let t0 = Instant::now();
    let (status, body) = loop {
        match scrape(&lab, "/metrics") {
            Ok(r) => break r,
            Err(e) if t0.elapsed() < Duration::from_secs(30) => {
                lab.check_daemons().unwrap();
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("no metrics from the daemon: {e:#}"),
        }
    };
    assert_eq!(status, 200, "{body}");
    let samples = parse_openmetrics(&body);
    let iface = &lab.lb.iface;
    let tx = samples[&format!("rsplb_xdp_actions_total{{interface=\"{iface}\",action=\"tx\"}}")];
    assert!(tx > 0.0, "no tx counted: {body}");
    // Reasons and actions are separate families: each reason family sums to its action.
    let pass_action =
        samples[&format!("rsplb_xdp_actions_total{{interface=\"{iface}\",action=\"pass\"}}")];
    assert_eq!(sum(&samples, "rsplb_passed_packets_total{"), pass_action);
    // The elements' packets add up to the VIPs' (DSR: only client-to-element packets).
    assert_eq!(
        sum(&samples, "rsplb_element_packets_total{"),
        sum(&samples, "rsplb_vip_packets_total{")
    );
    assert!(
        sum(&samples, "rsplb_element_new_flows_total{") >= 30.0,
        "{body}"
    );
    assert!(body.contains("rsplb_vip_table_info{"), "{body}");
    assert!(body.contains("owner=\"manual\""), "{body}");
    assert!(body.contains("rsplb_daemon_start_time_seconds"), "{body}");
    // Wrong paths get a proper 404; no admin paths without an embedded registrar.
    assert_eq!(scrape(&lab, "/nope").unwrap().0, 404);
    assert_eq!(scrape(&lab, "/handlespace").unwrap().0, 404);

    // With the daemon: status names it, its endpoint and start time.
    let t0 = Instant::now();
    let s = loop {
        let s = status_json(&lab);
        if s["daemon"]["running"] == true || t0.elapsed() > Duration::from_secs(20) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(s["daemon"]["running"], true, "{s}");
    assert_eq!(s["daemon"]["http"], METRICS, "{s}");
    assert!(s["daemon"]["started_unix_ms"].as_u64().unwrap() > 0, "{s}");
    let digest = s["vips"][0]["table_digest"].as_str().unwrap().to_string();
    assert!(
        body.contains(&format!("table_digest=\"{digest}\"")),
        "the metrics' digest differs from status's {digest}"
    );
    let text = lab.rsplb.on(&["status"]).unwrap();
    assert!(text.contains("daemon: running (pid"), "{text}");

    // Stopped (SIGTERM): status says no daemon runs.
    lab.stop_daemons();
    let s = status_json(&lab);
    assert_eq!(s["daemon"]["running"], false, "{s}");
}

#[test]
fn flow_get_names_where_real_flows_went() {
    let lab = attached_lab();
    let vip_addr: IpAddr = lab.vip4(0).into();
    add_pool(&lab, "web", vip_addr, 80, &[1, 2, 3]);
    add_vips(&lab, vip_addr, 80, "web", "dsr");
    let ns = lab.client.netns.name().to_string();
    let vip = SocketAddr::new(vip_addr, 80);
    let tcp_vip = vip_str(vip_addr, 80, "tcp");
    let udp_vip = vip_str(vip_addr, 80, "udp");

    // Established TCP connections: flow get finds each pinned to the server that answers it.
    for _ in 0..6 {
        let mut conn = TcpConn::open(&ns, vip).unwrap();
        let server = conn.ask().unwrap();
        let a = flow_get(&lab, conn.local, &tcp_vip);
        assert_eq!(a["decided_by"], "flow_table", "{a}");
        assert_eq!(a["pinned"]["valid"], true, "{a}");
        let e = a["element"].as_str().unwrap();
        assert_eq!(
            lab.servers[server_of(&lab, e)].name,
            server,
            "flow get says {e} for a connection {server} answers: {a}"
        );
        // The pool did not change: Maglev places it there too.
        assert_eq!(a["maglev"]["element"], a["element"], "{a}");
        assert_eq!(conn.ask().unwrap(), server);
    }

    // Unseen UDP tuples: flow get predicts Maglev's element, then the datagram lands there.
    let client = lab.client.v4;
    let ports = 31000..31012;
    let mut predicted = BTreeMap::new();
    for port in ports.clone() {
        let a = flow_get(&lab, SocketAddr::new(client.into(), port), &udp_vip);
        assert_eq!(a["decided_by"], "maglev", "{a}");
        assert!(a["pinned"].is_null(), "{a}");
        let e = a["element"].as_str().unwrap().to_string();
        predicted.insert(port, lab.servers[server_of(&lab, &e)].name.clone());
    }
    let went = udp_flows(&ns, client.into(), vip, ports.clone()).unwrap();
    let mut servers_seen = BTreeSet::new();
    for (port, answer) in went {
        let answer = answer.unwrap_or_else(|| panic!("no answer from port {port}"));
        assert_eq!(
            predicted[&port], answer,
            "flow get predicted {} for port {port}, {answer} received it",
            predicted[&port]
        );
        servers_seen.insert(answer);
        // Now the flow is pinned where it went.
        let a = flow_get(&lab, SocketAddr::new(client.into(), port), &udp_vip);
        assert_eq!(a["decided_by"], "flow_table", "{a}");
    }
    assert!(
        servers_seen.len() > 1,
        "twelve flows all on one server: {servers_seen:?}"
    );
    // The human answer says the same.
    let text = lab
        .rsplb
        .on(&["flow", "get", &format!("{client}:31000"), &udp_vip])
        .unwrap();
    assert!(text.contains("pinned in the flow table"), "{text}");
    let bad = lab
        .rsplb
        .try_run(&[
            "-i",
            &lab.rsplb.iface,
            "flow",
            "get",
            "198.18.0.2:1",
            "203.0.113.1:80/tcp",
        ])
        .unwrap();
    assert!(
        !bad.success && bad.stderr.contains("is not a VIP"),
        "{bad:?}"
    );
}

#[test]
fn one_server_for_metrics_and_the_embedded_registrars_admin_paths() {
    use rsplb_integration::rserpool::{Sidecar, contains_all, registrar_addr, wait_for_elements};
    let mut lab = attached_lab();
    let vip_ip: IpAddr = lab.vip4(0).into();
    lab.rsplb
        .on(&["vip", "add", &vip_str(vip_ip, 80, "tcp"), "--pool", "web"])
        .unwrap();
    let registrar = registrar_addr(&lab).to_string();
    lab.start_daemon(&[
        "--registrar",
        &registrar,
        "--metrics",
        METRICS,
        "--interval",
        "1",
    ])
    .unwrap();
    let sidecar = Sidecar {
        pool: "web",
        port: 80,
        policy: None,
    };
    let _sidecars: Vec<_> = (0..2)
        .map(|i| sidecar.start(&lab, i).expect("starting a sidecar"))
        .collect();
    let elements: Vec<String> = (0..2).map(|i| element(&lab, i, vip_ip, 80)).collect();
    wait_for_elements(
        &lab.rsplb,
        "web",
        Duration::from_secs(30),
        "two servers registered",
        |l| Ok(contains_all(l, &elements)),
    )
    .unwrap();

    let (status, body) = scrape(&lab, "/handlespace").unwrap();
    assert_eq!(status, 200, "{body}");
    let hs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hs["element_count"], 2, "{hs}");
    // The command line reads it there; the registrar opened no admin listener of its own
    // (rsp-registrar's default address is closed in the balancer's namespace).
    let hs: Value = serde_json::from_str(
        &lab.rsplb
            .on(&["handlespace", "--admin", METRICS, "--json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hs["element_count"], 2, "{hs}");
    let closed = lab.rsplb.on(&[
        "handlespace",
        "--admin",
        "127.0.0.1:3870",
        "--timeout",
        "1000",
    ]);
    assert!(closed.is_err(), "a second admin server answers: {closed:?}");
    let (status, body) = scrape(&lab, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    let samples = parse_openmetrics(&body);
    assert_eq!(sum(&samples, "rsplb_registrar_elements{"), 2.0, "{body}");
    assert!(sum(&samples, "rsplb_registrar_registrations_total{") >= 2.0);
    assert!(
        sum(&samples, "rsplb_reconcile_passes_total") >= 1.0,
        "{body}"
    );
    assert!(body.contains("owner=\"registrar\""), "{body}");

    let t0 = Instant::now();
    let s = loop {
        let s = status_json(&lab);
        if s["daemon"]["registrar"]["elements"] == 2 || t0.elapsed() > Duration::from_secs(20) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(s["daemon"]["registrar"]["answering"], true, "{s}");
    assert_eq!(s["daemon"]["registrar"]["elements"], 2, "{s}");
    assert!(
        s["daemon"]["reconcile"]["last_unix_ms"].as_u64().is_some(),
        "{s}"
    );
    assert!(
        s["elements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["owner"] == "registrar"),
        "{s}"
    );
    let text = lab.rsplb.on(&["status"]).unwrap();
    assert!(text.contains("(answering)"), "{text}");
}
