//! An operation scope in front of the dataplane: a registrar (`rsp-registrar --enrp`) on each of
//! the three server hosts, and the balancer's own embedded registrar (`rsplb run
//! --registrar-config` with an `[enrp]` section) as a fourth peer. Each server registers through
//! its sidecar at the registrar of its own host; the balancer learns every element over ENRP and
//! serves them behind a DSR VIP. Then the registrar of s1's host is SIGKILLed: its element moves
//! to another registrar, and throughout, no element leaves the dataplane, no new connection
//! fails and no established connection breaks.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use rsplb_integration::{
    TcpConn,
    netns::ChildGuard,
    rserpool::{Sidecar, contains_all, pool_elements, wait_for_elements},
    tcp_burst,
};

const POOL: &str = "web";
const REGISTER_BOUND: Duration = Duration::from_secs(20);

/// The lab, the scope's registrars (s1..s3's hosts), the sidecars and the element addresses, with
/// every element in the dataplane and real traffic flowing.
struct Scope {
    lab: rsplb_integration::Lab,
    registrars: Vec<ChildGuard>,
    sidecars: Vec<ChildGuard>,
    elements: Vec<String>,
    vip: SocketAddr,
    host_ips: Vec<IpAddr>,
    lb_ip: IpAddr,
    _config: RemoveOnDrop,
}

fn scope() -> Scope {
    let mut lab = attached_lab();
    let vip_ip: IpAddr = lab.vip4(0).into();
    let vip = SocketAddr::new(vip_ip, 80);
    lab.rsplb
        .on(&["vip", "add", &vip_str(vip_ip, 80, "tcp"), "--pool", POOL])
        .expect("vip add");

    let registrar_bin = lab
        .rsplb
        .bin
        .parent()
        .expect("rsplb has a directory")
        .join("rsp-registrar");
    assert!(
        registrar_bin.is_file(),
        "{} is missing: build it with `cargo build -p rsplb-registrar` (cargo xtask test does)",
        registrar_bin.display()
    );
    let host_ips: Vec<IpAddr> = lab.server_hosts.iter().map(|h| h.v4.into()).collect();
    let lb_ip: IpAddr = lab.lb.v4.into();
    let enrp = |ip: IpAddr| SocketAddr::new(ip, 9901).to_string();
    let asap = |ip: IpAddr| SocketAddr::new(ip, 3863).to_string();

    // One registrar per server host, each with every other one (and the balancer) as peer.
    let mut registrars: Vec<ChildGuard> = Vec::new();
    for (i, ip) in host_ips.iter().enumerate() {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", lab.server_hosts[i].netns.name()])
            .arg(&registrar_bin)
            .args(["--id", &format!("{}", 0x101 + i)])
            .args(["--asap", &asap(*ip), "--enrp", &enrp(*ip)])
            .args(["--no-admin", "--no-announce"]);
        for other in host_ips.iter().filter(|o| *o != ip).chain([&lb_ip]) {
            cmd.args(["--peer", &enrp(*other)]);
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("SCOPE_LOG").unwrap_or_else(|_| "warn".into()),
        );
        registrars.push(ChildGuard::spawn(cmd).expect("rsp-registrar"));
    }

    // The balancer's embedded registrar joins the scope.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let config = std::env::temp_dir().join(format!(
        "rsplb-scope-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let peers: Vec<String> = host_ips
        .iter()
        .map(|ip| format!("\"{}\"", enrp(*ip)))
        .collect();
    std::fs::write(
        &config,
        format!(
            "registrar_id = 0x1ff\nasap_listen = [\"{}\"]\n[announce]\nenabled = false\n\
             [enrp]\nlisten = [\"{}\"]\npeers = [{}]\n",
            asap(lb_ip),
            enrp(lb_ip),
            peers.join(", ")
        ),
    )
    .unwrap();
    let config_str = config.display().to_string();
    lab.start_daemon(&["--registrar-config", &config_str, "--interval", "1"])
        .expect("rsplb run --registrar-config");
    // The daemon reads the file as it starts: removed when the test ends, however it ends.
    let config_guard = RemoveOnDrop(config.clone());

    // Sidecars register at their own host's registrar first, the next host's second.
    let sidecar = Sidecar {
        pool: POOL,
        port: 80,
        policy: None,
    };
    let mut sidecars = Vec::new();
    for i in 0..3 {
        let mut args = sidecar.args(&lab, i).unwrap();
        // Replace the balancer's registrar with the host's own, then the next host's.
        let at = args.iter().position(|a| a == "--registrar").unwrap();
        args[at + 1] = asap(host_ips[i]);
        args.insert(at + 2, "--registrar".into());
        args.insert(at + 3, asap(host_ips[(i + 1) % 3]));
        let mut cmd = Command::new(&lab.rsplb.bin);
        cmd.args(&args);
        sidecars.push(ChildGuard::spawn(cmd).expect("sidecar"));
    }
    let elements: Vec<String> = (0..3).map(|i| element(&lab, i, vip_ip, 80)).collect();
    let took = wait_for_elements(
        &lab.rsplb,
        POOL,
        REGISTER_BOUND,
        "three servers in the dataplane over ENRP",
        |l| Ok(contains_all(l, &elements)),
    );
    lab.check_daemons().expect("rsplb run");
    let took = took.unwrap();
    println!(
        "registration_via_enrp_to_dataplane_s={:.3}",
        took.as_secs_f64()
    );

    let t = tcp_burst(lab.client.netns.name(), vip, 300).expect("tcp burst");
    assert_eq!(t.failed, 0, "connections failed: {t}");
    assert!(counts(&t, 3).iter().all(|&n| n > 0), "{t}");
    let mut long: Vec<(TcpConn, String)> = Vec::new();
    for _ in 0..30 {
        let mut c = TcpConn::open(lab.client.netns.name(), vip).expect("connect");
        let s = c.ask().expect("first request");
        long.push((c, s));
    }
    assert!(long.iter().any(|(_, s)| s == "s1"), "no connection on s1");

    Scope {
        lab,
        registrars,
        sidecars,
        elements,
        vip,
        host_ips,
        lb_ip,
        _config: config_guard,
    }
}

#[test]
fn a_registrar_killed_in_a_scope_changes_nothing_in_the_dataplane() {
    let Scope {
        lab,
        mut registrars,
        mut sidecars,
        elements,
        vip,
        ..
    } = scope();
    let mut long: Vec<(TcpConn, String)> = Vec::new();
    for _ in 0..30 {
        let mut c = TcpConn::open(lab.client.netns.name(), vip).expect("connect");
        let s = c.ask().expect("first request");
        long.push((c, s));
    }
    assert!(long.iter().any(|(_, s)| s == "s1"), "no connection on s1");

    // SIGKILL the registrar of s1's host.
    let pid = registrars[0].pid() as i32;
    // SAFETY: kill with our own child's pid and a valid signal.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let start = Instant::now();
    let mut bursts = 0;
    while start.elapsed() < Duration::from_secs(4) {
        let list = pool_elements(&lab.rsplb, POOL).unwrap();
        assert!(
            contains_all(&list, &elements),
            "an element left the dataplane {:?} after the registrar died: {:?}",
            start.elapsed(),
            list.iter().map(|e| &e.address).collect::<Vec<_>>()
        );
        let t = tcp_burst(lab.client.netns.name(), vip, 30).expect("tcp burst");
        assert_eq!(
            t.failed, 0,
            "connections failed after the registrar died: {t}"
        );
        bursts += 1;
    }
    assert!(bursts >= 3, "only {bursts} bursts in 4 s");
    for (c, s) in long.iter_mut() {
        assert_eq!(
            &c.ask().expect("a connection broke when a registrar died"),
            s
        );
    }
    let t = tcp_burst(lab.client.netns.name(), vip, 300).expect("tcp burst");
    assert_eq!(t.failed, 0, "{t}");
    assert!(counts(&t, 3).iter().all(|&n| n > 0), "{t}");
    for s in sidecars.iter_mut() {
        s.check_running().expect("a sidecar exited");
    }
    for r in registrars.iter_mut().skip(1) {
        r.check_running().expect("a surviving registrar exited");
    }
}

/// `rsplb --netns NS handlespace --registrar IP:9901 --json`: a registrar's handlespace read
/// over ENRP, as rsplib's hsdump reads one.
fn enrp_dump(
    bin: &std::path::Path,
    ns: &str,
    ip: IpAddr,
    timeout_ms: u64,
) -> Result<serde_json::Value, String> {
    let out = Command::new(bin)
        .args(["--netns", ns, "handlespace", "--registrar"])
        .arg(SocketAddr::new(ip, 9901).to_string())
        .args(["--json", "--timeout", &timeout_ms.to_string()])
        .output()
        .expect("rsplb handlespace --registrar");
    if !out.status.success() {
        return Err(format!(
            "reading {ip}'s handlespace over ENRP: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{ip}'s handlespace: {e}"))
}

/// Every registrar's view over ENRP (`rsplb handlespace --registrar`, as rsplib's hsdump reads
/// one): (pool, element id, home registrar), sorted.
/// One registrar's view: (pool, element id, home registrar), sorted.
type View = Vec<(String, u64, u64)>;

fn views(sc: &Scope) -> Result<Vec<View>, String> {
    let mut targets: Vec<(String, IpAddr)> = sc
        .lab
        .server_hosts
        .iter()
        .zip(&sc.host_ips)
        .map(|(h, ip)| (h.netns.name().to_string(), *ip))
        .collect();
    targets.push((sc.lab.lb.netns.name().to_string(), sc.lb_ip));
    targets
        .iter()
        .map(|(ns, ip)| {
            let v = enrp_dump(&sc.lab.rsplb.bin, ns, *ip, 5_000)?;
            let mut els: Vec<(String, u64, u64)> = v["pools"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| {
                    let h = p["handle"].as_str().unwrap().to_string();
                    p["elements"].as_array().unwrap().iter().map(move |e| {
                        (
                            h.clone(),
                            e["id"].as_u64().unwrap(),
                            e["home_registrar"].as_u64().unwrap(),
                        )
                    })
                })
                .collect();
            els.sort();
            Ok(els)
        })
        .collect()
}

#[test]
fn a_registrar_cut_off_and_back_converges_with_the_scope() {
    let mut sc = scope();
    let lab = &sc.lab;
    let s3 = &lab.server_hosts[2];
    // Cut s3's host off (registrar and server), long enough for takeovers on both sides.
    let cut = |how: &str| {
        let st = Command::new("ip")
            .args(["-n", s3.netns.name(), "link", "set", &s3.iface, how])
            .status()
            .unwrap();
        assert!(st.success(), "ip link set {how}");
    };
    cut("down");
    // Meanwhile s1 leaves the pool (its sidecar deregisters at its own registrar).
    sc.sidecars[0].stop();
    let left = wait_for_elements(&lab.rsplb, POOL, REGISTER_BOUND, "s1 left", |l| {
        Ok(!l.iter().any(|e| e.address == sc.elements[0]))
    })
    .unwrap();
    println!(
        "deregistration_during_cut_to_dataplane_s={:.3}",
        left.as_secs_f64()
    );
    // The rest of the scope judges s3's registrar dead and takes its element over: it stays in
    // the dataplane (its server is only unreachable, not gone).
    std::thread::sleep(Duration::from_millis(1_500));
    let list = pool_elements(&lab.rsplb, POOL).unwrap();
    assert!(
        contains_all(&list, &sc.elements[1..]),
        "{:?}",
        list.iter().map(|e| &e.address).collect::<Vec<_>>()
    );
    cut("up");
    // After the link is back, every registrar (s3's included, which missed the deregistration)
    // converges on the same handlespace: s2 and s3, each owned by a live registrar.
    let start = Instant::now();
    let mut last = Err("not read".to_string());
    let converged = |v: &Result<Vec<View>, String>| {
        v.as_ref()
            .is_ok_and(|v| v.iter().all(|x| *x == v[0]) && v[0].len() == 2)
    };
    while start.elapsed() < Duration::from_secs(15) {
        last = views(&sc);
        if converged(&last) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(converged(&last), "views did not converge: {last:?}");
    println!(
        "convergence_after_link_up_s={:.3}",
        start.elapsed().as_secs_f64()
    );
    let list = pool_elements(&lab.rsplb, POOL).unwrap();
    assert!(contains_all(&list, &sc.elements[1..]));
    let t = tcp_burst(lab.client.netns.name(), sc.vip, 100).expect("tcp burst");
    assert_eq!(t.failed, 0, "{t}");
    assert_eq!(t.get("s1"), 0, "{t}");
    for r in sc.registrars.iter_mut() {
        r.check_running().expect("a registrar exited");
    }
}

/// 100 pool elements (the PE library, in the host's own namespace) registered at each host's
/// registrar, from one thread per host; they deregister when `stop` is dropped.
struct Bulk {
    stop: Option<std::sync::mpsc::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Bulk {
    fn drop(&mut self) {
        drop(self.stop.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn bulk(sc: &Scope, per_host: u32) -> Bulk {
    use rsplb_registrar::client::{ClientConfig, PoolElementConfig, PoolElementHandle};
    use rsplb_registrar::types::{PeId, TransportAddress, TransportUse};
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let stop_rx = std::sync::Arc::new(std::sync::Mutex::new(stop_rx));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut threads = Vec::new();
    for (i, h) in sc.lab.server_hosts.iter().enumerate() {
        let ns = h.netns.name().to_string();
        let ip = sc.host_ips[i];
        let ready = ready_tx.clone();
        let stop = stop_rx.clone();
        threads.push(std::thread::spawn(move || {
            let r = rsplb_integration::netns::in_netns(&ns, move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let mut pes = Vec::new();
                    for k in 0..per_host {
                        let client = ClientConfig::with_registrars([SocketAddr::new(ip, 3863)]);
                        let mut c = PoolElementConfig::new(
                            "bulk".parse().unwrap(),
                            TransportAddress::Tcp {
                                port: 10_000 + k as u16,
                                transport_use: TransportUse::DataOnly,
                                addr: ip,
                            },
                        );
                        c.id = Some(PeId(1_000_000 * (i as u32 + 1) + k));
                        match PoolElementHandle::register(client, c).await {
                            Ok(p) => pes.push(p),
                            Err(e) => {
                                let _ = ready.send(Err(format!("host {i}: {e}")));
                                return;
                            }
                        }
                    }
                    let _ = ready.send(Ok(()));
                    // Keep them registered until the test drops the Bulk.
                    let _ = tokio::task::spawn_blocking(move || {
                        let _ = stop.lock().map(|rx| rx.recv());
                    })
                    .await;
                    for p in pes {
                        let _ = p.deregister().await;
                    }
                });
                Ok(())
            });
            if let Err(e) = r {
                eprintln!("bulk thread: {e}");
            }
        }));
    }
    for _ in 0..threads.len() {
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("bulk registration ends")
            .expect("bulk registration");
    }
    Bulk {
        stop: Some(stop_tx),
        threads,
    }
}

/// The RFC 5353 PE checksum of `home`'s elements in a view.
fn checksum_of(view: &View, home: u64) -> u16 {
    use rsplb_registrar::handlespace::compute_checksum;
    use rsplb_registrar::types::{PeId, PoolHandle};
    let keys: Vec<(PoolHandle, PeId)> = view
        .iter()
        .filter(|e| e.2 == home)
        .map(|e| (e.0.parse().unwrap(), PeId(e.1 as u32)))
        .collect();
    compute_checksum(keys.iter().map(|(h, id)| (h, *id)))
}

#[test]
fn three_hundred_elements_over_three_registrars_are_the_same_everywhere() {
    let sc = scope();
    let _bulk = bulk(&sc, 100);
    let wait_converged = |n: usize, what: &str| -> Vec<View> {
        let start = Instant::now();
        loop {
            let v = views(&sc);
            if let Ok(v) = &v
                && v.iter().all(|x| *x == v[0])
                && v[0].len() == n
            {
                println!("{what}_s={:.3}", start.elapsed().as_secs_f64());
                return v.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: views did not converge on {n} elements: {:?}",
                v.map(|v| v.iter().map(Vec::len).collect::<Vec<_>>())
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let v = wait_converged(303, "bulk_converged");
    // Each home registrar's checksum, as it reports it in its Presence, is the checksum of its
    // elements as every other registrar holds them (rsplb handlespace --registrar gives both).
    for (i, ip) in sc.host_ips.iter().enumerate() {
        let home = 0x101 + i as u64;
        let j = enrp_dump(
            &sc.lab.rsplb.bin,
            sc.lab.server_hosts[i].netns.name(),
            *ip,
            3_000,
        )
        .unwrap();
        let reported = j["checksum"].as_u64().expect("a checksum in the Presence") as u16;
        assert_eq!(reported, checksum_of(&v[3], home), "registrar {home:x}");
        assert_eq!(
            v[3].iter().filter(|e| e.2 == home).count(),
            101,
            "registrar {home:x} is home of its host's 100 + 1 sidecar"
        );
    }
    // Pool users resolve the pool at every registrar.
    for (i, ip) in sc.host_ips.iter().enumerate() {
        let out = Command::new(&sc.lab.rsplb.bin)
            .args(["--netns", sc.lab.server_hosts[(i + 1) % 3].netns.name()])
            .args(["resolve", "bulk", "--items", "10", "--json", "--registrar"])
            .arg(SocketAddr::new(*ip, 3863).to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["elements"].as_array().unwrap().len(), 10, "{j}");
    }
    // A late registrar (on the client host) downloads the same handlespace.
    let client_ip: IpAddr = sc.lab.client.v4.into();
    let registrar_bin = sc.lab.rsplb.bin.parent().unwrap().join("rsp-registrar");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", sc.lab.client.netns.name()])
        .arg(&registrar_bin)
        .args(["--id", "0x1aa", "--no-admin", "--no-announce"])
        .args(["--asap", &SocketAddr::new(client_ip, 3863).to_string()])
        .args(["--enrp", &SocketAddr::new(client_ip, 9901).to_string()])
        .args(["--peer", &SocketAddr::new(sc.host_ips[0], 9901).to_string()])
        .env("RUST_LOG", "warn");
    let _late = ChildGuard::spawn(cmd).expect("late rsp-registrar");
    let start = Instant::now();
    loop {
        let n = enrp_dump(
            &sc.lab.rsplb.bin,
            sc.lab.client.netns.name(),
            client_ip,
            3_000,
        )
        .ok()
        .map(|j| {
            j["pools"].as_array().map_or(0, |p| {
                p.iter()
                    .map(|p| p["elements"].as_array().unwrap().len())
                    .sum()
            })
        });
        if n == Some(303) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the late registrar holds {n:?} of 303 elements"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
