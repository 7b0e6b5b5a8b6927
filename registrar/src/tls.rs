//! TLS for ASAP and ENRP over TCP, as RFC 5355 requires of registrars, pool elements and pool
//! users: mutual authentication with certificates (rustls, ring provider; TLS 1.2 and 1.3).
//!
//! - A registrar presents its certificate chain and accepts only clients (pool elements, pool
//!   users, peer registrars) whose certificate chains to the configured CA bundle
//!   ([`ServerTls`]). The authenticated identity of a peer ([`peer_identity`]: its certificate's
//!   first DNS subject alternative name, else its subject common name) goes to the core with the
//!   peer's addresses, where `security.identities` decides what it may do.
//! - A registrar dialling a peer registrar (ENRP) presents the same certificate and checks that
//!   the peer's chains to the same CA. It does not check the peer's name against the address it
//!   dialled (peers are learned by address, from Presence and List Responses): the core
//!   authorizes the peer by its identity instead, as it does for peers that dial in.
//! - A pool element or pool user ([`ClientTls`]) presents its own certificate and checks the
//!   registrar's: chained to its CA and valid for the configured server name, or, without one,
//!   for the registrar's IP address (an IP address subject alternative name).
//!
//! A failed handshake (no certificate, one the CA does not vouch for, garbage) is logged at most
//! once a minute per source address, and at most a few lines per second in all
//! ([`HandshakeLog`]): a scan or a misconfigured client cannot flood the log.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// IANA's port for ASAP over TLS (asap-tls).
pub const ASAP_TLS_PORT: u16 = 3864;
/// IANA's port for ENRP over TLS (enrp-tls).
pub const ENRP_TLS_PORT: u16 = 9902;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain in a PEM file (leaf first).
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no PEM certificate found", path.display());
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("reading a PEM private key from {}", path.display()))
}

/// The trust anchors in a PEM CA bundle.
pub fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
    }
    Ok(roots)
}

/// The identity a certificate proves: its first DNS subject alternative name, else its subject
/// common name. `None` without a certificate or without either name.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certs?.first()?;
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    if let Some(dns) = cert.valid_dns_names().next() {
        return Some(dns.to_string());
    }
    common_name(cert.subject())
}

/// The first common name (OID 2.5.4.3) of a DER subject (the contents of its Name SEQUENCE).
fn common_name(mut name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    while !name.is_empty() {
        let (tag, set, rest) = der(name)?;
        name = rest;
        if tag != 0x31 {
            return None;
        }
        let mut atvs = set;
        while !atvs.is_empty() {
            let (tag, atv, rest) = der(atvs)?;
            atvs = rest;
            if tag != 0x30 {
                return None;
            }
            let (oid_tag, oid, value) = der(atv)?;
            if oid_tag == 0x06 && oid == CN {
                let (vtag, v, _) = der(value)?;
                // UTF8String, PrintableString, IA5String.
                if matches!(vtag, 0x0c | 0x13 | 0x16) {
                    return std::str::from_utf8(v).ok().map(str::to_string);
                }
                return None;
            }
        }
    }
    None
}

/// One DER element: tag, contents, what follows. Definite lengths of up to 4 bytes only.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        (
            bytes.iter().fold(0usize, |a, &b| (a << 8) | b as usize),
            2 + n,
        )
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, &input[end..]))
}

/// A registrar's TLS: the acceptor for ASAP and ENRP listeners (client certificates required),
/// and the connector for dialling peer registrars.
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub peer_connector: tokio_rustls::TlsConnector,
    pub log: Arc<HandshakeLog>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// From PEM files: this registrar's chain and key, and the CA bundle its clients' and peers'
    /// certificates must chain to.
    pub fn from_pem_files(
        certificate: &Path,
        private_key: &Path,
        ca: &Path,
    ) -> anyhow::Result<Self> {
        Self::new(
            load_certs(certificate)?,
            load_key(private_key)?,
            load_roots(ca)?,
        )
    }

    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        roots: RootCertStore,
    ) -> anyhow::Result<Self> {
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .context("building the client certificate verifier")?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .context("this registrar's certificate and key do not fit together")?;
        let peer_verifier = Arc::new(ChainOnly {
            inner: rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .context("building the peer certificate verifier")?,
        });
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .dangerous() // only the name check is left to the core's identity rules
            .with_custom_certificate_verifier(peer_verifier)
            .with_client_auth_cert(chain, key)
            .context("this registrar's certificate and key do not fit together")?;
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            peer_connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            log: Arc::new(HandshakeLog::default()),
        })
    }

    /// Accept a TLS connection within [`HANDSHAKE_TIMEOUT`]; a failure is logged (rate-limited)
    /// as `what` ("ASAP", "ENRP") and returns `None`.
    pub async fn accept(
        &self,
        what: &str,
        stream: TcpStream,
        remote: SocketAddr,
    ) -> Option<(MaybeTlsStream, Option<String>)> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let identity = peer_identity(tls.get_ref().1.peer_certificates());
                Some((MaybeTlsStream::Tls(Box::new(tls.into())), identity))
            }
            Ok(Err(e)) => {
                self.log.failed(what, remote, &e.to_string());
                None
            }
            Err(_) => {
                self.log
                    .failed(what, remote, "no handshake within the timeout");
                None
            }
        }
    }

    /// Dial a peer registrar's TLS endpoint (ENRP) over `stream`.
    pub async fn connect_peer(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
    ) -> io::Result<(MaybeTlsStream, Option<String>)> {
        let name = ServerName::IpAddress(remote.ip().into());
        let tls =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, self.peer_connector.connect(name, stream))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
        let identity = peer_identity(tls.get_ref().1.peer_certificates());
        Ok((MaybeTlsStream::Tls(Box::new(tls.into())), identity))
    }
}

/// The peer's chain must lead to the CA; the name it is valid for is not compared with the
/// address dialled (see the module documentation).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last: a name error means the chain held.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A pool element's or pool user's TLS towards registrars.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// From PEM files: this client's chain and key, and the CA bundle the registrar's
    /// certificate must chain to. `server_name`: the name every registrar's certificate must be
    /// valid for (`None`: each registrar's IP address).
    pub fn from_pem_files(
        certificate: &Path,
        private_key: &Path,
        ca: &Path,
        server_name: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::new(
            load_certs(certificate)?,
            load_key(private_key)?,
            load_roots(ca)?,
            server_name,
        )
    }

    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        roots: RootCertStore,
        server_name: Option<&str>,
    ) -> anyhow::Result<Self> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("the client certificate and key do not fit together")?;
        let server_name = server_name
            .map(|n| {
                ServerName::try_from(n.to_string())
                    .with_context(|| format!("{n:?} is not a valid server name"))
            })
            .transpose()?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// Handshake with the registrar at `remote` over `stream`.
    pub async fn connect(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
    ) -> io::Result<MaybeTlsStream> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(remote.ip().into()));
        let tls = self.connector.connect(name, stream).await?;
        Ok(MaybeTlsStream::Tls(Box::new(tls.into())))
    }
}

/// A TCP connection, plain or with TLS on it.
#[derive(Debug)]
pub enum MaybeTlsStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl MaybeTlsStream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether TLS protects this connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Log lines about refused handshakes: one per source address a minute (with a count of those
/// not logged), and at most [`Self::LINES_PER_SECOND`] in all.
#[derive(Debug, Default)]
pub struct HandshakeLog {
    state: Mutex<LogState>,
    /// Every refused handshake, logged or not.
    pub failures: AtomicU64,
}

#[derive(Debug, Default)]
struct LogState {
    /// Per source: when it was last logged, and refusals since then.
    sources: HashMap<IpAddr, (Instant, u64)>,
    second: Option<Instant>,
    lines_this_second: u32,
}

impl HandshakeLog {
    /// Each source is named at most once per this long.
    pub const PER_SOURCE: Duration = Duration::from_secs(60);
    pub const LINES_PER_SECOND: u32 = 5;
    /// Sources remembered at most (a wide scan forgets the oldest instead of growing).
    const MAX_SOURCES: usize = 4096;

    /// A handshake from `remote` failed for `why`. Returns whether a line was logged.
    pub fn failed(&self, what: &str, remote: SocketAddr, why: &str) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let ip = remote.ip();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, n)) = s.sources.get_mut(&ip)
            && now.duration_since(*at) < Self::PER_SOURCE
        {
            *n += 1;
            return false;
        }
        if s.second
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            s.second = Some(now);
            s.lines_this_second = 0;
        }
        if s.lines_this_second >= Self::LINES_PER_SECOND {
            return false;
        }
        s.lines_this_second += 1;
        if s.sources.len() >= Self::MAX_SOURCES {
            s.sources
                .retain(|_, (at, _)| now.duration_since(*at) < Self::PER_SOURCE);
            if s.sources.len() >= Self::MAX_SOURCES {
                s.sources.clear();
            }
        }
        let since = s.sources.insert(ip, (now, 0)).map_or(0, |(_, n)| n);
        drop(s);
        // The peer's own text never reaches the log: `why` is rustls's description.
        let why: String = why.chars().take(200).collect();
        log::warn!(
            "{what} over TLS: connection with {remote} refused: {why} (each address is logged \
             at most once a minute; {since} more with {ip} since its last line)"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_logged_once_a_minute() {
        let log = HandshakeLog::default();
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:5000".parse().unwrap();
        assert!(log.failed("ASAP", a, "no certificate"));
        assert!(!log.failed("ASAP", a, "no certificate"));
        assert!(!log.failed("ASAP", "192.0.2.1:5001".parse().unwrap(), "x"));
        assert!(log.failed("ASAP", b, "no certificate"));
        assert_eq!(log.failures.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_wide_scan_is_capped_per_second() {
        let log = HandshakeLog::default();
        let logged = (0..100u8)
            .filter(|i| log.failed("ASAP", SocketAddr::from(([192, 0, 2, *i], 1)), "x"))
            .count();
        assert_eq!(logged, HandshakeLog::LINES_PER_SECOND as usize);
    }

    #[test]
    fn der_walk_refuses_truncated_input() {
        assert!(der(&[0x30]).is_none());
        assert!(der(&[0x30, 0x05, 1, 2]).is_none());
        assert!(der(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_none());
        assert_eq!(
            der(&[0x04, 0x01, 9, 7]),
            Some((0x04, &[9u8][..], &[7u8][..]))
        );
    }
}
