//! The one HTTP stack of rsplb's tools, on hyper: the server behind the registrar's admin
//! endpoint and `rsplb run`'s metrics and admin endpoint, and the client of `rsplb handlespace`
//! and the sidecar's HTTP checks.
//!
//! The server speaks HTTP/1.1, one request per connection (`Connection: close`), and bounds what
//! a client can hold: the request head must arrive within [`ServerLimits::header_timeout`] and
//! fit [`ServerLimits::max_header_bytes`] (else `431 Request Header Fields Too Large`; a malformed
//! head gets `400 Bad Request`), and the whole exchange, answer included, must be done within
//! [`ServerLimits::request_timeout`], after which the connection is dropped (a slowloris client
//! or one that never reads its answer ties up nothing for longer).

use std::{convert::Infallible, future::Future, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Method, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream, UnixListener},
};

/// A request as the server hands it to a handler.
pub type Request = hyper::Request<Incoming>;
/// An answer: the whole body in memory (every endpoint builds its answer before sending it).
pub type Response = hyper::Response<Full<Bytes>>;

/// What one client may cost the server.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// The request head (request line and headers) must be read within this long.
    pub header_timeout: Duration,
    /// The whole exchange must be done within this long.
    pub request_timeout: Duration,
    /// Largest request head, bytes (hyper needs at least 8192).
    pub max_header_bytes: usize,
}

impl ServerLimits {
    /// Limits for an exchange of at most `request_timeout`: the head within 5 s (or less), at
    /// most 16 KiB of it.
    pub fn within(request_timeout: Duration) -> Self {
        ServerLimits {
            header_timeout: request_timeout.min(Duration::from_secs(5)),
            request_timeout,
            max_header_bytes: 16 << 10,
        }
    }
}

/// Where a server listens.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Serves `handler` on `listener` until the task is dropped.
pub async fn serve<H, F>(listener: Listener, limits: ServerLimits, handler: H)
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                tokio::spawn(serve_connection(s, limits, handler.clone()))
            }),
            Listener::Unix(l) => l
                .accept()
                .await
                .map(|(s, _)| tokio::spawn(serve_connection(s, limits, handler.clone()))),
        };
        if accepted.is_err() {
            // Out of file descriptors, most likely: let some connections finish.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve_connection<S, H, F>(stream: S, limits: ServerLimits, handler: H)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let service = service_fn(move |req: Request| {
        let answer = handler(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(false)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(limits.request_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("HTTP connection: {e}"),
        Err(_) => log::debug!("HTTP connection dropped after {:?}", limits.request_timeout),
    }
}

/// An answer with `body` of type `content_type`.
pub fn answer(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON answer.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    answer(status, "application/json", body)
}

/// `404 Not Found` (JSON `{"error": ...}` naming what exists).
pub fn not_found(what_exists: &str) -> Response {
    let body = serde_json::json!({ "error": format!("not found; try {what_exists}") });
    json(StatusCode::NOT_FOUND, body.to_string())
}

/// `405 Method Not Allowed` for anything but GET (and HEAD, which hyper answers like GET
/// without the body).
pub fn only_get(req: &Request) -> Option<Response> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return None;
    }
    let mut r = json(
        StatusCode::METHOD_NOT_ALLOWED,
        r#"{"error":"only GET"}"#.to_string(),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(r)
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// `GET path` from `addr`: the status and head of the answer, its body only when `max_body` is
/// not 0 (at most that many bytes), all within `timeout`.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    max_body: usize,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), GetError> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| GetError::Connect(addr, e))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(header::HOST, host)
            .header(header::USER_AGENT, "rsplb")
            .header(header::CONNECTION, "close")
            .body(Full::new(Bytes::new()))?;
        let res = sender.send_request(req).await?;
        let status = res.status();
        let body = if max_body == 0 {
            Bytes::new()
        } else {
            Limited::new(res.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(e) => GetError::Http(*e),
                    Err(_) => GetError::TooLarge(max_body),
                })?
                .to_bytes()
        };
        driver.abort();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| GetError::Timeout(timeout))?
}

/// [`get`] from a program with no runtime at hand: the body of a `200 OK`, else an error.
pub fn get_blocking(
    addr: SocketAddr,
    path: &str,
    max_body: usize,
    timeout: Duration,
) -> Result<Bytes, GetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| GetError::Connect(addr, e))?;
    let (status, body) = rt.block_on(get(addr, &addr.to_string(), path, max_body, timeout))?;
    if status != StatusCode::OK {
        return Err(GetError::Status(status));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn server(limits: ServerLimits) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(Listener::Tcp(l), limits, |req: Request| async move {
            if let Some(r) = only_get(&req) {
                return r;
            }
            match req.uri().path() {
                "/hello" => answer(StatusCode::OK, "text/plain", "hello\n"),
                _ => not_found("/hello"),
            }
        }));
        addr
    }

    async fn raw(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the server kept the connection open")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn answers_paths_methods_and_bad_requests_properly() {
        let addr = server(ServerLimits::within(Duration::from_secs(5))).await;
        let (status, body) = get(addr, "x", "/hello", 1024, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello\n"[..]));
        let (status, _) = get(addr, "x", "/nope", 1024, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        let a = raw(
            addr,
            b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(a.starts_with("HTTP/1.1 405 Method Not Allowed"), "{a}");
        assert!(a.contains("Allow: GET, HEAD"), "{a}");
        let a = raw(addr, b"GARBAGE\r\n\r\n").await;
        assert!(a.starts_with("HTTP/1.1 400 Bad Request"), "{a}");
        let huge = format!(
            "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 << 10)
        );
        let a = raw(addr, huge.as_bytes()).await;
        assert!(
            a.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
            "{a}"
        );
        // Too large an answer for the client's limit is an error, not a truncated body.
        let e = get(addr, "x", "/hello", 3, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, GetError::TooLarge(3)), "{e}");
    }

    #[tokio::test]
    async fn a_slowloris_client_is_dropped_at_the_header_timeout() {
        let addr = server(ServerLimits {
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(60),
            max_header_bytes: 8192,
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let t0 = std::time::Instant::now();
        // A header line every 100 ms never completes the head.
        let mut closed = false;
        for i in 0..200 {
            let line = if i == 0 {
                "GET /hello HTTP/1.1\r\n".to_string()
            } else {
                format!("X-Slow-{i}: a\r\n")
            };
            if s.write_all(line.as_bytes()).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(n)) => {
                    // hyper may say 408 before closing.
                    let text = String::from_utf8_lossy(&buf[..n]);
                    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                }
                Err(_) => {}
            }
        }
        assert!(closed, "a client trickling its headers kept the connection");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "dropped only after {:?}",
            t0.elapsed()
        );
    }
}
