//! Malformed input, floods and limits: each gets its RFC answer, the offender loses its
//! connection only when it persists, and every other peer keeps its service and registrations.

mod core_support;

use core_support::*;
use rserpool_proto::core::{Event, PeerId};
use rserpool_proto::message::AsapMessage;
use rserpool_proto::types::{CauseCode, PeId, Policy};
use rserpool_proto::wire::{encode_asap, frame_length};

/// A message: type, flags, body (Length filled in).
fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![t, 0, 0, 0];
    m.extend_from_slice(body);
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

/// A TLV padded to 4 bytes.
fn tlv(t: u16, v: &[u8]) -> Vec<u8> {
    let mut p = t.to_be_bytes().to_vec();
    p.extend(((4 + v.len()) as u16).to_be_bytes());
    p.extend_from_slice(v);
    while !p.len().is_multiple_of(4) {
        p.push(0);
    }
    p
}

fn hr_with(extra: &[u8]) -> Vec<u8> {
    let mut body = tlv(0x0009, b"web");
    body.extend_from_slice(extra);
    msg(0x05, &body)
}

/// A service the test checks before and after the abuse: peer 1's element in "web".
fn with_service() -> Harness {
    let mut h = Harness::quiet();
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.connect(2); // a well-behaved PU
    h.connect(9); // the offender
    h
}

fn service_intact(h: &mut Harness) {
    assert_eq!(h.ids("web"), vec![1]);
    assert_eq!(hr_ids(&h.resolve(2, "web", None)), vec![1]);
}

fn one_error(h: &mut Harness, peer: u64) -> CauseCode {
    let sent = h.take_sent(peer);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let causes = error_causes(&sent[0]);
    assert_eq!(causes.len(), 1);
    causes[0].code
}

#[test]
fn truncated_header_and_bad_lengths_get_an_unspecified_error() {
    let mut h = with_service();
    for bad in [
        vec![0x05, 0x00], // truncated header
        {
            let mut m = hr_with(&[]);
            m[3] += 8; // Length beyond the data
            m
        },
        {
            let mut m = hr_with(&[]);
            m[3] -= 4; // Length shorter than the parameters
            m
        },
        msg(0x05, &[0x00, 0x09, 0x00, 0x40, b'w']), // TLV longer than the message
        msg(0x05, &[0x00, 0x09, 0x00, 0x02, 0, 0, 0, 0]), // TLV length < 4
    ] {
        h.send_raw(9, bad.clone());
        assert_eq!(one_error(&mut h, 9), CauseCode::Unspecified, "{bad:02x?}");
    }
    service_intact(&mut h);
}

#[test]
fn unknown_message_type_is_reported_with_the_message() {
    let mut h = with_service();
    let m = msg(0x42, &[1, 2, 3, 4]);
    h.send_raw(9, m.clone());
    let sent = h.take_sent(9);
    let causes = error_causes(&sent[0]);
    assert_eq!(causes[0].code, CauseCode::UnrecognizedMessage);
    assert_eq!(causes[0].info, m);
    service_intact(&mut h);
}

#[test]
fn unknown_parameters_follow_their_action_bits() {
    let mut h = with_service();
    // 00: stop, discard silently: no answer at all.
    h.send_raw(9, hr_with(&tlv(0x0123, &[1, 2, 3, 4])));
    assert!(h.take_sent(9).is_empty());
    // 01: stop and report: an ERROR, no resolution.
    let p = tlv(0x4123, &[1, 2, 3, 4]);
    h.send_raw(9, hr_with(&p));
    let sent = h.take_sent(9);
    assert_eq!(sent.len(), 1);
    let causes = error_causes(&sent[0]);
    assert_eq!(causes[0].code, CauseCode::UnrecognizedParameter);
    assert_eq!(causes[0].info, p);
    // 10: skip: the resolution is answered, no ERROR.
    h.send_raw(9, hr_with(&tlv(0x8123, &[1, 2, 3, 4])));
    let sent = h.take_sent(9);
    assert_eq!(sent.len(), 1);
    assert_eq!(hr_ids(&sent[0]), vec![1]);
    // 11: skip and report: an ERROR really sent, and the resolution answered.
    let p = tlv(0xc123, &[1, 2, 3, 4]);
    h.send_raw(9, hr_with(&p));
    let sent = h.take_sent(9);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let causes = error_causes(&sent[0]);
    assert_eq!(causes[0].code, CauseCode::UnrecognizedParameter);
    assert_eq!(causes[0].info, p);
    assert_eq!(hr_ids(&sent[1]), vec![1]);
    service_intact(&mut h);
}

#[test]
fn parameter_in_a_message_that_cannot_carry_it() {
    let mut h = with_service();
    // A Cookie in a Handle Resolution.
    h.send_raw(9, hr_with(&tlv(0x000d, b"abcd")));
    assert_eq!(one_error(&mut h, 9), CauseCode::UnrecognizedParameter);
    service_intact(&mut h);
}

#[test]
fn oversize_pool_handle_and_reserved_values() {
    let mut h = with_service();
    h.send_raw(9, msg(0x05, &tlv(0x0009, &[b'x'; 33])));
    assert_eq!(one_error(&mut h, 9), CauseCode::InvalidValues);
    // Empty pool handle.
    h.send_raw(9, msg(0x05, &tlv(0x0009, &[])));
    assert_eq!(one_error(&mut h, 9), CauseCode::InvalidValues);
    // A registration whose TCP transport has transport use 7 (only 0 and 1 exist).
    let good = encode_asap(&AsapMessage::Registration {
        pool_handle: ph("web"),
        element: element(9, 5, Policy::RoundRobin),
    })
    .unwrap();
    let pos = good
        .windows(4)
        .position(|w| w == [0x00, 0x05, 0x00, 0x10])
        .expect("TCP transport TLV");
    let mut bad = good.clone();
    bad[pos + 6..pos + 8].copy_from_slice(&7u16.to_be_bytes());
    h.send_raw(9, bad);
    assert_eq!(one_error(&mut h, 9), CauseCode::InvalidValues);
    assert_eq!(h.ids("web"), vec![1]);
    service_intact(&mut h);
}

#[test]
fn messages_a_registrar_does_not_take_are_unrecognized() {
    let mut h = with_service();
    h.send(
        9,
        &AsapMessage::RegistrationResponse {
            reject: false,
            pool_handle: ph("web"),
            id: PeId(1),
            error: None,
        },
    );
    assert_eq!(one_error(&mut h, 9), CauseCode::UnrecognizedMessage);
    // An ERROR is never answered (no loops).
    h.send(
        9,
        &AsapMessage::Error {
            causes: vec![rserpool_proto::types::ErrorCause::new(
                CauseCode::Unspecified,
            )],
        },
    );
    assert!(h.take_sent(9).is_empty());
    service_intact(&mut h);
}

#[test]
fn a_persistent_garbage_peer_is_disconnected_and_others_keep_service() {
    let mut h = with_service();
    // Peer 9 also registered something; it goes with its connection.
    h.register_ok(9, "other", element(9, 5, Policy::RoundRobin));
    for i in 0..9 {
        h.send_raw(9, vec![0x05, 0x00, 0x00]);
        assert_eq!(one_error(&mut h, 9), CauseCode::Unspecified);
        assert!(h.closed().is_empty(), "closed after {i} errors");
        service_intact(&mut h);
    }
    h.send_raw(9, vec![0x05, 0x00, 0x00]);
    assert_eq!(h.closed(), vec![PeerId(9)]);
    assert_eq!(h.ids("other"), Vec::<u32>::new());
    service_intact(&mut h);
    // Later messages from the closed peer are ignored.
    h.take();
    h.send_raw(9, hr_with(&[]));
    assert!(h.take_sent(9).is_empty());
}

#[test]
fn errors_spread_over_time_do_not_disconnect() {
    let mut h = with_service();
    for _ in 0..30 {
        h.send_raw(9, vec![0xff]);
        h.take_sent(9);
        h.advance_acking(ms(1500), 1);
    }
    assert!(h.closed().is_empty());
    service_intact(&mut h);
}

#[test]
fn framing_error_answers_and_closes() {
    let mut h = with_service();
    let error = frame_length(&[0x05, 0x00, 0x00, 0x02], 65535).unwrap_err();
    h.core.handle_event(
        h.now,
        Event::FramingError {
            peer: PeerId(9),
            error,
        },
    );
    assert_eq!(one_error(&mut h, 9), CauseCode::Unspecified);
    assert_eq!(h.closed(), vec![PeerId(9)]);
    service_intact(&mut h);
}

#[test]
fn registration_flood_is_rate_limited_and_nothing_registered_is_lost() {
    let mut c = quiet_config();
    c.rate_limits.registration.rate_per_s = 10;
    c.rate_limits.registration.burst = 5;
    let mut h = Harness::new(c);
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.connect(9);
    let causes: Vec<_> = (100..200)
        .map(|id| reg_cause(&h.register(9, "flood", element(9, id, Policy::RoundRobin))))
        .collect();
    assert_eq!(causes.iter().filter(|c| c.is_none()).count(), 5);
    assert!(
        causes[5..]
            .iter()
            .all(|c| *c == Some(CauseCode::RejectedSecurity))
    );
    assert_eq!(h.ids("flood").len(), 5);
    h.connect(2);
    service_intact(&mut h);
    // Tokens come back with time.
    h.advance_acking(ms(1000), 9);
    assert_eq!(
        reg_cause(&h.register(9, "flood", element(9, 500, Policy::RoundRobin))),
        None
    );
}

#[test]
fn resolution_flood_gets_unknown_pool_handle_beyond_the_limit() {
    let mut c = quiet_config();
    c.rate_limits.handle_resolution.rate_per_s = 100;
    c.rate_limits.handle_resolution.burst = 10;
    let mut h = Harness::new(c);
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.connect(2);
    h.connect(9);
    let answers: Vec<_> = (0..50)
        .map(|_| hr_cause(&h.resolve(9, "web", None)))
        .collect();
    assert_eq!(answers.iter().filter(|c| c.is_none()).count(), 10);
    assert!(
        answers[10..]
            .iter()
            .all(|c| *c == Some(CauseCode::UnknownPoolHandle))
    );
    // Other PUs are not limited by peer 9's flood.
    service_intact(&mut h);
    assert!(h.core.stats().rate_limited >= 40);
}

#[test]
fn unreachable_flood_from_one_pu_cannot_remove_an_element() {
    let mut c = quiet_config();
    c.rate_limits.endpoint_unreachable.rate_per_s = 1;
    c.rate_limits.endpoint_unreachable.burst = 2;
    // rsplib's counting: only the token bucket stands between the flood and the element.
    c.limits.distinct_reporters = false;
    let mut h = Harness::new(c);
    h.connect(1);
    h.register_ok(1, "web", element(1, 1, Policy::RoundRobin));
    h.connect(2);
    h.connect(9);
    for _ in 0..1000 {
        h.send(
            9,
            &AsapMessage::EndpointUnreachable {
                pool_handle: ph("web"),
                id: PeId(1),
            },
        );
    }
    assert!(h.take_sent(9).is_empty(), "reports are never answered");
    service_intact(&mut h);
    assert_eq!(h.core.stats().unreachable_reports, 2);
    assert_eq!(h.core.stats().rate_limited, 998);
}

#[test]
fn limits_answer_lack_of_resources() {
    let mut c = quiet_config();
    c.limits.max_pools = 2;
    c.limits.max_elements_per_pool = 3;
    c.limits.max_elements_per_peer = 5;
    c.limits.max_peers = 3;
    c.limits.max_message_size = 1024;
    let mut h = Harness::new(c);
    h.connect(1);
    h.register_ok(1, "a", element(1, 1, Policy::RoundRobin));
    h.register_ok(1, "b", element(1, 2, Policy::RoundRobin));
    assert_eq!(
        reg_cause(&h.register(1, "c", element(1, 3, Policy::RoundRobin))),
        Some(CauseCode::LackOfResources),
        "max pools"
    );
    h.register_ok(1, "a", element(1, 4, Policy::RoundRobin));
    h.register_ok(1, "a", element(1, 5, Policy::RoundRobin));
    assert_eq!(
        reg_cause(&h.register(1, "a", element(1, 6, Policy::RoundRobin))),
        Some(CauseCode::LackOfResources),
        "max per pool"
    );
    h.register_ok(1, "b", element(1, 7, Policy::RoundRobin));
    assert_eq!(
        reg_cause(&h.register(1, "b", element(1, 8, Policy::RoundRobin))),
        Some(CauseCode::LackOfResources),
        "max per peer"
    );
    // Updates of existing elements are still fine at the limit.
    h.register_ok(1, "b", element(1, 7, Policy::RoundRobin));
    // Oversize message.
    h.send_raw(1, msg(0x05, &[0u8; 2000]));
    assert_eq!(one_error(&mut h, 1), CauseCode::LackOfResources);
    // Peers.
    h.connect(2);
    h.connect(3);
    h.connect(4);
    assert_eq!(one_error(&mut h, 4), CauseCode::LackOfResources);
    assert_eq!(h.closed(), vec![PeerId(4)]);
    assert_eq!(h.ids("a"), vec![1, 4, 5]);
}
