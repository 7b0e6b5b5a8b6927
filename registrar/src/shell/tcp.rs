//! ASAP over TCP: one connection is one peer; each message is delimited by its own Length field
//! (the RSerPool header's, see [`crate::wire::frame_length`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::transport::{PeerCommand, PeerHandle, Transport, TransportContext, TransportEvent};
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
                let _ = stream.set_nodelay(true);
                let peer = ctx.next_peer_id();
                let (tx, rx) = mpsc::channel(ctx.max_pending_messages);
                let ctx2 = ctx.clone();
                let task = tokio::spawn(async move {
                    serve_peer(stream, peer, rx, &ctx2).await;
                    let _ = ctx2
                        .events
                        .send(TransportEvent::Disconnected { peer })
                        .await;
                });
                let handle = PeerHandle::new(tx, task.abort_handle());
                let event = TransportEvent::Connected {
                    peer,
                    info: PeerInfo::tcp(remote),
                    handle,
                };
                if ctx.events.send(event).await.is_err() {
                    task.abort();
                    return; // the driver is gone
                }
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
                let mut start = 0;
                loop {
                    match wire::frame_length(&buf[start..], ctx.max_message_size) {
                        Ok(Some(len)) if buf.len() - start >= len => {
                            let bytes = buf[start..start + len].to_vec();
                            start += len;
                            if ctx.events.send(TransportEvent::Message { peer, bytes }).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => break,
                        Err(error) => {
                            reading = false;
                            let _ = ctx.events.send(TransportEvent::FramingError { peer, error }).await;
                            break;
                        }
                    }
                }
                buf.drain(..start);
            }
            cmd = rx.recv() => {
                let mut cmd = cmd;
                // Write everything queued, then flush once.
                loop {
                    match cmd {
                        Some(PeerCommand::Send(bytes)) => {
                            if wr.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Some(PeerCommand::Close) | None => {
                            let _ = wr.flush().await;
                            let _ = wr.shutdown().await;
                            return;
                        }
                    }
                    match rx.try_recv() {
                        Ok(next) => cmd = Some(next),
                        Err(_) => break,
                    }
                }
                if wr.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn read_more(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
) -> io::Result<usize> {
    buf.reserve(16 * 1024);
    rd.read_buf(buf).await
}
