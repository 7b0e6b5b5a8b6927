//! Each class of error names the file, the line and the problem.

use super::*;

fn errors(text: &str) -> Vec<Located> {
    match parse(text, "rsplb.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

/// The one error of `text`: its line, and its message containing every one of `words`.
fn one_error_at(text: &str, line: usize, words: &[&str]) {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].file, "rsplb.toml");
    assert_eq!(e[0].line, line, "{}", e[0]);
    for w in words {
        assert!(e[0].message.contains(w), "`{w}` not in: {}", e[0]);
    }
    assert!(e[0].to_string().starts_with(&format!("rsplb.toml:{line}:")));
}

const HEAD: &str = "[interface]\nname = \"eth1\"\n";

#[test]
fn the_example_file_is_valid() {
    let text = include_str!("../../../deploy/rsplb.toml");
    let cfg = parse(text, "deploy/rsplb.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(!cfg.vips.is_empty());
    assert!(cfg.pools.values().any(|p| p.check.is_some()));
    assert!(cfg.registrar.is_some());
    let s = summary_text("deploy/rsplb.toml", &cfg);
    assert!(s.contains("valid"), "{s}");
}

#[test]
fn a_minimal_file_takes_the_defaults() {
    let cfg = parse(HEAD, "x").unwrap();
    assert_eq!(cfg.interface.xdp_mode, XdpMode::Native);
    assert_eq!(cfg.interval_s, 5.0);
    assert_eq!(cfg.xdp_log, XdpLogLevel::WARN);
    assert!(cfg.registrar.is_none() && cfg.vips.is_empty());
    assert_eq!(
        cfg.interface.attach_options().unwrap(),
        AttachOptions::default()
    );
}

#[test]
fn a_syntax_error_names_its_line() {
    one_error_at(
        &format!("{HEAD}\n[[vip]]\naddress = \"198.18.0.1:80/tcp\n"),
        5,
        &[],
    );
}

#[test]
fn an_unknown_key_names_its_line_and_the_key() {
    let text = format!(
        "{HEAD}[pool.web]\nelements = []\n[pool.web.check]\ntype = \"tcp\"\nintervall_ms = 100\n"
    );
    one_error_at(&text, 7, &["intervall_ms"]);
    one_error_at(
        "[interface]\nname = \"eth1\"\nxdp = \"native\"\n",
        3,
        &["xdp"],
    );
}

#[test]
fn an_unknown_pool_names_the_vip_line() {
    let text =
        format!("{HEAD}[pool.web]\n\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"wbe\"\n");
    one_error_at(&text, 7, &["wbe", "declared: web"]);
    let text = format!("{HEAD}[pool.web]\nbackup = \"sorry\"\n");
    one_error_at(&text, 4, &["sorry", "not declared"]);
}

#[test]
fn a_bad_address_names_its_line() {
    let text = format!("{HEAD}[[vip]]\naddress = \"300.1.1.1:80/tcp\"\npool = \"web\"\n");
    one_error_at(&text, 4, &["300.1.1.1"]);
    let text = format!("{HEAD}[pool.web]\nelements = [\"198.18.1.2\",\n  \"198.18.1.x\"]\n");
    // toml locates a bad array element at its array.
    one_error_at(&text, 4, &["198.18.1.x"]);
    one_error_at(&format!("metrics = \"localhost\"\n{HEAD}"), 1, &[]);
    let text = format!(
        "{HEAD}[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"web\"\nmode = \"nat\"\nsnat = \"fd00::1\"\n[pool.web]\n"
    );
    one_error_at(&text, 7, &["IPv4", "IPv6"]);
}

#[test]
fn duplicates_name_both_lines() {
    let text = format!(
        "{HEAD}[pool.web]\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"web\"\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"web\"\n"
    );
    one_error_at(&text, 8, &["twice", "first declared at line 5"]);
    // In a DSR-served pool, 198.18.1.2 and 198.18.1.2:80 are one element.
    let text = format!(
        "{HEAD}[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"web\"\n[pool.web]\nelements = [\"198.18.1.2\"]\n[[pool.web.element]]\naddress = \"198.18.1.2:80\"\nweight = 3\n"
    );
    one_error_at(&text, 9, &["twice", "first declared at line 7"]);
}

#[test]
fn semantic_errors_of_vips_and_checks() {
    // NAT without SNAT.
    let text = format!(
        "{HEAD}[pool.web]\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"web\"\nmode = \"nat\"\n"
    );
    one_error_at(&text, 7, &["snat"]);
    // A DSR element with another port.
    let text = format!(
        "{HEAD}[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"web\"\n[pool.web]\nelements = [\"198.18.1.2:8080\"]\n"
    );
    one_error_at(&text, 7, &["DSR cannot change ports"]);
    // A NAT VIP on an element of the other family, through a backup pool.
    let text = format!(
        "{HEAD}[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"web\"\nmode = \"nat\"\nsnat = \"198.18.0.9\"\n[pool.web]\nbackup = \"sorry\"\n[pool.sorry]\nelements = [\"[fd00::5]:80\"]\n"
    );
    one_error_at(&text, 11, &["IPv4", "IPv6", "sorry"]);
    // A check key of another kind, a missing udp request.
    let text = format!(
        "{HEAD}[pool.web]\nelements = [\"198.18.1.2:80\"]\n[pool.web.check]\ntype = \"tcp\"\nbody_contains = \"ok\"\n"
    );
    one_error_at(&text, 7, &["body_contains", "http"]);
    let text = format!(
        "{HEAD}[pool.dns]\nelements = [\"198.18.1.2:53\"]\n[pool.dns.check]\ntype = \"udp\"\n"
    );
    one_error_at(&text, 5, &["send"]);
    // A check with nowhere to go.
    let text = format!(
        "{HEAD}[pool.web]\nelements = [\"198.18.1.2\"]\n[pool.web.check]\ntype = \"tcp\"\n"
    );
    one_error_at(&text, 5, &["port"]);
    // An allow list of the other family.
    let text = format!(
        "{HEAD}[pool.web]\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"web\"\nallow = [\"fd00::/8\"]\n"
    );
    one_error_at(&text, 7, &["IPv6"]);
    // An exec check whose program is not there, an https check whose CA is not PEM.
    let text = format!(
        "{HEAD}[pool.db]\nelements = [\"198.18.1.2:5432\"]\n[pool.db.check]\ntype = \"exec\"\ncommand = [\"/nonexistent/check-db\"]\n"
    );
    one_error_at(&text, 7, &["/nonexistent/check-db"]);
    let bad_ca = std::env::temp_dir().join(format!("rsplb-bad-ca-{}.pem", std::process::id()));
    std::fs::write(&bad_ca, "not a certificate\n").unwrap();
    let text = format!(
        "{HEAD}[pool.web]\nelements = [\"198.18.1.2:443\"]\n[pool.web.check]\ntype = \"https\"\nca = \"{}\"\n",
        bad_ca.display()
    );
    let e = errors(&text);
    let _ = std::fs::remove_file(&bad_ca);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 7, "{}", e[0]);
    // Timeout above the interval.
    let text = format!(
        "{HEAD}[pool.web]\nelements = [\"198.18.1.2:80\"]\ncheck = {{ type = \"tcp\", interval_ms = 100, timeout_ms = 500 }}\n"
    );
    one_error_at(&text, 5, &["timeout"]);
}

#[test]
fn registrar_options_are_the_registrars_own_and_located() {
    let text = format!(
        "{HEAD}[registrar]\nasap_listen = [\"198.18.0.1:3863\"]\n[registrar.timers]\nkeepalive_timeout_ms = 0\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 6, "{}", e[0]);
    assert!(e[0].message.contains("keepalive_timeout_ms"), "{}", e[0]);
    let text = format!("{HEAD}[registrar]\nasap_lisen = []\n");
    one_error_at(&text, 4, &["asap_lisen"]);
    let cfg = parse(
        &format!(
            "{HEAD}[registrar]\nasap_listen = [\"198.18.0.1:3863\"]\n[registrar.enrp]\nlisten = [\"198.18.0.1:9901\"]\npeers = [\"198.18.0.2:9901\"]\n"
        ),
        "x",
    )
    .unwrap();
    let r = cfg.registrar.unwrap();
    assert_eq!(r.enrp.peers.len(), 1);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = format!(
        "{HEAD}[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"nope\"\n[[vip]]\naddress = \"198.18.0.2:80/tcp\"\npool = \"web\"\nmode = \"nat\"\n[pool.web]\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!((e[0].line, e[1].line), (5, 9));
    let shown = ConfigError::Invalid(e).to_string();
    assert!(shown.starts_with("2 problems:\n"), "{shown}");
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_column("ab\ncd", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
    assert_eq!(line_column("é\nx", 3), (2, 1));
}

#[test]
fn the_xdp_log_level_is_read_and_a_bad_one_names_its_line_and_the_levels() {
    let cfg = parse(&format!("xdp_log = \"off\"\n{HEAD}"), "x").unwrap();
    assert_eq!(cfg.xdp_log, XdpLogLevel::OFF);
    let cfg = parse(&format!("xdp_log = \"info\"\n{HEAD}"), "x").unwrap();
    assert_eq!(cfg.xdp_log.to_string(), "info");
    assert!(summary_text("x", &cfg).contains("xdp log    info"));
    one_error_at(
        &format!("interval_s = 5\nxdp_log = \"verbose\"\n{HEAD}"),
        2,
        &["`verbose` is not an XDP log level", "off, error, warn"],
    );
    one_error_at(&format!("xdp_log = 2\n{HEAD}"), 1, &[]);
}

#[test]
fn a_vips_hash_is_flow_unless_it_says_client() {
    let vip = |extra: &str| {
        format!(
            "{HEAD}[pool.web]\n[[vip]]\naddress = \"198.18.0.1:80/tcp\"\npool = \"web\"\n{extra}"
        )
    };
    let cfg = parse(&vip(""), "rsplb.toml").unwrap();
    assert_eq!(cfg.vips[0].hash, VipHash::Flow);
    let cfg = parse(&vip("hash = \"client\"\n"), "rsplb.toml").unwrap();
    assert_eq!(cfg.vips[0].hash, VipHash::Client);
    assert!(summary_text("rsplb.toml", &cfg).contains("hash client"));
    assert_eq!(summary(&cfg)["vips"][0]["hash"], "client");
    one_error_at(
        &vip("hash = \"source\"\n"),
        7,
        &["source", "flow", "client"],
    );
}
