//! The interface between the registrar and its message transports. A transport accepts peers
//! (TCP connections today, SCTP associations later), delimits their byte streams into ASAP
//! messages and hands each one to the [`CoreSink`], writing back the answers the sink returns for
//! that peer; messages the registrar sends on its own (keep-alives, closes) arrive through the
//! peer's [`PeerHandle`]. Nothing above this interface knows which protocol carried a message.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::core::{PeerId, PeerInfo};
use crate::wire::DecodeError;

/// What the registrar answers to one peer's input: messages to send back to it, in order, and
/// whether to close it after them.
#[derive(Debug, Default)]
pub struct Delivery {
    pub replies: Vec<Vec<u8>>,
    pub close: bool,
}

/// The registrar as transports see it. Calls are short (no I/O inside); a transport calls them
/// from its own tasks.
pub trait CoreSink: Send + Sync + 'static {
    /// A new peer and the handle through which the registrar reaches it (a refused peer gets
    /// its answer and close through the handle).
    fn connected(&self, peer: PeerId, info: PeerInfo, handle: PeerHandle);
    /// Complete messages from one peer, in order.
    fn messages(&self, peer: PeerId, messages: &mut dyn Iterator<Item = &[u8]>) -> Delivery;
    /// The peer's stream cannot be delimited any more (the transport stops reading it).
    fn framing_error(&self, peer: PeerId, error: DecodeError) -> Delivery;
    /// The peer is gone.
    fn disconnected(&self, peer: PeerId);
}

/// What the registrar asks of one peer's connection on its own initiative.
#[derive(Debug)]
pub enum PeerCommand {
    /// Send one message.
    Send(Vec<u8>),
    /// Send what is queued, then close.
    Close,
}

/// The registrar's side of one peer: a bounded queue of commands (a peer that does not read
/// fills it and is cut off with [`PeerHandle::abort`]).
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

/// Everything a transport needs from the registrar.
#[derive(Clone)]
pub struct TransportContext {
    pub sink: Arc<dyn CoreSink>,
    peer_ids: Arc<AtomicU64>,
    /// Largest message accepted.
    pub max_message_size: usize,
    /// Capacity of each peer's command queue.
    pub max_pending_messages: usize,
    /// How long one peer may hold the registrar's resources (`[connections]`).
    pub timeouts: PeerTimeouts,
}

/// Per-connection timeouts every transport applies (see `ConnectionConfig`).
#[derive(Clone, Copy, Debug)]
pub struct PeerTimeouts {
    /// Writing to a peer that does not read: drop it (never wait for a flush).
    pub write: std::time::Duration,
    /// Nothing received for this long: close.
    pub idle: std::time::Duration,
    /// A message begun and not complete after this long: close.
    pub partial_message: std::time::Duration,
}

impl Default for PeerTimeouts {
    fn default() -> Self {
        let c = crate::config::ConnectionConfig::default();
        Self {
            write: c.write_timeout(),
            idle: c.idle_timeout(),
            partial_message: c.partial_message_timeout(),
        }
    }
}

impl TransportContext {
    pub fn new(
        sink: Arc<dyn CoreSink>,
        max_message_size: usize,
        max_pending_messages: usize,
    ) -> Self {
        Self {
            sink,
            peer_ids: Arc::new(AtomicU64::new(1)),
            max_message_size,
            max_pending_messages,
            timeouts: PeerTimeouts::default(),
        }
    }

    /// A peer id unique among all transports of this registrar.
    pub fn next_peer_id(&self) -> PeerId {
        PeerId(self.peer_ids.fetch_add(1, Ordering::Relaxed))
    }
}

/// A bound listener of some transport protocol. `serve` runs until its task is aborted.
pub trait Transport: Send + 'static {
    /// Where peers reach it (with the ports actually bound).
    fn local_addrs(&self) -> Vec<SocketAddr>;
    /// Accept and serve peers.
    fn serve(self: Box<Self>, ctx: TransportContext) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Where to ask for a connection to a pool element's ASAP endpoint, served like an accepted
    /// one (`None`: this transport does not open connections; TCP elements do not accept any).
    fn dialer(&self) -> Option<tokio::sync::mpsc::Sender<SocketAddr>> {
        None
    }
}
