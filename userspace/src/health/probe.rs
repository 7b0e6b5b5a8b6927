//! The probes of the balancer-side checks: one attempt against one element, bounded by the
//! check's timeout, returning why it failed.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpStream, UdpSocket},
};

use crate::config::{CheckDecl, CheckKind};

/// The most of an HTTP body a check reads to look for `body_contains`.
const MAX_BODY: usize = 64 * 1024;

/// One check of `target` (the element's address and the check's port); `Ok` when healthy,
/// else why not.
pub async fn probe(
    check: &CheckDecl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    pool: &str,
    target: SocketAddr,
) -> Result<()> {
    let attempt = async {
        match check.kind {
            CheckKind::Tcp => TcpStream::connect(target)
                .await
                .map(drop)
                .with_context(|| format!("connecting to {target}")),
            CheckKind::Udp => udp(check, target).await,
            CheckKind::Http => {
                let s = TcpStream::connect(target)
                    .await
                    .with_context(|| format!("connecting to {target}"))?;
                http(check, target, s).await
            }
            CheckKind::Https => {
                let s = TcpStream::connect(target)
                    .await
                    .with_context(|| format!("connecting to {target}"))?;
                let config = tls.ok_or_else(|| anyhow!("no TLS configuration"))?.clone();
                let name = server_name(check, target)?;
                let s = tokio_rustls::TlsConnector::from(config)
                    .connect(name, s)
                    .await
                    .with_context(|| format!("TLS handshake with {target}"))?;
                http(check, target, s).await
            }
            CheckKind::Exec => exec(check, pool, target).await,
        }
    };
    match tokio::time::timeout(check.timeout(), attempt).await {
        Ok(r) => r,
        Err(_) => bail!("no answer within {} ms", check.timeout_ms),
    }
}

async fn udp(check: &CheckDecl, target: SocketAddr) -> Result<()> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let s = UdpSocket::bind(bind)
        .await
        .context("binding a UDP socket")?;
    s.connect(target).await?;
    s.send(check.send.as_deref().unwrap_or_default().as_bytes())
        .await
        .with_context(|| format!("sending to {target}"))?;
    let mut buf = vec![0u8; 65536];
    let n = s
        .recv(&mut buf)
        .await
        .with_context(|| format!("no reply from {target}"))?;
    match &check.expect {
        Some(want) if !contains(&buf[..n], want.as_bytes()) => {
            bail!("the reply ({n} bytes) does not contain {want:?}")
        }
        _ => Ok(()),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn host(check: &CheckDecl, target: SocketAddr) -> String {
    check.host.clone().unwrap_or_else(|| match target {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    })
}

fn server_name(
    check: &CheckDecl,
    target: SocketAddr,
) -> Result<rustls::pki_types::ServerName<'static>> {
    Ok(match &check.host {
        Some(h) => rustls::pki_types::ServerName::try_from(h.clone())
            .map_err(|e| anyhow!("`{h}` is not a TLS server name: {e}"))?,
        None => rustls::pki_types::ServerName::IpAddress(target.ip().into()),
    })
}

/// One GET over `io` with hyper: the status must be the expected one, and the body contain the
/// expected text.
async fn http<S>(check: &CheckDecl, target: SocketAddr, io: S) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .with_context(|| format!("HTTP with {target}"))?;
    let conn = tokio::spawn(conn);
    let path = check.path.as_deref().unwrap_or("/");
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, host(check, target))
        .header(hyper::header::USER_AGENT, "rsplb-check")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let resp = send
        .send_request(req)
        .await
        .with_context(|| format!("GET {path} from {target}"))?;
    let want = check.expect_status.unwrap_or(200);
    let status = resp.status().as_u16();
    let result = if status != want {
        Err(anyhow!("GET {path}: status {status}, expected {want}"))
    } else if let Some(text) = &check.body_contains {
        let mut body = resp.into_body();
        let mut seen: Vec<u8> = Vec::new();
        let mut found = false;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                seen.extend_from_slice(&data);
                if contains(&seen, text.as_bytes()) {
                    found = true;
                    break;
                }
                if seen.len() > MAX_BODY {
                    break;
                }
            }
        }
        if found {
            Ok(())
        } else {
            Err(anyhow!(
                "GET {path}: the body does not contain {text:?} (read {} bytes)",
                seen.len()
            ))
        }
    } else {
        Ok(())
    };
    conn.abort();
    result
}

async fn exec(check: &CheckDecl, pool: &str, target: SocketAddr) -> Result<()> {
    let argv = check.command.as_deref().unwrap_or_default();
    let (program, args) = argv.split_first().ok_or_else(|| anyhow!("no command"))?;
    let out = tokio::process::Command::new(program)
        .args(args)
        .env("RSPLB_ELEMENT_ADDR", target.ip().to_string())
        .env("RSPLB_ELEMENT_PORT", target.port().to_string())
        .env("RSPLB_POOL", pool)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.lines().last().unwrap_or("").trim();
    bail!(
        "{program} exited with {}{}",
        out.status,
        if err.is_empty() {
            String::new()
        } else {
            format!(": {err}")
        }
    )
}

/// The TLS configuration of an https check: verification against `ca`, or none.
pub fn tls_config(check: &CheckDecl) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = match &check.ca {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert: rustls::pki_types::CertificateDer<'static> =
                    cert.with_context(|| format!("a certificate of {}", path.display()))?;
                roots.add(cert)?;
            }
            if roots.is_empty() {
                bail!("{} holds no PEM certificate", path.display());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts any certificate (signatures are still checked, so the handshake is a real one): a
/// health check asks whether the service answers, not who it is, unless `ca` is given.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Probes against real sockets on the loopback (no namespaces needed).
#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpListener,
    };

    fn check(toml: &str) -> CheckDecl {
        toml::from_str(toml).unwrap()
    }

    /// A one-shot-per-connection HTTP server answering `status` and `body`.
    async fn http_server(status: u16, body: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn tcp_checks_connect() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let c = check("type = \"tcp\"");
        probe(&c, None, "p", addr).await.unwrap();
        drop(l);
        assert!(probe(&c, None, "p", addr).await.is_err());
    }

    #[tokio::test]
    async fn http_checks_status_and_body() {
        let ok = http_server(200, "all ok here").await;
        let bad = http_server(503, "down").await;
        let c = check("type = \"http\"\npath = \"/health\"\nbody_contains = \"ok\"");
        probe(&c, None, "p", ok).await.unwrap();
        let e = probe(&c, None, "p", bad).await.unwrap_err().to_string();
        assert!(e.contains("status 503, expected 200"), "{e}");
        let c = check("type = \"http\"\nbody_contains = \"nope\"");
        let e = probe(&c, None, "p", ok).await.unwrap_err().to_string();
        assert!(e.contains("does not contain"), "{e}");
        let c = check("type = \"http\"\nexpect_status = 503");
        probe(&c, None, "p", bad).await.unwrap();
    }

    #[tokio::test]
    async fn udp_checks_want_a_reply_with_the_expected_text() {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = s.recv_from(&mut buf).await {
                let mut reply = b"pong:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = s.send_to(&reply, peer).await;
            }
        });
        let c = check("type = \"udp\"\nsend = \"ping\"\nexpect = \"pong:ping\"");
        probe(&c, None, "p", addr).await.unwrap();
        let c = check("type = \"udp\"\nsend = \"ping\"\nexpect = \"other\"");
        assert!(probe(&c, None, "p", addr).await.is_err());
        // Nobody there: refused (ICMP) or no reply within the timeout.
        let gone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        let c = check("type = \"udp\"\nsend = \"ping\"\ntimeout_ms = 200");
        assert!(probe(&c, None, "p", gone_addr).await.is_err());
    }

    #[tokio::test]
    async fn exec_checks_get_the_element_in_their_environment() {
        let c = check(
            "type = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"test \\\"$RSPLB_ELEMENT_ADDR:$RSPLB_ELEMENT_PORT/$RSPLB_POOL\\\" = 192.0.2.1:80/web\"]",
        );
        probe(&c, None, "web", "192.0.2.1:80".parse().unwrap())
            .await
            .unwrap();
        let e = probe(&c, None, "web", "192.0.2.2:80".parse().unwrap())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("exited"), "{e}");
    }

    #[tokio::test]
    async fn https_checks_complete_a_real_handshake() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = s.shutdown().await;
                });
            }
        });
        let c = check("type = \"https\"\nexpect_status = 204");
        let tls = tls_config(&c).unwrap();
        probe(&c, Some(&tls), "p", addr).await.unwrap();
        let c = check("type = \"https\"");
        let e = probe(&c, Some(&tls), "p", addr).await.unwrap_err();
        assert!(e.to_string().contains("status 204"), "{e}");
    }
}
