//! Wireshark as the oracle for ENRP on a real capture: three registrars (rsplb's shell, in a
//! network namespace made for this test) peer over ENRP on TCP port 9901 and by multicast
//! Presence on UDP 9901, synchronise a late joiner, pass Handle Updates, answer a bad Handle
//! Update with an ERROR, and take over a registrar that dies. `shared/oracle/capture.sh`
//! records the namespace's loopback; `decode_check.py --strict` (with the oracle's
//! `enrp_over_tcp.lua` shim, which it loads for TCP 9901 itself by re-framing) must find every
//! message conforming and every ENRP message type present.
//!
//! Needs root (network namespace, dumpcap) and tshark (`cargo xtask setup`); the oracle is
//! checked out beside the repository (`../shared/oracle`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rsplb_registrar::client::{ClientConfig, PoolElementConfig, PoolElementHandle};
use rsplb_registrar::config::RegistrarConfig;
use rsplb_registrar::message::{EnrpBody, EnrpMessage, UpdateAction};
use rsplb_registrar::shell::{Registrar, RegistrarControl};
use rsplb_registrar::types::{
    PeId, Policy, PoolElement, RegistrarId, ServerInformation, TransportAddress, TransportUse,
};
use rsplb_registrar::wire;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

mod netns_support;
mod oracle_support;
use netns_support::Netns;
use oracle_support::{Capture, decode_check, require_environment};

const WAIT: Duration = Duration::from_secs(10);

fn lo(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))
}

struct Running {
    control: RegistrarControl,
    asap: SocketAddr,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(i: u8, peers: &[u8]) -> Running {
    let mut c = RegistrarConfig {
        registrar_id: Some(0xe000 + i as u32),
        asap_listen: vec![SocketAddr::new(lo(i), 3863)],
        admin: None,
        ..RegistrarConfig::default()
    };
    c.announce.enabled = false;
    c.enrp.listen = vec![SocketAddr::new(lo(i), 9901)];
    c.enrp.peers = peers
        .iter()
        .map(|p| SocketAddr::new(lo(*p), 9901))
        .collect();
    c.enrp.multicast_group = Some("239.0.0.51:9901".parse().unwrap());
    c.enrp.interface = Some(Ipv4Addr::new(127, 0, 0, 1));
    let r = Registrar::bind(c).await.unwrap();
    let control = r.control();
    let asap = r.asap_addrs()[0];
    let task = tokio::spawn(r.run(std::future::pending()));
    Running {
        control,
        asap,
        task,
    }
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn elements(r: &Running) -> usize {
    r.control.snapshot().await.unwrap().element_count
}

async fn pe(registrar: SocketAddr, id: u32) -> PoolElementHandle {
    let client = ClientConfig {
        registrars: vec![registrar],
        ..ClientConfig::default()
    };
    let mut c = PoolElementConfig::new(
        "web".parse().unwrap(),
        TransportAddress::Tcp {
            port: 8080,
            transport_use: TransportUse::DataOnly,
            addr: Ipv4Addr::LOCALHOST.into(),
        },
    );
    c.id = Some(PeId(id));
    PoolElementHandle::register(client, c).await.unwrap()
}

async fn scenario() {
    let a = start(1, &[2]).await;
    let b = start(2, &[1]).await;
    until("a and b serve", async || {
        a.control.registrars().await.unwrap().peers.len() == 1
            && b.control.registrars().await.unwrap().peers.len() == 1
    })
    .await;
    // Handle Updates (ADD) from both.
    let _pa = pe(a.asap, 1).await;
    let pa2 = pe(a.asap, 2).await;
    let _pb = pe(b.asap, 3).await;
    until("updates", async || {
        elements(&a).await == 3 && elements(&b).await == 3
    })
    .await;
    // A late joiner: List and Handle Table Request/Response.
    let c = start(3, &[1]).await;
    until("c synchronised", async || elements(&c).await == 3).await;
    // A deregistration: Handle Update (DEL).
    pa2.deregister().await.unwrap();
    until("deletion", async || elements(&c).await == 2).await;

    // A peer that says who it is, then sends a Handle Update that breaks the pool's policy:
    // registrar a answers with an ENRP ERROR.
    let mut s = tokio::net::TcpStream::connect(SocketAddr::new(lo(1), 9901))
        .await
        .unwrap();
    let fake = RegistrarId(0xfa4e);
    let presence = EnrpMessage {
        sender: fake,
        receiver: RegistrarId(0),
        body: EnrpBody::Presence {
            reply_required: false,
            checksum: 0xffff,
            info: Some(ServerInformation {
                id: fake,
                transport: TransportAddress::Tcp {
                    port: 9901,
                    transport_use: TransportUse::DataOnly,
                    addr: lo(9),
                },
            }),
        },
    };
    let update = EnrpMessage {
        sender: fake,
        receiver: RegistrarId(0xe001),
        body: EnrpBody::HandleUpdate {
            takeover_suggested: false,
            action: UpdateAction::AddPe,
            pool_handle: "web".parse().unwrap(),
            element: PoolElement {
                id: PeId(99),
                home_registrar: fake,
                registration_life_ms: 30_000,
                user_transport: TransportAddress::Tcp {
                    port: 8080,
                    transport_use: TransportUse::DataOnly,
                    addr: Ipv4Addr::LOCALHOST.into(),
                },
                policy: Policy::LeastUsed { load: 0 },
                asap_transport: None,
            },
        },
    };
    let mut bytes = wire::encode_enrp(&presence).unwrap();
    bytes.extend(wire::encode_enrp(&update).unwrap());
    s.write_all(&bytes).await.unwrap();
    until("the error", async || {
        a.control.registrars().await.unwrap().enrp.errors_sent >= 1
    })
    .await;
    drop(s);

    // b dies (its element's PE only knows b): a or c takes it over.
    b.task.abort();
    until("takeover", async || {
        let s = a.control.registrars().await.unwrap();
        s.enrp.takeovers_completed
            + c.control
                .registrars()
                .await
                .unwrap()
                .enrp
                .takeovers_completed
            >= 1
    })
    .await;
    // Let the survivors exchange a few Presences after the takeover.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.task.abort();
    c.task.abort();
}

#[test]
fn every_enrp_message_rsplb_sends_passes_wireshark_strict() {
    require_environment();
    let dir = std::env::temp_dir().join(format!("rsplb-enrp-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("enrp.pcap");
    let ns = Netns::new("enrpcap");
    ns.ip(&["link", "set", "lo", "multicast", "on"]);
    ns.ip(&["route", "add", "224.0.0.0/4", "dev", "lo"]);
    let capture = Capture::start(&ns, &pcap);
    let ns_ref = &ns;
    std::thread::scope(|s| {
        s.spawn(move || {
            ns_ref.enter();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(60), scenario())
                    .await
                    .expect("the scenario ends within 60 s")
            })
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    capture.finish();
    drop(ns);
    let o = decode_check(&pcap);
    assert_eq!(o.status, 0, "decode_check --strict failed:\n{}", o.output);
    assert_eq!(o.summary.1, 0, "{}", o.output);
    for t in [
        "Presence",
        "Handle Table Request",
        "Handle Table Response",
        "Handle Update",
        "List Request",
        "List Response",
        "Init Takeover",
        "Init Takeover Ack",
        "Takeover Server",
        "Error",
    ] {
        assert!(
            o.types
                .keys()
                .any(|k| k.starts_with("ENRP") && k.ends_with(t)),
            "no ENRP {t} in the capture:\n{}",
            o.output
        );
    }
    // Presence went by multicast too (UDP, decoded natively).
    assert!(
        o.rows
            .iter()
            .any(|r| r.transport == "udp" && r.msg_type == 1),
        "{}",
        o.output
    );
    if std::env::var_os("RSPLB_KEEP_CAPTURE").is_some() {
        eprintln!("capture kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
