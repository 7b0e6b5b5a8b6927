//! Real TCP connections and UDP flows from a client namespace reach the servers behind rsplb in
//! proportion to their weights, in DSR and NAT mode, IPv4 and IPv6, and rsplb's counters equal
//! what the servers saw.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use rsplb_integration::{stats::check_proportions, tcp_burst, udp_burst};

const WEIGHTS: [u32; 3] = [1, 2, 3];
const TCP_CONNECTIONS: u32 = 600;
const UDP_FLOWS: u16 = 600;

/// Sends the traffic through `vip_addr:vip_port` (TCP and UDP VIPs on one pool in `mode`, elements
/// on `element_port`) and checks distribution and counters.
fn weighted_traffic(ipv6: bool, vip_port: u16, element_port: u16, mode: &str) {
    let lab = attached_lab();
    let vip_addr: IpAddr = if ipv6 {
        lab.vip6(0).into()
    } else {
        lab.vip4(0).into()
    };
    let pool = "web";
    add_pool(&lab, pool, vip_addr, element_port, &WEIGHTS);
    add_vips(&lab, vip_addr, vip_port, pool, mode);
    lab.count_packets_at_servers(element_port).unwrap();

    let ns = lab.client.netns.name().to_string();
    let vip = SocketAddr::new(vip_addr, vip_port);
    let first = tcp_burst(&ns, vip, 1).unwrap();
    assert_eq!(
        first.failed,
        0,
        "no TCP connection through {vip}: {:?}",
        lab.rsplb.stats()
    );
    let mut tcp = tcp_burst(&ns, vip, TCP_CONNECTIONS).unwrap();
    tcp.merge(&first);
    assert_eq!(tcp.failed, 0, "TCP connections failed: {tcp}");
    check_proportions(&counts(&tcp, 3), &WEIGHTS).unwrap_or_else(|e| panic!("TCP {tcp}: {e}"));
    let udp = udp_burst(
        &ns,
        client_addr(&lab, vip_addr),
        vip,
        20000..20000 + UDP_FLOWS,
    )
    .unwrap();
    assert_eq!(udp.failed, 0, "UDP flows unanswered: {udp}");
    check_proportions(&counts(&udp, 3), &WEIGHTS).unwrap_or_else(|e| panic!("UDP {udp}: {e}"));

    // Counters: what rsplb says it sent each element equals what the element saw.
    let stats = lab.rsplb.stats().unwrap();
    for i in 0..3 {
        let seen = lab.servers[i].stats().unwrap().port(element_port);
        let name = &lab.servers[i].name;
        assert_eq!(seen.tcp_connections, tcp.get(name), "{name} connections");
        assert_eq!(seen.udp_flows, udp.get(name), "{name} UDP flows");
        let addr = element(&lab, i, vip_addr, element_port);
        let e = stats
            .element(pool, &addr)
            .unwrap_or_else(|| panic!("no counters for {addr} in {stats:?}"));
        // Every TCP SYN is placed as a new flow, so a SYN the client retransmitted (its
        // SYN-ACK was late on this loaded machine) counts again: at least one new flow per
        // connection, and only a few more.
        let connections = seen.tcp_connections + seen.udp_flows;
        assert!(
            e.new_flows >= connections && e.new_flows <= connections + connections / 50 + 2,
            "new flows of {addr}: {} for {connections} connections and UDP flows",
            e.new_flows
        );
        // DSR: the balancer sees only what goes to the element; NAT: both directions.
        let p = lab.packets_at_server(i, element_port).unwrap();
        let through_balancer = if mode == "nat" {
            p.received + p.sent
        } else {
            p.received
        };
        assert_eq!(e.packets, through_balancer, "packets of {addr} ({p:?})");
    }
    let vips: u64 = stats.vips.iter().map(|v| v.new_flows).sum();
    let flows = u64::from(TCP_CONNECTIONS) + 1 + u64::from(UDP_FLOWS);
    assert!(
        vips >= flows && vips <= flows + flows / 50 + 2,
        "{vips} new flows for {flows} connections and UDP flows (retransmitted SYNs count again)"
    );
}

#[test]
fn dsr_ipv4_follows_weights_and_counts_what_elements_saw() {
    weighted_traffic(false, 80, 80, "dsr");
}

#[test]
fn nat_ipv4_follows_weights_and_counts_what_elements_saw() {
    // The NAT VIP's port differs from the elements' port: rsplb translates both.
    weighted_traffic(false, 8081, 8080, "nat");
}

#[test]
fn dsr_ipv6_follows_weights_and_counts_what_elements_saw() {
    weighted_traffic(true, 80, 80, "dsr");
}

#[test]
fn nat_ipv6_follows_weights_and_counts_what_elements_saw() {
    weighted_traffic(true, 8081, 8080, "nat");
}
