//! Wireshark as an independent oracle for the encoder: every message type rsplb sends, built by
//! `wire::encode_*`, is written as `asap <hex>` / `enrp <hex>` lines, wrapped into a pcap by
//! `shared/oracle/hex2pcap.py` and checked by `shared/oracle/decode_check.py --strict` (tshark's
//! ASAP/ENRP dissectors plus the oracle's own length and RFC parameter-layout checks). The
//! oracle is checked out beside the repository (`../shared/oracle`); tshark comes from
//! `cargo xtask setup`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rserpool_proto::message::{AsapMessage, EnrpBody, EnrpMessage, Message, UpdateAction};
use rserpool_proto::types::{
    CauseCode, ErrorCause, PeId, Policy, PoolElement, PoolHandle, RegistrarId, ServerInformation,
    TransportAddress, TransportUse,
};
use rserpool_proto::wire::{self, encode_policy_param, encode_transport_param};

/// The oracle beside the repository; its absence fails the test with the reason (a conformance
/// test that skips itself would pass without checking anything).
fn oracle_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/oracle");
    assert!(
        d.join("decode_check.py").exists(),
        "{} is missing: the conformance tests need shared/oracle checked out beside the repository",
        d.display()
    );
    d
}

struct Verdict {
    status: i32,
    summary: String,
    output: String,
}

/// Runs hex2pcap + decode_check on the given messages.
fn oracle(name: &str, lines: &[String], strict: bool) -> Verdict {
    let dir = oracle_dir();
    let tmp = std::env::temp_dir().join(format!("rsplb-oracle-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let hex = tmp.join("messages.hex");
    let pcap = tmp.join("messages.pcap");
    std::fs::write(&hex, lines.join("\n") + "\n").unwrap();
    let st = Command::new("python3")
        .arg(dir.join("hex2pcap.py"))
        .arg(&hex)
        .arg(&pcap)
        .status()
        .expect("python3 runs");
    assert!(st.success(), "hex2pcap.py failed");
    let mut cmd = Command::new("python3");
    cmd.arg(dir.join("decode_check.py"));
    if strict {
        cmd.arg("--strict");
    }
    let out = cmd.arg(&pcap).output().expect("python3 runs");
    let _ = std::fs::remove_dir_all(&tmp);
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let status = out.status.code().unwrap_or(-1);
    assert_ne!(
        status, 2,
        "decode_check.py could not run tshark (install it with `cargo xtask setup`):\n{output}"
    );
    let summary = output
        .lines()
        .rfind(|l| l.contains(" messages, "))
        .unwrap_or_default()
        .to_string();
    Verdict {
        status,
        summary,
        output,
    }
}

fn line(m: &Message) -> String {
    let bytes = wire::encode(m).unwrap_or_else(|e| panic!("{m:?}: {e}"));
    let proto = match m {
        Message::Asap(_) => "asap",
        Message::Enrp(_) => "enrp",
    };
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{proto} {hex}")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn h(s: &str) -> PoolHandle {
    s.parse().unwrap()
}

fn sctp(port: u16, addrs: &[&str]) -> TransportAddress {
    TransportAddress::Sctp {
        port,
        transport_use: TransportUse::DataOnly,
        addrs: addrs.iter().map(|a| ip(a)).collect(),
    }
}

fn element(id: u32, user_transport: TransportAddress, policy: Policy, enrp: bool) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(if enrp { 0x10 } else { 0 }),
        registration_life_ms: 30_000,
        user_transport,
        policy,
        asap_transport: enrp.then(|| TransportAddress::Tcp {
            port: 3863,
            transport_use: TransportUse::DataOnly,
            addr: ip("198.18.0.10"),
        }),
    }
}

/// Policies Wireshark 4.0 knows (the RFC 5356 ones and three rsplib extensions).
fn wireshark_policies() -> Vec<Policy> {
    vec![
        Policy::RoundRobin,
        Policy::WeightedRoundRobin { weight: 3 },
        Policy::Random,
        Policy::WeightedRandom { weight: 9 },
        Policy::Priority { priority: 2 },
        Policy::LeastUsed { load: 0x4000_0000 },
        Policy::LeastUsedDegradation {
            load: 1,
            degradation: 2,
        },
        Policy::PriorityLeastUsed {
            load: 1,
            degradation: 2,
        },
        Policy::RandomizedLeastUsed { load: 5 },
        Policy::PriorityLeastUsedDegradation {
            load: 1,
            degradation: 2,
        },
        Policy::WeightedRandomDpf {
            weight: 1,
            weight_dpf: 2,
            distance: 3,
        },
        Policy::LeastUsedDpf {
            load: 1,
            load_dpf: 2,
            distance: 3,
        },
    ]
}

/// A representative set of every ASAP and ENRP message type, with every flag, transport and
/// (Wireshark-known) policy.
fn representative() -> Vec<Message> {
    let transports = vec![
        sctp(80, &["198.18.0.1", "fd00::1"]),
        TransportAddress::Tcp {
            port: 80,
            transport_use: TransportUse::DataPlusControl,
            addr: ip("198.18.0.2"),
        },
        TransportAddress::Udp {
            port: 53,
            addr: ip("fd00::2"),
        },
        TransportAddress::UdpLite {
            port: 54,
            addr: ip("198.18.0.3"),
        },
        TransportAddress::Dccp {
            port: 55,
            service_code: 7,
            addr: ip("198.18.0.4"),
        },
    ];
    let pool = || h("web-pool");
    let id = PeId(0xabcd);
    let pe = element(0xabcd, transports[1].clone(), Policy::RoundRobin, false);
    let cause = |code| ErrorCause::new(code);
    let policy_cause = ErrorCause {
        code: CauseCode::InconsistentPoolingPolicy,
        info: encode_policy_param(&Policy::Random).unwrap(),
    };
    let transport_cause = ErrorCause {
        code: CauseCode::InconsistentTransportType,
        info: encode_transport_param(&transports[2]).unwrap(),
    };
    let mut asap = vec![
        AsapMessage::Deregistration {
            pool_handle: pool(),
            id,
        },
        AsapMessage::RegistrationResponse {
            reject: false,
            pool_handle: pool(),
            id,
            error: None,
        },
        AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: pool(),
            id,
            error: Some(vec![policy_cause, transport_cause]),
        },
        AsapMessage::DeregistrationResponse {
            pool_handle: pool(),
            id,
            error: None,
        },
        AsapMessage::DeregistrationResponse {
            pool_handle: pool(),
            id,
            error: Some(vec![cause(CauseCode::UnknownPoolHandle)]),
        },
        AsapMessage::HandleResolution {
            pool_handle: pool(),
            items: None,
        },
        AsapMessage::HandleResolution {
            pool_handle: pool(),
            items: Some(u32::MAX),
        },
        AsapMessage::HandleResolutionResponse {
            pool_handle: pool(),
            policy: None,
            elements: vec![],
            error: Some(vec![cause(CauseCode::UnknownPoolHandle)]),
        },
        AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: RegistrarId(0x10),
            pool_handle: pool(),
            id,
        },
        AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: RegistrarId(0x11),
            pool_handle: pool(),
            id,
        },
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: pool(),
            id,
        },
        AsapMessage::EndpointUnreachable {
            pool_handle: pool(),
            id,
        },
        AsapMessage::ServerAnnounce {
            server_id: RegistrarId(0x10),
            transports: vec![],
        },
        AsapMessage::ServerAnnounce {
            server_id: RegistrarId(0x10),
            transports: transports.clone(),
        },
        AsapMessage::Cookie {
            cookie: b"state-1".to_vec(),
        },
        AsapMessage::CookieEcho {
            cookie: b"state-1".to_vec(),
        },
        AsapMessage::BusinessCard {
            pool_handle: pool(),
            policy: Some(Policy::RoundRobin),
            elements: vec![pe.clone()],
        },
        AsapMessage::Error {
            causes: vec![
                wire::decode_asap(&[0x42, 0, 0, 4])
                    .unwrap_err()
                    .to_error_cause(),
                wire::decode_asap(&[
                    5, 0, 0, 20, 0, 9, 0, 5, b'x', 0, 0, 0, 0x4f, 0x0a, 0, 5, 1, 0, 0, 0,
                ])
                .unwrap_err()
                .to_error_cause(),
                cause(CauseCode::Unspecified),
                cause(CauseCode::LackOfResources),
                cause(CauseCode::NonUniquePeIdentifier),
                cause(CauseCode::InconsistentDataControlConfiguration),
                cause(CauseCode::RejectedSecurity),
            ],
        },
    ];
    // Registrations with every transport and every policy; a handle resolution response with
    // one element of each.
    let mut elements = Vec::new();
    for (i, p) in wireshark_policies().into_iter().enumerate() {
        let t = transports[i % transports.len()].clone();
        let e = element(i as u32 + 1, t, p, false);
        asap.push(AsapMessage::Registration {
            pool_handle: pool(),
            element: e.clone(),
        });
        elements.push(e);
    }
    asap.push(AsapMessage::HandleResolutionResponse {
        pool_handle: pool(),
        policy: Some(Policy::RoundRobin),
        elements: elements.clone(),
        error: None,
    });

    let enrp = |body| {
        Message::Enrp(EnrpMessage {
            sender: RegistrarId(0x10),
            receiver: RegistrarId(0x11),
            body,
        })
    };
    let info = |id| ServerInformation {
        id: RegistrarId(id),
        transport: sctp(9901, &["198.18.0.10", "fd00::10"]),
    };
    let epe = element(
        0xabcd,
        transports[0].clone(),
        Policy::LeastUsed { load: 9 },
        true,
    );
    let mut out: Vec<Message> = asap.into_iter().map(Message::Asap).collect();
    out.extend(
        [
            EnrpBody::Presence {
                reply_required: false,
                checksum: 0x1234,
                info: None,
            },
            EnrpBody::Presence {
                reply_required: true,
                checksum: 0xffff,
                info: Some(info(0x10)),
            },
            EnrpBody::HandleTableRequest {
                own_children_only: false,
            },
            EnrpBody::HandleTableRequest {
                own_children_only: true,
            },
            EnrpBody::HandleTableResponse {
                reject: false,
                more: true,
                pools: vec![
                    (pool(), vec![epe.clone()]),
                    (h("other"), vec![epe.clone(), epe.clone()]),
                ],
            },
            EnrpBody::HandleTableResponse {
                reject: true,
                more: false,
                pools: vec![],
            },
            EnrpBody::HandleUpdate {
                takeover_suggested: false,
                action: UpdateAction::AddPe,
                pool_handle: pool(),
                element: epe.clone(),
            },
            EnrpBody::HandleUpdate {
                takeover_suggested: true,
                action: UpdateAction::DelPe,
                pool_handle: pool(),
                element: epe,
            },
            EnrpBody::ListRequest,
            EnrpBody::ListResponse {
                reject: false,
                servers: vec![info(0x10), info(0x11)],
            },
            EnrpBody::ListResponse {
                reject: true,
                servers: vec![],
            },
            EnrpBody::InitTakeover {
                target: RegistrarId(0x12),
            },
            EnrpBody::InitTakeoverAck {
                target: RegistrarId(0x12),
            },
            EnrpBody::TakeoverServer {
                target: RegistrarId(0x12),
            },
            // The causes a receiver builds from what it could not decode.
            EnrpBody::Error {
                causes: vec![
                    wire::decode_enrp(&[0x0b, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 2])
                        .unwrap_err()
                        .to_error_cause(),
                ],
            },
            EnrpBody::Error {
                causes: wire::decode_enrp(&unknown_param_list_request())
                    .unwrap()
                    .reports,
            },
        ]
        .into_iter()
        .map(enrp),
    );
    out
}

/// An ENRP List Request carrying an unknown "skip and report" parameter.
fn unknown_param_list_request() -> Vec<u8> {
    vec![
        5, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 2, 0xc0, 0x99, 0, 6, 0xde, 0xad, 0, 0,
    ]
}

#[test]
fn every_message_rsplb_sends_passes_wireshark_strict() {
    let msgs = representative();
    // Every message type of both protocols is in the set.
    let mut asap_types: Vec<u8> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Asap(a) => Some(a.type_code()),
            _ => None,
        })
        .collect();
    asap_types.sort();
    asap_types.dedup();
    assert_eq!(asap_types, (1..=14).collect::<Vec<u8>>());
    let mut enrp_types: Vec<u8> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Enrp(e) => Some(e.body.type_code()),
            _ => None,
        })
        .collect();
    enrp_types.sort();
    enrp_types.dedup();
    assert_eq!(enrp_types, (1..=10).collect::<Vec<u8>>());

    let lines: Vec<String> = msgs.iter().map(line).collect();
    let v = oracle("strict", &lines, true);
    assert_eq!(v.status, 0, "decode_check --strict failed:\n{}", v.output);
    assert_eq!(
        v.summary,
        format!("{} messages, 0 malformed", lines.len()),
        "{}",
        v.output
    );
}

#[test]
fn rsplib_extension_policies_are_well_formed_for_wireshark() {
    // Wireshark does not know these type codes (so --strict would flag them as UNKNOWN), but
    // their encoding must not be malformed.
    let policies = [
        Policy::RandomizedPriorityLeastUsed {
            load: 1,
            degradation: 2,
        },
        Policy::RandomizedLeastUsedDegradation {
            load: 1,
            degradation: 2,
        },
        Policy::RandomizedPriorityLeastUsedDegradation {
            load: 1,
            degradation: 2,
        },
        Policy::LeastUsedDegradationDpf {
            load: 1,
            degradation: 2,
            load_dpf: 3,
            distance: 4,
        },
    ];
    let lines: Vec<String> = policies
        .into_iter()
        .map(|p| {
            line(&Message::Asap(AsapMessage::Registration {
                pool_handle: h("x"),
                element: element(1, sctp(1, &["198.18.0.1"]), p, false),
            }))
        })
        .collect();
    let v = oracle("extensions", &lines, false);
    assert_eq!(v.status, 0, "{}", v.output);
    assert_eq!(v.summary, "4 messages, 0 malformed", "{}", v.output);
}

#[test]
fn broken_encodings_are_flagged_by_the_oracle() {
    // Starting from good encodings, four deliberate faults, one per message; each must be
    // counted as malformed (so the positive test above can fail).
    let good = |m: AsapMessage| wire::encode_asap(&m).unwrap();
    let dereg = good(AsapMessage::Deregistration {
        pool_handle: h("web"),
        id: PeId(1),
    });
    // 1. Message Length larger than the message (BAD-LENGTH).
    let mut too_long = dereg.clone();
    too_long[3] += 8;
    // 2. A Cookie in a Deregistration (RFC-PARAMS under --strict).
    let mut misplaced = dereg.clone();
    misplaced.extend_from_slice(&[0x00, 0x0d, 0x00, 0x08, 1, 2, 3, 4]);
    let len = misplaced.len() as u16;
    misplaced[2..4].copy_from_slice(&len.to_be_bytes());
    // 3. Unknown message type (UNKNOWN under --strict).
    let mut unknown = dereg.clone();
    unknown[0] = 0x42;
    // 4. Required PE Identifier missing (RFC-PARAMS), made by cutting it off.
    let mut missing = dereg.clone();
    missing.truncate(missing.len() - 8);
    let len = missing.len() as u16;
    missing[2..4].copy_from_slice(&len.to_be_bytes());
    let lines: Vec<String> = [too_long, misplaced, unknown, missing]
        .iter()
        .map(|b| {
            format!(
                "asap {}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )
        })
        .collect();
    let v = oracle("negative", &lines, true);
    assert_eq!(v.status, 1, "{}", v.output);
    assert_eq!(v.summary, "4 messages, 4 malformed", "{}", v.output);
}

mod core_support;

/// The registrar core's own rejections, one per cause a registration can get, exactly as the core
/// sends them: the causes that RFC 5352 gives a parameter (Invalid Values, Inconsistent Pooling
/// Policy, Inconsistent Transport Type) quote the offending one, and Wireshark agrees.
#[test]
fn registration_rejections_the_core_sends_pass_wireshark_strict() {
    use core_support::{Harness, peer_ip, reg_cause};
    let el = core_support::element;
    let mut hs = Harness::quiet();
    hs.connect(1);
    hs.connect(2);
    hs.register_ok(1, "web", el(1, 1, Policy::RoundRobin));
    hs.register_ok(2, "web", el(2, 2, Policy::RoundRobin));
    let zero_id = el(1, 0, Policy::RoundRobin);
    let other_policy = el(1, 3, Policy::LeastUsed { load: 0 });
    let mut other_transport = el(1, 4, Policy::RoundRobin);
    other_transport.user_transport = TransportAddress::Udp {
        port: 53,
        addr: peer_ip(1),
    };
    let duplicate = el(2, 1, Policy::RoundRobin);
    let foreign = core_support::element_at(ip("203.0.113.9"), 5, Policy::RoundRobin);
    let responses = [
        hs.register(1, "web", zero_id.clone()),
        hs.register(1, "web", other_policy.clone()),
        hs.register(1, "web", other_transport.clone()),
        hs.register(2, "web", duplicate),
        hs.register(1, "web", foreign),
    ];
    let causes: Vec<_> = responses.iter().map(reg_cause).collect();
    assert_eq!(
        causes,
        [
            Some(CauseCode::InvalidValues),
            Some(CauseCode::InconsistentPoolingPolicy),
            Some(CauseCode::InconsistentTransportType),
            Some(CauseCode::NonUniquePeIdentifier),
            Some(CauseCode::RejectedSecurity),
        ]
    );
    let info = |m: &AsapMessage| match m {
        AsapMessage::RegistrationResponse {
            error: Some(causes),
            ..
        } => causes[0].info.clone(),
        other => panic!("not a rejection: {other:?}"),
    };
    assert_eq!(
        info(&responses[0]),
        wire::encode_pool_element_param(&zero_id).unwrap()
    );
    assert_eq!(
        info(&responses[1]),
        encode_policy_param(&other_policy.policy).unwrap()
    );
    assert_eq!(
        info(&responses[2]),
        encode_transport_param(&other_transport.user_transport).unwrap()
    );

    let lines: Vec<String> = responses
        .iter()
        .map(|m| line(&Message::Asap(m.clone())))
        .collect();
    let v = oracle("rejections", &lines, true);
    assert_eq!(v.status, 0, "decode_check --strict failed:\n{}", v.output);
    assert_eq!(v.summary, "5 messages, 0 malformed", "{}", v.output);
}
