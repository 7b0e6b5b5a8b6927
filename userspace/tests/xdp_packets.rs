//! Packet tests of the XDP program through BPF_PROG_TEST_RUN (needs root): every forwarding
//! mode, both address families, TCP/UDP/SCTP, flow affinity and re-selection, and every class of
//! packet the program must not steer. Output frames are checked byte for byte where it matters
//! and their checksums are recomputed from scratch.
mod support;

use std::net::SocketAddr;

use rsplb_common::{
    ELEM_ACTIVE, ELEM_DRAINING, MODE_NAT, NO_ELEMENT, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
    VIP_F_CLIENT_HASH, VipInfo, client_hash, maglev_entry, stat,
};
use support::{
    Lb, NAT_PORT_MAX, NAT_PORT_MIN, addr_words, element, element_mac, flow_key,
    packet::{CLIENT_MAC, Frame, LB_MAC, TCP_ACK, TCP_SYN, parse},
    vip_key,
};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A DSR VIP 198.18.0.10:80/tcp (slot 0) over elements 1 and 2, table alternating 1, 2.
fn dsr_v4_tcp() -> Lb {
    let mut lb = Lb::new();
    lb.dsr_vip("198.18.0.10:80", PROTO_TCP, 0);
    lb.set_element(1, element(1, "198.18.1.1"));
    lb.set_element(2, element(2, "198.18.1.2"));
    lb.fill_table(0, &[1, 2]);
    lb
}

/// Which element (by MAC) a forwarded frame went to.
fn element_of(out: &[u8]) -> u32 {
    let p = parse(out);
    (1..16)
        .find(|&s| p.eth_dst == element_mac(s))
        .unwrap_or_else(|| panic!("frame sent to unknown MAC {:x?}", p.eth_dst))
}

#[test]
fn dsr_ipv4_tcp_new_then_established() {
    let mut lb = dsr_v4_tcp();
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    let (action, out) = lb.run(&syn);
    assert_eq!(action, XDP_TX);
    let slot = element_of(&out);
    // DSR: only the Ethernet addresses change; the IP packet is untouched.
    assert_eq!(&out[0..6], &element_mac(slot));
    assert_eq!(&out[6..12], &LB_MAC);
    assert_eq!(&out[12..], &syn[12..]);
    let flow = lb
        .flow(&flow_key("198.18.5.1:40001", "198.18.0.10:80", PROTO_TCP))
        .expect("flow pinned");
    assert_eq!(flow.element, slot);
    assert_eq!(flow.generation, 1);
    assert_eq!(flow.nat_port, 0);

    let ack = Frame::tcp("198.18.5.1:40001", "198.18.0.10:80").build();
    for _ in 0..3 {
        let (action, out) = lb.run(&ack);
        assert_eq!(action, XDP_TX);
        assert_eq!(element_of(&out), slot, "established flow keeps its element");
    }
    let e = lb.element_stats(slot);
    assert_eq!(e.packets, 4);
    assert_eq!(e.new_flows, 1);
    assert_eq!(e.bytes, (syn.len() + 3 * ack.len()) as u64);
    let other = lb.element_stats(3 - slot);
    assert_eq!(other.packets, 0);
    let v = lb.vip_stats(0);
    assert_eq!((v.packets, v.new_flows), (4, 1));
    assert_eq!(lb.globals(), vec![("action_tx", 4)]);
}

#[test]
fn dsr_spreads_flows_over_the_table() {
    let mut lb = dsr_v4_tcp();
    let mut seen = [0u32; 3];
    for port in 0..64 {
        let f = Frame::syn(&format!("198.18.5.1:{}", 30000 + port), "198.18.0.10:80").build();
        let (action, out) = lb.run(&f);
        assert_eq!(action, XDP_TX);
        seen[element_of(&out) as usize] += 1;
    }
    assert!(
        seen[1] > 10 && seen[2] > 10,
        "both elements get flows: {seen:?}"
    );
    assert_eq!(lb.vip_stats(0).new_flows, 64);
}

#[test]
fn dsr_non_syn_of_unknown_flow_is_selected_and_pinned() {
    let mut lb = dsr_v4_tcp();
    let ack = Frame::tcp("198.18.5.2:40002", "198.18.0.10:80").build();
    let (action, out) = lb.run(&ack);
    assert_eq!(action, XDP_TX);
    let flow = lb
        .flow(&flow_key("198.18.5.2:40002", "198.18.0.10:80", PROTO_TCP))
        .expect("mid-stream packet pinned like a SYN");
    assert_eq!(flow.element, element_of(&out));
}

#[test]
fn dsr_ipv6_udp() {
    let mut lb = Lb::new();
    lb.dsr_vip("[fd00::10]:53", PROTO_UDP, 1);
    lb.set_element(4, element(4, "fd00::1:4"));
    lb.fill_table(2, &[4]);
    let f = Frame::udp("[fd00::5:1]:5353", "[fd00::10]:53").build();
    let (action, out) = lb.run(&f);
    assert_eq!(action, XDP_TX);
    assert_eq!(&out[0..6], &element_mac(4));
    assert_eq!(&out[6..12], &LB_MAC);
    assert_eq!(&out[12..], &f[12..]);
    assert_eq!(lb.element_stats(4).packets, 1);
    assert_eq!(lb.vip_stats(1).new_flows, 1);
}

#[test]
fn dsr_sctp_both_families() {
    let mut lb = Lb::new();
    lb.dsr_vip("198.18.0.10:9899", PROTO_SCTP, 0);
    lb.dsr_vip("[fd00::10]:9899", PROTO_SCTP, 1);
    lb.set_element(1, element(1, "198.18.1.1"));
    lb.fill_table(0, &[1]);
    lb.fill_table(2, &[1]);
    for f in [
        Frame::sctp("198.18.5.1:5000", "198.18.0.10:9899"),
        Frame::sctp("[fd00::5:1]:5000", "[fd00::10]:9899"),
    ] {
        let f = f.build();
        let (action, out) = lb.run(&f);
        assert_eq!(action, XDP_TX);
        assert_eq!(&out[0..6], &element_mac(1));
        assert_eq!(&out[12..], &f[12..]);
        assert!(parse(&out).l4_csum_ok, "SCTP CRC32c untouched and valid");
    }
    assert_eq!(lb.element_stats(1).packets, 2);
}

#[test]
fn dsr_redirects_to_another_interface_through_the_devmap() {
    // A private network namespace for this thread: the devmap needs a real device, and test
    // runs see the namespace's loopback as the ingress interface. It disappears with the thread.
    std::thread::spawn(|| {
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare(CLONE_NEWNET)"
        );
        let status = std::process::Command::new("ip")
            .args([
                "link", "add", "rsplbt0", "type", "veth", "peer", "name", "rsplbt1",
            ])
            .status()
            .expect("running ip");
        assert!(status.success());
        let ifindex = nix_ifindex("rsplbt0");
        let mut lb = dsr_v4_tcp();
        let mut e = element(1, "198.18.1.1");
        e.ifindex = ifindex;
        lb.set_element(1, e);
        lb.fill_table(0, &[1]);
        let f = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();

        // Not in the devmap yet: no way out, dropped and counted.
        let (action, _) = lb.run(&f);
        assert_eq!(action, XDP_DROP);
        assert_eq!(lb.global(stat::DROP_NO_NEXTHOP), 1);

        lb.add_tx_port(ifindex);
        let (action, out) = lb.run(&f);
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(&out[0..6], &element_mac(1));
        assert_eq!(lb.global(stat::ACTION_REDIRECT), 1);
        assert_eq!(lb.element_stats(1).packets, 1);
    })
    .join()
    .expect("redirect test thread");
}

fn nix_ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "interface {name} exists");
    i
}

#[test]
fn unresolved_next_hop_drops() {
    let mut lb = dsr_v4_tcp();
    let mut e = element(1, "198.18.1.1");
    e.dst_mac = [0; 6];
    lb.set_element(1, e);
    lb.fill_table(0, &[1]);
    let f = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    let (action, _) = lb.run(&f);
    assert_eq!(action, XDP_DROP);
    assert_eq!(
        lb.globals(),
        vec![("action_drop", 1), ("drop_no_nexthop", 1)]
    );
    assert_eq!(lb.element_stats(1).packets, 0);
}

/// An event log at `level` that lets `burst` events of a kind through per CPU and hour.
fn log_at(level: u32, burst: u32) -> rsplb_common::LogControl {
    rsplb_common::LogControl {
        level,
        burst,
        interval_ns: 3_600_000_000_000,
    }
}

#[test]
fn events_are_logged_at_the_control_planes_level_and_rate_limited() {
    use rsplb_common::{event, log_level};
    let mut lb = dsr_v4_tcp();
    lb.fill_table(0, &[NO_ELEMENT]);
    let f = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    // Off (the maps as created): nothing, whatever happens.
    for _ in 0..5 {
        assert_eq!(lb.run(&f).0, XDP_DROP);
    }
    assert!(lb.events().is_empty());
    assert_eq!(lb.global(stat::LOG_SUPPRESSED), 0);
    // Error only: an empty pool is a warning.
    lb.set_log(log_at(log_level::ERROR, 3));
    lb.run(&f);
    assert!(lb.events().is_empty());
    // Warn, 3 per CPU: 10 packets give 3 events and count the rest.
    lb.set_log(log_at(log_level::WARN, 3));
    Lb::stay_on_this_cpu();
    for _ in 0..10 {
        lb.run(&f);
    }
    let events = lb.events();
    assert_eq!(events.len(), 3);
    assert_eq!(lb.global(stat::LOG_SUPPRESSED), 7);
    let e = events[0];
    assert_eq!((e.kind, e.suppressed), (event::EMPTY_POOL, 0));
    assert_eq!(
        e.vip,
        rsplb_common::VipKey {
            addr: addr_words("198.18.0.10".parse().unwrap()),
            port: 80u16.to_be(),
            proto: PROTO_TCP,
            family: rsplb_common::FAMILY_V4,
        }
    );
    // A forwarded packet logs nothing.
    lb.fill_table(0, &[1]);
    assert_eq!(lb.run(&f).0, XDP_TX);
    assert!(lb.events().is_empty());
}

#[test]
fn an_unresolved_next_hop_is_logged_with_its_element_slot_and_the_next_event_counts_the_suppressed()
{
    use rsplb_common::{event, log_level};
    let mut lb = dsr_v4_tcp();
    let mut e = element(1, "198.18.1.1");
    e.dst_mac = [0; 6];
    lb.set_element(1, e);
    lb.fill_table(0, &[1]);
    let f = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    lb.set_log(log_at(log_level::WARN, 1));
    Lb::stay_on_this_cpu();
    for _ in 0..4 {
        lb.run(&f);
    }
    let first = lb.events();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].kind, first[0].detail), (event::NO_NEXTHOP, 1));
    // A new window (interval 0: every event starts one): the CPU reports what it held back.
    lb.set_log(rsplb_common::LogControl {
        interval_ns: 0,
        ..log_at(log_level::WARN, 1)
    });
    assert_eq!(lb.global(stat::LOG_SUPPRESSED), 3);
    lb.run(&f);
    let next = lb.events();
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].kind, next[0].suppressed), (event::NO_NEXTHOP, 3));
}

#[test]
fn empty_pool_drops() {
    let mut lb = dsr_v4_tcp();
    lb.fill_table(0, &[NO_ELEMENT]);
    let f = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    let (action, out) = lb.run(&f);
    assert_eq!(action, XDP_DROP);
    assert_eq!(out, f);
    assert_eq!(
        lb.globals(),
        vec![("action_drop", 1), ("drop_no_element", 1)]
    );
    assert!(
        lb.flow(&flow_key("198.18.5.1:40001", "198.18.0.10:80", PROTO_TCP))
            .is_none()
    );
}

/// Pins a flow to element 1 (table all 1), then moves the table to element 2.
fn pinned_to_1_then_table_2() -> (Lb, Vec<u8>) {
    let mut lb = dsr_v4_tcp();
    lb.fill_table(0, &[1]);
    let f = Frame::tcp("198.18.5.1:40001", "198.18.0.10:80").build();
    let (action, out) = lb.run(&f);
    assert_eq!((action, element_of(&out)), (XDP_TX, 1));
    lb.fill_table(0, &[2]);
    (lb, f)
}

#[test]
fn flow_follows_its_element_while_the_table_changes() {
    let (mut lb, f) = pinned_to_1_then_table_2();
    let (action, out) = lb.run(&f);
    assert_eq!((action, element_of(&out)), (XDP_TX, 1));
    assert_eq!(lb.global(stat::FLOW_RESELECTED), 0);
}

#[test]
fn flow_is_reselected_when_its_slot_is_freed() {
    let (mut lb, f) = pinned_to_1_then_table_2();
    let mut e = lb.get_element(1);
    e.flags = 0;
    lb.set_element(1, e);
    let (action, out) = lb.run(&f);
    assert_eq!((action, element_of(&out)), (XDP_TX, 2));
    assert_eq!(lb.global(stat::FLOW_RESELECTED), 1);
    assert_eq!(lb.element_stats(2).new_flows, 1);
    let flow = lb
        .flow(&flow_key("198.18.5.1:40001", "198.18.0.10:80", PROTO_TCP))
        .unwrap();
    assert_eq!(flow.element, 2, "re-pinned");
    let (_, out) = lb.run(&f);
    assert_eq!(element_of(&out), 2);
    assert_eq!(lb.global(stat::FLOW_RESELECTED), 1);
}

#[test]
fn flow_is_reselected_when_its_slot_changes_generation() {
    let (mut lb, f) = pinned_to_1_then_table_2();
    let mut e = lb.get_element(1);
    e.generation += 1;
    lb.set_element(1, e);
    let (action, out) = lb.run(&f);
    assert_eq!((action, element_of(&out)), (XDP_TX, 2));
    assert_eq!(lb.global(stat::FLOW_RESELECTED), 1);
}

#[test]
fn draining_element_keeps_its_flows_but_gets_no_new_ones() {
    let (mut lb, f) = pinned_to_1_then_table_2();
    let mut e = lb.get_element(1);
    e.flags = ELEM_ACTIVE | ELEM_DRAINING;
    lb.set_element(1, e);
    let (_, out) = lb.run(&f);
    assert_eq!(element_of(&out), 1);
    let new = Frame::syn("198.18.5.1:40002", "198.18.0.10:80").build();
    let (_, out) = lb.run(&new);
    assert_eq!(element_of(&out), 2);
    assert_eq!(lb.global(stat::FLOW_RESELECTED), 0);
}

// ---------------------------------------------------------------------------------------------
// New flows: a TCP SYN (without ACK) is a new connection. It is placed by Maglev and overwrites
// its 5-tuple's flow entry even when that entry is still there (a client reusing a port), so
// drains and weight changes reach it; other packets of a flow follow the flow table.

#[test]
fn syn_reusing_a_port_is_placed_as_new_over_its_old_flow_entry() {
    let mut lb = dsr_v4_tcp();
    lb.fill_table(0, &[1]);
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    assert_eq!(element_of(&lb.run(&syn).1), 1);
    lb.fill_table(0, &[2]);
    let (action, out) = lb.run(&syn);
    assert_eq!((action, element_of(&out)), (XDP_TX, 2));
    let flow = lb
        .flow(&flow_key("198.18.5.1:40001", "198.18.0.10:80", PROTO_TCP))
        .expect("re-pinned, in one way");
    assert_eq!((flow.element, flow.generation), (2, 1));
    // The new connection's next packets follow it.
    let ack = Frame::tcp("198.18.5.1:40001", "198.18.0.10:80").build();
    assert_eq!(element_of(&lb.run(&ack).1), 2);
    assert_eq!(lb.element_stats(2).new_flows, 1);
    assert_eq!(lb.vip_stats(0).new_flows, 2);
    assert_eq!(lb.globals(), vec![("action_tx", 3)]);
}

#[test]
fn syn_reusing_a_port_of_a_draining_elements_flow_goes_elsewhere() {
    // The reported defect: every reused-port connection went back to the drained element.
    let (mut lb, ack) = pinned_to_1_then_table_2();
    let mut e = lb.get_element(1);
    e.flags = ELEM_ACTIVE | ELEM_DRAINING;
    lb.set_element(1, e);
    // The established connection stays on the draining element...
    assert_eq!(element_of(&lb.run(&ack).1), 1);
    // ...and a new connection from the same client port does not.
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    for _ in 0..3 {
        let (action, out) = lb.run(&syn);
        assert_eq!((action, element_of(&out)), (XDP_TX, 2));
        assert_eq!(element_of(&lb.run(&ack).1), 2);
    }
    assert_eq!(lb.element_stats(1).packets, 2);
}

#[test]
fn syn_reusing_a_port_after_its_element_left_is_placed_without_a_reselection() {
    let mut lb = dsr_v4_tcp();
    lb.fill_table(0, &[1]);
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    assert_eq!(element_of(&lb.run(&syn).1), 1);
    lb.fill_table(0, &[2]);
    let mut e = lb.get_element(1);
    e.generation += 1;
    lb.set_element(1, e);
    let (action, out) = lb.run(&syn);
    assert_eq!((action, element_of(&out)), (XDP_TX, 2));
    // A new connection, not a flow moved away from its element.
    assert_eq!(lb.global(stat::FLOW_RESELECTED), 0);
    let flow = lb
        .flow(&flow_key("198.18.5.1:40001", "198.18.0.10:80", PROTO_TCP))
        .unwrap();
    assert_eq!((flow.element, flow.generation), (2, 1), "re-pinned");
}

#[test]
fn syn_with_no_element_in_service_is_dropped_and_the_old_flow_stays() {
    let (mut lb, ack) = pinned_to_1_then_table_2();
    let mut e = lb.get_element(1);
    e.flags = ELEM_ACTIVE | ELEM_DRAINING;
    lb.set_element(1, e);
    lb.fill_table(0, &[NO_ELEMENT]);
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    assert_eq!(lb.run(&syn).0, XDP_DROP);
    assert_eq!(lb.global(stat::DROP_NO_ELEMENT), 1);
    // The draining element's connection keeps going.
    assert_eq!(element_of(&lb.run(&ack).1), 1);
}

#[test]
fn nat_syn_reusing_a_port_gets_a_new_translation_on_the_new_element() {
    let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "198.18.1.3", 8080);
    let mut e4 = element(4, "198.18.1.4");
    e4.port = 8080u16.to_be();
    lb.set_element(4, e4);
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    let ack = Frame::tcp("198.18.5.1:40001", "198.18.0.10:80").build();
    let (action, out) = lb.run(&syn);
    assert_eq!((action, parse(&out).dst), (XDP_TX, sa("198.18.1.3:8080")));
    // Element 3 drains: out of the table, in service for its flows.
    let mut e3 = lb.get_element(3);
    e3.flags = ELEM_ACTIVE | ELEM_DRAINING;
    lb.set_element(3, e3);
    lb.fill_table(2, &[4]);
    assert_eq!(parse(&lb.run(&ack).1).dst, sa("198.18.1.3:8080"));
    let (action, out) = lb.run(&syn);
    let p = parse(&out);
    assert_eq!((action, p.dst), (XDP_TX, sa("198.18.1.4:8080")));
    assert!(p.ip_csum_ok && p.l4_csum_ok);
    assert_eq!(parse(&lb.run(&ack).1).dst, sa("198.18.1.4:8080"));
    let flow = lb
        .flow(&flow_key("198.18.5.1:40001", "198.18.0.10:80", PROTO_TCP))
        .unwrap();
    assert_eq!(flow.element, 4);
    // Replies from the new element reach the client.
    let mut reply = Frame::tcp(
        "198.18.1.4:8080",
        &format!("{SNAT_V4}:{}", u16::from_be(flow.nat_port)),
    );
    reply.eth_src = element_mac(4);
    let (action, out) = lb.run(&reply.build());
    assert_eq!((action, parse(&out).dst), (XDP_TX, sa("198.18.5.1:40001")));
    assert_eq!(lb.element_stats(4).new_flows, 1);
}

// ---------------------------------------------------------------------------------------------
// Client affinity (`VIP_F_CLIENT_HASH`): new flows placed by the client's address only.

/// The element Maglev places `client`'s flows to `vip` on with the client hash, in a table
/// filled as `Lb::fill_table` fills it with `slots`.
fn client_placement(client: &str, vip: &str, slots: &[u32]) -> u32 {
    let key = flow_key(client, vip, PROTO_TCP);
    let entry = maglev_entry(client_hash(&key), support::MAGLEV_SIZE);
    slots[entry as usize % slots.len()]
}

#[test]
fn client_hash_sends_a_clients_connections_to_one_element_each_pinned_on_its_own() {
    let slots = [1, 2, 3];
    let vip = "198.18.0.10:80";
    let mut lb = Lb::new();
    let key = lb.dsr_vip(vip, PROTO_TCP, 0);
    lb.set_vip(
        key,
        VipInfo {
            flags: VIP_F_CLIENT_HASH,
            mode: rsplb_common::MODE_DSR,
            timeout_s: support::FLOW_TIMEOUT_S,
            ..VipInfo::default()
        },
    );
    for s in slots {
        lb.set_element(s, element(s, &format!("198.18.1.{s}")));
    }
    lb.fill_table(0, &slots);
    let mut per_client = Vec::new();
    for c in 1..=8 {
        let mut went = std::collections::BTreeSet::new();
        for port in 0..16 {
            let client = format!("198.18.5.{c}:{}", 30000 + port);
            let (action, out) = lb.run(&Frame::syn(&client, vip).build());
            assert_eq!(action, XDP_TX);
            let slot = element_of(&out);
            went.insert(slot);
            assert_eq!(slot, client_placement(&client, vip, &slots));
            // Each connection is its own flow in the table.
            let flow = lb.flow(&flow_key(&client, vip, PROTO_TCP)).expect("pinned");
            assert_eq!(flow.element, slot);
        }
        assert_eq!(went.len(), 1, "client {c}'s connections: {went:?}");
        per_client.extend(went);
    }
    per_client.sort();
    per_client.dedup();
    assert!(per_client.len() > 1, "clients spread: {per_client:?}");
    assert_eq!(lb.vip_stats(0).new_flows, 8 * 16);

    // Established flows keep their element when the table changes; the client's new
    // connections follow the new table, all to one element again.
    let client = "198.18.5.1:30000";
    let old = client_placement(client, vip, &slots);
    let others: Vec<u32> = slots.into_iter().filter(|&s| s != old).collect();
    lb.fill_table(0, &others);
    let ack = Frame::tcp(client, vip).build();
    assert_eq!(element_of(&lb.run(&ack).1), old);
    let new = client_placement(client, vip, &others);
    for port in 100..110 {
        let (_, out) = lb.run(&Frame::syn(&format!("198.18.5.1:{}", 30000 + port), vip).build());
        assert_eq!(element_of(&out), new);
    }
}

#[test]
fn client_hash_keeps_the_snat_port_of_the_5_tuple() {
    // One NAT VIP with each hash; the same connections get the same SNAT ports from both:
    // the port comes from the 5-tuple's hash, so a client's connections do not all try one.
    let ports = |flags: u8| {
        let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "198.18.1.3", 8080);
        let key = support::vip_key("198.18.0.10:80", PROTO_TCP);
        lb.set_vip(
            key,
            VipInfo {
                slot: 1,
                table: 2,
                mode: MODE_NAT,
                flags,
                snat_addr: addr_words(SNAT_V4.parse().unwrap()),
                timeout_s: support::FLOW_TIMEOUT_S,
                ..VipInfo::default()
            },
        );
        (0..30)
            .map(|i| {
                let client = format!("198.18.5.1:{}", 30000 + i);
                let (action, out) = lb.run(&Frame::syn(&client, "198.18.0.10:80").build());
                assert_eq!(action, XDP_TX);
                let p = parse(&out);
                assert!(p.ip_csum_ok && p.l4_csum_ok);
                p.src.port()
            })
            .collect::<Vec<u16>>()
    };
    let client = ports(VIP_F_CLIENT_HASH);
    assert_eq!(client, ports(0));
    let mut distinct = client.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 30, "{client:?}");
}

// ---------------------------------------------------------------------------------------------
// Idle flows age out after their VIP's timeout (`VipInfo::timeout_s`, written by userspace).

/// Flow table time units in `secs` seconds.
fn flow_units(secs: u64) -> u32 {
    ((secs * 1_000_000_000) >> rsplb_common::FLOW_TIME_SHIFT) as u32
}

#[test]
fn idle_dsr_flow_ages_out_after_its_vips_timeout() {
    let (mut lb, ack) = pinned_to_1_then_table_2();
    let key = flow_key("198.18.5.1:40001", "198.18.0.10:80", PROTO_TCP);
    // Idle for less than the timeout: still pinned.
    lb.edit_flow(&key, |v| {
        v.seen = v
            .seen
            .wrapping_sub(flow_units(support::FLOW_TIMEOUT_S as u64 - 5))
    });
    assert_eq!(element_of(&lb.run(&ack).1), 1);
    // Idle for longer: gone, and placed again (here on the table's element 2).
    lb.edit_flow(&key, |v| {
        v.seen = v
            .seen
            .wrapping_sub(flow_units(support::FLOW_TIMEOUT_S as u64 + 5))
    });
    let (action, out) = lb.run(&ack);
    assert_eq!((action, element_of(&out)), (XDP_TX, 2));
    assert_eq!(lb.flow(&key).unwrap().element, 2);
    assert_eq!(lb.element_stats(2).new_flows, 1);
    assert_eq!(lb.global(stat::FLOW_RESELECTED), 0);
}

#[test]
fn the_idle_timeout_is_the_vips_own() {
    // A UDP VIP whose flows age after 30 s (what userspace writes for DSR UDP by default).
    let mut lb = Lb::new();
    let key = support::vip_key("198.18.0.10:53", PROTO_UDP);
    lb.set_vip(
        key,
        VipInfo {
            slot: 0,
            table: 0,
            mode: rsplb_common::MODE_DSR,
            timeout_s: 30,
            ..VipInfo::default()
        },
    );
    lb.set_element(1, element(1, "198.18.1.1"));
    lb.set_element(2, element(2, "198.18.1.2"));
    lb.fill_table(0, &[1]);
    let f = Frame::new(PROTO_UDP, "198.18.5.1:5353", "198.18.0.10:53").build();
    assert_eq!(element_of(&lb.run(&f).1), 1);
    lb.fill_table(0, &[2]);
    let fk = flow_key("198.18.5.1:5353", "198.18.0.10:53", PROTO_UDP);
    lb.edit_flow(&fk, |v| v.seen = v.seen.wrapping_sub(flow_units(25)));
    assert_eq!(element_of(&lb.run(&f).1), 1, "25 s idle: kept");
    lb.edit_flow(&fk, |v| v.seen = v.seen.wrapping_sub(flow_units(35)));
    assert_eq!(element_of(&lb.run(&f).1), 2, "35 s idle: aged out");
}

#[test]
fn unknown_vip_mode_is_passed_and_counted_as_such() {
    let mut lb = dsr_v4_tcp();
    let key = support::vip_key("198.18.0.10:80", PROTO_TCP);
    lb.set_vip(
        key,
        VipInfo {
            slot: 0,
            table: 0,
            mode: 7,
            timeout_s: support::FLOW_TIMEOUT_S,
            ..VipInfo::default()
        },
    );
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    let (action, out) = lb.run(&syn);
    assert_eq!((action, out), (XDP_PASS, syn));
    assert_eq!(
        lb.globals(),
        vec![("action_pass", 1), ("pass_unknown_mode", 1)]
    );
}

#[test]
fn nat_to_an_element_of_the_other_family_is_dropped_as_a_family_mismatch() {
    // An IPv4 NAT VIP whose pool holds an IPv6 element (the control plane refuses this; the
    // dataplane must still say what happened).
    let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "fd00::3", 8080);
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    let (action, out) = lb.run(&syn);
    assert_eq!((action, out), (XDP_DROP, syn));
    assert_eq!(
        lb.globals(),
        vec![("action_drop", 1), ("drop_family_mismatch", 1)]
    );
    assert!(lb.nat_entries().is_empty(), "no SNAT port claimed");
}

#[test]
fn syn_ack_and_ipv6_syn_follow_the_flow_table() {
    let mut lb = dsr_v4_tcp();
    lb.dsr_vip("[fd00::10]:80", PROTO_TCP, 1);
    lb.fill_table(2, &[1, 2]);
    // IPv6 SYN of a new flow: pinned, then its ACKs stay.
    let syn = Frame::syn("[fd00::5:1]:40001", "[fd00::10]:80").build();
    let (action, out) = lb.run(&syn);
    assert_eq!(action, XDP_TX);
    let slot = element_of(&out);
    let flow = lb
        .flow(&flow_key("[fd00::5:1]:40001", "[fd00::10]:80", PROTO_TCP))
        .expect("IPv6 SYN pinned");
    assert_eq!(flow.element, slot);
    lb.fill_table(2, &[3 - slot]);
    let ack = Frame::tcp("[fd00::5:1]:40001", "[fd00::10]:80").build();
    assert_eq!(element_of(&lb.run(&ack).1), slot);
    // SYN+ACK is not a new connection's first packet: it uses the flow table like any packet.
    let mut synack = Frame::tcp("[fd00::5:1]:40001", "[fd00::10]:80");
    synack.tcp_flags = TCP_SYN | TCP_ACK;
    assert_eq!(element_of(&lb.run(&synack.build()).1), slot);
    assert_eq!(lb.vip_stats(1).new_flows, 1);
}

// ---------------------------------------------------------------------------------------------
// VIP pre-filter (RSPLB_VIP_FILTER): a clear bit means "not a VIP", a set bit "look it up".

/// A TCP/IPv4 address (other than the VIP) whose pre-filter bit is the VIP's.
fn filter_neighbour_of(vip: &rsplb_common::VipKey) -> String {
    let bit = vip.filter_bit();
    for host in 0..=255u32 {
        for port in 1..=65535u16 {
            let addr = format!("198.18.{}.{}:{port}", 100 + host / 256, host % 256);
            let key = vip_key(&addr, PROTO_TCP);
            if key != *vip && key.filter_bit() == bit {
                return addr;
            }
        }
    }
    panic!("no address shares the VIP's filter bit");
}

#[test]
fn non_vip_sharing_the_vips_filter_bit_is_still_passed() {
    let vip = vip_key("198.18.0.10:80", PROTO_TCP);
    let neighbour = filter_neighbour_of(&vip);
    let f = Frame::syn("198.18.5.1:40001", &neighbour).build();
    expect_untouched(&f, XDP_PASS, stat::PASS_NOT_VIP);
}

#[test]
fn vips_sharing_a_filter_bit_are_both_served_through_the_hash_map() {
    let mut lb = dsr_v4_tcp();
    let vip = vip_key("198.18.0.10:80", PROTO_TCP);
    assert_eq!(
        lb.direct(vip.filter_bit()).state,
        rsplb_common::VIP_DIRECT_ONE
    );
    let neighbour = filter_neighbour_of(&vip);
    let other = lb.dsr_vip(&neighbour, PROTO_TCP, 1);
    lb.fill_table(2, &[2]);
    assert_eq!(other.filter_bit(), vip.filter_bit());
    assert_eq!(
        lb.direct(vip.filter_bit()).state,
        rsplb_common::VIP_DIRECT_SHARED
    );
    for (dst, slot) in [("198.18.0.10:80", None), (neighbour.as_str(), Some(2))] {
        let (action, out) = lb.run(&Frame::syn("198.18.5.1:40001", dst).build());
        assert_eq!(action, XDP_TX, "{dst}");
        if let Some(slot) = slot {
            assert_eq!(element_of(&out), slot);
        }
    }
    assert_eq!((lb.vip_stats(0).packets, lb.vip_stats(1).packets), (1, 1));
}

#[test]
fn a_direct_entry_of_another_vip_is_not_this_one() {
    // The bit's direct entry names another VIP (alone on the bit): a packet for an address that
    // shares the bit is not a VIP, whatever the entry's value says.
    let mut lb = dsr_v4_tcp();
    let vip = vip_key("198.18.0.10:80", PROTO_TCP);
    let neighbour = filter_neighbour_of(&vip);
    let f = Frame::syn("198.18.5.1:40001", &neighbour).build();
    let (action, out) = lb.run(&f);
    assert_eq!((action, out), (XDP_PASS, f));
    assert_eq!(lb.global(stat::PASS_NOT_VIP), 1);
    // An entry in the state readers must not trust sends the lookup to the hash map.
    let d = lb.direct(vip.filter_bit());
    lb.set_direct(vip.filter_bit(), d.shared());
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    assert_eq!(lb.run(&syn).0, XDP_TX);
    lb.set_direct(vip.filter_bit(), rsplb_common::VipDirect::default());
    assert_eq!(
        lb.run(&syn).0,
        XDP_PASS,
        "an empty entry: no VIP has the bit"
    );
}

#[test]
fn vip_is_served_only_with_its_filter_bit_and_after_updates() {
    let mut lb = dsr_v4_tcp();
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    lb.fill_filter(0);
    let (action, out) = lb.run(&syn);
    assert_eq!(
        (action, &out),
        (XDP_PASS, &syn),
        "a clear bit means not a VIP"
    );
    assert_eq!(lb.global(stat::PASS_NOT_VIP), 1);
    lb.set_filter_bit(&vip_key("198.18.0.10:80", PROTO_TCP));
    assert_eq!(lb.run(&syn).0, XDP_TX);
    // Another VIP's bit and a saturated filter change nothing for this one.
    lb.dsr_vip("[fd00::10]:80", PROTO_TCP, 1);
    let ack = Frame::tcp("198.18.5.1:40001", "198.18.0.10:80").build();
    assert_eq!(lb.run(&ack).0, XDP_TX);
    lb.fill_filter(!0);
    assert_eq!(lb.run(&ack).0, XDP_TX);
    assert_eq!(lb.vip_stats(0).packets, 3);
}

#[test]
fn saturated_filter_still_passes_non_vips_and_translates_nat_replies() {
    for f in [
        Frame::syn("198.18.5.1:40001", "198.18.0.11:80"),
        Frame::udp("198.18.5.1:40001", "198.18.0.10:80"),
        Frame::syn("[fd00::5:1]:40001", "[fd00::11]:80"),
    ] {
        let mut lb = dsr_v4_tcp();
        lb.fill_filter(!0);
        let frame = f.build();
        let (action, out) = lb.run(&frame);
        assert_eq!((action, out), (XDP_PASS, frame));
        assert_eq!(lb.globals(), vec![("action_pass", 1), ("pass_not_vip", 1)]);
    }
    let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "198.18.1.3", 8080);
    lb.fill_filter(!0);
    let (action, out) = lb.run(&Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build());
    assert_eq!(action, XDP_TX);
    let fwd = parse(&out);
    assert_eq!(fwd.dst, sa("198.18.1.3:8080"));
    let reply = Frame::tcp("198.18.1.3:8080", &fwd.src.to_string()).build();
    let (action, out) = lb.run(&reply);
    assert_eq!(action, XDP_TX);
    let back = parse(&out);
    assert_eq!(
        (back.src, back.dst),
        (sa("198.18.0.10:80"), sa("198.18.5.1:40001"))
    );
    assert_eq!(lb.global(stat::NAT_REPLY), 1);
}

// ---------------------------------------------------------------------------------------------
// NAT

const SNAT_V4: &str = "198.18.2.254";
const SNAT_V6: &str = "fd00::2:fe";

fn nat_lb(vip: &str, proto: u8, snat: &str, elem_addr: &str, elem_port: u16) -> Lb {
    let mut lb = Lb::new();
    let key = support::vip_key(vip, proto);
    lb.set_vip(
        key,
        VipInfo {
            slot: 1,
            table: 2,
            mode: MODE_NAT,
            snat_addr: addr_words(snat.parse().unwrap()),
            timeout_s: support::FLOW_TIMEOUT_S,
            ..VipInfo::default()
        },
    );
    let mut e = element(3, elem_addr);
    e.port = elem_port.to_be();
    lb.set_element(3, e);
    lb.fill_table(2, &[3]);
    lb
}

/// Forward a client frame through a NAT VIP, check the translation, then send the element's
/// reply back and check it reaches the client as coming from the VIP.
fn nat_round_trip(client: &str, vip: &str, snat: &str, elem: &str, elem_port: u16, proto: u8) {
    let mut lb = nat_lb(vip, proto, snat, elem, elem_port);
    let mut f = Frame::new(proto, client, vip);
    f.tcp_flags = packet_syn();
    let frame = f.build();
    let (action, out) = lb.run(&frame);
    assert_eq!(action, XDP_TX);
    let p = parse(&out);
    assert_eq!(p.eth_dst, element_mac(3));
    assert_eq!(p.eth_src, LB_MAC);
    assert_eq!(p.dst, SocketAddr::new(elem.parse().unwrap(), elem_port));
    assert_eq!(p.src.ip(), snat.parse::<std::net::IpAddr>().unwrap());
    let nat_port = p.src.port();
    assert!(
        (NAT_PORT_MIN..=NAT_PORT_MAX).contains(&nat_port),
        "SNAT port {nat_port} in range"
    );
    assert!(p.ip_csum_ok, "IPv4 header checksum");
    assert!(p.l4_csum_ok, "transport checksum");
    assert_eq!(p.ttl, 64, "TTL untouched");
    assert_eq!(p.payload, f.payload);
    assert_eq!(out.len(), frame.len());

    let flow = lb
        .flow(&flow_key(client, vip, proto))
        .expect("NAT flow pinned");
    assert_eq!((flow.element, flow.nat_port), (3, nat_port.to_be()));
    assert_ne!(flow.nat_seen, 0);
    let nat = lb.nat_entries();
    assert_eq!(nat.len(), 1);
    assert_eq!(nat[0].1.reply_dst_mac, CLIENT_MAC);
    assert_eq!(nat[0].1.reply_src_mac, LB_MAC);

    // Second packet of the flow: same port, same element.
    let (action, out2) = lb.run(&Frame::new(proto, client, vip).build());
    assert_eq!(action, XDP_TX);
    assert_eq!(parse(&out2).src.port(), nat_port);

    // The reply, as the element sends it to the balancer's SNAT address.
    let mut reply = Frame::new(
        proto,
        &SocketAddr::new(elem.parse().unwrap(), elem_port).to_string(),
        &SocketAddr::new(snat.parse().unwrap(), nat_port).to_string(),
    );
    reply.eth_src = element_mac(3);
    reply.eth_dst = LB_MAC;
    reply.payload = b"reply from element".to_vec();
    let (action, out) = lb.run(&reply.build());
    assert_eq!(action, XDP_TX);
    let r = parse(&out);
    assert_eq!(
        r.eth_dst, CLIENT_MAC,
        "reply goes back to the client's next hop"
    );
    assert_eq!(r.eth_src, LB_MAC);
    assert_eq!(r.src, sa(vip));
    assert_eq!(r.dst, sa(client));
    assert!(r.ip_csum_ok && r.l4_csum_ok, "reply checksums");
    assert_eq!(r.payload, reply.payload);

    assert_eq!(lb.global(stat::NAT_REPLY), 1);
    assert_eq!(lb.global(stat::ACTION_TX), 3);
    let e = lb.element_stats(3);
    assert_eq!((e.packets, e.new_flows), (3, 1));
    let v = lb.vip_stats(1);
    assert_eq!((v.packets, v.new_flows), (3, 1));
}

fn packet_syn() -> u8 {
    support::packet::TCP_SYN
}

#[test]
fn nat_ipv4_tcp_forward_and_reply() {
    nat_round_trip(
        "198.18.5.1:40001",
        "198.18.0.10:80",
        SNAT_V4,
        "198.18.1.3",
        8080,
        PROTO_TCP,
    );
}

#[test]
fn nat_ipv4_udp_forward_and_reply() {
    nat_round_trip(
        "198.18.5.1:5353",
        "198.18.0.10:53",
        SNAT_V4,
        "198.18.1.3",
        5300,
        PROTO_UDP,
    );
}

#[test]
fn nat_ipv6_tcp_forward_and_reply() {
    nat_round_trip(
        "[fd00::5:1]:40001",
        "[fd00::10]:80",
        SNAT_V6,
        "fd00::1:3",
        8080,
        PROTO_TCP,
    );
}

#[test]
fn nat_ipv6_udp_forward_and_reply() {
    nat_round_trip(
        "[fd00::5:1]:5353",
        "[fd00::10]:53",
        SNAT_V6,
        "fd00::1:3",
        5300,
        PROTO_UDP,
    );
}

#[test]
fn nat_element_port_zero_keeps_the_vip_port() {
    let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "198.18.1.3", 0);
    let (action, out) = lb.run(&Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build());
    assert_eq!(action, XDP_TX);
    assert_eq!(parse(&out).dst, sa("198.18.1.3:80"));
}

#[test]
fn nat_ipv4_udp_without_checksum_stays_without() {
    let mut lb = nat_lb("198.18.0.10:53", PROTO_UDP, SNAT_V4, "198.18.1.3", 5300);
    let mut f = Frame::udp("198.18.5.1:5353", "198.18.0.10:53");
    f.udp_no_checksum = true;
    let (action, out) = lb.run(&f.build());
    assert_eq!(action, XDP_TX);
    let p = parse(&out);
    assert_eq!(p.l4_csum, 0);
    assert!(p.ip_csum_ok);
    assert_eq!(p.dst, sa("198.18.1.3:5300"));
}

#[test]
fn nat_clients_get_distinct_ports_until_exhausted() {
    let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "198.18.1.3", 8080);
    let mut cfg = lb_config();
    cfg.nat_port_min = 40000;
    cfg.nat_port_max = 40001;
    lb.set_config(cfg);
    let mut ports = Vec::new();
    for c in 0..2 {
        let (action, out) =
            lb.run(&Frame::syn(&format!("198.18.5.{}:1000", c + 1), "198.18.0.10:80").build());
        assert_eq!(action, XDP_TX, "client {c}");
        ports.push(parse(&out).src.port());
    }
    ports.sort();
    assert_eq!(ports, vec![40000, 40001]);
    let f = Frame::syn("198.18.5.9:1000", "198.18.0.10:80").build();
    let (action, out) = lb.run(&f);
    assert_eq!(action, XDP_DROP);
    assert_eq!(out, f);
    assert_eq!(lb.global(stat::DROP_NAT_PORTS_EXHAUSTED), 1);
}

fn lb_config() -> rsplb_common::Config {
    rsplb_common::Config {
        abi_version: rsplb_common::CONFIG_ABI_VERSION,
        maglev_size: support::MAGLEV_SIZE,
        nat_tcp_timeout_s: 300,
        nat_udp_timeout_s: 30,
        nat_port_min: NAT_PORT_MIN,
        nat_port_max: NAT_PORT_MAX,
        flow_sets: rsplb_common::flow_sets(support::FLOW_CAPACITY),
        dsr_tcp_timeout_s: 300,
        dsr_udp_timeout_s: 30,
    }
}

#[test]
fn nat_expired_translation_is_absent_and_its_port_reclaimed() {
    let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "198.18.1.3", 8080);
    let mut cfg = lb_config();
    cfg.nat_port_min = 40000;
    cfg.nat_port_max = 40000;
    lb.set_config(cfg);
    let (action, _) = lb.run(&Frame::syn("198.18.5.1:1000", "198.18.0.10:80").build());
    assert_eq!(action, XDP_TX);
    // The handshake completes: the translation is an established flow's.
    let (action, _) = lb.run(&Frame::tcp("198.18.5.1:1000", "198.18.0.10:80").build());
    assert_eq!(action, XDP_TX);
    // Age the translation past its timeout.
    let (key, mut value) = lb.nat_table(rsplb_common::maps::NAT_REVERSE)[0];
    value.last_seen_ns = 1;
    lb.set_nat_entry(key, value);

    let mut reply = Frame::tcp("198.18.1.3:8080", "198.18.2.254:40000");
    reply.eth_src = element_mac(3);
    let reply = reply.build();
    let (action, out) = lb.run(&reply);
    assert_eq!(
        action, XDP_PASS,
        "an expired translation does not translate"
    );
    assert_eq!(out, reply);
    assert_eq!(lb.global(stat::NAT_REPLY), 0);

    // A new client gets the single port back.
    let (action, out) = lb.run(&Frame::syn("198.18.5.2:1000", "198.18.0.10:80").build());
    assert_eq!(action, XDP_TX);
    assert_eq!(parse(&out).src.port(), 40000);
    // Once its handshake completes, the port's established translation is the new client's.
    lb.run(&Frame::tcp("198.18.5.2:1000", "198.18.0.10:80").build());
    let nat = lb.nat_table(rsplb_common::maps::NAT_REVERSE);
    assert_eq!(nat.len(), 1);
    assert_eq!(
        nat[0].1.client_addr,
        addr_words("198.18.5.2".parse().unwrap())
    );
    let (action, out) = lb.run(&reply);
    assert_eq!((action, parse(&out).dst), (XDP_TX, sa("198.18.5.2:1000")));
}

#[test]
fn nat_sctp_is_passed() {
    let mut lb = nat_lb("198.18.0.10:9899", PROTO_SCTP, SNAT_V4, "198.18.1.3", 0);
    let f = Frame::sctp("198.18.5.1:5000", "198.18.0.10:9899").build();
    let (action, out) = lb.run(&f);
    assert_eq!(action, XDP_PASS);
    assert_eq!(out, f);
    assert_eq!(lb.globals(), vec![("action_pass", 1), ("pass_sctp_nat", 1)]);
}

#[test]
fn unknown_reply_to_the_snat_range_is_passed() {
    let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "198.18.1.3", 8080);
    let f = Frame::tcp("198.18.1.3:8080", "198.18.2.254:40000").build();
    let (action, _) = lb.run(&f);
    assert_eq!(action, XDP_PASS);
    assert_eq!(lb.globals(), vec![("action_pass", 1), ("pass_not_vip", 1)]);
}

// ---------------------------------------------------------------------------------------------
// Packets the program must not steer

/// Runs `frame` through a DSR setup and checks the action, that the frame is unchanged, and that
/// exactly the action and `reason` were counted.
fn expect_untouched(frame: &[u8], action: u32, reason: u32) {
    let mut lb = dsr_v4_tcp();
    lb.dsr_vip("[fd00::10]:80", PROTO_TCP, 1);
    lb.fill_table(2, &[1]);
    let (got, out) = lb.run(frame);
    assert_eq!(got, action);
    assert_eq!(out, frame, "frame unchanged");
    let action_name = stat::NAMES[action as usize];
    let mut expected = vec![(action_name, 1), (stat::NAMES[reason as usize], 1)];
    expected.sort_by_key(|(n, _)| stat::NAMES.iter().position(|x| x == n));
    assert_eq!(lb.globals(), expected);
    assert_eq!(lb.element_stats(1).packets, 0);
}

fn v4_syn() -> Vec<u8> {
    Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build()
}

fn v6_syn() -> Vec<u8> {
    Frame::syn("[fd00::5:1]:40001", "[fd00::10]:80").build()
}

#[test]
fn non_ip_is_passed() {
    let mut arp = v4_syn();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    expect_untouched(&arp, XDP_PASS, stat::PASS_NOT_IP);
}

#[test]
fn vlan_tagged_is_passed_as_not_ip() {
    let f = v4_syn();
    let mut tagged = f[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged.extend_from_slice(&f[12..]);
    expect_untouched(&tagged, XDP_PASS, stat::PASS_NOT_IP);
}

#[test]
fn not_a_vip_is_passed() {
    for f in [
        Frame::syn("198.18.5.1:40001", "198.18.0.11:80"), // other address
        Frame::syn("198.18.5.1:40001", "198.18.0.10:81"), // other port
        Frame::udp("198.18.5.1:40001", "198.18.0.10:80"), // other protocol
        Frame::syn("[fd00::5:1]:40001", "[fd00::11]:80"),
    ] {
        expect_untouched(&f.build(), XDP_PASS, stat::PASS_NOT_VIP);
    }
}

#[test]
fn other_protocols_are_passed() {
    expect_untouched(
        &Frame::new(1, "198.18.5.1:0", "198.18.0.10:0").build(),
        XDP_PASS,
        stat::PASS_OTHER_PROTO,
    );
    expect_untouched(
        &Frame::new(58, "[fd00::5:1]:0", "[fd00::10]:0").build(),
        XDP_PASS,
        stat::PASS_OTHER_PROTO,
    );
}

#[test]
fn fragments_are_passed() {
    let mut first = v4_syn();
    first[20] = 0x20; // MF
    first[21] = 0;
    expect_untouched(&first, XDP_PASS, stat::PASS_FRAGMENT);
    let mut later = v4_syn();
    later[20] = 0;
    later[21] = 0x10; // offset 16 * 8
    expect_untouched(&later, XDP_PASS, stat::PASS_FRAGMENT);
}

#[test]
fn ipv4_options_are_passed() {
    let f = v4_syn();
    let mut o = f[..34].to_vec();
    o.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    o.extend_from_slice(&f[34..]);
    o[14] = 0x46;
    let tot = u16::from_be_bytes([o[16], o[17]]) + 4;
    o[16..18].copy_from_slice(&tot.to_be_bytes());
    expect_untouched(&o, XDP_PASS, stat::PASS_IPV4_OPTIONS);
}

#[test]
fn ipv6_extension_headers_are_passed() {
    let f = v6_syn();
    let mut e = f[..54].to_vec();
    e[20] = 0; // hop-by-hop
    e.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // next TCP, PadN
    e.extend_from_slice(&f[54..]);
    let len = u16::from_be_bytes([e[18], e[19]]) + 8;
    e[18..20].copy_from_slice(&len.to_be_bytes());
    expect_untouched(&e, XDP_PASS, stat::PASS_IPV6_EXT);
}

#[test]
fn truncated_and_inconsistent_headers_are_dropped() {
    let syn = v4_syn();
    let v6 = v6_syn();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("Ethernet only", syn[..14].to_vec()),
        ("IPv4 header cut", syn[..30].to_vec()),
        ("TCP header cut", syn[..44].to_vec()),
        ("IPv6 header cut", v6[..50].to_vec()),
        ("IPv6 TCP header cut", v6[..60].to_vec()),
    ];
    let mut ihl4 = syn.clone();
    ihl4[14] = 0x44;
    cases.push(("IPv4 ihl < 5", ihl4));
    let mut long = syn.clone();
    long[16..18].copy_from_slice(&(syn.len() as u16).to_be_bytes()); // > frame - 14
    cases.push(("IPv4 total length beyond the frame", long));
    let mut short = syn.clone();
    short[16..18].copy_from_slice(&19u16.to_be_bytes());
    cases.push(("IPv4 total length below the header", short));
    let mut tcp_beyond_ip = syn.clone();
    tcp_beyond_ip[16..18].copy_from_slice(&30u16.to_be_bytes()); // 10 bytes of TCP in IP
    cases.push(("TCP header beyond the IPv4 length", tcp_beyond_ip));
    let mut v6_long = v6.clone();
    v6_long[18..20].copy_from_slice(&(v6.len() as u16).to_be_bytes());
    cases.push(("IPv6 payload length beyond the frame", v6_long));
    let mut not_v4 = syn.clone();
    not_v4[14] = 0x65;
    cases.push(("IPv4 ethertype with version 6", not_v4));
    for (what, frame) in cases {
        eprintln!("case: {what}");
        expect_untouched(&frame, XDP_DROP, stat::DROP_TRUNCATED);
    }
}

#[test]
fn ethernet_padding_after_the_ip_packet_is_fine() {
    let mut lb = dsr_v4_tcp();
    let mut f = Frame::syn("198.18.5.1:40001", "198.18.0.10:80");
    f.payload.clear(); // 54-byte frame, padded to 60 on the wire
    let mut frame = f.build();
    frame.resize(60, 0);
    let (action, out) = lb.run(&frame);
    assert_eq!(action, XDP_TX);
    assert_eq!(&out[12..], &frame[12..]);
}

#[test]
fn ttl_one_is_passed() {
    let mut f = Frame::syn("198.18.5.1:40001", "198.18.0.10:80");
    f.ttl = 1;
    expect_untouched(&f.build(), XDP_PASS, stat::PASS_TTL);
    let mut f = Frame::syn("[fd00::5:1]:40001", "[fd00::10]:80");
    f.ttl = 1;
    expect_untouched(&f.build(), XDP_PASS, stat::PASS_TTL);
}

#[test]
fn no_aborts_on_any_prefix_of_a_frame() {
    // Every cut of valid frames: the program never aborts and never forwards a cut-short one.
    let mut lb = dsr_v4_tcp();
    for full in [
        v4_syn(),
        v6_syn(),
        Frame::udp("[fd00::5:1]:1", "[fd00::10]:80").build(),
    ] {
        for len in 14..full.len() {
            let (action, _) = lb.run(&full[..len]);
            assert_ne!(action, XDP_ABORTED, "cut at {len}");
            assert_ne!(action, XDP_TX, "cut at {len} forwarded");
        }
    }
}

/// `dsr_v4_tcp` with a flow table of one set: every flow competes for the same ways.
fn dsr_one_set() -> Lb {
    let mut lb = dsr_v4_tcp();
    let mut cfg = lb_config();
    cfg.flow_sets = 1;
    lb.set_config(cfg);
    lb
}

fn client(n: u16) -> String {
    format!("198.18.5.1:{}", 40000 + n)
}

#[test]
fn a_full_set_replaces_its_least_recently_used_flow() {
    let mut lb = dsr_one_set();
    let ways = rsplb_common::FLOW_WAYS as u16;
    for n in 0..ways {
        let (action, _) = lb.run(&Frame::syn(&client(n), "198.18.0.10:80").build());
        assert_eq!(action, XDP_TX);
    }
    assert_eq!(lb.flows().len(), usize::from(ways), "one way per flow");
    assert_eq!(lb.global(stat::FLOW_EVICTED), 0, "empty ways first");
    // Flow 1 was used longest ago (ages are clock ticks: make it unambiguous).
    let key = |n| flow_key(&client(n), "198.18.0.10:80", PROTO_TCP);
    lb.edit_flow(&key(1), |v| v.seen = v.seen.wrapping_sub(1000));
    let (action, _) = lb.run(&Frame::syn(&client(ways), "198.18.0.10:80").build());
    assert_eq!(action, XDP_TX);
    assert!(
        lb.flow(&key(1)).is_none(),
        "the least recently used flow left"
    );
    assert_eq!(lb.global(stat::FLOW_EVICTED), 1);
    for n in (0..=ways).filter(|&n| n != 1) {
        assert!(lb.flow(&key(n)).is_some(), "flow {n} kept");
    }
    assert_eq!(lb.flows().len(), usize::from(ways));

    // The replaced flow comes back on Maglev's choice, as a new flow.
    let new_before = lb.vip_stats(0).new_flows;
    let (action, _) = lb.run(&Frame::tcp(&client(1), "198.18.0.10:80").build());
    assert_eq!(action, XDP_TX);
    assert_eq!(lb.vip_stats(0).new_flows, new_before + 1);
    assert!(lb.flow(&key(1)).is_some());
}

#[test]
fn a_used_flow_is_not_the_one_replaced() {
    let mut lb = dsr_one_set();
    let ways = rsplb_common::FLOW_WAYS as u16;
    for n in 0..ways {
        lb.run(&Frame::syn(&client(n), "198.18.0.10:80").build());
    }
    let key = |n| flow_key(&client(n), "198.18.0.10:80", PROTO_TCP);
    // Every flow idle for a long time; then flow 0 sends a packet, which refreshes it.
    for n in 0..ways {
        lb.edit_flow(&key(n), |v| {
            v.seen = v.seen.wrapping_sub(1000 + u32::from(n))
        });
    }
    lb.run(&Frame::tcp(&client(0), "198.18.0.10:80").build());
    lb.run(&Frame::syn(&client(ways), "198.18.0.10:80").build());
    assert!(lb.flow(&key(0)).is_some(), "the refreshed flow stays");
    // Flow 3 was idle longest.
    assert!(lb.flow(&key(ways - 1)).is_none());
}

#[test]
fn a_flow_entry_that_fails_its_check_is_a_miss_not_a_wrong_element() {
    let mut lb = dsr_v4_tcp();
    lb.fill_table(0, &[1]);
    let syn = Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build();
    assert_eq!(element_of(&lb.run(&syn).1), 1);
    // What a torn write would leave: another (active, same generation) element without the
    // matching check.
    let key = flow_key("198.18.5.1:40001", "198.18.0.10:80", PROTO_TCP);
    lb.edit_flow(&key, |v| v.element = 2);
    let ack = Frame::tcp("198.18.5.1:40001", "198.18.0.10:80").build();
    let (action, out) = lb.run(&ack);
    assert_eq!(
        (action, element_of(&out)),
        (XDP_TX, 1),
        "placed by Maglev again"
    );
    let flow = lb.flow(&key).expect("re-pinned, in one way");
    assert_eq!(flow.element, 1);
    assert_eq!(
        lb.vip_stats(0).new_flows,
        2,
        "the damaged entry counted as a miss"
    );
}

#[test]
fn without_a_flow_table_maglev_places_every_packet() {
    let mut lb = dsr_v4_tcp();
    let mut cfg = lb_config();
    cfg.flow_sets = 0;
    lb.set_config(cfg);
    lb.fill_table(0, &[1]);
    let ack = Frame::tcp("198.18.5.1:40001", "198.18.0.10:80").build();
    assert_eq!(element_of(&lb.run(&ack).1), 1);
    lb.fill_table(0, &[2]);
    assert_eq!(element_of(&lb.run(&ack).1), 2, "nothing pinned");
    assert!(lb.flows().is_empty());
}

#[test]
fn maglev_tables_written_through_the_mapping_are_what_the_program_reads() {
    // The control plane opens the maps from their pins and writes whole tables into a shared
    // mapping of RSPLB_MAGLEV: check that the mapping is used and that the program sees it.
    let mut lb = dsr_v4_tcp();
    // On a fresh host nothing may have mounted bpffs yet (`rsplb attach` does it).
    rsplb::loader::ensure_bpffs().unwrap();
    let dir = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/rsplb-test-maglev-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    for name in rsplb_common::maps::ALL {
        lb.ebpf.map(name).unwrap().pin(dir.join(name)).unwrap();
    }
    let mut maps = rsplb::maps::Maps::open(&dir).unwrap();
    assert!(maps.maglev_mapped(), "RSPLB_MAGLEV is mappable");
    let size = support::MAGLEV_SIZE;
    // Table 0 (the VIP's active one) all element 2, through the mapping.
    maps.write_maglev(0, size, &vec![2; size as usize]).unwrap();
    let block = maps.maglev.get(&0, 0).unwrap();
    assert!(
        block.slots[..size as usize].iter().all(|&s| s == 2),
        "as the kernel reads it: {block:?}"
    );
    assert!(
        block.slots[size as usize..]
            .iter()
            .all(|&s| s == rsplb_common::MAGLEV_EMPTY),
        "padding"
    );
    let (action, out) = lb.run(&Frame::syn("198.18.5.1:40001", "198.18.0.10:80").build());
    assert_eq!((action, element_of(&out)), (XDP_TX, 2));
    maps.write_maglev(0, size, &vec![1; size as usize]).unwrap();
    let (action, out) = lb.run(&Frame::syn("198.18.5.1:40002", "198.18.0.10:80").build());
    assert_eq!((action, element_of(&out)), (XDP_TX, 1));
    // A table that does not fit, or of the wrong size, is refused, not written past the end.
    let tables = maps.maglev.len() / rsplb_common::maglev_blocks(size);
    assert!(
        maps.write_maglev(tables, size, &vec![1; size as usize])
            .is_err()
    );
    assert!(maps.write_maglev(0, size, &[1]).is_err());
}

/// `dsr_v4_tcp` with an allow list on its VIP (slot 0) holding `prefixes`.
fn dsr_v4_tcp_allowing(prefixes: &[&str]) -> Lb {
    let mut lb = dsr_v4_tcp();
    for p in prefixes {
        lb.allow(0, p);
    }
    let key = vip_key("198.18.0.10:80", PROTO_TCP);
    lb.set_vip(key, allow_list_info(0));
    lb
}

/// The DSR VIP of slot `slot` (table `2 * slot`) with `VIP_F_ALLOW_LIST`.
fn allow_list_info(slot: u32) -> VipInfo {
    VipInfo {
        slot,
        table: slot * 2,
        mode: rsplb_common::MODE_DSR,
        flags: rsplb_common::VIP_F_ALLOW_LIST,
        timeout_s: support::FLOW_TIMEOUT_S,
        ..VipInfo::default()
    }
}

#[test]
fn allow_list_lets_listed_ipv4_sources_in_and_drops_the_others() {
    let mut lb = dsr_v4_tcp_allowing(&["198.18.5.0/24", "203.0.113.7/32"]);
    for src in [
        "198.18.5.1:40001",
        "198.18.5.254:40002",
        "203.0.113.7:40003",
    ] {
        let (action, _) = lb.run(&Frame::syn(src, "198.18.0.10:80").build());
        assert_eq!(action, XDP_TX, "{src} is allowed");
    }
    for src in ["198.18.6.1:40001", "203.0.113.8:40003", "10.0.0.1:1"] {
        let syn = Frame::syn(src, "198.18.0.10:80").build();
        let (action, out) = lb.run(&syn);
        assert_eq!((action, &out), (XDP_DROP, &syn), "{src} is refused");
        assert!(
            lb.flow(&flow_key(src, "198.18.0.10:80", PROTO_TCP))
                .is_none(),
            "{src} is refused before the flow table"
        );
    }
    let v = lb.vip_stats(0);
    assert_eq!((v.packets, v.new_flows, v.refused), (3, 3, 3));
    assert_eq!(
        lb.globals(),
        vec![
            ("action_drop", 3),
            ("action_tx", 3),
            ("drop_source_not_allowed", 3)
        ]
    );
}

#[test]
fn allow_list_for_an_ipv6_nat_vip() {
    let mut lb = nat_lb("[fd00::10]:80", PROTO_TCP, "fd00::1", "fd00::1:3", 8080);
    lb.allow(1, "fd00:5::/32");
    let key = vip_key("[fd00::10]:80", PROTO_TCP);
    lb.set_vip(
        key,
        VipInfo {
            flags: rsplb_common::VIP_F_ALLOW_LIST,
            mode: MODE_NAT,
            snat_addr: addr_words("fd00::1".parse().unwrap()),
            ..allow_list_info(1)
        },
    );
    let (action, out) = lb.run(&Frame::syn("[fd00:5::1]:40001", "[fd00::10]:80").build());
    assert_eq!(action, XDP_TX);
    assert_eq!(parse(&out).dst, sa("[fd00::1:3]:8080"), "translated");
    let (action, _) = lb.run(&Frame::syn("[fd00:6::1]:40001", "[fd00::10]:80").build());
    assert_eq!(action, XDP_DROP);
    assert_eq!(
        lb.nat_entries().len(),
        1,
        "no translation for a refused source"
    );
    assert_eq!(lb.vip_stats(1).refused, 1);
    assert_eq!(lb.global(stat::DROP_SOURCE_NOT_ALLOWED), 1);
}

#[test]
fn a_vip_without_a_list_serves_everyone_and_lists_are_per_vip() {
    let mut lb = dsr_v4_tcp_allowing(&["198.18.5.0/24"]);
    // VIP slot 1 without the flag: its (stray) prefixes and VIP 0's list do not apply.
    lb.dsr_vip("198.18.0.11:80", PROTO_TCP, 1);
    lb.fill_table(2, &[1]);
    lb.allow(1, "192.0.2.0/24");
    let (action, _) = lb.run(&Frame::syn("10.9.9.9:1000", "198.18.0.11:80").build());
    assert_eq!(action, XDP_TX, "a VIP without the flag reads no list");
    // VIP 1 with the flag: only its own prefixes count, not VIP 0's.
    lb.set_vip(vip_key("198.18.0.11:80", PROTO_TCP), allow_list_info(1));
    let (action, _) = lb.run(&Frame::syn("198.18.5.1:1000", "198.18.0.11:80").build());
    assert_eq!(action, XDP_DROP, "VIP 0's prefix does not open VIP 1");
    let (action, _) = lb.run(&Frame::syn("192.0.2.9:1000", "198.18.0.11:80").build());
    assert_eq!(action, XDP_TX);
    assert_eq!(lb.vip_stats(1).refused, 1);
    assert_eq!(lb.vip_stats(0).refused, 0);
}

#[test]
fn allow_list_changes_apply_to_the_next_packet() {
    let mut lb = dsr_v4_tcp_allowing(&["198.18.5.0/24"]);
    let client = "198.18.7.1:40001";
    let ack = Frame::tcp(client, "198.18.0.10:80").build();
    assert_eq!(lb.run(&ack).0, XDP_DROP);
    lb.allow(0, "198.18.0.0/16");
    assert_eq!(lb.run(&ack).0, XDP_TX, "a wider prefix added");
    lb.disallow(0, "198.18.0.0/16");
    assert_eq!(
        lb.run(&ack).0,
        XDP_DROP,
        "removed again: the established flow is refused too"
    );
    // Longest match within the VIP: a /0 lets every IPv4 source in.
    lb.allow(0, "0.0.0.0/0");
    assert_eq!(lb.run(&ack).0, XDP_TX);
    lb.disallow(0, "0.0.0.0/0");
    // The list removed (flag cleared): everyone.
    lb.set_vip(
        vip_key("198.18.0.10:80", PROTO_TCP),
        VipInfo {
            flags: 0,
            ..allow_list_info(0)
        },
    );
    assert_eq!(lb.run(&ack).0, XDP_TX);
    assert_eq!(lb.vip_stats(0).refused, 2);
}

/// Sends a SYN and then an ACK of the flow from `client` to the DSR VIP: an established flow.
fn establish(lb: &mut Lb, client: &str, vip: &str) -> Vec<u8> {
    assert_eq!(lb.run(&Frame::syn(client, vip).build()).0, XDP_TX);
    let (action, out) = lb.run(&Frame::tcp(client, vip).build());
    assert_eq!(action, XDP_TX);
    out
}

#[test]
fn a_syn_never_evicts_an_established_flow() {
    let mut lb = dsr_one_set();
    let ways = rsplb_common::FLOW_WAYS as u16;
    let key = |n| flow_key(&client(n), "198.18.0.10:80", PROTO_TCP);
    for n in 0..ways {
        establish(&mut lb, &client(n), "198.18.0.10:80");
        // Idle for long: the least recently used flows of the set.
        lb.edit_flow(&key(n), |v| v.seen = v.seen.wrapping_sub(1000));
    }
    // The pool changes: a flow placed by Maglev again would move.
    lb.fill_table(0, &[2]);
    for n in ways..ways + 50 {
        let (action, out) = lb.run(&Frame::syn(&client(n), "198.18.0.10:80").build());
        assert_eq!(action, XDP_TX, "a SYN with no way is still forwarded");
        assert_eq!(element_of(&out), 2, "to Maglev's choice");
        assert!(lb.flow(&key(n)).is_none(), "without being pinned");
    }
    assert_eq!(lb.global(stat::FLOW_TABLE_FULL_SYN), 50);
    assert_eq!(lb.global(stat::DROP_FLOW_TABLE_FULL), 0, "DSR forwards it");
    assert_eq!(lb.global(stat::FLOW_EVICTED), 0);
    for n in 0..ways {
        let before = lb.flow(&key(n)).expect("established flow kept").element;
        let (_, out) = lb.run(&Frame::tcp(&client(n), "198.18.0.10:80").build());
        assert_eq!(element_of(&out), before, "flow {n} stays on its element");
    }
}

#[test]
fn a_syn_takes_the_way_of_an_embryonic_flow_only() {
    let mut lb = dsr_one_set();
    let ways = rsplb_common::FLOW_WAYS as u16;
    let key = |n| flow_key(&client(n), "198.18.0.10:80", PROTO_TCP);
    for n in 0..ways - 1 {
        establish(&mut lb, &client(n), "198.18.0.10:80");
        lb.edit_flow(&key(n), |v| v.seen = v.seen.wrapping_sub(1000));
    }
    // The last way: a SYN that never completes (the most recently used way of the set).
    lb.run(&Frame::syn(&client(ways - 1), "198.18.0.10:80").build());
    lb.run(&Frame::syn(&client(ways), "198.18.0.10:80").build());
    assert!(lb.flow(&key(ways - 1)).is_none(), "the embryonic flow left");
    assert!(lb.flow(&key(ways)).is_some(), "the new SYN took its way");
    assert_eq!(lb.global(stat::FLOW_EVICTED), 1);
    assert_eq!(lb.global(stat::FLOW_TABLE_FULL_SYN), 0);
    for n in 0..ways - 1 {
        assert!(lb.flow(&key(n)).is_some(), "established flow {n} kept");
    }
    // A packet that is not a SYN (UDP, a mid-stream packet) may still replace the least
    // recently used flow of a full set, an established one when no embryonic one is left.
    establish(&mut lb, &client(ways), "198.18.0.10:80");
    lb.run(&Frame::tcp(&client(ways + 1), "198.18.0.10:80").build());
    assert!(lb.flow(&key(ways + 1)).is_some());
    assert_eq!(lb.global(stat::FLOW_EVICTED), 2);
}

#[test]
fn a_syn_flood_keeps_established_nat_flows_and_their_ports() {
    let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "198.18.1.3", 8080);
    let mut cfg = lb_config();
    cfg.flow_sets = 1;
    lb.set_config(cfg);
    let ways = rsplb_common::FLOW_WAYS as u16;
    let mut ports = Vec::new();
    for n in 0..ways {
        let out = establish(&mut lb, &client(n), "198.18.0.10:80");
        ports.push(parse(&out).src.port());
    }
    for n in ways..ways + 50 {
        let (action, _) = lb.run(&Frame::syn(&client(n), "198.18.0.10:80").build());
        assert_eq!(action, XDP_DROP, "no way, no translation");
    }
    assert_eq!(lb.global(stat::FLOW_TABLE_FULL_SYN), 50);
    assert_eq!(
        lb.global(stat::DROP_FLOW_TABLE_FULL),
        50,
        "the drop's reason"
    );
    assert_eq!(
        lb.nat_entries().len(),
        usize::from(ways),
        "no SNAT port claimed"
    );
    for n in 0..ways {
        let (action, out) = lb.run(&Frame::tcp(&client(n), "198.18.0.10:80").build());
        assert_eq!(action, XDP_TX);
        assert_eq!(
            parse(&out).src.port(),
            ports[usize::from(n)],
            "flow {n} keeps its port"
        );
    }
}

#[test]
fn a_nat_syn_translation_waits_in_the_embryonic_table_until_the_handshake_completes() {
    use rsplb_common::maps::{NAT_EMBRYONIC, NAT_REVERSE};
    let mut lb = nat_lb("198.18.0.10:80", PROTO_TCP, SNAT_V4, "198.18.1.3", 8080);
    let (_, out) = lb.run(&Frame::syn("198.18.5.1:1000", "198.18.0.10:80").build());
    let port = parse(&out).src.port();
    assert_eq!(lb.nat_table(NAT_EMBRYONIC).len(), 1);
    assert!(
        lb.nat_table(NAT_REVERSE).is_empty(),
        "a spoofed SYN cannot rotate it"
    );
    // The SYN-ACK is translated from the embryonic table.
    let mut reply = Frame::tcp("198.18.1.3:8080", &format!("{SNAT_V4}:{port}"));
    reply.eth_src = element_mac(3);
    let (action, out) = lb.run(&reply.build());
    assert_eq!((action, parse(&out).dst), (XDP_TX, sa("198.18.5.1:1000")));
    // The client's ACK moves the translation, with its port.
    let (_, out) = lb.run(&Frame::tcp("198.18.5.1:1000", "198.18.0.10:80").build());
    assert_eq!(parse(&out).src.port(), port);
    assert!(lb.nat_table(NAT_EMBRYONIC).is_empty());
    let reverse = lb.nat_table(NAT_REVERSE);
    assert_eq!(reverse.len(), 1);
    assert_eq!(u16::from_be(reverse[0].0.nat_port), port);
    let (action, _) = lb.run(&reply.build());
    assert_eq!(action, XDP_TX);
}
