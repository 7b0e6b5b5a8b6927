//! Client affinity (`rsplb vip add --hash client`) with real connections: behind a VIP of three
//! servers, every connection of one client address lands on one server, other client addresses
//! land on others, and `rsplb flow get` names where each connection went (and predicted it
//! before the client connected). Switching the VIP back to `--hash flow` leaves every
//! established connection where it is and spreads the next connections of one client over the
//! servers. The extra clients are other addresses of the client host on its segment.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use common::*;
use rsplb_integration::{Lab, TcpConn};

/// Connections per client address.
const CONNECTIONS: usize = 30;
/// Client addresses in the test (the client host's own and two more).
const CLIENTS: usize = 3;
/// Host numbers tried for the extra client addresses (the lab's hosts use 1, 2 and 11..13):
/// seventeen, so that all of them hashing to one server of three is a chance of 1 in 10^8.
fn candidates() -> impl Iterator<Item = u8> {
    (3..=9).chain(20..=29)
}

/// The server `rsplb flow get` says a new flow from `client` to `vip` goes to.
fn predicted(lab: &Lab, client: IpAddr, vip: &str) -> String {
    let a = flow_get(lab, SocketAddr::new(client, 40000), vip);
    assert_eq!(a["decided_by"], "maglev", "{a}");
    assert_eq!(a["maglev"]["hash_of"], "client", "{a}");
    let e = a["element"].as_str().unwrap_or_else(|| panic!("{a}"));
    lab.servers[server_of(lab, e)].name.clone()
}

/// The extra client address of host number `n` on the client's segment.
fn client_address(lab: &Lab, ipv6: bool, n: u8) -> IpAddr {
    let k = lab.id.subnet();
    if ipv6 {
        Ipv6Addr::new(0xfd00, k as u16, 0, 0, 0, 0, 0, n as u16).into()
    } else {
        Ipv4Addr::new(198, 18, k, n).into()
    }
}

fn add_client_address(lab: &Lab, a: IpAddr) {
    let c = &lab.client;
    let r = match a {
        IpAddr::V4(_) => c
            .netns
            .ip(&["addr", "add", &format!("{a}/24"), "dev", &c.iface]),
        IpAddr::V6(_) => c.netns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{a}/64"),
            "dev",
            &c.iface,
            "nodad",
        ]),
    };
    r.unwrap_or_else(|e| panic!("adding client address {a}: {e:#}"));
}

/// Picks the client host's own address and extra addresses (added to the host) such that flow
/// get places them on more than one server: the test then shows both that a client stays on
/// one server and that clients spread, whatever the lab's addresses hash to.
fn clients_on_several_servers(lab: &Lab, ipv6: bool, vip: &str) -> Vec<(IpAddr, String)> {
    let own = client_addr(
        lab,
        if ipv6 {
            lab.vip6(0).into()
        } else {
            lab.vip4(0).into()
        },
    );
    let mut chosen = vec![(own, predicted(lab, own, vip))];
    let candidates: Vec<(IpAddr, String)> = candidates()
        .map(|n| client_address(lab, ipv6, n))
        .map(|a| (a, predicted(lab, a, vip)))
        .collect();
    // First the candidates on servers not chosen yet, then any.
    for (a, s) in &candidates {
        if chosen.len() < CLIENTS && !chosen.iter().any(|(_, t)| t == s) {
            chosen.push((*a, s.clone()));
        }
    }
    for (a, s) in &candidates {
        if chosen.len() < CLIENTS && !chosen.iter().any(|(b, _)| b == a) {
            chosen.push((*a, s.clone()));
        }
    }
    let servers: BTreeSet<&String> = chosen.iter().map(|(_, s)| s).collect();
    assert!(
        servers.len() > 1,
        "flow get places {} client addresses all on one server: {candidates:?}",
        candidates.len() + 1
    );
    for (a, _) in &chosen[1..] {
        add_client_address(lab, *a);
    }
    chosen
}

fn client_affinity(ipv6: bool, mode: &str) {
    let lab = attached_lab();
    let vip_addr: IpAddr = if ipv6 {
        lab.vip6(0).into()
    } else {
        lab.vip4(0).into()
    };
    add_pool(&lab, "web", vip_addr, 80, &[1, 1, 1]);
    let vip_name = vip_str(vip_addr, 80, "tcp");
    let snat = snat_addr(&lab, vip_addr);
    let mut args = vec!["vip", "add", &vip_name, "--pool", "web", "--mode", mode];
    if mode == "nat" {
        args.extend(["--snat", &snat]);
    }
    args.extend(["--hash", "client"]);
    lab.rsplb.on(&args).expect("vip add --hash client");
    let list: serde_json::Value =
        serde_json::from_str(&lab.rsplb.on(&["vip", "list", "--json"]).unwrap()).unwrap();
    assert_eq!(list["vips"][0]["hash"], "client", "{list}");
    let ns = lab.client.netns.name().to_string();
    let vip = SocketAddr::new(vip_addr, 80);

    // --hash client: each client's connections on the server flow get predicted for it.
    let clients = clients_on_several_servers(&lab, ipv6, &vip_name);
    let mut open: Vec<(TcpConn, String)> = Vec::new();
    for (client, expected) in &clients {
        let mut went = BTreeMap::<String, usize>::new();
        for _ in 0..CONNECTIONS {
            let mut conn = TcpConn::open_from(&ns, *client, vip)
                .unwrap_or_else(|e| panic!("connecting from {client}: {e:#}"));
            let server = conn.ask().unwrap();
            *went.entry(server.clone()).or_default() += 1;
            open.push((conn, server));
        }
        assert_eq!(
            went,
            BTreeMap::from([(expected.clone(), CONNECTIONS)]),
            "client {client}'s {CONNECTIONS} connections (flow get predicted {expected})"
        );
    }
    // Each connection is its own flow: flow get finds it pinned where it went; in NAT each has
    // its own SNAT port.
    let mut nat_ports = BTreeSet::new();
    for (conn, server) in &open {
        let a = flow_get(&lab, conn.local, &vip_name);
        assert_eq!(a["decided_by"], "flow_table", "{a}");
        let e = a["element"].as_str().unwrap();
        assert_eq!(&lab.servers[server_of(&lab, e)].name, server, "{a}");
        if mode == "nat" {
            assert!(
                nat_ports.insert(a["pinned"]["nat_port"].as_u64().unwrap()),
                "{a}"
            );
        }
    }

    // Back to --hash flow: established connections stay; one client's new ones spread.
    lab.rsplb
        .on(&["vip", "change", &vip_name, "--hash", "flow"])
        .expect("vip change --hash flow");
    for (conn, server) in &mut open {
        assert_eq!(&conn.ask().unwrap(), server, "{} moved", conn.local);
    }
    let (client, _) = clients[0];
    let mut went = BTreeSet::new();
    for _ in 0..CONNECTIONS {
        let mut conn = TcpConn::open_from(&ns, client, vip).unwrap();
        let server = conn.ask().unwrap();
        let a = flow_get(&lab, conn.local, &vip_name);
        assert_eq!(a["maglev"]["hash_of"], "flow", "{a}");
        let e = a["element"].as_str().unwrap();
        assert_eq!(lab.servers[server_of(&lab, e)].name, server, "{a}");
        went.insert(server);
    }
    assert!(
        went.len() > 1,
        "{CONNECTIONS} connections of {client} under --hash flow all on {went:?}"
    );
}

#[test]
fn dsr_ipv4_client_hash_keeps_each_client_on_one_server() {
    client_affinity(false, "dsr");
}

#[test]
fn nat_ipv6_client_hash_keeps_each_client_on_one_server() {
    client_affinity(true, "nat");
}
