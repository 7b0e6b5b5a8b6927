//! Changing a pool under traffic moves only the flows it must: a weight change keeps every
//! existing flow where it is and steers new ones by the new weights; removing an element moves
//! only its flows; draining keeps existing connections and takes no new ones. Re-attaching rsplb
//! keeps established connections; detaching leaves nothing behind.

mod common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use common::*;
use rsplb_integration::{Lab, TcpConn, stats::check_proportions, tcp_burst, udp_flows};

const POOL: &str = "web";
const LONG_CONNECTIONS: usize = 30;
const UDP_PORTS: std::ops::Range<u16> = 21000..21300;
const NEW_CONNECTIONS: u32 = 600;

/// A DSR IPv4 pool of s1..s3 with `weights` behind TCP and UDP VIPs on port 80.
fn pool(weights: &[u32]) -> (Lab, SocketAddr) {
    let lab = attached_lab();
    let vip: IpAddr = lab.vip4(0).into();
    add_pool(&lab, POOL, vip, 80, weights);
    add_vips(&lab, vip, 80, POOL, "dsr");
    (lab, SocketAddr::new(vip, 80))
}

/// Opens long-lived connections and returns them with the server each landed on.
fn open_long(lab: &Lab, vip: SocketAddr) -> Vec<(TcpConn, String)> {
    (0..LONG_CONNECTIONS)
        .map(|_| {
            let mut c = TcpConn::open(lab.client.netns.name(), vip).expect("connect");
            let s = c.ask().expect("first request");
            (c, s)
        })
        .collect()
}

/// UDP flows from fixed source ports: port -> server that answered.
fn udp_map(lab: &Lab, vip: SocketAddr) -> BTreeMap<u16, Option<String>> {
    udp_flows(
        lab.client.netns.name(),
        lab.client.v4.into(),
        vip,
        UDP_PORTS,
    )
    .expect("udp flows")
    .into_iter()
    .collect()
}

fn new_connections(lab: &Lab, vip: SocketAddr) -> Vec<u64> {
    let t = tcp_burst(lab.client.netns.name(), vip, NEW_CONNECTIONS).expect("tcp burst");
    assert_eq!(t.failed, 0, "new connections failed: {t}");
    counts(&t, 3)
}

#[test]
fn weight_change_keeps_existing_flows_and_steers_new_ones() {
    let (lab, vip) = pool(&[1, 1, 1]);
    let mut long = open_long(&lab, vip);
    let before = udp_map(&lab, vip);
    assert!(before.values().all(Option::is_some), "UDP flows unanswered");

    lab.rsplb
        .element_weight(POOL, &element(&lab, 0, vip.ip(), 80), 4)
        .unwrap();

    for (c, server) in &mut long {
        assert_eq!(
            &c.ask().expect("connection broken by a weight change"),
            server
        );
    }
    assert_eq!(
        udp_map(&lab, vip),
        before,
        "a weight change moved UDP flows"
    );
    let counts = new_connections(&lab, vip);
    check_proportions(&counts, &[4, 1, 1]).unwrap_or_else(|e| panic!("after the change: {e}"));
}

#[test]
fn removing_an_element_moves_only_its_flows() {
    let (lab, vip) = pool(&[1, 1, 1]);
    let mut long = open_long(&lab, vip);
    let before = udp_map(&lab, vip);
    assert!(before.values().any(|s| s.as_deref() == Some("s1")));

    lab.rsplb
        .element_del(POOL, &element(&lab, 0, vip.ip(), 80))
        .unwrap();

    for (c, server) in long.iter_mut().filter(|(_, s)| s != "s1") {
        assert_eq!(
            &c.ask()
                .expect("removing s1 broke another server's connection"),
            server
        );
    }
    let after = udp_map(&lab, vip);
    for (port, was) in &before {
        let now = after[port].as_deref();
        match was.as_deref() {
            Some("s1") => assert!(
                matches!(now, Some("s2" | "s3")),
                "flow from port {port} was on s1, now {now:?}"
            ),
            was => assert_eq!(now, was, "flow from port {port} moved without cause"),
        }
    }
    let counts = new_connections(&lab, vip);
    assert_eq!(counts[0], 0, "a removed element got new connections");
    check_proportions(&counts, &[0, 1, 1]).unwrap_or_else(|e| panic!("after removal: {e}"));
}

#[test]
fn drain_keeps_existing_connections_and_takes_no_new_ones() {
    let (lab, vip) = pool(&[1, 1, 1]);
    let mut long = open_long(&lab, vip);
    assert!(
        long.iter().any(|(_, s)| s == "s1"),
        "no connection landed on s1"
    );
    let s1 = element(&lab, 0, vip.ip(), 80);

    lab.rsplb.element_drain(POOL, &s1).unwrap();

    let listed = lab.rsplb.elements().unwrap();
    let e = listed
        .elements
        .iter()
        .find(|e| e.address == s1)
        .expect("s1 listed");
    assert_eq!(e.state, "draining");
    for (c, server) in &mut long {
        assert_eq!(&c.ask().expect("draining broke a connection"), server);
    }
    let counts = new_connections(&lab, vip);
    assert_eq!(counts[0], 0, "a draining element got new connections");
}

#[test]
fn reattach_keeps_established_connections_and_detach_leaves_nothing() {
    let mut lab = attached_lab();
    let v4: IpAddr = lab.vip4(0).into();
    let v6: IpAddr = lab.vip6(1).into();
    add_pool(&lab, "p4", v4, 8080, &[1, 1, 1]);
    add_pool(&lab, "p6", v6, 80, &[1, 1, 1]);
    add_vips(&lab, v4, 8081, "p4", "nat");
    add_vips(&lab, v6, 80, "p6", "dsr");
    let ns = lab.client.netns.name().to_string();
    let mut conns: Vec<(TcpConn, String)> = [SocketAddr::new(v4, 8081), SocketAddr::new(v6, 80)]
        .into_iter()
        .map(|vip| {
            let mut c = TcpConn::open(&ns, vip).expect("connect");
            let s = c.ask().expect("request");
            (c, s)
        })
        .collect();

    // Attaching again re-adopts the pinned program and maps: no flow is dropped.
    lab.attach(&[]).expect("rsplb attach (again)");
    assert!(lab.xdp_attached().unwrap());
    for (c, server) in &mut conns {
        assert_eq!(&c.ask().expect("re-attach broke a connection"), server);
    }
    let listed = lab.rsplb.run(&["list-interfaces"]).unwrap();
    assert!(listed.contains(&lab.lb.iface), "{listed}");

    lab.detach().expect("rsplb detach");
    assert!(
        !lab.pin_dir().exists(),
        "{} left behind",
        lab.pin_dir().display()
    );
    assert!(
        !lab.state_dir().exists(),
        "{} left behind",
        lab.state_dir().display()
    );
    assert!(
        !lab.xdp_attached().unwrap(),
        "XDP still attached after detach"
    );
    let listed = lab.rsplb.run(&["list-interfaces"]).unwrap();
    assert!(!listed.contains(&lab.lb.iface), "{listed}");
}
