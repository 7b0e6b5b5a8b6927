//! The registrar core under abuse and overload: its own stalls, evictions the element must learn
//! of, Endpoint Unreachable from one host, connection caps, allow lists, and input that would make
//! it log without bound. Fake clock, no sockets.

mod core_support;

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Once;

use core_support::*;
use rserpool_proto::config::{IdentityRule, Prefix, Role};
use rserpool_proto::core::{
    Action, CloseReason, Event, HandlespaceEvent, MAX_ERROR_CAUSES, PeerId, PeerInfo, RemovalReason,
};
use rserpool_proto::message::AsapMessage;
use rserpool_proto::types::{CauseCode, ErrorCause, PeId, Policy};
use rserpool_proto::wire::encode_asap;

fn ack(h: &mut Harness, peer: u64, id: u32) {
    h.send(
        peer,
        &AsapMessage::EndpointKeepAliveAck {
            pool_handle: ph("web"),
            id: PeId(id),
        },
    );
}

fn close_reasons(h: &mut Harness) -> Vec<(PeerId, CloseReason)> {
    h.take()
        .into_iter()
        .filter_map(|a| match a {
            Action::Close { peer, reason } => Some((peer, reason)),
            _ => None,
        })
        .collect()
}

/// Connect `peer` from `ip` (several peers may share an address).
fn connect_from(h: &mut Harness, peer: u64, ip: IpAddr) {
    let info = PeerInfo::tcp(SocketAddr::new(ip, 40_000 + peer as u16));
    h.core.handle_event(
        h.now,
        Event::Connected {
            peer: PeerId(peer),
            info,
        },
    );
}

#[test]
fn an_ack_deadline_handled_late_waits_for_the_input_that_arrived_meanwhile() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.take_events();
    h.advance(ms(250)); // the keep-alive goes out; the ack is due at 500 ms
    assert_eq!(h.take_sent(1).len(), 1);
    // The registrar's loop stalls for 400 ms: the element's ack arrived at 260 ms, but the
    // core is only called again at 900 ms, and the timer happens to be handled first.
    h.now = h.t0 + ms(900);
    h.core.handle_timeout(h.now);
    ack(&mut h, 1, 1);
    assert_eq!(
        h.ids("web"),
        vec![1],
        "an element that answered was removed"
    );
    assert!(h.take_events().is_empty());
    assert_eq!(h.core.stats().keepalive_deadlines_deferred, 1);
    // And it stays, answering on time from now on.
    h.advance_acking(ms(3000), 1);
    assert_eq!(h.ids("web"), vec![1]);
    assert_eq!(h.core.stats().keepalive_timeouts, 0);
}

#[test]
fn a_dead_element_is_still_removed_after_a_stall() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.advance(ms(250));
    h.now = h.t0 + ms(900);
    h.core.handle_timeout(h.now);
    assert_eq!(h.ids("web"), vec![1]);
    // No ack: the deferred deadline, handled on time, removes it within the grace.
    h.advance(ms(100));
    assert!(h.core.handlespace().is_empty());
    assert!(h.take_events().contains(&HandlespaceEvent::ElementRemoved {
        pool: ph("web"),
        id: PeId(1),
        reason: RemovalReason::KeepAliveTimeout,
    }));
}

#[test]
fn an_on_time_deadline_removes_as_before() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.advance(ms(500));
    assert!(h.core.handlespace().is_empty());
    assert_eq!(h.core.stats().keepalive_deadlines_deferred, 0);
}

#[test]
fn an_eviction_closes_a_connection_left_without_elements() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.take();
    h.advance(ms(500)); // no ack
    assert!(h.core.handlespace().is_empty());
    assert_eq!(
        close_reasons(&mut h),
        vec![(PeerId(1), CloseReason::NoElementsLeft)]
    );
    assert_eq!(h.core.peer_count(), 0);
}

#[test]
fn an_eviction_keeps_a_connection_that_still_has_elements() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.register_ok(1, "web", element(1, 2, Policy::RoundRobin));
    h.take();
    h.advance(ms(250));
    ack(&mut h, 1, 2); // only element 2 answers
    h.advance(ms(250));
    assert_eq!(h.ids("web"), vec![2]);
    assert!(close_reasons(&mut h).is_empty());
    // Then element 2 goes silent too: now the connection is closed.
    h.advance(ms(500));
    assert!(h.core.handlespace().is_empty());
    assert_eq!(
        close_reasons(&mut h),
        vec![(PeerId(1), CloseReason::NoElementsLeft)]
    );
}

#[test]
fn unreachable_reports_count_per_source_address_not_per_connection() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    let eu = AsapMessage::EndpointUnreachable {
        pool_handle: ph("web"),
        id: PeId(1),
    };
    // Three throwaway connections from one host.
    let host = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    for peer in 10..13 {
        connect_from(&mut h, peer, host);
        h.send(peer, &eu);
    }
    assert_eq!(h.ids("web"), vec![1], "one host evicted an element");
    // Two more hosts: three distinct reporters.
    for peer in [20, 21] {
        connect_from(
            &mut h,
            peer,
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, peer as u8)),
        );
        h.send(peer, &eu);
    }
    assert!(h.core.handlespace().is_empty());
}

#[test]
fn unreachable_reports_are_rate_limited_per_source_address() {
    let mut c = quiet_config();
    c.limits.distinct_reporters = false;
    c.limits.max_bad_pe_reports = 1_000;
    c.rate_limits.endpoint_unreachable.rate_per_s = 1;
    c.rate_limits.endpoint_unreachable.burst = 5;
    let mut h = Harness::new(c);
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    let eu = AsapMessage::EndpointUnreachable {
        pool_handle: ph("web"),
        id: PeId(1),
    };
    let host = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    // 20 connections from one host, 3 reports each: one bucket of 5 for all of them.
    for peer in 100..120 {
        connect_from(&mut h, peer, host);
        for _ in 0..3 {
            h.send(peer, &eu);
        }
    }
    assert_eq!(h.core.stats().unreachable_reports, 5);
    assert_eq!(h.core.stats().rate_limited, 55);
}

#[test]
fn connections_per_source_address_are_capped() {
    let mut c = quiet_config();
    c.limits.max_peers_per_address = 3;
    let mut h = Harness::new(c);
    let host = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    for peer in 1..=4 {
        connect_from(&mut h, peer, host);
    }
    assert_eq!(h.core.peer_count(), 3);
    let sent = h.take_sent(4);
    assert_eq!(error_causes(&sent[0])[0].code, CauseCode::LackOfResources);
    assert_eq!(
        close_reasons(&mut h),
        vec![(PeerId(4), CloseReason::TooManyPeersFromAddress)]
    );
    assert_eq!(h.core.stats().connections_refused, 1);
    // Another host is not affected, and a closed connection frees a slot.
    h.connect(50);
    assert_eq!(h.core.peer_count(), 4);
    h.disconnect(1);
    connect_from(&mut h, 5, host);
    assert_eq!(h.core.peer_count(), 4);
    assert!(close_reasons(&mut h).is_empty());
}

#[test]
fn allow_lists_refuse_registration_and_resolution_with_the_rfc_answers() {
    let mut c = quiet_config();
    // Peers 1.. are 198.18.0.N: PEs from .0/28 (1..15), PUs from .16/28 (16..31).
    c.security.allow_pe = Some(vec!["198.18.0.0/28".parse().unwrap()]);
    c.security.allow_pu = Some(vec!["198.18.0.16/28".parse().unwrap()]);
    let mut h = Harness::new(c);
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    // A PU address may not register.
    h.connect(20);
    assert_eq!(
        reg_cause(&h.register(20, "web", element(20, 2, Policy::RoundRobin))),
        Some(CauseCode::RejectedSecurity)
    );
    // It may resolve; a PE address may too; anyone else gets Unknown Pool Handle.
    assert_eq!(hr_ids(&h.resolve(20, "web", None)), vec![1]);
    assert_eq!(hr_ids(&h.resolve(1, "web", None)), vec![1]);
    h.connect(40);
    assert_eq!(
        hr_cause(&h.resolve(40, "web", None)),
        Some(CauseCode::UnknownPoolHandle)
    );
    assert_eq!(
        reg_cause(&h.register(40, "web", element(40, 3, Policy::RoundRobin))),
        Some(CauseCode::RejectedSecurity)
    );
    // Its reports are dropped.
    for _ in 0..5 {
        h.send(
            40,
            &AsapMessage::EndpointUnreachable {
                pool_handle: ph("web"),
                id: PeId(1),
            },
        );
    }
    assert_eq!(h.core.stats().unreachable_reports, 0);
    assert_eq!(h.core.stats().refused_by_allow_list, 8);
    assert_eq!(h.ids("web"), vec![1]);
}

#[test]
fn allows_checks_prefixes_per_role() {
    let mut s = quiet_config().security;
    let a = |t: &str| t.parse::<IpAddr>().unwrap();
    assert!(
        s.allows(Role::PoolElement, a("192.0.2.1")),
        "no list: allowed"
    );
    s.allow_pe = Some(vec![
        "10.0.0.0/8".parse().unwrap(),
        "fd00::/8".parse().unwrap(),
    ]);
    s.allow_registrar = Some(vec!["10.9.9.9".parse().unwrap()]);
    assert!(s.allows(Role::PoolElement, a("10.1.2.3")));
    assert!(s.allows(Role::PoolElement, a("::ffff:10.1.2.3")));
    assert!(s.allows(Role::PoolElement, a("fd12::1")));
    assert!(!s.allows(Role::PoolElement, a("11.0.0.1")));
    assert!(!s.allows(Role::PoolElement, a("fe80::1")));
    assert!(
        s.allows(Role::PoolUser, a("11.0.0.1")),
        "no PU list: allowed"
    );
    assert!(s.allows(Role::Registrar, a("10.9.9.9")));
    assert!(!s.allows(Role::Registrar, a("10.9.9.8")));
    assert!("10.0.0.0/33".parse::<Prefix>().is_err());
    assert!("nonsense/8".parse::<Prefix>().is_err());
    assert_eq!(
        "0.0.0.0/0".parse::<Prefix>().unwrap().to_string(),
        "0.0.0.0/0"
    );
    assert!(
        "0.0.0.0/0"
            .parse::<Prefix>()
            .unwrap()
            .contains(a("1.2.3.4"))
    );
}

// ---- What a peer can make the registrar log ----

thread_local! {
    /// Lengths of the lines logged on this thread (each test runs on its own thread).
    static LINES: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let len = record.args().to_string().len();
        LINES.with(|l| l.borrow_mut().push(len));
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
    LINES.with(|l| l.borrow_mut().clear());
}

fn logged() -> (usize, usize) {
    LINES.with(|l| {
        let l = l.borrow();
        (l.iter().sum(), l.iter().copied().max().unwrap_or(0))
    })
}

fn tlv(t: u16, v: &[u8]) -> Vec<u8> {
    let mut p = t.to_be_bytes().to_vec();
    p.extend(((4 + v.len()) as u16).to_be_bytes());
    p.extend_from_slice(v);
    p
}

#[test]
fn sixteen_thousand_parameters_to_report_log_little_get_a_bounded_error_and_count() {
    capture_logs();
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.connect(9);
    // A Handle Resolution with 16,000 "skip and report" parameters: 64 KiB.
    let mut body = tlv(0x0009, b"web\0");
    body[3] = 7; // "web" and one byte of padding
    for _ in 0..16_000 {
        body.extend(tlv(0xc123, &[]));
    }
    let mut m = vec![0x05, 0x00, 0, 0]; // Handle Resolution
    m[2..4].copy_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    m.extend(body);
    assert!(m.len() <= 65_535);
    let before = h.core.stats();
    h.send_raw(9, m.clone());
    let sent = h.take_sent(9);
    assert_eq!(sent.len(), 2, "an ERROR and the resolution: {sent:?}");
    let causes = error_causes(&sent[0]);
    assert_eq!(causes.len(), MAX_ERROR_CAUSES);
    assert!(
        causes
            .iter()
            .all(|c| c.code == CauseCode::UnrecognizedParameter)
    );
    let (total, longest) = logged();
    assert!(
        total < 1_000 && longest < 500,
        "logged {total} bytes, longest line {longest}"
    );
    assert_eq!(h.core.stats().peer_errors, before.peer_errors + 1);
    // It counts toward the error limit: the tenth such message closes the connection.
    for _ in 1..10 {
        h.send_raw(9, m.clone());
    }
    assert!(h.closed().contains(&PeerId(9)));
    let (total, longest) = logged();
    assert!(total < 10_000 && longest < 500, "logged {total} bytes");
    assert_eq!(h.ids("web"), vec![1]);
}

#[test]
fn an_error_with_sixteen_thousand_causes_logs_a_summary_and_counts() {
    capture_logs();
    let mut h = Harness::quiet();
    h.connect(9);
    let causes = vec![ErrorCause::new(CauseCode::UnrecognizedParameter); 16_000];
    let m = encode_asap(&AsapMessage::Error { causes }).unwrap();
    h.send_raw(9, m.clone());
    assert!(h.take_sent(9).is_empty(), "an ERROR is never answered");
    let (total, longest) = logged();
    assert!(
        total < 1_000 && longest < 500,
        "logged {total} bytes, longest line {longest}"
    );
    assert_eq!(h.core.stats().errors_received, 1);
    assert_eq!(h.core.stats().peer_errors, 1);
    for _ in 1..10 {
        h.send_raw(9, m.clone());
    }
    assert!(h.closed().contains(&PeerId(9)));
    assert_eq!(h.core.stats().errors_received, 10);
    let (total, _) = logged();
    assert!(total < 5_000, "logged {total} bytes for 10 messages");
}

/// Connect `peer` from its usual address, authenticated as `identity`.
fn connect_as(h: &mut Harness, peer: u64, identity: &str) {
    let info = PeerInfo::tcp(SocketAddr::new(peer_ip(peer), 40_000 + peer as u16))
        .with_identity(Some(identity.to_string()));
    h.core.handle_event(
        h.now,
        Event::Connected {
            peer: PeerId(peer),
            info,
        },
    );
}

fn identity_rule(identity: &str, register: &[&str], resolve: bool) -> IdentityRule {
    IdentityRule {
        identity: identity.into(),
        register: register.iter().map(|s| s.to_string()).collect(),
        resolve,
        registrar: false,
    }
}

#[test]
fn identities_decide_who_registers_in_which_pool_and_who_resolves() {
    let mut c = quiet_config();
    c.security.identities = Some(vec![
        identity_rule("web-*.pe.test", &["web", "web-*"], false),
        identity_rule("pu.test", &[], true),
    ]);
    // The address lists still apply on top: peer 9's address may not register at all.
    c.security.allow_pe = Some(vec!["198.18.0.0/29".parse().unwrap()]);
    let mut h = Harness::new(c);
    connect_as(&mut h, 1, "WEB-1.pe.test"); // identities ignore ASCII case
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.register_ok(1, "web-canary", element(1, 2, Policy::RoundRobin));
    assert_eq!(
        reg_cause(&h.register(1, "api", element(1, 3, Policy::RoundRobin))),
        Some(CauseCode::RejectedSecurity),
        "a pool outside the identity's patterns"
    );
    // Registering somewhere lets it resolve too.
    assert_eq!(hr_ids(&h.resolve(1, "web", None)), vec![1]);
    // A resolve-only identity cannot register, nor deregister someone else's element.
    connect_as(&mut h, 2, "pu.test");
    assert_eq!(hr_ids(&h.resolve(2, "web", None)), vec![1]);
    assert_eq!(
        reg_cause(&h.register(2, "web", element(2, 4, Policy::RoundRobin))),
        Some(CauseCode::RejectedSecurity)
    );
    // An identity no rule names: nothing (resolution answered Unknown Pool Handle).
    connect_as(&mut h, 3, "stranger.test");
    assert_eq!(
        hr_cause(&h.resolve(3, "web", None)),
        Some(CauseCode::UnknownPoolHandle)
    );
    assert_eq!(
        reg_cause(&h.register(3, "web", element(3, 5, Policy::RoundRobin))),
        Some(CauseCode::RejectedSecurity)
    );
    // A right identity from an address outside allow_pe: refused as well.
    connect_as(&mut h, 9, "web-9.pe.test");
    assert_eq!(
        reg_cause(&h.register(9, "web", element(9, 6, Policy::RoundRobin))),
        Some(CauseCode::RejectedSecurity)
    );
    // A peer without a certificate (a plain listener) is judged by the address lists only.
    h.connect(4);
    h.register_ok(4, "api", element(4, 7, Policy::RoundRobin));
    assert_eq!(h.ids("web"), vec![1]);
    assert_eq!(h.core.stats().refused_by_allow_list, 5);
}

#[test]
fn identity_patterns_match_whole_names() {
    let mut s = quiet_config().security;
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    assert!(
        s.authorizes(Role::PoolElement, a, Some("anyone"), Some(b"web")),
        "no rules: every authenticated identity"
    );
    s.identities = Some(vec![
        identity_rule("pe-*.example.net", &["web*"], false),
        identity_rule("exact.example.net", &["a*b*c"], false),
    ]);
    let pe = |id: &str, pool: &[u8]| s.authorizes(Role::PoolElement, a, Some(id), Some(pool));
    assert!(pe("pe-1.example.net", b"web"));
    assert!(pe("pe-1.example.net", b"webshop"));
    assert!(!pe("pe-1.example.net", b"api"));
    assert!(
        !pe("pe-1.example.net.evil", b"web"),
        "patterns match whole names"
    );
    assert!(!pe("xpe-1.example.net", b"web"));
    assert!(pe("exact.example.net", b"aXbYc"));
    assert!(pe("exact.example.net", b"abc"));
    assert!(!pe("exact.example.net", b"abcd"));
    assert!(!pe("exact.example.net", b"acb"));
    assert!(!s.authorizes(Role::Registrar, a, Some("pe-1.example.net"), None));
    assert!(
        s.authorizes(Role::Registrar, a, None, None),
        "no identity: the address lists decide"
    );
}

#[test]
fn registrations_beyond_the_home_capacity_get_lack_of_resources() {
    let mut c = quiet_config();
    c.limits.max_home_elements = 2;
    let mut h = Harness::new(c);
    h.connect(1);
    h.connect(2);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.register_ok(2, "web", element(2, 2, Policy::RoundRobin));
    assert_eq!(
        reg_cause(&h.register(2, "api", element(2, 3, Policy::RoundRobin))),
        Some(CauseCode::LackOfResources)
    );
    // Re-registrations of elements already here still go through.
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    // A place freed is a place taken.
    h.disconnect(1);
    h.register_ok(2, "api", element(2, 3, Policy::RoundRobin));
}
