//! Every class of bad input the decoder must refuse (or tolerate), with the RFC 5352/5354 cause it
//! maps to. Messages are built by hand from bytes here, independent of the encoder.

use rserpool_proto::message::{AsapMessage, EnrpBody};
use rserpool_proto::types::{
    CauseCode, ErrorCause, PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress,
    TransportUse,
};
use rserpool_proto::wire::{
    DecodeError, DecodeErrorKind as K, EncodeError, decode_asap, decode_enrp, encode_asap,
    frame_length,
};

/// A TLV, padded to 4 bytes (Length excludes the padding).
fn tlv(ptype: u16, value: &[u8]) -> Vec<u8> {
    let mut v = ptype.to_be_bytes().to_vec();
    v.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
    v.extend_from_slice(value);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// A message whose Length counts everything.
fn msg(mtype: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![mtype, flags];
    v.extend_from_slice(&(4 + body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ph(s: &[u8]) -> Vec<u8> {
    tlv(0x0009, s)
}

fn pe_id(i: u32) -> Vec<u8> {
    tlv(0x000e, &i.to_be_bytes())
}

fn v4(a: [u8; 4]) -> Vec<u8> {
    tlv(0x0001, &a)
}

fn sctp(port: u16, tu: u16, addrs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = port.to_be_bytes().to_vec();
    v.extend(tu.to_be_bytes());
    addrs.iter().for_each(|a| v.extend(a));
    tlv(0x0004, &v)
}

fn rr() -> Vec<u8> {
    tlv(0x0008, &1u32.to_be_bytes())
}

fn pe(id: u32, inner: &[&[u8]]) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend(0u32.to_be_bytes());
    v.extend(30_000i32.to_be_bytes());
    inner.iter().for_each(|p| v.extend(*p));
    tlv(0x000a, &v)
}

fn good_pe() -> Vec<u8> {
    pe(7, &[&sctp(80, 0, &[v4([198, 18, 0, 1])]), &rr()])
}

fn registration(extra: &[u8]) -> Vec<u8> {
    msg(0x01, 0, &cat(&[&ph(b"web"), &good_pe(), extra]))
}

fn asap_err(bytes: &[u8]) -> DecodeError {
    match decode_asap(bytes) {
        Ok(d) => panic!("accepted bad input {bytes:02x?} as {:?}", d.message),
        Err(e) => e,
    }
}

fn enrp_err(bytes: &[u8]) -> DecodeError {
    match decode_enrp(bytes) {
        Ok(d) => panic!("accepted bad input {bytes:02x?} as {:?}", d.message),
        Err(e) => e,
    }
}

fn expect(e: &DecodeError, kind: K, cause: CauseCode) {
    assert_eq!((e.kind, e.cause), (kind, cause), "{e}");
}

#[test]
fn the_reference_registration_is_valid() {
    // The base every negative case below modifies must itself decode.
    let d = decode_asap(&registration(&[])).unwrap();
    assert!(matches!(d.message, AsapMessage::Registration { .. }));
}

#[test]
fn truncated_header() {
    for n in 0..4 {
        let bytes = &registration(&[])[..n];
        let e = asap_err(bytes);
        expect(&e, K::Truncated, CauseCode::Unspecified);
        let e = enrp_err(bytes);
        expect(&e, K::Truncated, CauseCode::Unspecified);
    }
    // ENRP: header present but the sender/receiver IDs cut off.
    let e = enrp_err(&msg(0x05, 0, &[0, 0, 0, 1]));
    expect(&e, K::Truncated, CauseCode::Unspecified);
    // ASAP Endpoint Keep-Alive without its Server Identifier.
    let e = asap_err(&msg(0x07, 0, &[0, 0]));
    expect(&e, K::Truncated, CauseCode::Unspecified);
    // ENRP Handle Update without the Update Action field.
    let e = enrp_err(&msg(0x04, 0, &[0; 8]));
    expect(&e, K::Truncated, CauseCode::Unspecified);
}

#[test]
fn message_length_larger_or_smaller_than_the_data() {
    let good = registration(&[]);
    // Larger than the data (message cut off).
    let e = asap_err(&good[..good.len() - 4]);
    expect(&e, K::BadLength, CauseCode::Unspecified);
    assert!(e.info.is_empty(), "no well-formed parameter to quote");
    // Length below the header.
    for len in 0..4u16 {
        let mut b = good.clone();
        b[2..4].copy_from_slice(&len.to_be_bytes());
        expect(&asap_err(&b), K::BadLength, CauseCode::Unspecified);
    }
    // Smaller than the data by more than padding: another message or junk follows.
    let mut b = good.clone();
    b.extend_from_slice(&[0; 4]);
    expect(&asap_err(&b), K::BadLength, CauseCode::Unspecified);
    // Length that cuts a parameter in two.
    let mut b = good.clone();
    let short = (good.len() - 8) as u16;
    b[2..4].copy_from_slice(&short.to_be_bytes());
    b.truncate(short as usize);
    expect(&asap_err(&b), K::BadLength, CauseCode::Unspecified);
    // Up to 3 bytes beyond the Length are padding and ignored.
    let mut b = good.clone();
    b.extend_from_slice(&[0; 3]);
    assert!(decode_asap(&b).is_ok());
}

#[test]
fn parameter_length_below_four_or_beyond_the_message() {
    for bad_len in [0u16, 3] {
        let mut p = ph(b"web");
        p[2..4].copy_from_slice(&bad_len.to_be_bytes());
        let e = asap_err(&msg(0x05, 0, &p));
        expect(&e, K::BadLength, CauseCode::Unspecified);
    }
    let mut p = ph(b"web");
    p[2..4].copy_from_slice(&100u16.to_be_bytes());
    expect(
        &asap_err(&msg(0x05, 0, &p)),
        K::BadLength,
        CauseCode::Unspecified,
    );
    // Stray bytes (fewer than a TLV header) after the last parameter.
    let e = asap_err(&msg(0x05, 0, &cat(&[&ph(b"web"), &[0, 9]])));
    expect(&e, K::BadLength, CauseCode::Unspecified);
    // A nested parameter overrunning its parent (address inside an SCTP transport).
    let mut t = sctp(80, 0, &[v4([198, 18, 0, 1])]);
    t[10..12].copy_from_slice(&40u16.to_be_bytes());
    let bytes = msg(0x01, 0, &cat(&[&ph(b"web"), &pe(7, &[&t, &rr()])]));
    expect(&asap_err(&bytes), K::BadLength, CauseCode::Unspecified);
}

#[test]
fn padding_is_ignored_per_rfc5354_section_2() {
    // Non-zero padding bytes after a 3-byte pool handle: the receiver MUST ignore them.
    let mut p = ph(b"web");
    p[7] = 0xff;
    let d = decode_asap(&msg(0x05, 0, &p)).unwrap();
    assert_eq!(
        d.message,
        AsapMessage::HandleResolution {
            pool_handle: "web".parse().unwrap(),
            items: None
        }
    );
    // A message Length that leaves out the last parameter's padding.
    let mut b = msg(0x05, 0, &ph(b"web"));
    b.truncate(b.len() - 1);
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    assert!(decode_asap(&b).is_ok());
}

#[test]
fn unknown_message_types() {
    let asap = msg(0x42, 0, &ph(b"web"));
    let e = asap_err(&asap);
    expect(&e, K::UnknownMessage, CauseCode::UnrecognizedMessage);
    assert!(e.report);
    assert_eq!(e.info, asap, "the cause quotes the message");
    assert_eq!(
        e.to_error_cause(),
        ErrorCause {
            code: CauseCode::UnrecognizedMessage,
            info: asap.clone()
        }
    );
    for t in [0x00u8, 0x0f, 0xff] {
        let e = asap_err(&msg(t, 0, &[]));
        expect(&e, K::UnknownMessage, CauseCode::UnrecognizedMessage);
    }
    for t in [0x00u8, 0x0b, 0xff] {
        let m = msg(t, 0, &[0; 8]);
        let e = enrp_err(&m);
        expect(&e, K::UnknownMessage, CauseCode::UnrecognizedMessage);
        assert_eq!(e.info, m);
    }
}

#[test]
fn unknown_parameter_action_bits() {
    let hr = |extra: &[u8]| msg(0x05, 0, &cat(&[&ph(b"web"), extra]));
    // 00: stop, discard, no report.
    let p = tlv(0x0099, &[1, 2, 3]);
    let e = asap_err(&hr(&p));
    expect(&e, K::UnknownParameter, CauseCode::UnrecognizedParameter);
    assert!(!e.report);
    assert_eq!(e.info, p);
    // 01: stop, discard, report the parameter.
    let p = tlv(0x4099, &[1, 2, 3]);
    let e = asap_err(&hr(&p));
    expect(&e, K::UnknownParameter, CauseCode::UnrecognizedParameter);
    assert!(e.report);
    assert_eq!(e.info, p, "the cause quotes the padded parameter");
    // 10: skip silently.
    let d = decode_asap(&hr(&tlv(0x8099, &[1, 2, 3]))).unwrap();
    assert!(d.reports.is_empty());
    assert!(matches!(d.message, AsapMessage::HandleResolution { .. }));
    // 11: skip and report; the message is still processed.
    let p = tlv(0xc099, &[1, 2, 3]);
    let d = decode_asap(&hr(&p)).unwrap();
    assert_eq!(
        d.reports,
        vec![ErrorCause {
            code: CauseCode::UnrecognizedParameter,
            info: p
        }]
    );
    // Nested: a skip-and-report parameter inside a Pool Element, and a stop one inside a transport.
    let q = tlv(0xc0aa, &[9; 5]);
    let bytes = msg(
        0x01,
        0,
        &cat(&[
            &ph(b"web"),
            &pe(7, &[&sctp(80, 0, &[v4([198, 18, 0, 1])]), &rr(), &q]),
        ]),
    );
    let d = decode_asap(&bytes).unwrap();
    assert_eq!(d.reports.len(), 1);
    assert_eq!(d.reports[0].info, q);
    let t = sctp(80, 0, &[v4([198, 18, 0, 1]), tlv(0x00aa, &[])]);
    let bytes = msg(0x01, 0, &cat(&[&ph(b"web"), &pe(7, &[&t, &rr()])]));
    expect(
        &asap_err(&bytes),
        K::UnknownParameter,
        CauseCode::UnrecognizedParameter,
    );
    // ENRP follows the same rules.
    let mut body = vec![0, 0, 0, 1, 0, 0, 0, 2];
    body.extend(tlv(0x8001, &[0; 4]));
    let d = decode_enrp(&msg(0x05, 0, &body)).unwrap();
    assert_eq!(d.message.body, EnrpBody::ListRequest);
}

#[test]
fn parameter_in_a_message_that_cannot_carry_it() {
    // A Cookie in a Registration.
    let c = tlv(0x000d, b"abc");
    let e = asap_err(&registration(&c));
    expect(&e, K::UnexpectedParameter, CauseCode::UnrecognizedParameter);
    assert!(e.report);
    assert_eq!(e.info, c);
    // An Operation Error in a Handle Resolution; a PE Identifier in an ENRP List Request.
    let op = tlv(0x000c, &[0, 6, 0, 4]);
    let e = asap_err(&msg(0x05, 0, &cat(&[&ph(b"web"), &op])));
    expect(&e, K::UnexpectedParameter, CauseCode::UnrecognizedParameter);
    let e = enrp_err(&msg(0x05, 0, &cat(&[&[0; 8], &pe_id(1)])));
    expect(&e, K::UnexpectedParameter, CauseCode::UnrecognizedParameter);
    // A policy inside a transport; a pool handle inside a Pool Element.
    let t = sctp(80, 0, &[v4([198, 18, 0, 1]), rr()]);
    let bytes = msg(0x01, 0, &cat(&[&ph(b"web"), &pe(7, &[&t, &rr()])]));
    expect(
        &asap_err(&bytes),
        K::UnexpectedParameter,
        CauseCode::UnrecognizedParameter,
    );
    let bytes = msg(
        0x01,
        0,
        &cat(&[
            &ph(b"web"),
            &pe(7, &[&sctp(80, 0, &[v4([1, 2, 3, 4])]), &rr(), &ph(b"x")]),
        ]),
    );
    expect(
        &asap_err(&bytes),
        K::UnexpectedParameter,
        CauseCode::UnrecognizedParameter,
    );
    // A policy before the user transport in a Pool Element.
    let bytes = msg(
        0x01,
        0,
        &cat(&[
            &ph(b"web"),
            &pe(7, &[&rr(), &sctp(80, 0, &[v4([1, 2, 3, 4])])]),
        ]),
    );
    expect(
        &asap_err(&bytes),
        K::UnexpectedParameter,
        CauseCode::UnrecognizedParameter,
    );
}

#[test]
fn missing_and_duplicate_parameters() {
    // A top-level parameter missing: nothing to quote, so Unspecified Error (an Invalid Values
    // cause carries the offending parameter, RFC 5354 section 3.10).
    let e = asap_err(&msg(0x01, 0, &ph(b"web")));
    expect(&e, K::MissingParameter, CauseCode::Unspecified);
    assert!(e.info.is_empty());
    let e = asap_err(&msg(0x02, 0, &ph(b"web")));
    expect(&e, K::MissingParameter, CauseCode::Unspecified);
    let e = asap_err(&msg(0x0e, 0, &[]));
    expect(&e, K::MissingParameter, CauseCode::Unspecified);
    let e = enrp_err(&msg(0x01, 0, &[0; 8]));
    expect(&e, K::MissingParameter, CauseCode::Unspecified);
    // Pool Element without its policy.
    let bytes = msg(
        0x01,
        0,
        &cat(&[&ph(b"web"), &pe(7, &[&sctp(80, 0, &[v4([1, 2, 3, 4])])])]),
    );
    expect(
        &asap_err(&bytes),
        K::MissingParameter,
        CauseCode::InvalidValues,
    );
    // ENRP Handle Table Response: a Pool Element before any Pool Handle.
    let bytes = msg(0x03, 0, &cat(&[&[0; 8], &good_pe()]));
    expect(
        &enrp_err(&bytes),
        K::MissingParameter,
        CauseCode::InvalidValues,
    );
    // Two pool handles / two pool elements in a Registration.
    let e = asap_err(&registration(&ph(b"other")));
    expect(&e, K::DuplicateParameter, CauseCode::InvalidValues);
    // (the second Pool Element is not quoted, so the cause is Unspecified Error)
    let e = asap_err(&registration(&good_pe()));
    expect(&e, K::DuplicateParameter, CauseCode::Unspecified);
}

#[test]
fn pool_handle_size() {
    let hr = |h: &[u8]| msg(0x05, 0, &ph(h));
    assert!(decode_asap(&hr(&[b'a'; 32])).is_ok());
    let p = ph(&[b'a'; 33]);
    let e = asap_err(&hr(&[b'a'; 33]));
    expect(&e, K::InvalidValue, CauseCode::InvalidValues);
    assert_eq!(e.info, p, "the cause quotes the offending pool handle");
    expect(
        &asap_err(&hr(&[])),
        K::InvalidValue,
        CauseCode::InvalidValues,
    );
}

#[test]
fn zero_or_reserved_values() {
    let reg = |inner: &[&[u8]]| msg(0x01, 0, &cat(&[&ph(b"web"), &pe(7, inner)]));
    let a = v4([198, 18, 0, 1]);
    let bad = |bytes: Vec<u8>| expect(&asap_err(&bytes), K::InvalidValue, CauseCode::InvalidValues);
    // Transport use neither 0 nor 1 (SCTP and TCP).
    bad(reg(&[&sctp(80, 2, std::slice::from_ref(&a)), &rr()]));
    let mut tcp = 80u16.to_be_bytes().to_vec();
    tcp.extend(0xffffu16.to_be_bytes());
    tcp.extend(&a);
    bad(reg(&[&tlv(0x0005, &tcp), &rr()]));
    // SCTP transport without addresses; UDP with two addresses.
    bad(reg(&[&sctp(80, 0, &[]), &rr()]));
    let mut udp = vec![0, 80, 0, 0];
    udp.extend(&a);
    udp.extend(&a);
    bad(reg(&[&tlv(0x0006, &udp), &rr()]));
    // More than 64 addresses in an SCTP transport.
    let many: Vec<Vec<u8>> = (0..65).map(|i| v4([198, 18, 1, i])).collect();
    bad(reg(&[&sctp(80, 0, &many), &rr()]));
    // Address parameters of the wrong length.
    bad(reg(&[&sctp(80, 0, &[tlv(0x0001, &[1, 2, 3])]), &rr()]));
    bad(reg(&[&sctp(80, 0, &[tlv(0x0002, &[0; 4])]), &rr()]));
    // Policies with the wrong number of values, or a value that is not whole 32-bit words.
    let t = sctp(80, 0, std::slice::from_ref(&a));
    bad(reg(&[&t, &tlv(0x0008, &[0, 0, 0, 2])]));
    bad(reg(&[&t, &tlv(0x0008, &[0, 0, 0, 1, 0, 0, 0, 5])]));
    bad(reg(&[&t, &tlv(0x0008, &[0, 0, 0, 1, 0])]));
    bad(reg(&[&t, &tlv(0x0008, &[])]));
    // Pool Element shorter than its fixed fields.
    bad(msg(0x01, 0, &cat(&[&ph(b"web"), &tlv(0x000a, &[0; 8])])));
    // PE Identifier / PE Checksum / Handle Resolution Option of the wrong size.
    bad(msg(0x02, 0, &cat(&[&ph(b"web"), &tlv(0x000e, &[0; 3])])));
    let mut presence = vec![0; 8];
    presence.extend(tlv(0x000f, &[0; 4]));
    let e = enrp_err(&msg(0x01, 0, &presence));
    expect(&e, K::InvalidValue, CauseCode::InvalidValues);
    bad(msg(0x05, 0, &cat(&[&ph(b"web"), &tlv(0x803f, &[0; 2])])));
    // Empty Operation Error; error cause with Length < 4 or beyond the parameter.
    bad(msg(0x0e, 0, &tlv(0x000c, &[])));
    bad(msg(0x0e, 0, &tlv(0x000c, &[0, 1, 0, 2])));
    bad(msg(0x0e, 0, &tlv(0x000c, &[0, 1, 0, 9, 0, 0, 0, 0])));
    // ENRP Handle Update: Update Action not 0 (ADD_PE) or 1 (DEL_PE).
    let mut hu = vec![0; 8];
    hu.extend([0, 2, 0, 0]);
    hu.extend(ph(b"web"));
    hu.extend(good_pe());
    let e = enrp_err(&msg(0x04, 0, &hu));
    expect(&e, K::InvalidValue, CauseCode::InvalidValues);
    hu[9] = 1;
    let d = decode_enrp(&msg(0x04, 0, &hu)).unwrap();
    assert!(matches!(d.message.body, EnrpBody::HandleUpdate { .. }));
}

#[test]
fn frame_length_for_stream_framing() {
    assert_eq!(frame_length(&[], 1000), Ok(None));
    assert_eq!(frame_length(&[1, 0, 0], 1000), Ok(None));
    assert_eq!(frame_length(&[1, 0, 0, 28, 0xff], 1000), Ok(Some(28)));
    let e = frame_length(&[1, 0, 0, 3], 1000).unwrap_err();
    expect(&e, K::BadLength, CauseCode::Unspecified);
    let e = frame_length(&[1, 0, 0x10, 0], 1000).unwrap_err();
    expect(&e, K::BadLength, CauseCode::Unspecified);
}

#[test]
fn encoder_refuses_what_the_wire_cannot_carry() {
    let element = |transport| PoolElement {
        id: PeId(1),
        home_registrar: RegistrarId(0),
        registration_life_ms: 1000,
        user_transport: transport,
        policy: Policy::RoundRobin,
        asap_transport: None,
    };
    let no_addr = TransportAddress::Sctp {
        port: 1,
        transport_use: TransportUse::DataOnly,
        addrs: vec![],
    };
    let reg = AsapMessage::Registration {
        pool_handle: PoolHandle::new(&b"p"[..]).unwrap(),
        element: element(no_addr),
    };
    assert!(matches!(encode_asap(&reg), Err(EncodeError::Invalid(_))));
    // A cookie that does not fit the 16-bit length fields.
    let big = AsapMessage::Cookie {
        cookie: vec![0; 70_000],
    };
    assert!(matches!(encode_asap(&big), Err(EncodeError::TooBig { .. })));
    // A message that fits parameter by parameter but not as a whole.
    let two = AsapMessage::Error {
        causes: vec![
            ErrorCause {
                code: CauseCode::Unspecified,
                info: vec![0; 40_000]
            };
            2
        ],
    };
    assert!(matches!(encode_asap(&two), Err(EncodeError::TooBig { .. })));
    let empty = AsapMessage::Error { causes: vec![] };
    assert!(matches!(encode_asap(&empty), Err(EncodeError::Invalid(_))));
    let unknown_known = AsapMessage::HandleResolutionResponse {
        pool_handle: PoolHandle::new(&b"p"[..]).unwrap(),
        policy: Some(Policy::Unknown {
            policy_type: 1,
            values: vec![],
        }),
        elements: vec![],
        error: None,
    };
    assert!(matches!(
        encode_asap(&unknown_known),
        Err(EncodeError::Invalid(_))
    ));
    // The largest cookie that fits encodes (the Length counts the padding, so the largest
    // message is 65532 bytes), and decodes back; one byte more does not fit.
    let max = AsapMessage::Cookie {
        cookie: vec![7; 65_532 - 8],
    };
    let bytes = encode_asap(&max).unwrap();
    assert_eq!(bytes.len(), 65_532);
    assert_eq!(decode_asap(&bytes).unwrap().message, max);
    let over = AsapMessage::Cookie {
        cookie: vec![7; 65_532 - 7],
    };
    assert!(matches!(
        encode_asap(&over),
        Err(EncodeError::TooBig { .. })
    ));
}
