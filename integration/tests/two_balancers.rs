//! Two balancers serving one VIP from one operation scope, as behind an ECMP router: each runs
//! `rsplb run` with an embedded registrar, the two registrars peer by ENRP, and the servers
//! register (through their sidecars) at the first balancer only. The second learns every element
//! over ENRP and must build the same Maglev table (equal TABLE DIGEST), so that a TCP connection
//! whose packets switch from one balancer to the other, which has never seen it, stays on its
//! element.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use rsplb_integration::{
    TcpConn,
    cli::Rsplb,
    netns::ChildGuard,
    rserpool::{Sidecar, contains_all, wait_for_elements},
};

const POOL: &str = "web";
const BOUND: Duration = Duration::from_secs(20);

/// The table digest of `vip` on a balancer (`rsplb vip list --json`).
fn digest(rsplb: &Rsplb, vip: &str) -> Option<String> {
    let out = rsplb.on(&["vip", "list", "--json"]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["vips"].as_array()?.iter().find(|e| e["vip"] == vip)?["table_digest"]
        .as_str()
        .map(str::to_string)
}

/// Packets rsplb forwarded for `vip` on a balancer.
fn vip_packets(rsplb: &Rsplb, vip: &str) -> u64 {
    let stats = rsplb.stats().expect("rsplb stats");
    stats
        .vips
        .iter()
        .find(|v| v.vip == vip)
        .map_or(0, |v| v.packets)
}

/// The registrar configuration of one balancer's `rsplb run`.
fn registrar_config(id: u32, me: IpAddr, peer: IpAddr) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "rsplb-2lb-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(
        &path,
        format!(
            "registrar_id = {id:#x}\nasap_listen = [\"{}\"]\n[announce]\nenabled = false\n\
             [enrp]\nlisten = [\"{}\"]\npeers = [\"{}\"]\n",
            SocketAddr::new(me, 3863),
            SocketAddr::new(me, 9901),
            SocketAddr::new(peer, 9901),
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_connection_switching_balancers_stays_on_its_element() {
    let mut lab = attached_lab();
    let b = lab.add_balancer().expect("second balancer");
    lab.balancers[b].attach(&[]).expect("rsplb attach on lb2");
    let k = lab.id.subnet();
    let vip_ip: IpAddr = lab.vip4(0).into();
    let vip = SocketAddr::new(vip_ip, 80);
    let vip_s = vip_str(vip_ip, 80, "tcp");
    let lb1: IpAddr = lab.lb.v4.into();
    let lb2: IpAddr = lab.balancers[b].host.v4.into();
    for r in [&lab.rsplb, &lab.balancers[b].rsplb] {
        r.on(&["vip", "add", &vip_s, "--pool", POOL])
            .expect("vip add");
    }

    let c1 = registrar_config(0x2a1, lb1, lb2);
    let c2 = registrar_config(0x2a2, lb2, lb1);
    let _files = (RemoveOnDrop(c1.clone()), RemoveOnDrop(c2.clone()));
    lab.start_daemon(&[
        "--registrar-config",
        &c1.display().to_string(),
        "--interval",
        "1",
    ])
    .expect("rsplb run on lb1");
    lab.balancers[b]
        .start_daemon(&[
            "--registrar-config",
            &c2.display().to_string(),
            "--interval",
            "1",
        ])
        .expect("rsplb run on lb2");

    // The servers register at lb1's registrar only.
    let sidecar = Sidecar {
        pool: POOL,
        port: 80,
        policy: None,
    };
    let mut sidecars: Vec<ChildGuard> = (0..3)
        .map(|i| {
            let mut cmd = Command::new(&lab.rsplb.bin);
            cmd.args(sidecar.args(&lab, i).unwrap());
            ChildGuard::spawn(cmd).expect("sidecar")
        })
        .collect();
    let elements: Vec<String> = (0..3).map(|i| element(&lab, i, vip_ip, 80)).collect();
    for (name, r) in [("lb1", &lab.rsplb), ("lb2", &lab.balancers[b].rsplb)] {
        wait_for_elements(r, POOL, BOUND, &format!("three servers on {name}"), |l| {
            Ok(contains_all(l, &elements))
        })
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    lab.check_daemons().expect("rsplb run on lb1");
    lab.balancers[b].check_daemons().expect("rsplb run on lb2");

    // Identical tables: the same digest on both (the second built it from ENRP alone).
    let same_tables = |lab: &rsplb_integration::Lab, when: &str| -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            let d1 = digest(&lab.rsplb, &vip_s);
            let d2 = digest(&lab.balancers[b].rsplb, &vip_s);
            if let (Some(x), Some(y)) = (&d1, &d2)
                && x == y
            {
                println!("{when}: table digest {x} on both balancers");
                return x.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{when}: table digests differ after {BOUND:?}: lb1 {d1:?}, lb2 {d2:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let first = same_tables(&lab, "three elements");

    // Connections opened through lb1 (the client's route), each answered by its server.
    let client = lab.client.netns.name().to_string();
    let mut conns: Vec<(TcpConn, String)> = (0..40)
        .map(|_| {
            let mut c = TcpConn::open(&client, vip).expect("connect through lb1");
            let s = c.ask().expect("first request");
            (c, s)
        })
        .collect();
    let mut servers: Vec<&str> = conns.iter().map(|(_, s)| s.as_str()).collect();
    servers.sort();
    servers.dedup();
    assert_eq!(servers.len(), 3, "40 connections reached only {servers:?}");

    // The router moves the VIP's traffic from one balancer to the other, four times: every
    // connection keeps answering, from the same server.
    let route = |via: IpAddr| {
        lab.client
            .netns
            .ip(&[
                "route",
                "replace",
                &format!("198.19.{k}.0/24"),
                "via",
                &via.to_string(),
            ])
            .expect("ip route replace");
    };
    let before2 = vip_packets(&lab.balancers[b].rsplb, &vip_s);
    for (round, via) in [lb2, lb1, lb2, lb1].into_iter().enumerate() {
        route(via);
        for (i, (c, first)) in conns.iter_mut().enumerate() {
            let now = c
                .ask()
                .unwrap_or_else(|e| panic!("round {round} via {via}: connection {i} broke: {e:#}"));
            assert_eq!(
                &now, first,
                "round {round} via {via}: connection {i} moved from {first} to {now}"
            );
        }
    }
    let through2 = vip_packets(&lab.balancers[b].rsplb, &vip_s) - before2;
    assert!(
        through2 >= 80,
        "lb2 forwarded only {through2} packets of the VIP: the test did not go through it"
    );
    println!(
        "40 connections x 4 balancer switches: none broke or moved; lb2 forwarded {through2} packets"
    );

    // A change: s3's sidecar stops (its element deregisters). Both tables follow it, equal
    // again, and connections to the other two servers still keep their server through a switch.
    drop(sidecars.remove(2));
    let two: Vec<String> = elements[..2].to_vec();
    for (name, r) in [("lb1", &lab.rsplb), ("lb2", &lab.balancers[b].rsplb)] {
        wait_for_elements(r, POOL, BOUND, &format!("s3 gone on {name}"), |l| {
            Ok(l.len() == 2 && contains_all(l, &two))
        })
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    let second = same_tables(&lab, "s3 deregistered");
    assert_ne!(first, second, "the table did not change with the pool");
    route(lb2);
    for (i, (c, first)) in conns.iter_mut().enumerate().filter(|(_, (_, s))| s != "s3") {
        let now = c
            .ask()
            .unwrap_or_else(|e| panic!("after s3 left, via lb2: connection {i} broke: {e:#}"));
        assert_eq!(&now, first, "after s3 left: connection {i} moved");
    }
}
