//! ASAP over TCP: one connection is one peer; each message is delimited by its own Length field
//! (the RSerPool header's, see [`crate::wire::frame_length`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::transport::{Delivery, PeerCommand, PeerHandle, Transport, TransportContext};

/// A peer that does not take what is written to it for this long is disconnected (its elements
/// are removed with the connection): it cannot be serving anyone either.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
use crate::core::{PeerId, PeerInfo};
use crate::wire;

/// A bound TCP listener for ASAP.
pub struct TcpTransport {
    listener: TcpListener,
}

impl TcpTransport {
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }
}

impl Transport for TcpTransport {
    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listener.local_addr().into_iter().collect()
    }

    fn serve(self: Box<Self>, ctx: TransportContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let (stream, remote) = match self.listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: wait a little instead of spinning.
                        log::warn!("accepting an ASAP connection: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Reap finished connection tasks so the set does not grow.
                while tasks.try_join_next().is_some() {}
                let _ = stream.set_nodelay(true);
                let peer = ctx.next_peer_id();
                let (tx, rx) = mpsc::channel(ctx.max_pending_messages);
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
                let ctx2 = ctx.clone();
                // The task owns the connection; dropping the JoinSet (the transport's task is
                // aborted at shutdown) aborts every connection.
                let abort = tasks.spawn(async move {
                    // Wait until the registrar knows the peer, so no message precedes it.
                    if ready_rx.await.is_err() {
                        return;
                    }
                    serve_peer(stream, peer, rx, &ctx2).await;
                    ctx2.sink.disconnected(peer);
                });
                ctx.sink
                    .connected(peer, PeerInfo::tcp(remote), PeerHandle::new(tx, abort));
                let _ = ready_tx.send(());
            }
        })
    }
}

async fn serve_peer(
    stream: TcpStream,
    peer: PeerId,
    mut rx: mpsc::Receiver<PeerCommand>,
    ctx: &TransportContext,
) {
    let (mut rd, wr) = stream.into_split();
    let mut wr = BufWriter::with_capacity(16 * 1024, wr);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut reading = true;
    loop {
        tokio::select! {
            r = read_more(&mut rd, &mut buf), if reading => {
                match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let (consumed, error) = frames(&buf, ctx.max_message_size);
                let mut delivery = if consumed > 0 {
                    let mut it = Frames { buf: &buf[..consumed], max: ctx.max_message_size };
                    ctx.sink.messages(peer, &mut it)
                } else {
                    Delivery::default()
                };
                buf.drain(..consumed);
                if let Some(error) = error {
                    reading = false;
                    let d = ctx.sink.framing_error(peer, error);
                    delivery.replies.extend(d.replies);
                    delivery.close |= d.close;
                }
                let written = tokio::time::timeout(WRITE_TIMEOUT, write_all(&mut wr, &delivery)).await;
                if !matches!(written, Ok(Ok(()))) || delivery.close {
                    let _ = wr.shutdown().await;
                    return;
                }
            }
            cmd = rx.recv() => {
                let written = tokio::time::timeout(WRITE_TIMEOUT, write_queued(&mut wr, &mut rx, cmd)).await;
                match written {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, wr.shutdown()).await;
                        return;
                    }
                    Ok(Err(_)) | Err(_) => return,
                }
            }
        }
    }
}

/// Write `first` and everything else queued, then flush once. `Ok(false)`: close requested.
async fn write_queued(
    wr: &mut BufWriter<OwnedWriteHalf>,
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

async fn write_all(wr: &mut BufWriter<OwnedWriteHalf>, d: &Delivery) -> io::Result<()> {
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

async fn read_more(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(16 * 1024);
    rd.read_buf(buf).await
}
