//! A VIP's source allow list with real connections: a client whose address is in the list is
//! served, one whose address is not never reaches a server (its SYNs are dropped in XDP and
//! counted as `drop_source_not_allowed`), and a change of the list applies to the next packet,
//! also of an established connection. The second client is another address of the client host
//! on the same segment: the list sees only the source address.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use common::*;
use rsplb_integration::{Lab, TcpConn, tcp_burst_from};

const ALLOWED_CONNECTIONS: u32 = 30;
const REFUSED_CONNECTIONS: u32 = 3;

/// Adds the refused client's address to the client host and returns (allowed, refused).
fn two_clients(lab: &Lab, ipv6: bool) -> (IpAddr, IpAddr) {
    let k = lab.id.subnet();
    let c = &lab.client;
    if ipv6 {
        let refused = Ipv6Addr::new(0xfd00, k as u16, 0, 0, 0, 0, 0, 3);
        c.netns
            .ip(&[
                "-6",
                "addr",
                "add",
                &format!("{refused}/64"),
                "dev",
                &c.iface,
                "nodad",
            ])
            .expect("second client address");
        (c.v6.into(), refused.into())
    } else {
        let refused = Ipv4Addr::new(198, 18, k, 3);
        c.netns
            .ip(&["addr", "add", &format!("{refused}/24"), "dev", &c.iface])
            .expect("second client address");
        (c.v4.into(), refused.into())
    }
}

fn host_prefix(a: IpAddr) -> String {
    format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 })
}

/// Connections the servers accepted on `port`, all servers together.
fn served(lab: &Lab, port: u16) -> u64 {
    lab.servers
        .iter()
        .map(|s| s.stats().unwrap().port(port).tcp_connections)
        .sum()
}

fn allowed_and_refused_clients(ipv6: bool, mode: &str, vip_port: u16, element_port: u16) {
    let lab = attached_lab();
    let vip_addr: IpAddr = if ipv6 {
        lab.vip6(0).into()
    } else {
        lab.vip4(0).into()
    };
    let (allowed, refused) = two_clients(&lab, ipv6);
    add_pool(&lab, "web", vip_addr, element_port, &[1, 1, 1]);
    let vip_name = vip_str(vip_addr, vip_port, "tcp");
    let snat = snat_addr(&lab, vip_addr);
    let allowed_prefix = host_prefix(allowed);
    let mut args = vec!["vip", "add", &vip_name, "--pool", "web", "--mode", mode];
    if mode == "nat" {
        args.extend(["--snat", &snat]);
    }
    args.extend(["--allow", &allowed_prefix]);
    lab.rsplb.on(&args).expect("vip add --allow");
    let ns = lab.client.netns.name().to_string();
    let vip = SocketAddr::new(vip_addr, vip_port);

    let ok = tcp_burst_from(&ns, allowed, vip, ALLOWED_CONNECTIONS).unwrap();
    assert_eq!(ok.failed, 0, "allowed client {allowed}: {ok}");
    let no = tcp_burst_from(&ns, refused, vip, REFUSED_CONNECTIONS).unwrap();
    assert_eq!(
        no.answered(),
        0,
        "refused client {refused} was served: {no}"
    );
    assert_eq!(served(&lab, element_port), u64::from(ALLOWED_CONNECTIONS));
    let stats = lab.rsplb.stats().unwrap();
    let refused_here = stats.vips[0].drop_source_not_allowed;
    // At least one SYN per refused connection (the client retransmits within its timeout).
    assert!(
        refused_here >= u64::from(REFUSED_CONNECTIONS),
        "{refused_here} refused packets for {REFUSED_CONNECTIONS} connections: {stats:?}"
    );
    assert_eq!(stats.global("drop_source_not_allowed"), refused_here);

    // The list now holds only the other client: an established connection of the first is
    // refused from its next packet on.
    let mut kept = TcpConn::open_from(&ns, allowed, vip).expect("connection before the change");
    kept.ask().expect("a request before the change");
    let refused_prefix = host_prefix(refused);
    lab.rsplb
        .on(&["vip", "change", &vip_name, "--allow", &refused_prefix])
        .expect("vip change --allow");
    assert!(
        kept.ask().is_err(),
        "the established connection of a client no longer in the list was still served"
    );
    let ok = tcp_burst_from(&ns, refused, vip, ALLOWED_CONNECTIONS).unwrap();
    assert_eq!(ok.failed, 0, "newly allowed client {refused}: {ok}");

    // No list: everyone.
    lab.rsplb
        .on(&["vip", "change", &vip_name, "--allow-all"])
        .expect("vip change --allow-all");
    for client in [allowed, refused] {
        let ok = tcp_burst_from(&ns, client, vip, 10).unwrap();
        assert_eq!(ok.failed, 0, "{client} after --allow-all: {ok}");
    }
}

#[test]
fn dsr_ipv4_allow_list_serves_the_listed_client_only() {
    allowed_and_refused_clients(false, "dsr", 80, 80);
}

#[test]
fn nat_ipv6_allow_list_serves_the_listed_client_only() {
    allowed_and_refused_clients(true, "nat", 8081, 8080);
}
