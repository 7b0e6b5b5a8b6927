//! Wireshark as the oracle on a real capture: a registrar, pool elements and a pool user (all
//! rsplb code) talk ASAP over TCP port 3863 and announce over UDP multicast on the loopback of a
//! network namespace made for this test, while `shared/oracle/capture.sh` records that loopback.
//! `shared/oracle/decode_check.py --strict` must then find every message rsplb sent conforming
//! (Wireshark's ASAP dissector plus the oracle's own length and RFC parameter-layout checks),
//! and every message type the scenario is meant to produce must be in its coverage summary.
//!
//! A raw TCP client (the "garbage client", fixed source port [`GARBAGE_PORT`]) sends three bad
//! messages so that the registrar sends its ERROR replies. Those three messages are not rsplb's:
//! they are cut out of the capture (by their source port, with tshark) before the conformance
//! check, and the negative test checks that the oracle flags exactly them in the full capture.
//!
//! Needs root (network namespace, dumpcap) and tshark (`cargo xtask setup`); the oracle is
//! checked out beside the repository (`../shared/oracle`). One capture serves both tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rsplb_registrar::client::{
    CacheConfig, ClientConfig, ClientError, PeState, PoolElementConfig, PoolElementHandle, PoolUser,
};
use rsplb_registrar::config::RegistrarConfig;
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::shell::Registrar;
use rsplb_registrar::types::{CauseCode, PeId, PoolHandle, TransportAddress, TransportUse};
use rsplb_registrar::wire::{self, decode_asap, encode_asap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod netns_support;
mod oracle_support;
use netns_support::Netns;
use oracle_support::{Capture, Oracle, Row, decode_check, require_environment};

/// Source port of the raw TCP client that sends malformed messages.
const GARBAGE_PORT: u16 = 40863;
/// The registrar's ASAP address inside the namespace (the oracle decodes by the well-known port).
const REGISTRAR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3863);
/// Bound on every single wait of the scenario.
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The scenario (runs on a thread inside the namespace).

fn h(s: &str) -> PoolHandle {
    s.parse().unwrap()
}

fn tcp(addr: Ipv4Addr, port: u16) -> TransportAddress {
    TransportAddress::Tcp {
        port,
        transport_use: TransportUse::DataOnly,
        addr: addr.into(),
    }
}

fn client() -> ClientConfig {
    let mut c = ClientConfig::with_registrars([REGISTRAR]);
    c.request_timeout = Duration::from_secs(2);
    c.hunt_timeout = Duration::from_secs(3);
    c
}

/// The three bad messages of the garbage client, as sent.
fn garbage() -> [Vec<u8>; 3] {
    // 1. An unknown message type (0x42): the registrar answers Unrecognized Message.
    let unknown_type = vec![0x42, 0, 0, 4];
    // 2. A Handle Resolution of "web" with an unknown parameter 0xc099 (upper bits 11: skip and
    //    report): the registrar answers the resolution and sends Unrecognized Parameter.
    let mut with_unknown_param = encode_asap(&AsapMessage::HandleResolution {
        pool_handle: h("web"),
        items: None,
    })
    .unwrap();
    with_unknown_param.extend_from_slice(&[0xc0, 0x99, 0, 6, 0xde, 0xad, 0, 0]);
    let len = with_unknown_param.len() as u16;
    with_unknown_param[2..4].copy_from_slice(&len.to_be_bytes());
    // 3. A Deregistration whose Pool Handle parameter claims 64 bytes inside a 24-byte
    //    message (the header length is right, so TCP framing holds).
    let mut overrun = encode_asap(&AsapMessage::Deregistration {
        pool_handle: h("web"),
        id: PeId(0xa1),
    })
    .unwrap();
    overrun[6..8].copy_from_slice(&64u16.to_be_bytes());
    [unknown_type, with_unknown_param, overrun]
}

/// What the scenario saw from the API side.
#[derive(Debug, Default)]
struct Seen {
    /// Messages the registrar sent the garbage client.
    garbage_replies: Vec<AsapMessage>,
}

async fn scenario() -> Seen {
    let mut cfg = RegistrarConfig {
        registrar_id: Some(0x1b1b),
        asap_listen: vec![REGISTRAR],
        admin: None,
        ..RegistrarConfig::default()
    };
    cfg.announce.enabled = true;
    cfg.announce.interface = Some(Ipv4Addr::LOCALHOST);
    cfg.announce.ttl = 1;
    cfg.announce.interval_ms = 200;
    cfg.timers.keepalive_interval_ms = 200;
    cfg.timers.keepalive_timeout_ms = 1000;
    let registrar = Registrar::bind(cfg).await.expect("registrar binds");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(registrar.run(async move {
        let _ = stopped.await;
    }));

    // A pool element that registers, re-registers every 300 ms and answers keep-alives.
    let mut pe = PoolElementConfig::new(h("web"), tcp(Ipv4Addr::LOCALHOST, 8080));
    pe.id = Some(PeId(0xa1));
    pe.reregistration_interval = Some(Duration::from_millis(300));
    let pe_a = PoolElementHandle::register(client(), pe)
        .await
        .expect("the element registers");

    // One whose user transport is not its own address: refused (Rejected Security).
    let mut foreign = PoolElementConfig::new(h("web"), tcp(Ipv4Addr::new(198, 18, 0, 99), 8080));
    foreign.id = Some(PeId(0xb2));
    match PoolElementHandle::register(client(), foreign).await {
        Err(ClientError::Rejected { causes, .. }) => assert!(
            causes.iter().any(|c| c.code == CauseCode::RejectedSecurity),
            "{causes:?}"
        ),
        other => panic!("a foreign address must be refused, got {other:?}"),
    }

    // A pool user: resolution with the registrar's default count (no Handle Resolution
    // Option), with an explicit count (the option), of an unknown pool; an unreachable report.
    let pu = PoolUser::new(
        client(),
        CacheConfig {
            stale_after: Duration::ZERO,
            items: None,
        },
    )
    .unwrap();
    let r = pu.resolve(&h("web")).await.expect("web resolves");
    assert_eq!(r.elements.len(), 1, "{r:?}");
    let r = pu
        .resolve_fresh(&h("web"), Some(8))
        .await
        .expect("web resolves");
    assert_eq!(r.elements[0].id, PeId(0xa1));
    match pu.resolve(&h("no-such-pool")).await {
        Err(ClientError::UnknownPool(_)) => {}
        other => panic!("an unknown pool must be reported as such, got {other:?}"),
    }
    pu.report_unreachable(&h("web"), PeId(0xa1))
        .await
        .expect("report sent");

    // Keep-alives (the home registrar's id reaches the element with the first one), then time
    // for more keep-alives, re-registrations and announces.
    let mut w = pe_a.watch();
    tokio::time::timeout(
        WAIT,
        w.wait_for(|s| matches!(s, PeState::Registered { home, .. } if home.0 == 0x1b1b)),
    )
    .await
    .expect("a keep-alive within 5 s")
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let garbage_replies = garbage_client().await;

    pe_a.deregister().await.expect("deregistration answered");
    let _ = stop.send(());
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the registrar stops")
        .unwrap()
        .unwrap();
    Seen { garbage_replies }
}

/// Sends [`garbage`] from [`GARBAGE_PORT`]; returns what the registrar answered (read until the
/// registrar has been quiet for 500 ms).
async fn garbage_client() -> Vec<AsapMessage> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, GARBAGE_PORT)))
        .unwrap();
    let mut s = tokio::time::timeout(WAIT, sock.connect(REGISTRAR))
        .await
        .expect("connect within 5 s")
        .unwrap();
    for m in garbage() {
        s.write_all(&m).await.unwrap();
        // One message per segment, as a sender that flushes after each would produce.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        while let Some(len) = wire::frame_length(&buf, 65535).unwrap() {
            if buf.len() < len {
                break;
            }
            out.push(decode_asap(&buf[..len]).unwrap().message);
            buf.drain(..len);
        }
        let mut chunk = [0u8; 4096];
        let quiet = tokio::time::Instant::now() + Duration::from_millis(500);
        match tokio::time::timeout_at(quiet.min(end), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The oracle.

/// The capture, made once for both tests.
struct Run {
    /// Everything on the namespace's loopback.
    full: Oracle,
    /// The same without the garbage client's packets: what rsplb sent.
    rsplb: Oracle,
    seen: Seen,
    capture_log: String,
}

fn the_run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(capture_scenario)
}

fn capture_scenario() -> Run {
    require_environment();
    let dir = std::env::temp_dir().join(format!("rsplb-oracle-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let full_pcap = dir.join("full.pcap");
    let rsplb_pcap = dir.join("rsplb.pcap");

    let ns = Netns::new("r1bcap");
    let capture = Capture::start(&ns, &full_pcap);
    let ns_ref = &ns;
    let seen = std::thread::scope(|s| {
        s.spawn(move || {
            ns_ref.enter();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), scenario()).await })
                .expect("the scenario ends within 30 s")
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    let capture_log = capture.finish();
    drop(ns);

    let st = Command::new("tshark")
        .arg("-r")
        .arg(&full_pcap)
        .args(["-Y", &format!("!(tcp.srcport == {GARBAGE_PORT})"), "-w"])
        .arg(&rsplb_pcap)
        .output()
        .expect("tshark runs");
    assert!(
        st.status.success(),
        "tshark could not filter the capture: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let run = Run {
        full: decode_check(&full_pcap),
        rsplb: decode_check(&rsplb_pcap),
        seen,
        capture_log,
    };
    if std::env::var_os("RSPLB_KEEP_CAPTURE").is_some() {
        eprintln!("capture kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    run
}

fn asap(r: &Row) -> AsapMessage {
    decode_asap(&r.bytes)
        .unwrap_or_else(|e| panic!("{r:?}: {e}"))
        .message
}

fn causes(m: &AsapMessage) -> Vec<CauseCode> {
    match m {
        AsapMessage::Error { causes } => causes.iter().map(|c| c.code).collect(),
        AsapMessage::RegistrationResponse { error, .. }
        | AsapMessage::DeregistrationResponse { error, .. }
        | AsapMessage::HandleResolutionResponse { error, .. } => {
            error.iter().flatten().map(|c| c.code).collect::<Vec<_>>()
        }
        _ => Vec::new(),
    }
}

#[test]
fn every_message_rsplb_sends_on_the_wire_passes_wireshark_strict() {
    let run = the_run();
    let o = &run.rsplb;
    let ctx = format!("{}\n{}", o.output, run.capture_log);
    assert_eq!(o.status, 0, "decode_check --strict failed:\n{ctx}");
    assert_eq!(o.summary.1, 0, "{ctx}");
    assert!(
        o.rows.iter().all(|r| r.verdict == "OK"),
        "every message OK:\n{ctx}"
    );

    // Coverage by Wireshark's names, with the least count the scenario makes.
    let expected: [(&str, usize); 11] = [
        ("ASAP Registration", 3), // the element twice (registration, re-registration), the refused one
        ("ASAP Deregistration", 1),
        ("ASAP Registration Response", 3),
        ("ASAP Deregistration Response", 1),
        ("ASAP Handle Resolution", 3), // default count, Handle Resolution Option, unknown pool
        ("ASAP Handle Resolution Response", 4), // + the garbage client's resolution
        ("ASAP Endpoint Keep-Alive", 1),
        ("ASAP Endpoint Keep-Alive Acknowledgement", 1),
        ("ASAP Endpoint Unreachable", 1),
        ("ASAP Server Announce", 1),
        ("ASAP Error", 3), // unrecognized message, unrecognized parameter, overrun
    ];
    for (name, least) in expected {
        let n = o.types.get(name).copied().unwrap_or(0);
        assert!(
            n >= least,
            "{name}: {n} in the capture, expected >= {least}\n{ctx}"
        );
    }
    let least: usize = expected.iter().map(|e| e.1).sum();
    assert!(
        o.summary.0 >= least,
        "{} < {least} messages\n{ctx}",
        o.summary.0
    );
    assert_eq!(o.summary.0, o.rows.len());
    assert!(
        o.rows.iter().all(|r| r.sport != GARBAGE_PORT),
        "the garbage client's messages are not rsplb's"
    );

    // The variants, as Wireshark read them (flags, parameters) and as they were sent (the
    // bytes decode_check dissected, decoded by rsplb).
    let of = |t: u8| o.rows.iter().filter(move |r| r.msg_type == t);
    let has = |t: u8, what: &str, f: &dyn Fn(&Row) -> bool| {
        assert!(of(t).any(f), "no ASAP type {t} that {what}\n{ctx}");
    };
    let element_registrations = of(1)
        .filter(|r| {
            matches!(asap(r), AsapMessage::Registration { element, .. } if element.id == PeId(0xa1))
        })
        .count();
    assert!(
        element_registrations >= 2,
        "the element registered {element_registrations} times: no re-registration\n{ctx}"
    );
    has(3, "accepts (R flag clear)", &|r| r.flags & 1 == 0);
    has(3, "refuses with Rejected Security", &|r| {
        r.flags & 1 == 1 && causes(&asap(r)).contains(&CauseCode::RejectedSecurity)
    });
    has(5, "has no Handle Resolution Option", &|r| {
        !r.params.contains("0x803f")
    });
    has(5, "carries the Handle Resolution Option", &|r| {
        r.params.contains("0x803f")
    });
    has(6, "lists the element", &|r| {
        r.params.contains("0x000a") && causes(&asap(r)).is_empty()
    });
    has(6, "reports an unknown pool", &|r| {
        causes(&asap(r)) == [CauseCode::UnknownPoolHandle]
    });
    has(
        7,
        "keeps the element alive",
        &|r| matches!(asap(r), AsapMessage::EndpointKeepAlive { id, .. } if id == PeId(0xa1)),
    );
    has(10, "goes by UDP", &|r| r.transport == "udp");
    has(14, "reports an unrecognized message", &|r| {
        causes(&asap(r)) == [CauseCode::UnrecognizedMessage]
    });
    has(14, "reports an unrecognized parameter", &|r| {
        causes(&asap(r)) == [CauseCode::UnrecognizedParameter]
    });
    has(
        14,
        "answers a parameter overrunning the message (nothing to quote)",
        &|r| causes(&asap(r)) == [CauseCode::Unspecified],
    );

    // What the garbage client got back is what the capture shows.
    let replies = &run.seen.garbage_replies;
    for code in [
        CauseCode::UnrecognizedMessage,
        CauseCode::UnrecognizedParameter,
        CauseCode::Unspecified,
    ] {
        assert!(
            replies
                .iter()
                .any(|m| matches!(m, AsapMessage::Error { .. }) && causes(m) == [code]),
            "{replies:?}"
        );
    }
}

#[test]
fn malformed_messages_on_the_wire_are_flagged() {
    let run = the_run();
    let o = &run.full;
    let ctx = format!("{}\n{}", o.output, run.capture_log);
    // The full capture holds the three garbage messages; each is flagged, nothing else is.
    assert_eq!(o.status, 1, "{ctx}");
    assert_eq!(o.summary.1, 3, "{ctx}");
    let bad: Vec<&Row> = o.rows.iter().filter(|r| r.verdict != "OK").collect();
    assert_eq!(bad.len(), 3, "{ctx}");
    assert!(bad.iter().all(|r| r.sport == GARBAGE_PORT), "{ctx}");
    let sent = garbage();
    let verdict_of = |m: &[u8]| {
        bad.iter()
            .find(|r| r.bytes == m)
            .map(|r| r.verdict.clone())
            .unwrap_or_else(|| panic!("{m:02x?} not flagged\n{ctx}"))
    };
    assert!(verdict_of(&sent[0]).contains("UNKNOWN"), "{ctx}");
    assert!(
        verdict_of(&sent[1]).contains("RFC-PARAMS") || verdict_of(&sent[1]).contains("UNKNOWN"),
        "{ctx}"
    );
    assert!(verdict_of(&sent[2]).contains("MALFORMED"), "{ctx}");
    // The rest of the full capture is the rsplb capture.
    assert_eq!(o.summary.0, run.rsplb.summary.0 + 3, "{ctx}");
}
