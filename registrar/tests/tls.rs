//! TLS with mutual authentication over real loopback connections (RFC 5355): a registrar (the
//! tokio shell, in-process) serving ASAP and ENRP over TLS only, pool elements and pool users
//! through the client library, every certificate made by a CA generated for the test run.
//!
//! - An identity allowed into a pool registers; one allowed elsewhere gets Rejected Security;
//!   pool users resolve by identity.
//! - A client without a certificate, or with one from another CA, gets no answer at all.
//! - Two registrars peer over ENRP with TLS and share the handlespace.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rsplb_registrar::client::{
    CacheConfig, ClientConfig, ClientError, PoolElementConfig, PoolElementHandle, PoolUser,
};
use rsplb_registrar::config::{IdentityRule, RegistrarConfig, TlsConfig};
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::shell::{Registrar, RegistrarControl};
use rsplb_registrar::tls::ClientTls;
use rsplb_registrar::types::{CauseCode, PeId, PoolHandle, TransportAddress, TransportUse};
use rsplb_registrar::wire::encode_asap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(15);

/// Addresses of test `net`: 127.79.net.i.
fn ip(net: u8, i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 79, net, i))
}

/// A CA generated for this run, issuing certificates into a directory of PEM files.
struct Ca {
    dir: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// The PEM files of one certificate.
#[derive(Clone)]
struct Issued {
    cert: PathBuf,
    key: PathBuf,
}

impl Ca {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rsplb-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Self { dir, cert, key }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf certificate with these subject alternative names (DNS names or IP addresses) and,
    /// when given, this subject common name.
    fn issue(&self, file: &str, sans: &[&str], cn: Option<&str>) -> Issued {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let issued = Issued {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }

    fn client(&self, who: &Issued, registrars: Vec<SocketAddr>) -> ClientConfig {
        ClientConfig {
            registrars,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            hunt_timeout: Duration::from_secs(3),
            hunt_retry_delay: Duration::from_millis(100),
            tls: Some(
                ClientTls::from_pem_files(&who.cert, &who.key, &self.bundle(), None).unwrap(),
            ),
            ..ClientConfig::default()
        }
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rule(identity: &str, register: &[&str], resolve: bool, registrar: bool) -> IdentityRule {
    IdentityRule {
        identity: identity.into(),
        register: register.iter().map(|s| s.to_string()).collect(),
        resolve,
        registrar,
    }
}

/// Who may do what in these tests.
fn identities() -> Vec<IdentityRule> {
    vec![
        rule("web-*.pe.test", &["web", "web-*"], false, false),
        rule("api.pe.test", &["api"], false, false),
        rule("pu.test", &[], true, false),
        rule("pr*.scope.test", &[], false, true),
    ]
}

struct Running {
    asap_tls: SocketAddr,
    control: RegistrarControl,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A registrar on 127.79.net.i serving TLS only (`tls.require`), ENRP on :9902 with `peers`.
async fn start(ca: &Ca, net: u8, i: u8, peers: &[u8]) -> Running {
    start_as(ca, net, i, peers, &format!("pr{i}.scope.test")).await
}

/// The same, with a certificate for `name`.
async fn start_as(ca: &Ca, net: u8, i: u8, peers: &[u8], name: &str) -> Running {
    let me = ip(net, i);
    let cert = ca.issue(&format!("pr{net}-{i}"), &[name, &me.to_string()], None);
    let mut config = RegistrarConfig {
        asap_listen: Vec::new(),
        admin: None,
        registrar_id: Some(0x2000 + i as u32),
        tls: Some(TlsConfig {
            certificate: cert.cert,
            private_key: cert.key,
            ca: ca.bundle(),
            asap_listen: vec![SocketAddr::new(me, 0)],
            enrp: true,
            require: true,
        }),
        ..RegistrarConfig::default()
    };
    config.announce.enabled = false;
    config.security.identities = Some(identities());
    if !peers.is_empty() {
        config.enrp.listen = vec![SocketAddr::new(me, 9902)];
        config.enrp.peers = peers
            .iter()
            .map(|p| SocketAddr::new(ip(net, *p), 9902))
            .collect();
    }
    let registrar = Registrar::bind(config).await.unwrap();
    assert!(registrar.asap_addrs().is_empty(), "no plain listener");
    let asap_tls = registrar.asap_tls_addrs()[0];
    let control = registrar.control();
    let task = tokio::spawn(registrar.run(std::future::pending()));
    Running {
        asap_tls,
        control,
        task,
    }
}

fn pe_config(pool: &str, port: u16, id: u32) -> PoolElementConfig {
    let mut config = PoolElementConfig::new(
        pool.parse::<PoolHandle>().unwrap(),
        TransportAddress::Tcp {
            port,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        },
    );
    config.id = Some(PeId(id));
    config
}

async fn elements(r: &Running, pool: &str) -> Vec<u32> {
    let s = r.control.snapshot().await.unwrap();
    let mut ids: Vec<u32> = s
        .pools
        .iter()
        .filter(|p| p.handle == pool)
        .flat_map(|p| p.elements.iter().map(|e| e.id))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_decide_who_registers_where_and_who_resolves() {
    let ca = Ca::new("ident");
    let r = start(&ca, 1, 1, &[]).await;
    let web = ca.issue("web-1", &["web-1.pe.test"], None);
    let api = ca.issue("api", &[], Some("api.pe.test")); // identity from the common name
    let pu = ca.issue("pu", &["pu.test"], None);
    let stranger = ca.issue("stranger", &["stranger.test"], None);

    // Allowed into "web": registered.
    let handle =
        PoolElementHandle::register(ca.client(&web, vec![r.asap_tls]), pe_config("web", 8001, 1))
            .await
            .expect("an identity allowed into the pool registers");
    assert_eq!(elements(&r, "web").await, vec![1]);

    // Allowed into "api" only: Rejected Security for "web", accepted in "api".
    match PoolElementHandle::register(ca.client(&api, vec![r.asap_tls]), pe_config("web", 8002, 2))
        .await
    {
        Err(ClientError::Rejected { causes, .. }) => {
            assert!(
                causes.iter().any(|c| c.code == CauseCode::RejectedSecurity),
                "{causes:?}"
            );
        }
        other => panic!("expected Rejected Security, got {other:?}"),
    }
    let api_handle =
        PoolElementHandle::register(ca.client(&api, vec![r.asap_tls]), pe_config("api", 8002, 2))
            .await
            .expect("api.pe.test may register in api");
    assert_eq!(elements(&r, "web").await, vec![1]);

    // A pool user resolves; an identity without any rule learns nothing.
    let user = PoolUser::new(ca.client(&pu, vec![r.asap_tls]), CacheConfig::default()).unwrap();
    let res = user
        .resolve_fresh(&"web".parse().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        res.elements.iter().map(|e| e.id.0).collect::<Vec<_>>(),
        vec![1]
    );
    let nobody = PoolUser::new(
        ca.client(&stranger, vec![r.asap_tls]),
        CacheConfig::default(),
    )
    .unwrap();
    assert!(matches!(
        nobody.resolve_fresh(&"web".parse().unwrap(), None).await,
        Err(ClientError::UnknownPool(_))
    ));
    // Nor may it register.
    assert!(matches!(
        PoolElementHandle::register(
            ca.client(&stranger, vec![r.asap_tls]),
            pe_config("web", 8003, 3)
        )
        .await,
        Err(ClientError::Rejected { .. })
    ));

    handle.deregister().await.unwrap();
    api_handle.deregister().await.unwrap();
    assert!(elements(&r, "web").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_an_acceptable_certificate_get_no_answer() {
    let _ = env_logger::builder().is_test(true).try_init();
    let ca = Ca::new("refuse");
    let r = start(&ca, 2, 1, &[]).await;
    let web = ca.issue("web-1", &["web-1.pe.test"], None);
    let handle =
        PoolElementHandle::register(ca.client(&web, vec![r.asap_tls]), pe_config("web", 8001, 1))
            .await
            .unwrap();

    // No client certificate: the registrar ends the handshake (TLS 1.3 reports that on the
    // client's first read) and never sees a message.
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        for c in rsplb_registrar::tls::load_certs(&ca.bundle()).unwrap() {
            roots.add(c).unwrap();
        }
        roots
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(r.asap_tls).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(r.asap_tls.ip().into());
    let answered = match connector.connect(name, tcp).await {
        Err(_) => false,
        Ok(mut tls) => {
            let request = encode_asap(&AsapMessage::HandleResolution {
                pool_handle: "web".parse().unwrap(),
                items: None,
            })
            .unwrap();
            let _ = tls.write_all(&request).await;
            let _ = tls.flush().await;
            let mut buf = [0u8; 256];
            matches!(
                tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await,
                Ok(Ok(n)) if n > 0
            )
        }
    };
    assert!(!answered, "a client without a certificate was answered");

    // A certificate from another CA, for an identity that would be allowed: refused too.
    let rogue = Ca::new("rogue");
    let forged = rogue.issue("pu", &["pu.test"], None);
    let mut client = ca.client(&forged, vec![r.asap_tls]);
    // It trusts the right CA for the registrar, but presents the rogue CA's certificate.
    client.tls =
        Some(ClientTls::from_pem_files(&forged.cert, &forged.key, &ca.bundle(), None).unwrap());
    client.request_attempts = 1;
    let user = PoolUser::new(client, CacheConfig::default()).unwrap();
    let refused = user.resolve_fresh(&"web".parse().unwrap(), None).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::NoRegistrar { .. } | ClientError::Io(_) | ClientError::Timeout { .. })
        ),
        "{refused:?}"
    );

    // And a client that does not trust the registrar's CA refuses the registrar.
    let pu = ca.issue("pu", &["pu.test"], None);
    let mut client = ca.client(&pu, vec![r.asap_tls]);
    client.tls = Some(ClientTls::from_pem_files(&pu.cert, &pu.key, &rogue.bundle(), None).unwrap());
    let user = PoolUser::new(client, CacheConfig::default()).unwrap();
    assert!(matches!(
        user.resolve_fresh(&"web".parse().unwrap(), None).await,
        Err(ClientError::NoRegistrar { .. })
    ));

    // The registered element was never disturbed.
    assert_eq!(elements(&r, "web").await, vec![1]);
    handle.deregister().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registrars_share_the_handlespace_over_enrp_with_tls() {
    let _ = env_logger::builder().is_test(true).try_init();
    let ca = Ca::new("enrp");
    // Registrar 3's certificate is from the right CA, for an identity that may not peer
    // (intruder.test): registrar 1 dials it (a static peer) and drops the connection, and what
    // it sends to 1 and 2 is not heard.
    let r1 = start(&ca, 3, 1, &[2, 3]).await;
    let r2 = start(&ca, 3, 2, &[1]).await;
    let r3 = start_as(&ca, 3, 3, &[1, 2], "intruder.test").await;
    let web = ca.issue("web-1", &["web-1.pe.test"], None);
    let web2 = ca.issue("web-2", &["web-2.pe.test"], None);
    // Registrations are refused while a registrar still synchronises: the client hunts again.
    let a = PoolElementHandle::register(
        ca.client(&web, vec![r1.asap_tls]),
        pe_config("web", 8001, 1),
    )
    .await
    .unwrap();
    let b = PoolElementHandle::register(
        ca.client(&web2, vec![r2.asap_tls]),
        pe_config("web", 8002, 2),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (v1, v2) = (elements(&r1, "web").await, elements(&r2, "web").await);
        if v1 == vec![1, 2] && v2 == vec![1, 2] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no convergence over ENRP with TLS: {v1:?} / {v2:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peer_ids = |r: &rsplb_registrar::shell::RegistrarsSnapshot| -> Vec<u32> {
        r.peers.iter().map(|p| p.registrar_id).collect()
    };
    assert_eq!(
        peer_ids(&r1.control.registrars().await.unwrap()),
        vec![0x2002]
    );

    // The intruder serves its own clients alone; its element never reaches 1 or 2.
    let web3 = ca.issue("web-3", &["web-3.pe.test"], None);
    let c = PoolElementHandle::register(
        ca.client(&web3, vec![r3.asap_tls]),
        pe_config("web", 8003, 3),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(elements(&r1, "web").await, vec![1, 2]);
    assert_eq!(elements(&r2, "web").await, vec![1, 2]);
    for r in [&r1, &r2] {
        let snapshot = r.control.registrars().await.unwrap();
        assert!(!peer_ids(&snapshot).contains(&0x2003));
        assert!(
            snapshot.enrp.refused > 0,
            "the intruder's messages were refused"
        );
    }
    a.deregister().await.unwrap();
    b.deregister().await.unwrap();
    c.deregister().await.unwrap();
}
