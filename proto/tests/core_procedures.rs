//! Registrar procedures (RFC 5352) on the I/O-free core with a fake clock.

mod core_support;

use core_support::*;
use rserpool_proto::core::{Action, HandlespaceEvent, RemovalReason};
use rserpool_proto::message::AsapMessage;
use rserpool_proto::types::{CauseCode, PeId, Policy, TransportAddress, TransportUse};

#[test]
fn registration_makes_us_home_and_records_the_peer_as_asap_transport() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 7, Policy::RoundRobin));
    let entry = h.core.handlespace().element(&ph("web"), PeId(7)).unwrap();
    assert_eq!(entry.element().home_registrar, ID);
    assert_eq!(
        entry.element().asap_transport,
        Some(TransportAddress::Tcp {
            port: 40_001,
            transport_use: TransportUse::DataOnly,
            addr: peer_ip(1),
        })
    );
    let events = h.take_events();
    assert!(matches!(
        &events[..],
        [HandlespaceEvent::ElementAdded { pool, element }]
            if *pool == ph("web") && element.id == PeId(7) && element.home_registrar == ID
    ));
}

#[test]
fn registration_rejections_carry_their_cause() {
    let mut h = Harness::quiet();
    h.connect(1);
    // Identifier 0 and a non-positive life are invalid values.
    let m = h.register(1, "web", element(1, 0, Policy::RoundRobin));
    assert_eq!(reg_cause(&m), Some(CauseCode::InvalidValues));
    let mut e = element(1, 5, Policy::RoundRobin);
    e.registration_life_ms = 0;
    assert_eq!(
        reg_cause(&h.register(1, "web", e)),
        Some(CauseCode::InvalidValues)
    );
    // Another host's address: refused on purpose.
    let foreign = element_at("203.0.113.9".parse().unwrap(), 5, Policy::RoundRobin);
    assert_eq!(
        reg_cause(&h.register(1, "web", foreign)),
        Some(CauseCode::RejectedSecurity)
    );
    assert!(h.core.handlespace().is_empty());
    assert!(h.take_events().is_empty());
}

#[test]
fn foreign_addresses_are_accepted_when_configured_and_wildcards_are_filled() {
    let mut c = quiet_config();
    c.security.allow_foreign_addresses = true;
    let mut h = Harness::new(c);
    h.connect(1);
    h.register_ok(
        1,
        "web",
        element_at("203.0.113.9".parse().unwrap(), 5, Policy::RoundRobin),
    );
    // 0.0.0.0 = "my address": the connection's.
    h.register_ok(
        1,
        "web",
        element_at("0.0.0.0".parse().unwrap(), 6, Policy::RoundRobin),
    );
    let e = h.core.handlespace().element(&ph("web"), PeId(6)).unwrap();
    assert_eq!(e.element().user_transport.addrs(), &[peer_ip(1)]);
}

#[test]
fn reregistration_updates_policy_values() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.connect(2);
    h.register_ok(1, "lu", element(1, 1, Policy::LeastUsed { load: 10 }));
    h.register_ok(2, "lu", element(2, 2, Policy::LeastUsed { load: 20 }));
    h.take_events();
    assert_eq!(hr_ids(&h.resolve(1, "lu", Some(1))), vec![1]);
    // Element 1 reports a high load: the least used is now 2.
    h.register_ok(1, "lu", element(1, 1, Policy::LeastUsed { load: 90 }));
    assert!(matches!(
        &h.take_events()[..],
        [HandlespaceEvent::ElementUpdated { element, .. }]
            if element.policy == Policy::LeastUsed { load: 90 }
    ));
    assert_eq!(hr_ids(&h.resolve(1, "lu", Some(1))), vec![2]);
    assert_eq!(h.ids("lu"), vec![1, 2]);
}

#[test]
fn another_policy_type_in_a_shared_pool_is_inconsistent() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.connect(2);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.register_ok(2, "web", element(2, 2, Policy::RoundRobin));
    let m = h.register(1, "web", element(1, 1, Policy::LeastUsed { load: 0 }));
    assert_eq!(reg_cause(&m), Some(CauseCode::InconsistentPoolingPolicy));
    // The element keeps its registration.
    let e = h.core.handlespace().element(&ph("web"), PeId(1)).unwrap();
    assert_eq!(e.element().policy, Policy::RoundRobin);
}

#[test]
fn a_duplicate_identifier_from_another_peer_is_refused_and_the_first_stays() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.connect(2);
    h.register_ok(1, "web", element(1, 9, Policy::RoundRobin));
    let m = h.register(2, "web", element(2, 9, Policy::RoundRobin));
    assert_eq!(reg_cause(&m), Some(CauseCode::NonUniquePeIdentifier));
    let e = h.core.handlespace().element(&ph("web"), PeId(9)).unwrap();
    assert_eq!(e.element().user_transport.addrs(), &[peer_ip(1)]);
}

#[test]
fn deregistration() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.connect(2);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.take_events();
    let dereg = |pool: &str, id: u32| AsapMessage::Deregistration {
        pool_handle: ph(pool),
        id: PeId(id),
    };
    // Someone else's element: not removed, refused.
    h.send(2, &dereg("web", 1));
    assert!(matches!(
        &h.take_sent(2)[..],
        [AsapMessage::DeregistrationResponse { error: Some(c), .. }]
            if c[0].code == CauseCode::RejectedSecurity
    ));
    assert_eq!(h.ids("web"), vec![1]);
    // Unknown: OK, as rsplib.
    h.send(1, &dereg("nope", 3));
    assert!(matches!(
        &h.take_sent(1)[..],
        [AsapMessage::DeregistrationResponse { error: None, id, .. }] if *id == PeId(3)
    ));
    h.send(1, &dereg("web", 1));
    assert!(matches!(
        &h.take_sent(1)[..],
        [AsapMessage::DeregistrationResponse { error: None, .. }]
    ));
    assert!(h.core.handlespace().is_empty());
    assert_eq!(
        h.take_events(),
        vec![HandlespaceEvent::ElementRemoved {
            pool: ph("web"),
            id: PeId(1),
            reason: RemovalReason::Deregistered
        }]
    );
    // No keep-alive for it any more.
    h.advance(ms(2000));
    assert!(h.take_sent(1).is_empty());
}

#[test]
fn handle_resolution_item_counts_and_unknown_pool() {
    let mut c = quiet_config();
    c.limits.max_elements_per_peer = 1000;
    c.rate_limits.registration.rate_per_s = 0;
    let mut h = Harness::new(c);
    h.connect(1);
    for id in 1..=200 {
        h.register_ok(1, "big", element(1, id, Policy::RoundRobin));
    }
    h.connect(2);
    assert_eq!(hr_ids(&h.resolve(2, "big", None)).len(), 3, "default 3");
    assert_eq!(hr_ids(&h.resolve(2, "big", Some(0))).len(), 3);
    assert_eq!(hr_ids(&h.resolve(2, "big", Some(10))).len(), 10);
    assert_eq!(hr_ids(&h.resolve(2, "big", Some(u32::MAX))).len(), 128);
    let all = hr_ids(&h.resolve(2, "big", Some(128)));
    let mut dedup = all.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 128, "no duplicates");
    // The response carries the pool's policy; elements carry no ASAP transport.
    match h.resolve(2, "big", Some(2)) {
        AsapMessage::HandleResolutionResponse {
            policy, elements, ..
        } => {
            assert_eq!(policy, Some(Policy::RoundRobin));
            assert!(elements.iter().all(|e| e.asap_transport.is_none()));
            assert!(elements.iter().all(|e| e.home_registrar == ID));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        hr_cause(&h.resolve(2, "nothing", None)),
        Some(CauseCode::UnknownPoolHandle)
    );
}

#[test]
fn keepalive_sent_acked_and_timeout_removes() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.take_events();
    // Nothing before the interval.
    h.advance(ms(249));
    assert!(h.take_sent(1).is_empty());
    h.advance(ms(1));
    let sent = h.take_sent(1);
    assert_eq!(
        sent,
        vec![AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: ID,
            pool_handle: ph("web"),
            id: PeId(1)
        }]
    );
    // Acked: still there long after, with one keep-alive per interval.
    h.send(
        1,
        &AsapMessage::EndpointKeepAliveAck {
            pool_handle: ph("web"),
            id: PeId(1),
        },
    );
    h.advance_acking(ms(2000), 1);
    assert_eq!(h.ids("web"), vec![1]);
    let stats = h.core.stats();
    assert_eq!(stats.keepalives_sent, 9, "one per 250 ms over 2.25 s");
    // Silent from now on: gone after the next keep-alive's timeout.
    // The last ack answered the keep-alive at 2250 ms; the next goes out at 2500 ms and its
    // deadline is 2750 ms.
    h.advance(ms(250));
    assert_eq!(h.take_sent(1).len(), 1);
    h.advance(ms(249));
    assert_eq!(h.ids("web"), vec![1]);
    h.advance(ms(1));
    assert_eq!(h.ids("web"), Vec::<u32>::new());
    assert_eq!(
        h.take_events(),
        vec![HandlespaceEvent::ElementRemoved {
            pool: ph("web"),
            id: PeId(1),
            reason: RemovalReason::KeepAliveTimeout
        }]
    );
}

#[test]
fn an_ack_from_another_peer_does_not_keep_an_element_alive() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.connect(2);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.advance(ms(250));
    h.send(
        2,
        &AsapMessage::EndpointKeepAliveAck {
            pool_handle: ph("web"),
            id: PeId(1),
        },
    );
    h.advance(ms(260));
    assert!(h.core.handlespace().is_empty());
}

#[test]
fn reregistration_counts_as_keepalive_ack() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    for _ in 0..10 {
        h.advance(ms(250)); // keep-alive out
        h.take_sent(1);
        h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    }
    assert_eq!(h.ids("web"), vec![1]);
}

#[test]
fn registration_life_expires_even_with_keepalives() {
    let mut h = Harness::quiet();
    h.connect(1);
    let mut e = element(1, 1, Policy::RoundRobin);
    e.registration_life_ms = 1000;
    h.register_ok(1, "web", e.clone());
    h.advance_acking(ms(900), 1);
    // Re-registration renews the life.
    h.register_ok(1, "web", e);
    h.advance_acking(ms(900), 1);
    assert_eq!(h.ids("web"), vec![1]);
    h.advance_acking(ms(200), 1);
    assert!(h.core.handlespace().is_empty());
    assert!(h.take_events().contains(&HandlespaceEvent::ElementRemoved {
        pool: ph("web"),
        id: PeId(1),
        reason: RemovalReason::Expired
    }));
}

#[test]
fn endpoint_unreachable_threshold() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.take_events();
    let eu = AsapMessage::EndpointUnreachable {
        pool_handle: ph("web"),
        id: PeId(1),
    };
    for pu in [2, 3] {
        h.connect(pu);
        h.send(pu, &eu);
        assert!(h.take_sent(pu).is_empty(), "no answer to a report");
    }
    assert_eq!(h.ids("web"), vec![1]);
    h.connect(4);
    h.send(4, &eu);
    assert!(h.core.handlespace().is_empty());
    assert_eq!(
        h.take_events(),
        vec![HandlespaceEvent::ElementRemoved {
            pool: ph("web"),
            id: PeId(1),
            reason: RemovalReason::Unreachable
        }]
    );
    // A report about an unknown element changes nothing.
    h.send(4, &eu);
    assert!(h.take_sent(4).is_empty());
}

#[test]
fn one_pu_repeating_itself_cannot_evict_an_element() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.connect(2);
    let eu = AsapMessage::EndpointUnreachable {
        pool_handle: ph("web"),
        id: PeId(1),
    };
    for _ in 0..10 {
        h.send(2, &eu);
    }
    assert_eq!(h.ids("web"), vec![1]);
    // With rsplib's counting, three reports from anyone remove it.
    let mut c = quiet_config();
    c.limits.distinct_reporters = false;
    let mut h = Harness::new(c);
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.connect(2);
    for _ in 0..3 {
        h.send(2, &eu);
    }
    assert!(h.core.handlespace().is_empty());
}

#[test]
fn connection_loss_removes_only_that_peers_elements() {
    let mut h = Harness::quiet();
    h.connect(1);
    h.connect(2);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.register_ok(1, "db", element(1, 2, Policy::RoundRobin));
    h.register_ok(2, "web", element(2, 3, Policy::RoundRobin));
    h.take_events();
    h.disconnect(1);
    assert_eq!(h.ids("web"), vec![3]);
    assert_eq!(h.ids("db"), Vec::<u32>::new());
    let mut removed: Vec<_> = h
        .take_events()
        .into_iter()
        .map(|e| match e {
            HandlespaceEvent::ElementRemoved { id, reason, .. } => {
                assert_eq!(reason, RemovalReason::ConnectionLost);
                id.0
            }
            other => panic!("{other:?}"),
        })
        .collect();
    removed.sort();
    assert_eq!(removed, vec![1, 2]);
    // Peer 2 keeps getting keep-alives; nothing goes to peer 1.
    h.advance(ms(250));
    assert_eq!(h.take_sent(2).len(), 1);
    assert!(h.take_sent(1).is_empty());
}

#[test]
fn announce_cadence() {
    let mut c = quiet_config();
    c.announce_interval = Some(std::time::Duration::from_secs(1));
    let mut h = Harness::new(c);
    let mut times = Vec::new();
    let mut at = h.now;
    for _ in 0..20 {
        h.advance(ms(100));
        for a in h.take() {
            if let Action::Announce { bytes } = a {
                let m = rserpool_proto::wire::decode_asap(&bytes).unwrap().message;
                assert_eq!(
                    m,
                    AsapMessage::ServerAnnounce {
                        server_id: ID,
                        transports: vec![]
                    }
                );
                times.push(at);
            }
        }
        at = h.now;
    }
    // Over 2 s: the first at once, then every 875..1125 ms.
    assert!((2..=3).contains(&times.len()), "{}", times.len());
    assert_eq!(times[0], h.t0);
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= ms(800) && gap <= ms(1200), "{gap:?}");
    }
}
