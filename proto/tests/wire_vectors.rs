//! Round trip over the 40 independent vectors of `shared/oracle/rserpool_wire.py` (exported into
//! `tests/data/rserpool_wire_vectors.tsv` by `tests/data/export_vectors.sh`): each vector decodes
//! to the typed message the Python script built, and re-encodes to the very same bytes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rserpool_proto::message::{AsapMessage, EnrpBody, EnrpMessage, UpdateAction};
use rserpool_proto::types::{
    CauseCode, ErrorCause, PeId, Policy, PoolElement, PoolHandle, RegistrarId, ServerInformation,
    TransportAddress, TransportUse,
};
use rserpool_proto::wire::{decode_asap, decode_enrp, encode_asap, encode_enrp};

const VECTORS: &str = include_str!("data/rserpool_wire_vectors.tsv");

fn vectors() -> Vec<(String, u32, Vec<u8>)> {
    VECTORS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "bad vector line {l}");
            (f[0].to_string(), f[1].parse().unwrap(), hex(f[2]))
        })
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ph(s: &str) -> PoolHandle {
    s.parse().unwrap()
}

fn tlv(ptype: u16, value: &[u8]) -> Vec<u8> {
    let mut v = ptype.to_be_bytes().to_vec();
    v.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
    v.extend_from_slice(value);
    v
}

fn pad(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

enum Expected {
    Asap(AsapMessage),
    Enrp(EnrpMessage),
}

fn enrp(sender: u32, receiver: u32, body: EnrpBody) -> Expected {
    Expected::Enrp(EnrpMessage {
        sender: RegistrarId(sender),
        receiver: RegistrarId(receiver),
        body,
    })
}

/// The typed form of every vector, written from `rserpool_wire.py`'s `vectors()`.
fn expected() -> BTreeMap<&'static str, Expected> {
    let h = || ph("EchoPool");
    let sctp = |port, addrs: &[&str], tu| TransportAddress::Sctp {
        port,
        transport_use: tu,
        addrs: addrs.iter().map(|a| ip(a)).collect(),
    };
    let pe1 = PoolElement {
        id: PeId(0x1111_1111),
        home_registrar: RegistrarId(0xa),
        registration_life_ms: 300_000,
        user_transport: sctp(7000, &["127.0.0.1", "::1"], TransportUse::DataOnly),
        policy: Policy::RoundRobin,
        asap_transport: Some(sctp(3863, &["127.0.0.1"], TransportUse::DataOnly)),
    };
    let pe2 = PoolElement {
        id: PeId(0x2222_2222),
        home_registrar: RegistrarId(0xa),
        registration_life_ms: 300_000,
        user_transport: TransportAddress::Tcp {
            port: 7001,
            transport_use: TransportUse::DataPlusControl,
            addr: ip("127.0.0.1"),
        },
        policy: Policy::WeightedRoundRobin { weight: 5 },
        asap_transport: None,
    };
    let pe3 = PoolElement {
        id: PeId(0x3333_3333),
        home_registrar: RegistrarId(0xb),
        registration_life_ms: -1,
        user_transport: TransportAddress::Udp {
            port: 7002,
            addr: ip("::1"),
        },
        policy: Policy::LeastUsedDegradation {
            load: 0x4000_0000,
            degradation: 0x0100_0000,
        },
        asap_transport: None,
    };
    let pe4 = PoolElement {
        id: PeId(0x4444_4444),
        home_registrar: RegistrarId(0xb),
        registration_life_ms: 60_000,
        user_transport: TransportAddress::UdpLite {
            port: 7003,
            addr: ip("127.0.0.1"),
        },
        policy: Policy::Priority { priority: 3 },
        asap_transport: None,
    };
    let pe5 = PoolElement {
        id: PeId(0x5555_5555),
        home_registrar: RegistrarId(0xb),
        registration_life_ms: 60_000,
        user_transport: TransportAddress::Dccp {
            port: 7004,
            service_code: 42,
            addr: ip("127.0.0.1"),
        },
        policy: Policy::RandomizedLeastUsed { load: 0x8000_0000 },
        asap_transport: None,
    };
    let si = ServerInformation {
        id: RegistrarId(0xa),
        transport: sctp(9901, &["127.0.0.1", "::1"], TransportUse::DataOnly),
    };
    let si2 = ServerInformation {
        id: RegistrarId(0xb),
        transport: sctp(9901, &["127.0.0.2"], TransportUse::DataOnly),
    };
    let unrec_param = vec![ErrorCause {
        code: CauseCode::UnrecognizedParameter,
        info: pad(tlv(0x4099, &[0xde, 0xad])),
    }];
    let cause = |code| ErrorCause::new(code);
    let id1 = PeId(0x1111_1111);
    let hrr = |policy| AsapMessage::HandleResolutionResponse {
        pool_handle: h(),
        policy: Some(policy),
        elements: vec![],
        error: None,
    };
    // The Unrecognized Message cause quotes message(0x42, 0, pool_handle("EchoPool")).
    let mut quoted = vec![0x42, 0, 0, 16];
    quoted.extend(pad(tlv(0x0009, b"EchoPool")));

    let mut m = BTreeMap::new();
    use Expected::Asap as A;
    m.insert(
        "ASAP_REGISTRATION",
        A(AsapMessage::Registration {
            pool_handle: h(),
            element: pe1.clone(),
        }),
    );
    m.insert(
        "ASAP_DEREGISTRATION",
        A(AsapMessage::Deregistration {
            pool_handle: h(),
            id: id1,
        }),
    );
    m.insert(
        "ASAP_REGISTRATION_RESPONSE(accept)",
        A(AsapMessage::RegistrationResponse {
            reject: false,
            pool_handle: h(),
            id: id1,
            error: None,
        }),
    );
    m.insert(
        "ASAP_REGISTRATION_RESPONSE(reject)",
        A(AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: h(),
            id: id1,
            error: Some(vec![ErrorCause {
                code: CauseCode::InconsistentPoolingPolicy,
                info: tlv(0x0008, &1u32.to_be_bytes()),
            }]),
        }),
    );
    m.insert(
        "ASAP_DEREGISTRATION_RESPONSE",
        A(AsapMessage::DeregistrationResponse {
            pool_handle: h(),
            id: id1,
            error: None,
        }),
    );
    m.insert(
        "ASAP_HANDLE_RESOLUTION",
        A(AsapMessage::HandleResolution {
            pool_handle: h(),
            items: None,
        }),
    );
    m.insert(
        "ASAP_HANDLE_RESOLUTION(hropt)",
        A(AsapMessage::HandleResolution {
            pool_handle: h(),
            items: Some(3),
        }),
    );
    m.insert(
        "ASAP_HANDLE_RESOLUTION_RESPONSE",
        A(AsapMessage::HandleResolutionResponse {
            pool_handle: h(),
            policy: Some(Policy::RoundRobin),
            elements: vec![pe1.clone(), pe2.clone(), pe3.clone()],
            error: None,
        }),
    );
    m.insert(
        "ASAP_HANDLE_RESOLUTION_RESPONSE(unknown pool)",
        A(AsapMessage::HandleResolutionResponse {
            pool_handle: h(),
            policy: None,
            elements: vec![],
            error: Some(vec![cause(CauseCode::UnknownPoolHandle)]),
        }),
    );
    m.insert(
        "ASAP_ENDPOINT_KEEP_ALIVE",
        A(AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: RegistrarId(0xa),
            pool_handle: h(),
            id: id1,
        }),
    );
    m.insert(
        "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
        A(AsapMessage::EndpointKeepAliveAck {
            pool_handle: h(),
            id: id1,
        }),
    );
    m.insert(
        "ASAP_ENDPOINT_UNREACHABLE",
        A(AsapMessage::EndpointUnreachable {
            pool_handle: h(),
            id: id1,
        }),
    );
    m.insert(
        "ASAP_SERVER_ANNOUNCE",
        A(AsapMessage::ServerAnnounce {
            server_id: RegistrarId(0xa),
            transports: vec![sctp(3863, &["127.0.0.1"], TransportUse::DataOnly)],
        }),
    );
    m.insert(
        "ASAP_SERVER_ANNOUNCE(tcp+udp)",
        A(AsapMessage::ServerAnnounce {
            server_id: RegistrarId(0xa),
            transports: vec![
                TransportAddress::Tcp {
                    port: 3863,
                    transport_use: TransportUse::DataOnly,
                    addr: ip("127.0.0.1"),
                },
                TransportAddress::Udp {
                    port: 3863,
                    addr: ip("127.0.0.1"),
                },
            ],
        }),
    );
    m.insert(
        "ASAP_COOKIE",
        A(AsapMessage::Cookie {
            cookie: b"cookie-123".to_vec(),
        }),
    );
    m.insert(
        "ASAP_COOKIE_ECHO",
        A(AsapMessage::CookieEcho {
            cookie: b"cookie-123".to_vec(),
        }),
    );
    m.insert(
        "ASAP_BUSINESS_CARD",
        A(AsapMessage::BusinessCard {
            pool_handle: h(),
            policy: Some(Policy::WeightedRandom { weight: 7 }),
            elements: vec![pe4, pe5],
        }),
    );
    m.insert(
        "ASAP_ERROR",
        A(AsapMessage::Error {
            causes: vec![
                ErrorCause {
                    code: CauseCode::UnrecognizedMessage,
                    info: quoted,
                },
                cause(CauseCode::LackOfResources),
            ],
        }),
    );
    m.insert(
        "ASAP_ERROR(unrecognized param)",
        A(AsapMessage::Error {
            causes: unrec_param.clone(),
        }),
    );
    let mut udp7000 = 7000u16.to_be_bytes().to_vec();
    udp7000.extend([0, 0]);
    udp7000.extend(tlv(0x0001, &[127, 0, 0, 1]));
    m.insert(
        "ASAP_REGISTRATION_RESPONSE(reject, other causes)",
        A(AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: h(),
            id: id1,
            error: Some(vec![
                cause(CauseCode::NonUniquePeIdentifier),
                ErrorCause {
                    code: CauseCode::InconsistentTransportType,
                    info: tlv(0x0006, &udp7000),
                },
                cause(CauseCode::InconsistentDataControlConfiguration),
                cause(CauseCode::RejectedSecurity),
            ]),
        }),
    );
    for (name, p) in [
        ("RAND", Policy::Random),
        ("LU", Policy::LeastUsed { load: 0x1000_0000 }),
        (
            "PLU",
            Policy::PriorityLeastUsed {
                load: 0x1000_0000,
                degradation: 0x0100_0000,
            },
        ),
        (
            "PLUD",
            Policy::PriorityLeastUsedDegradation {
                load: 0x1000_0000,
                degradation: 0x0100_0000,
            },
        ),
        (
            "WRAND-DPF",
            Policy::WeightedRandomDpf {
                weight: 5,
                weight_dpf: 0x0010_0000,
                distance: 100,
            },
        ),
        (
            "LU-DPF",
            Policy::LeastUsedDpf {
                load: 0x1000_0000,
                load_dpf: 0x0010_0000,
                distance: 100,
            },
        ),
    ] {
        let key: &'static str = format!("ASAP_HANDLE_RESOLUTION_RESPONSE(policy {name})").leak();
        m.insert(key, A(hrr(p)));
    }
    m.insert(
        "ENRP_PRESENCE",
        enrp(
            0xa,
            0xb,
            EnrpBody::Presence {
                reply_required: true,
                checksum: 0xbeef,
                info: Some(si.clone()),
            },
        ),
    );
    m.insert(
        "ENRP_PRESENCE(announce)",
        enrp(
            0xa,
            0,
            EnrpBody::Presence {
                reply_required: false,
                checksum: 0x1234,
                info: Some(si.clone()),
            },
        ),
    );
    m.insert(
        "ENRP_HANDLE_TABLE_REQUEST",
        enrp(
            0xa,
            0xb,
            EnrpBody::HandleTableRequest {
                own_children_only: true,
            },
        ),
    );
    m.insert(
        "ENRP_HANDLE_TABLE_RESPONSE",
        enrp(
            0xb,
            0xa,
            EnrpBody::HandleTableResponse {
                reject: false,
                more: true,
                pools: vec![(h(), vec![pe1.clone(), pe2]), (ph("OtherPool"), vec![pe3])],
            },
        ),
    );
    m.insert(
        "ENRP_HANDLE_TABLE_RESPONSE(reject)",
        enrp(
            0xb,
            0xa,
            EnrpBody::HandleTableResponse {
                reject: true,
                more: false,
                pools: vec![],
            },
        ),
    );
    m.insert(
        "ENRP_HANDLE_UPDATE(add)",
        enrp(
            0xa,
            0xb,
            EnrpBody::HandleUpdate {
                takeover_suggested: false,
                action: UpdateAction::AddPe,
                pool_handle: h(),
                element: pe1.clone(),
            },
        ),
    );
    m.insert(
        "ENRP_HANDLE_UPDATE(del)",
        enrp(
            0xa,
            0xb,
            EnrpBody::HandleUpdate {
                takeover_suggested: true,
                action: UpdateAction::DelPe,
                pool_handle: h(),
                element: pe1,
            },
        ),
    );
    m.insert("ENRP_LIST_REQUEST", enrp(0xa, 0xb, EnrpBody::ListRequest));
    m.insert(
        "ENRP_LIST_RESPONSE",
        enrp(
            0xb,
            0xa,
            EnrpBody::ListResponse {
                reject: false,
                servers: vec![si, si2],
            },
        ),
    );
    let target = RegistrarId(0xc);
    m.insert(
        "ENRP_INIT_TAKEOVER",
        enrp(0xa, 0xb, EnrpBody::InitTakeover { target }),
    );
    m.insert(
        "ENRP_INIT_TAKEOVER_ACK",
        enrp(0xb, 0xa, EnrpBody::InitTakeoverAck { target }),
    );
    m.insert(
        "ENRP_TAKEOVER_SERVER",
        enrp(0xa, 0xb, EnrpBody::TakeoverServer { target }),
    );
    m.insert(
        "ENRP_ERROR",
        enrp(
            0xa,
            0xb,
            EnrpBody::Error {
                causes: unrec_param,
            },
        ),
    );
    m.insert(
        "ENRP_ERROR(invalid values)",
        enrp(
            0xa,
            0xb,
            EnrpBody::Error {
                causes: vec![ErrorCause {
                    code: CauseCode::InvalidValues,
                    info: tlv(0x000e, &1u32.to_be_bytes()),
                }],
            },
        ),
    );
    m
}

#[test]
fn all_forty_vectors_decode_to_the_expected_message_and_reencode_byte_exact() {
    let vs = vectors();
    assert_eq!(vs.len(), 40, "rserpool_wire.py exports 40 vectors");
    let mut exp = expected();
    for (name, ppid, bytes) in &vs {
        let want = exp
            .remove(name.as_str())
            .unwrap_or_else(|| panic!("no expected message for vector {name}"));
        match (ppid, want) {
            (11, Expected::Asap(want)) => {
                let d = decode_asap(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(d.reports.is_empty(), "{name}: reports {:?}", d.reports);
                assert_eq!(d.message, want, "{name}: decoded message");
                let again = encode_asap(&d.message).unwrap();
                assert_eq!(hexs(&again), hexs(bytes), "{name}: re-encoded bytes");
            }
            (12, Expected::Enrp(want)) => {
                let d = decode_enrp(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(d.reports.is_empty(), "{name}: reports {:?}", d.reports);
                assert_eq!(d.message, want, "{name}: decoded message");
                let again = encode_enrp(&d.message).unwrap();
                assert_eq!(hexs(&again), hexs(bytes), "{name}: re-encoded bytes");
            }
            _ => panic!("{name}: PPID {ppid} does not match the expected protocol"),
        }
    }
    assert!(
        exp.is_empty(),
        "expected messages without a vector: {:?}",
        exp.keys()
    );
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The exported TSV is what the oracle script prints today (the oracle is checked out beside the
/// repository, as the project layout has it; without it this test fails and says so).
#[test]
fn exported_vectors_match_the_oracle_script() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/oracle/rserpool_wire.py"
    );
    assert!(
        std::path::Path::new(script).exists(),
        "{script} is missing: shared/oracle must be checked out beside the repository"
    );
    let out = std::process::Command::new("python3")
        .arg(script)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "rserpool_wire.py failed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        VECTORS,
        "tests/data/rserpool_wire_vectors.tsv is stale: run tests/data/export_vectors.sh"
    );
}
