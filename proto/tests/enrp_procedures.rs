//! ENRP procedures (RFC 5353) of the registrar core, in an operation scope held in memory with a
//! fake clock: start-up with a mentor, handle updates, chunked download, audits, takeovers and
//! their races, and bad input.

mod enrp_support;

use enrp_support::*;
use rserpool_proto::config::IdentityRule;
use rserpool_proto::core::SyncState;
use rserpool_proto::message::{AsapMessage, EnrpBody, EnrpMessage, UpdateAction};
use rserpool_proto::types::{CauseCode, ErrorCause, Policy, RegistrarId};
use rserpool_proto::wire::{decode_enrp, encode_enrp};

fn rr() -> Policy {
    Policy::RoundRobin
}

fn accepted(m: &AsapMessage) -> bool {
    matches!(m, AsapMessage::RegistrationResponse { reject: false, .. })
}

/// Three registrars started together, `per` elements registered at each.
fn populated(per: u32) -> Scope {
    let mut s = Scope::new(3, |i| scope_config(3, i));
    s.run_until(ms(3_000), |s| s.serving_all());
    for i in 0..3 {
        let pe = s.pe_connect(i, 10 + i as u8);
        for k in 0..per {
            let id = 1_000 * (i as u32 + 1) + k;
            let r = s.register(i, pe, "web", element(10 + i as u8, id, rr()));
            assert!(accepted(&r), "{r:?}");
        }
    }
    s.run(ms(100));
    s
}

fn assert_converged(s: &Scope, members: &[usize]) {
    let first = members[0];
    for &i in members {
        assert_eq!(
            s.view(i),
            s.view(first),
            "registrar {i} differs from {first}"
        );
        assert_eq!(s.checksums(i), s.checksums(first), "checksums of {i}");
    }
}

#[test]
fn registrars_started_together_serve_after_the_hunt_and_share_every_registration() {
    let mut s = Scope::new(3, |i| scope_config(3, i));
    assert!(!s.nodes[0].core.serving());
    // Before it serves, a registrar says so instead of answering from an empty handlespace.
    let pe = s.pe_connect(0, 10);
    let r = s.register(0, pe, "web", element(10, 1, rr()));
    match r {
        AsapMessage::RegistrationResponse {
            reject: true,
            error: Some(causes),
            ..
        } => assert_eq!(causes[0].code, CauseCode::LackOfResources),
        other => panic!("{other:?}"),
    }
    let took = s.run_until(ms(3_000), |s| s.serving_all());
    assert!(took < ms(1_500), "start-up took {took:?}");
    for i in 0..3 {
        assert_eq!(s.nodes[i].core.sync_state(), Some(SyncState::Ready));
        assert_eq!(s.nodes[i].core.enrp_peers(s.now).len(), 2, "registrar {i}");
    }
    let mut s = populated(10);
    assert_eq!(s.view(0).len(), 30);
    assert_converged(&s, &[0, 1, 2]);
    // Owners as registered.
    let owners: std::collections::BTreeSet<u32> = s.view(2).iter().map(|e| e.2).collect();
    assert_eq!(owners, [100, 101, 102].into_iter().collect());
    // A deregistration and an update reach everyone.
    s.deregister(1, 1 + 1, "web", 2_000);
    s.run(ms(50));
    assert_eq!(s.view(0).len(), 29);
    assert_converged(&s, &[0, 1, 2]);
}

#[test]
fn a_late_registrar_downloads_the_handlespace_in_bounded_chunks() {
    let mut s = populated(100);
    let mut c = scope_config(4, 3);
    c.enrp.max_elements_per_table_response = 128;
    let late = s.add(c);
    // The existing registrars learn the newcomer from its Presence.
    let took = s.run_until(ms(3_000), |s| s.nodes[late].core.serving());
    assert!(took < ms(1_000), "download took {took:?}");
    assert_eq!(s.view(late).len(), 300);
    assert_converged(&s, &[0, 1, 2, late]);
    let mentor_sent = (0..3)
        .map(|i| s.nodes[i].core.enrp_stats().table_responses_sent)
        .sum::<u64>();
    assert!(
        mentor_sent >= 3,
        "300 elements at most 128 per response: {mentor_sent} responses"
    );
}

#[test]
fn a_response_larger_than_the_byte_bound_is_cut_smaller() {
    let mut s = Scope::new(2, |i| {
        let mut c = scope_config(2, i);
        c.enrp.max_table_response_bytes = 512;
        c
    });
    s.run_until(ms(3_000), |s| s.serving_all());
    let pe = s.pe_connect(0, 10);
    for k in 0..40 {
        assert!(accepted(&s.register(
            0,
            pe,
            "web",
            element(10, 1 + k, rr())
        )));
    }
    s.run(ms(50));
    let late = s.add({
        let mut c = scope_config(3, 2);
        c.enrp.peers = vec![std::net::SocketAddr::new(reg_ip(0), ENRP_PORT)];
        c
    });
    s.run_until(ms(3_000), |s| s.nodes[late].core.serving());
    assert_eq!(s.view(late).len(), 40);
    let biggest = s.nodes[0]
        .enrp_out
        .iter()
        .filter_map(|(_, b)| {
            let m = decode_enrp(b).ok()?.message;
            matches!(m.body, EnrpBody::HandleTableResponse { .. }).then_some(b.len())
        })
        .max()
        .unwrap();
    assert!(biggest <= 512, "a response of {biggest} bytes");
}

#[test]
fn a_registrar_alone_serves_after_the_mentor_hunt() {
    let mut s = Scope::new(1, |_| {
        let mut c = scope_config(1, 0);
        c.enrp.peers = vec![std::net::SocketAddr::new(reg_ip(5), ENRP_PORT)];
        c
    });
    let took = s.run_until(ms(5_000), |s| s.serving_all());
    assert!(took >= ms(1_000) && took < ms(1_100), "{took:?}");
}

#[test]
fn a_dead_registrar_is_taken_over_and_no_element_leaves_any_handlespace() {
    let mut s = populated(20);
    let removals_before: Vec<usize> = (0..3).map(|i| s.removals(i)).collect();
    s.down.insert(2);
    let took = s.run_until(ms(5_000), |s| {
        (0..2).all(|i| s.view(i).iter().all(|e| e.2 != 102))
    });
    // Detection: last heard (600) + no response (400), ticks of about 200.
    assert!(took < ms(1_800), "takeover took {took:?}");
    assert_converged(&s, &[0, 1]);
    assert_eq!(s.view(0).len(), 60, "every element keeps its place");
    for (i, before) in removals_before.iter().enumerate().take(2) {
        assert_eq!(s.removals(i), *before, "registrar {i} removed an element");
    }
    // Exactly one survivor became their home.
    let new_owners: std::collections::BTreeSet<u32> = s
        .view(0)
        .iter()
        .filter(|e| (3_000..4_000).contains(&e.1))
        .map(|e| e.2)
        .collect();
    assert_eq!(new_owners.len(), 1, "{new_owners:?}");
    let completed: u64 = (0..2)
        .map(|i| s.nodes[i].core.enrp_stats().takeovers_completed)
        .sum();
    assert_eq!(completed, 1);
    assert!(
        s.nodes[0]
            .core
            .enrp_peers(s.now)
            .iter()
            .all(|p| p.id != RegistrarId(102))
    );
}

/// RFC 5352 3.6 / rsplib: after a takeover the new home tells each element with an Endpoint
/// Keep-Alive with the H flag. An element over SCTP accepts an association on its ASAP
/// endpoint, so the registrar asks for one (`Action::Connect`) and, once it is up, sends the
/// Keep-Alive on it; the element then answers its new home's keep-alives and stays.
#[test]
fn a_takeover_connects_to_sctp_elements_and_tells_them_their_new_home() {
    let mut s = Scope::new(2, |i| scope_config(2, i));
    s.run_until(ms(3_000), |s| s.serving_all());
    let pe_addr: std::net::IpAddr = "198.18.1.50".parse().unwrap();
    let pe = s.pe_connect_sctp(1, &[pe_addr], 7_000);
    let mut e = element(50, 0x55, rr());
    e.home_registrar = RegistrarId(0);
    assert!(accepted(&s.register(1, pe, "sctp", e)));
    s.run_until(ms(2_000), |s| s.view(0).len() == 1);
    s.down.insert(1);
    s.run_until(ms(5_000), |s| s.view(0).iter().all(|e| e.2 == 100));
    let asked: Vec<_> = s.nodes[0].connects.clone();
    assert_eq!(asked.len(), 1, "one association asked for: {asked:?}");
    assert!(
        matches!(&asked[0], rserpool_proto::types::TransportAddress::Sctp { port: 7_000, addrs, .. } if addrs.contains(&pe_addr)),
        "{asked:?}"
    );
    // The association comes up; the kernel lists the element's addresses in its own order.
    let other: std::net::IpAddr = "10.9.9.9".parse().unwrap();
    let assoc = s.pe_connect_sctp(0, &[other, pe_addr], 7_000);
    let told = s.nodes[0].asap_out.get(&assoc).cloned().unwrap_or_default();
    assert!(
        told.iter().any(
            |m| matches!(m, AsapMessage::EndpointKeepAlive { home: true, id, .. } if id.0 == 0x55)
        ),
        "no Keep-Alive with H on the new association: {told:?}"
    );
    // It answers keep-alives there: it stays well past the takeover grace (5 s).
    s.run(ms(12_000));
    assert_eq!(s.view(0).len(), 1, "the element left after its takeover");
}

#[test]
fn two_initiators_of_one_takeover_leave_it_to_the_lower_identifier() {
    let mut s = populated(5);
    s.down.insert(2);
    s.run(ms(3_000));
    // Both survivors judge the target at the same tick (same timers): both start, the higher
    // one (101) gives up when it sees 100's Init Takeover; 100 completes.
    let started: Vec<u64> = (0..2)
        .map(|i| s.nodes[i].core.enrp_stats().takeovers_started)
        .collect();
    let completed: Vec<u64> = (0..2)
        .map(|i| s.nodes[i].core.enrp_stats().takeovers_completed)
        .collect();
    assert!(started.iter().sum::<u64>() >= 1);
    assert_eq!(completed.iter().sum::<u64>(), 1, "{completed:?}");
    if started == vec![1, 1] {
        assert_eq!(completed, vec![1, 0], "the lower id (100) wins");
    }
    assert_converged(&s, &[0, 1]);
    assert!(s.view(0).iter().all(|e| e.2 != 102));
}

#[test]
fn initiators_that_missed_each_other_settle_on_one_takeover() {
    let mut s = populated(3);
    s.down.insert(2);
    // 100 and 101 both judge 102 dead while they cannot hear each other: both start, and each
    // one's Init Takeover is lost.
    s.run(ms(700));
    s.cut.insert((0, 1));
    s.run(ms(700));
    assert_eq!(s.nodes[0].core.enrp_stats().takeovers_started, 1);
    assert_eq!(s.nodes[1].core.enrp_stats().takeovers_started, 1);
    s.cut.clear();
    // At expiry both ask again; now the lower id (100) goes on and 101 acknowledges.
    s.run(ms(3_000));
    assert_eq!(s.nodes[0].core.enrp_stats().takeovers_completed, 1);
    assert_eq!(s.nodes[1].core.enrp_stats().takeovers_completed, 0);
    assert!(s.nodes[1].core.enrp_stats().takeovers_cancelled >= 1);
    assert_converged(&s, &[0, 1]);
    assert!(
        s.view(1)
            .iter()
            .filter(|e| e.1 >= 3_000)
            .all(|e| e.2 == 100)
    );
    assert_eq!(s.view(1).len(), 9);
}

#[test]
fn a_slow_target_that_answers_cancels_its_takeover() {
    let mut s = populated(3);
    // 102 falls silent long enough to be asked for a Presence, not long enough to be judged.
    s.cut.insert((0, 2));
    s.cut.insert((1, 2));
    s.run(ms(700));
    s.cut.clear();
    s.run(ms(2_000));
    let st: Vec<_> = (0..3).map(|i| s.nodes[i].core.enrp_stats()).collect();
    let started: u64 = st.iter().map(|x| x.takeovers_started).sum();
    assert_eq!(started, 0, "{st:?}");
    assert!(
        s.view(0)
            .iter()
            .filter(|e| e.1 >= 3_000)
            .all(|e| e.2 == 102)
    );
    assert_converged(&s, &[0, 1, 2]);
}

#[test]
fn a_takeover_of_a_registrar_others_still_hear_is_not_acknowledged_and_is_cancelled() {
    let mut s = populated(3);
    // Only 100 loses 102; 101 still hears it and refuses to agree.
    s.cut.insert((0, 2));
    s.run(ms(1_300));
    assert_eq!(s.nodes[0].core.enrp_stats().takeovers_started, 1);
    assert_eq!(s.nodes[0].core.enrp_stats().takeovers_completed, 0);
    // The link comes back: 102's next Presence cancels the takeover.
    s.cut.clear();
    s.run(ms(3_000));
    let st0 = s.nodes[0].core.enrp_stats();
    assert_eq!(st0.takeovers_completed, 0, "{st0:?}");
    assert!(st0.takeovers_cancelled >= 1);
    assert!(
        s.view(0)
            .iter()
            .filter(|e| e.1 >= 3_000)
            .all(|e| e.2 == 102)
    );
    assert_converged(&s, &[0, 1, 2]);
}

#[test]
fn a_partitioned_registrar_comes_back_and_both_sides_converge_without_losing_elements() {
    let mut s = populated(5);
    // 102 is cut off from everyone for long enough to be judged.
    s.cut.insert((0, 2));
    s.cut.insert((1, 2));
    s.run(ms(2_500));
    // The majority side took 102's elements over; the lone side, hearing nobody, declined.
    assert!(s.view(0).iter().all(|e| e.2 != 102));
    assert!(s.view(2).iter().any(|e| e.2 == 100));
    assert!(s.nodes[2].core.enrp_stats().takeovers_declined >= 1);
    assert_eq!(s.nodes[2].core.enrp_stats().takeovers_completed, 0);
    // Meanwhile 100's pool changes.
    s.deregister(0, 1, "web", 1_000);
    s.cut.clear();
    // The element deregistered meanwhile goes from the lone side by its audit of 100.
    s.run_until(ms(10_000), |s| {
        s.view(0) == s.view(1)
            && s.view(1) == s.view(2)
            && s.checksums(0) == s.checksums(2)
            && s.view(0).len() == 14
    });
    assert_converged(&s, &[0, 1, 2]);
    assert_eq!(s.view(2).len(), 14);
    // Each element is owned by the registrar that keeps it alive.
    for (_, id, owner) in s.view(1) {
        assert_eq!(owner, 100 + id / 1_000 - 1, "element {id}");
    }
    // On the side that kept the majority nothing was removed but the deregistered element: the
    // lone side's takeovers were undone without a removal (a balancer there sees no change).
    let removed: Vec<String> = s.nodes[1]
        .events
        .iter()
        .filter_map(|e| match e {
            rserpool_proto::core::HandlespaceEvent::ElementRemoved { id, reason, .. } => {
                Some(format!("{id} {reason:?}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(removed.len(), 1, "{removed:?}");
}

#[test]
fn an_audit_repairs_a_registrar_that_missed_updates() {
    let mut s = populated(10);
    // Registrar 2 is cut off from 0 while 0's pool changes; it still talks to 1. Short enough
    // that nobody is taken over.
    s.cut.insert((0, 2));
    s.deregister(0, 1, "web", 1_000);
    s.deregister(0, 1, "web", 1_001);
    let pe = 1;
    assert!(accepted(&s.register(
        0,
        pe,
        "web",
        element(10, 1_500, rr())
    )));
    s.run(ms(300));
    assert_ne!(s.view(2), s.view(0));
    s.cut.clear();
    s.run_until(ms(3_000), |s| s.view(2) == s.view(0));
    assert_converged(&s, &[0, 1, 2]);
    let st = s.nodes[2].core.enrp_stats();
    assert!(st.audits >= 1, "{st:?}");
    assert_eq!(st.audit_purged, 2);
}

#[test]
fn bad_enrp_input_gets_the_rfc_answer_and_changes_nothing() {
    let mut s = populated(2);
    let before = s.view(0);
    let sums = s.checksums(0);
    // Garbage: an ERROR back over the connection, counted.
    s.inject(0, 77, vec![0x01, 0x00, 0x00, 0x08, 0xde, 0xad, 0xbe, 0xef]);
    let st = s.nodes[0].core.enrp_stats();
    assert_eq!(st.malformed, 1);
    // A Handle Update for pool "web" with another policy, from a real peer (101).
    let mut el = element(11, 9_999, Policy::LeastUsed { load: 0 });
    el.home_registrar = RegistrarId(101);
    let upd = EnrpMessage {
        sender: RegistrarId(101),
        receiver: RegistrarId(100),
        body: EnrpBody::HandleUpdate {
            takeover_suggested: false,
            action: UpdateAction::AddPe,
            pool_handle: ph("web"),
            element: el,
        },
    };
    s.inject(0, 78, encode_enrp(&upd).unwrap());
    let errs: Vec<ErrorCause> = s.nodes[0]
        .enrp_out
        .iter()
        .filter_map(|(_, b)| match decode_enrp(b).ok()?.message.body {
            EnrpBody::Error { causes } => Some(causes),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        errs.iter()
            .any(|c| c.code == CauseCode::InconsistentPoolingPolicy),
        "{errs:?}"
    );
    assert_eq!(s.nodes[0].core.enrp_stats().handle_updates_refused, 1);
    // A Takeover Server for a registrar nobody knows moves nothing.
    let tk = EnrpMessage {
        sender: RegistrarId(101),
        receiver: RegistrarId(100),
        body: EnrpBody::TakeoverServer {
            target: RegistrarId(4242),
        },
    };
    s.inject(0, 79, encode_enrp(&tk).unwrap());
    // A registrar that claims registrar 100's own id from another address.
    let clash = EnrpMessage {
        sender: RegistrarId(100),
        receiver: RegistrarId(0),
        body: EnrpBody::Presence {
            reply_required: true,
            checksum: 0,
            info: None,
        },
    };
    s.inject(0, 80, encode_enrp(&clash).unwrap());
    assert_eq!(s.nodes[0].core.enrp_stats().id_collisions, 1);
    // A Handle Update from a registrar that never said who it is.
    let mut el = element(12, 7_777, rr());
    el.home_registrar = RegistrarId(555);
    let stranger = EnrpMessage {
        sender: RegistrarId(555),
        receiver: RegistrarId(100),
        body: EnrpBody::HandleUpdate {
            takeover_suggested: false,
            action: UpdateAction::AddPe,
            pool_handle: ph("web"),
            element: el,
        },
    };
    s.inject(0, 81, encode_enrp(&stranger).unwrap());
    // A deletion of 101's element sent by 102 (not its owner).
    let el = s.nodes[0]
        .core
        .handlespace()
        .element(&ph("web"), rserpool_proto::types::PeId(2_000))
        .unwrap()
        .element()
        .clone();
    let del = EnrpMessage {
        sender: RegistrarId(102),
        receiver: RegistrarId(100),
        body: EnrpBody::HandleUpdate {
            takeover_suggested: false,
            action: UpdateAction::DelPe,
            pool_handle: ph("web"),
            element: el,
        },
    };
    s.inject(0, 82, encode_enrp(&del).unwrap());
    s.settle();
    assert_eq!(s.view(0), before);
    assert_eq!(s.checksums(0), sums);
    // And the scope still works.
    s.run(ms(1_000));
    assert_converged(&s, &[0, 1, 2]);
}

#[test]
fn a_flood_of_garbage_is_answered_at_a_bounded_rate() {
    let mut s = populated(1);
    let sent_before = s.nodes[0].enrp_out.len();
    for k in 0..10_000u64 {
        s.inject(0, 1_000 + k, vec![0x01, 0x00, 0x00, 0x08, 0, 0, 0, 0]);
    }
    let errors = s.nodes[0].enrp_out.len() - sent_before;
    assert!(errors <= 60, "{errors} ERRORs for 10,000 bad messages");
    assert_eq!(s.nodes[0].core.enrp_stats().malformed, 10_000);
    s.run(ms(500));
    assert_converged(&s, &[0, 1, 2]);
}

#[test]
fn own_multicast_presence_is_ignored() {
    let mut s = Scope::new(2, |i| {
        let mut c = scope_config(2, i);
        c.enrp.peers.clear();
        c.enrp.multicast_group = Some("239.0.0.51:9901".parse().unwrap());
        c
    });
    let took = s.run_until(ms(3_000), |s| s.serving_all());
    assert!(took < ms(1_000), "{took:?}");
    assert_eq!(s.nodes[0].core.enrp_peers(s.now).len(), 1);
    assert_eq!(s.nodes[0].core.enrp_stats().id_collisions, 0);
}

#[test]
fn registrars_outside_the_allow_list_are_not_heard() {
    // Registrar 2 is outside 0's and 1's scope (allow_registrar: 198.18.0.1-2 only).
    let mut s = Scope::new(3, |i| {
        let mut c = scope_config(3, i);
        if i < 2 {
            c.enrp.peers.retain(|p| p.ip() != reg_ip(2));
            c.security.allow_registrar = Some(vec![
                "198.18.0.1/32".parse().unwrap(),
                "198.18.0.2/32".parse().unwrap(),
            ]);
        }
        c
    });
    s.run(ms(2_000));
    assert_the_third_is_not_heard(&mut s);
}

#[test]
fn a_table_response_beyond_the_handlespace_limits_fills_it_to_the_limit_and_no_further() {
    // The mentor holds 300 elements; the newcomer may hold 200.
    let mut s = populated(100);
    let mut c = scope_config(4, 3);
    c.enrp.peers = vec![std::net::SocketAddr::new(reg_ip(0), ENRP_PORT)];
    c.limits.max_elements = 200;
    let late = s.add(c);
    s.run_until(ms(3_000), |s| s.nodes[late].core.serving());
    assert_eq!(s.view(late).len(), 200);
    let st = s.nodes[late].core.enrp_stats();
    assert_eq!(st.table_elements_refused, 100, "{st:?}");
    // The newcomer still serves its own pool elements... and the others are untouched.
    assert_converged(&s, &[0, 1, 2]);
    assert_eq!(s.view(0).len(), 300);
}

#[test]
fn a_peer_flooding_presence_and_handle_updates_changes_nothing_registered() {
    let mut s = populated(5);
    let before = s.view(0);
    // Registrar 101 is real; a flood of valid Handle Updates for new elements "owned" by it, and
    // of Presences with wrong checksums, from its address.
    for k in 0..2_000u32 {
        let mut el = element(11, 50_000 + k, rr());
        el.home_registrar = RegistrarId(101);
        let m = EnrpMessage {
            sender: RegistrarId(101),
            receiver: RegistrarId(100),
            body: if k % 2 == 0 {
                EnrpBody::Presence {
                    reply_required: true,
                    checksum: k as u16,
                    info: None,
                }
            } else {
                EnrpBody::HandleUpdate {
                    takeover_suggested: false,
                    action: UpdateAction::DelPe,
                    pool_handle: ph("web"),
                    element: s.nodes[0]
                        .core
                        .handlespace()
                        .element(&ph("web"), rserpool_proto::types::PeId(1_000 + k % 5))
                        .unwrap()
                        .element()
                        .clone(),
                }
            },
        };
        s.inject(0, 5_000 + k as u64, encode_enrp(&m).unwrap());
    }
    // A peer may not delete another registrar's elements, nor this one's; the audits its wrong
    // checksums cause repair nothing because nothing is wrong.
    s.run(ms(1_000));
    assert_eq!(s.view(0), before);
    assert_converged(&s, &[0, 1, 2]);
}

#[test]
fn an_element_that_re_registers_elsewhere_moves_at_once_everywhere() {
    let mut s = populated(3);
    // Registrar 100 dies; its pool element 1000 re-registers at 101 right away (as rsplb's PE
    // side does when its connection breaks), long before 100 is judged dead.
    s.down.insert(0);
    let pe = s.pe_connect(1, 10);
    assert!(accepted(&s.register(
        1,
        pe,
        "web",
        element(10, 1_000, rr())
    )));
    s.run(ms(20));
    let owner = |s: &Scope, i: usize| s.view(i).into_iter().find(|e| e.1 == 1_000).map(|e| e.2);
    assert_eq!(
        owner(&s, 2),
        Some(101),
        "the third registrar follows the Handle Update"
    );
    let st = s.nodes[2].core.enrp_stats();
    assert_eq!((st.audits, st.ownership_conflicts), (0, 0), "{st:?}");
    s.run(ms(3_000));
    assert_converged(&s, &[1, 2]);
    assert_eq!(owner(&s, 1), Some(101));
}

#[test]
fn registrars_whose_identity_may_not_peer_are_not_heard() {
    // Registrar 2 authenticates as pr2.scope.test, which 0's and 1's identity rules do not let
    // peer (the same scope as above, decided by certificate instead of address).
    let mut s = Scope::new(3, |i| {
        let mut c = scope_config(3, i);
        if i < 2 {
            c.enrp.peers.retain(|p| p.ip() != reg_ip(2));
            c.security.identities = Some(vec![
                IdentityRule {
                    identity: "PR0.scope.test".into(), // identities ignore ASCII case
                    registrar: true,
                    ..IdentityRule::default()
                },
                IdentityRule {
                    identity: "pr1.*".into(),
                    registrar: true,
                    ..IdentityRule::default()
                },
                IdentityRule {
                    identity: "pr2.scope.test".into(),
                    resolve: true, // a pool user, not a registrar
                    ..IdentityRule::default()
                },
            ]);
        }
        c
    });
    s.run(ms(2_000));
    assert_the_third_is_not_heard(&mut s);
}

/// Registrars 0 and 1 of a three-registrar scope know only each other and refused registrar
/// 2's messages; its Handle Updates change nothing either.
fn assert_the_third_is_not_heard(s: &mut Scope) {
    for i in 0..2 {
        let peers: Vec<u32> = s.nodes[i]
            .core
            .enrp_peers(s.now)
            .iter()
            .map(|p| p.id.0)
            .collect();
        assert_eq!(peers, vec![100 + (1 - i as u32)], "registrar {i}");
        assert!(s.nodes[i].core.enrp_stats().refused > 0);
    }
    let pe = s.pe_connect(2, 30);
    assert!(accepted(&s.register(2, pe, "web", element(30, 1, rr()))));
    s.run(ms(200));
    assert!(s.view(0).is_empty());
}
