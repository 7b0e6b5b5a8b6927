//! ASAP over TCP: one connection is one peer; each message is delimited by its own Length field
//! (the RSerPool header's, see [`crate::wire::frame_length`]).
//!
//! What one connection may hold ([`PeerTimeouts`]): a peer that does not take its answers within
//! the write timeout is dropped at once (reset, nothing more is flushed: waiting for a flush is
//! what the peer is not doing); one that sends nothing for the idle timeout, or leaves a message
//! incomplete for the partial-message timeout, is closed. An idle connection holds no read
//! buffer.
//!
//! With TLS ([`TcpTransport::bind_tls`], RFC 5355) each connection first completes a handshake
//! with a client certificate the CA vouches for (within [`crate::tls::HANDSHAKE_TIMEOUT`], at
//! most [`MAX_HANDSHAKES`] at once); only then does the registrar learn of the peer, with the
//! identity the certificate proves. A refused handshake never reaches the core.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::transport::{
    Delivery, PeerCommand, PeerHandle, PeerTimeouts, Transport, TransportContext,
};
use crate::core::{PeerId, PeerInfo};
use crate::tls::{MaybeTlsStream, ServerTls};
use crate::wire;

/// TLS handshakes in progress at once on one listener; connections beyond are closed unread.
pub const MAX_HANDSHAKES: usize = 1024;

/// A bound TCP listener for ASAP, plain or with TLS.
pub struct TcpTransport {
    listener: TcpListener,
    tls: Option<ServerTls>,
}

impl TcpTransport {
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            tls: None,
        })
    }

    /// A listener whose peers must complete a TLS handshake with a client certificate first.
    pub async fn bind_tls(addr: SocketAddr, tls: ServerTls) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            tls: Some(tls),
        })
    }
}

/// What the connection loop needs of a stream: halves to read and write at once, and a way to
/// drop the connection with a reset.
trait PeerStream: Send + 'static {
    type Rd: AsyncRead + Unpin + Send;
    type Wr: AsyncWrite + Unpin + Send;
    fn split(self) -> (Self::Rd, Self::Wr);
    /// Drop the connection without waiting for anything (see [`drop_now`]).
    fn reset(rd: Self::Rd, wr: Self::Wr);
}

impl PeerStream for TcpStream {
    type Rd = OwnedReadHalf;
    type Wr = OwnedWriteHalf;
    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
    fn reset(rd: OwnedReadHalf, wr: OwnedWriteHalf) {
        if let Ok(stream) = rd.reunite(wr) {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
        }
    }
}

impl PeerStream for MaybeTlsStream {
    type Rd = tokio::io::ReadHalf<MaybeTlsStream>;
    type Wr = tokio::io::WriteHalf<MaybeTlsStream>;
    fn split(self) -> (Self::Rd, Self::Wr) {
        tokio::io::split(self)
    }
    fn reset(rd: Self::Rd, wr: Self::Wr) {
        let stream = rd.unsplit(wr);
        let _ = socket2::SockRef::from(stream.tcp()).set_linger(Some(std::time::Duration::ZERO));
    }
}

/// Hand a connected peer to the registrar and serve it in a task of `tasks`.
fn start_peer<S: PeerStream>(
    tasks: &mut JoinSet<()>,
    ctx: &TransportContext,
    stream: S,
    info: PeerInfo,
) {
    // Reap finished connection tasks so the set does not grow.
    while tasks.try_join_next().is_some() {}
    let peer = ctx.next_peer_id();
    let (tx, rx) = mpsc::channel(ctx.max_pending_messages);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let ctx2 = ctx.clone();
    // The task owns the connection; dropping the JoinSet (the transport's task is aborted at
    // shutdown) aborts every connection.
    let abort = tasks.spawn(async move {
        // Wait until the registrar knows the peer, so no message precedes it.
        if ready_rx.await.is_err() {
            return;
        }
        serve_peer(stream, peer, rx, &ctx2).await;
        ctx2.sink.disconnected(peer);
    });
    ctx.sink.connected(peer, info, PeerHandle::new(tx, abort));
    let _ = ready_tx.send(());
}

impl Transport for TcpTransport {
    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listener.local_addr().into_iter().collect()
    }

    fn serve(self: Box<Self>, ctx: TransportContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut tasks = JoinSet::new();
            let mut handshakes = JoinSet::new();
            let handshake_slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            let (done_tx, mut done_rx) = mpsc::channel::<(MaybeTlsStream, PeerInfo)>(64);
            loop {
                let accepted = tokio::select! {
                    a = self.listener.accept() => a,
                    Some((stream, info)) = done_rx.recv() => {
                        start_peer(&mut tasks, &ctx, stream, info);
                        continue;
                    }
                };
                let (stream, remote) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: wait a little instead of spinning.
                        log::warn!(
                            "accepting an ASAP connection: {e} (out of file descriptors? \
                             rsp-registrar raises RLIMIT_NOFILE to its hard limit at start-up; \
                             see also limits.max_peers)"
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Some(tls) = &self.tls else {
                    start_peer(&mut tasks, &ctx, stream, PeerInfo::tcp(remote));
                    continue;
                };
                while handshakes.try_join_next().is_some() {}
                let Ok(slot) = handshake_slots.clone().try_acquire_owned() else {
                    tls.log
                        .failed("ASAP", remote, "too many handshakes in progress");
                    continue;
                };
                let (tls, done) = (tls.clone(), done_tx.clone());
                handshakes.spawn(async move {
                    let _slot = slot;
                    if let Some((stream, identity)) = tls.accept("ASAP", stream, remote).await {
                        let info = PeerInfo::tcp(remote).with_identity(identity);
                        let _ = done.send((stream, info)).await;
                    }
                });
            }
        })
    }
}

async fn serve_peer<S: PeerStream>(
    stream: S,
    peer: PeerId,
    mut rx: mpsc::Receiver<PeerCommand>,
    ctx: &TransportContext,
) {
    let t = ctx.timeouts;
    let (mut rd, wr) = stream.split();
    let mut wr = BufWriter::with_capacity(16 * 1024, wr);
    let mut buf: Vec<u8> = Vec::new();
    let mut reading = true;
    let mut last_input = tokio::time::Instant::now();
    // Since when `buf` holds the beginning of a message.
    let mut partial_since: Option<tokio::time::Instant> = None;
    loop {
        let idle_at = last_input + t.idle;
        let limit_at = partial_since.map_or(idle_at, |p| idle_at.min(p + t.partial_message));
        tokio::select! {
            r = read_more(&mut rd, &mut buf), if reading => {
                match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => last_input = tokio::time::Instant::now(),
                }
                let (consumed, error) = frames(&buf, ctx.max_message_size);
                let mut delivery = if consumed > 0 {
                    let mut it = Frames { buf: &buf[..consumed], max: ctx.max_message_size };
                    ctx.sink.messages(peer, &mut it)
                } else {
                    Delivery::default()
                };
                buf.drain(..consumed);
                if buf.is_empty() {
                    buf = Vec::new(); // an idle connection holds no buffer
                    partial_since = None;
                } else if consumed > 0 || partial_since.is_none() {
                    partial_since = Some(last_input);
                }
                if let Some(error) = error {
                    reading = false;
                    let d = ctx.sink.framing_error(peer, error);
                    delivery.replies.extend(d.replies);
                    delivery.close |= d.close;
                }
                let written = tokio::time::timeout(t.write, write_all(&mut wr, &delivery)).await;
                if !matches!(written, Ok(Ok(()))) {
                    log::debug!("peer {}: not reading its answers; dropping it", peer.0);
                    return drop_now::<S>(rd, wr);
                }
                if delivery.close {
                    return close::<S>(rd, wr, t).await;
                }
            }
            cmd = rx.recv() => {
                let written = tokio::time::timeout(t.write, write_queued(&mut wr, &mut rx, cmd)).await;
                match written {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => return close::<S>(rd, wr, t).await,
                    Ok(Err(_)) | Err(_) => {
                        log::debug!("peer {}: not reading what it is sent; dropping it", peer.0);
                        return drop_now::<S>(rd, wr);
                    }
                }
            }
            _ = tokio::time::sleep_until(limit_at), if reading => {
                if partial_since.is_some_and(|p| p + t.partial_message <= limit_at) {
                    log::debug!(
                        "peer {}: a message incomplete after {:?} ({} bytes); closing",
                        peer.0, t.partial_message, buf.len()
                    );
                } else {
                    log::debug!("peer {}: idle for {:?}; closing", peer.0, t.idle);
                }
                return drop_now::<S>(rd, wr);
            }
        }
    }
}

/// Close after what is queued: the flush and the FIN are bounded by the write timeout, after
/// which the connection is dropped as it is.
async fn close<S: PeerStream>(rd: S::Rd, mut wr: BufWriter<S::Wr>, t: PeerTimeouts) {
    if !matches!(
        tokio::time::timeout(t.write, wr.shutdown()).await,
        Ok(Ok(()))
    ) {
        drop_now::<S>(rd, wr);
    }
}

/// Drop the connection without waiting for anything: unsent data is discarded and the peer gets
/// a reset, so the kernel does not keep the socket's buffers either.
fn drop_now<S: PeerStream>(rd: S::Rd, wr: BufWriter<S::Wr>) {
    S::reset(rd, wr.into_inner());
}

/// Write `first` and everything else queued, then flush once. `Ok(false)`: close requested.
async fn write_queued<W: AsyncWrite + Unpin>(
    wr: &mut BufWriter<W>,
    rx: &mut mpsc::Receiver<PeerCommand>,
    first: Option<PeerCommand>,
) -> io::Result<bool> {
    let mut cmd = first;
    loop {
        match cmd {
            Some(PeerCommand::Send(bytes)) => wr.write_all(&bytes).await?,
            Some(PeerCommand::Close) | None => {
                wr.flush().await?;
                return Ok(false);
            }
        }
        match rx.try_recv() {
            Ok(next) => cmd = Some(next),
            Err(_) => break,
        }
    }
    wr.flush().await?;
    Ok(true)
}

async fn write_all<W: AsyncWrite + Unpin>(wr: &mut BufWriter<W>, d: &Delivery) -> io::Result<()> {
    if d.replies.is_empty() {
        return Ok(());
    }
    for r in &d.replies {
        wr.write_all(r).await?;
    }
    wr.flush().await
}

/// How many leading bytes of `buf` are complete messages, and the framing error that stops
/// the stream after them, if any.
fn frames(buf: &[u8], max: usize) -> (usize, Option<wire::DecodeError>) {
    let mut start = 0;
    loop {
        match wire::frame_length(&buf[start..], max) {
            Ok(Some(len)) if buf.len() - start >= len => start += len,
            Ok(_) => return (start, None),
            Err(e) => return (start, Some(e)),
        }
    }
}

/// The complete messages of a buffer that [`frames`] measured.
struct Frames<'a> {
    buf: &'a [u8],
    max: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let len = wire::frame_length(self.buf, self.max).ok().flatten()?;
        if self.buf.len() < len {
            return None;
        }
        let (m, rest) = self.buf.split_at(len);
        self.buf = rest;
        Some(m)
    }
}

/// Read what is there. Into a stack buffer when nothing is pending, so that a connection between
/// messages holds no heap buffer; straight into `buf` while a message is incomplete.
async fn read_more<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.is_empty() {
        let mut chunk = [0u8; 8 * 1024];
        let n = rd.read(&mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
        return Ok(n);
    }
    buf.reserve(16 * 1024);
    rd.read_buf(buf).await
}
