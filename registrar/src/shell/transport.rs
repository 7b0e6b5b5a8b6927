//! The interface between the registrar's driver and its message transports. A transport accepts
//! peers (TCP connections today, SCTP associations later), delimits their byte streams into ASAP
//! messages, and reports everything as [`TransportEvent`]s; the driver answers through each
//! peer's [`PeerHandle`]. The driver and the core see complete messages only: no code above this
//! interface knows which protocol carried them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::core::{PeerId, PeerInfo};
use crate::wire::DecodeError;

/// What a transport tells the driver.
#[derive(Debug)]
pub enum TransportEvent {
    Connected {
        peer: PeerId,
        info: PeerInfo,
        handle: PeerHandle,
    },
    /// One complete message.
    Message { peer: PeerId, bytes: Vec<u8> },
    /// The stream cannot be delimited any more; the transport stops reading from the peer and
    /// waits for the driver's [`PeerCommand::Close`].
    FramingError { peer: PeerId, error: DecodeError },
    /// The peer is gone (closed, reset, or closed on the driver's request).
    Disconnected { peer: PeerId },
}

/// What the driver asks of one peer's connection.
#[derive(Debug)]
pub enum PeerCommand {
    /// Send one message.
    Send(Vec<u8>),
    /// Send what is queued, then close.
    Close,
}

/// The driver's side of one peer: a bounded queue of commands (a peer that does not read its
/// answers fills it and is cut off with [`PeerHandle::abort`]).
#[derive(Debug)]
pub struct PeerHandle {
    tx: mpsc::Sender<PeerCommand>,
    abort: AbortHandle,
}

impl PeerHandle {
    pub fn new(tx: mpsc::Sender<PeerCommand>, abort: AbortHandle) -> Self {
        Self { tx, abort }
    }

    /// Queue a command; false when the queue is full or the connection is gone.
    pub fn try_send(&self, cmd: PeerCommand) -> bool {
        self.tx.try_send(cmd).is_ok()
    }

    /// Drop the connection at once, without flushing.
    pub fn abort(&self) {
        self.abort.abort();
    }
}

/// Everything a transport needs from the driver.
#[derive(Clone, Debug)]
pub struct TransportContext {
    pub events: mpsc::Sender<TransportEvent>,
    peer_ids: Arc<AtomicU64>,
    /// Largest message accepted.
    pub max_message_size: usize,
    /// Capacity of each peer's command queue.
    pub max_pending_messages: usize,
}

impl TransportContext {
    pub fn new(
        events: mpsc::Sender<TransportEvent>,
        max_message_size: usize,
        max_pending_messages: usize,
    ) -> Self {
        Self {
            events,
            peer_ids: Arc::new(AtomicU64::new(1)),
            max_message_size,
            max_pending_messages,
        }
    }

    /// A peer id unique among all transports of this driver.
    pub fn next_peer_id(&self) -> PeerId {
        PeerId(self.peer_ids.fetch_add(1, Ordering::Relaxed))
    }
}

/// A bound listener of some transport protocol. `serve` runs until the task is dropped or
/// aborted, reporting peers through the context.
pub trait Transport: Send + 'static {
    /// Where peers reach it (with the ports actually bound).
    fn local_addrs(&self) -> Vec<SocketAddr>;
    /// Accept and serve peers.
    fn serve(self: Box<Self>, ctx: TransportContext) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}
