//! Kernel SCTP for RSerPool: a message socket bound to one payload protocol identifier (PPID),
//! usable by ASAP (PPID 11) and ENRP (PPID 12) alike.
//!
//! - One-to-one style sockets (`SOCK_STREAM`, `IPPROTO_SCTP`): one socket is one association,
//!   so a peer maps to a socket exactly as a TCP connection does.
//! - Every message is sent with an `SCTP_SNDINFO` control message carrying the socket's PPID;
//!   received messages report their PPID and stream (`SCTP_RCVINFO`); what to do with a wrong
//!   one is the protocol layer's decision.
//! - SCTP keeps message boundaries, so there is no length framing; a message the kernel hands
//!   over in pieces (partial delivery, larger than the read buffer) is joined until `MSG_EOR`.
//! - Notifications (association change, peer address change, shutdown, remote error, partial
//!   delivery) come out of [`SctpSocket::recv`] between messages.
//! - Multi-homing: [`SctpSocket::peer_addrs`] and [`SctpSocket::local_addrs`] list every address
//!   of the association (`sctp_getpaddrs`/`sctp_getladdrs`).
//!
//! On a kernel without SCTP, creating a socket fails with EPROTONOSUPPORT (see [`supported`]);
//! everything compiles everywhere. The system calls are in `sys` (the only unsafe code).

mod sys;
pub mod wire;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

pub use wire::{AddrState, AssocState, Notification};

/// SCTP payload protocol identifier of ASAP (RFC 5352).
pub const PPID_ASAP: u32 = 11;
/// SCTP payload protocol identifier of ENRP (RFC 5353).
pub const PPID_ENRP: u32 = 12;

/// Bytes read per `recvmsg`; larger messages arrive in several pieces and are joined.
const READ_CHUNK: usize = 64 * 1024;

/// Whether this kernel has SCTP: `Err` with EPROTONOSUPPORT (or the module could not load)
/// when it has not.
pub fn supported() -> io::Result<()> {
    sys::socket(false).map(drop)
}

/// Whether an error means "this kernel has no SCTP" (as returned by `socket`, or explained by
/// this module).
pub fn is_unsupported(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NoSctp>())
        || matches!(
            e.raw_os_error(),
            Some(libc::EPROTONOSUPPORT) | Some(libc::ESOCKTNOSUPPORT) | Some(libc::EAFNOSUPPORT)
        )
}

/// The kernel refused to create an SCTP socket.
#[derive(Debug)]
struct NoSctp(io::Error);

impl std::fmt::Display for NoSctp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (this kernel has no SCTP: load the sctp module or use TCP)",
            self.0
        )
    }
}

impl std::error::Error for NoSctp {}

/// Adds "the kernel has no SCTP" to the errors that mean it.
fn explain(e: io::Error) -> io::Error {
    if is_unsupported(&e) {
        io::Error::new(e.kind(), NoSctp(e))
    } else {
        e
    }
}

/// What [`SctpSocket::recv`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// One complete message, with the stream and PPID it arrived on.
    Message {
        stream: u16,
        ppid: u32,
        bytes: Vec<u8>,
    },
    Notification(Notification),
    /// A message longer than the socket's limit was discarded.
    TooLarge {
        len: usize,
    },
    /// The association is closed (SHUTDOWN completed or the peer is gone).
    Closed,
}

/// One SCTP association (one-to-one style socket) sending with a fixed PPID.
#[derive(Debug)]
pub struct SctpSocket {
    fd: AsyncFd<OwnedFd>,
    ppid: u32,
    reassembler: wire::Reassembler,
    buf: Vec<u8>,
}

fn configure(fd: &OwnedFd) -> io::Result<()> {
    let b = fd.as_fd();
    sys::setsockopt_int(b, sys::SOL_SCTP, sys::SCTP_NODELAY, 1)?;
    sys::setsockopt_int(b, sys::SOL_SCTP, sys::SCTP_RECVRCVINFO, 1)?;
    sys::subscribe_events(b, &wire::EVENT_SUBSCRIPTION)?;
    Ok(())
}

impl From<wire::Assembled> for Incoming {
    fn from(a: wire::Assembled) -> Self {
        match a {
            wire::Assembled::Message {
                stream,
                ppid,
                bytes,
            } => Incoming::Message {
                stream,
                ppid,
                bytes,
            },
            wire::Assembled::Notification(n) => Incoming::Notification(n),
            wire::Assembled::TooLarge { len } => Incoming::TooLarge { len },
        }
    }
}

/// Configures a new socket, binds `addrs` (one endpoint: its port is the first's, and the others
/// are added with `sctp_bindx`, which makes it multi-homed) and listens; returns it registered
/// with the runtime and its addresses, the first as bound (with the port the kernel chose for
/// port 0).
fn bind_listening(
    socket: fn(bool) -> io::Result<OwnedFd>,
    addrs: &[SocketAddr],
) -> io::Result<(AsyncFd<OwnedFd>, Vec<SocketAddr>)> {
    let Some((&addr, more)) = addrs.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an SCTP endpoint needs an address",
        ));
    };
    let fd = socket(addr.is_ipv6()).map_err(explain)?;
    sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    configure(&fd)?;
    sys::bind(fd.as_fd(), &addr)?;
    let first = sys::local_addr_raw(fd.as_fd())
        .ok()
        .and_then(|b| wire::decode_sockaddr(&b).map(|(a, _)| a))
        .unwrap_or(addr);
    let mut local = vec![first];
    local.extend(more.iter().map(|a| SocketAddr::new(a.ip(), first.port())));
    if local.len() > 1 {
        sys::bindx_add(fd.as_fd(), &local[1..]).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("adding {:?} to the endpoint on {first}: {e}", &local[1..]),
            )
        })?;
    }
    sys::listen(fd.as_fd(), 1024)?;
    Ok((sys::async_fd(fd)?, local))
}

/// An endpoint's addresses as an operator writes them: `198.18.0.1:3863, 198.18.1.1:3863`.
pub fn joined(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Groups listen addresses into SCTP endpoints: the addresses of one port and one family make
/// one multi-homed endpoint (in the order given). An unspecified address already means every
/// local address, so it must be alone in its endpoint.
pub fn endpoints(addrs: &[SocketAddr]) -> Result<Vec<Vec<SocketAddr>>, String> {
    let mut groups: Vec<Vec<SocketAddr>> = Vec::new();
    for &a in addrs {
        match groups
            .iter_mut()
            .find(|g| g[0].port() == a.port() && g[0].is_ipv6() == a.is_ipv6())
        {
            Some(g) if !g.contains(&a) => g.push(a),
            Some(_) => {}
            None => groups.push(vec![a]),
        }
    }
    match groups
        .iter()
        .find(|g| g.len() > 1 && g.iter().any(|a| a.ip().is_unspecified()))
    {
        Some(g) => Err(format!(
            "{g:?} would be one SCTP endpoint (one port, one family), but an unspecified \
             address already means every local address: list it alone, or list the addresses"
        )),
        None => Ok(groups),
    }
}

/// Sends one whole message with the control messages `cmsg[..len]` (to `to` when given),
/// waiting while the socket is full.
async fn send_message(
    fd: &AsyncFd<OwnedFd>,
    bytes: &[u8],
    to: Option<&SocketAddr>,
    cmsg: &sys::CmsgBuf,
    len: usize,
) -> io::Result<()> {
    loop {
        let mut guard = fd.writable().await?;
        match guard.try_io(|fd| sys::sendmsg(fd.get_ref().as_fd(), bytes, to, cmsg, len)) {
            Ok(Ok(n)) if n == bytes.len() => return Ok(()),
            Ok(Ok(n)) => {
                return Err(io::Error::other(format!(
                    "sent {n} of {} bytes of one message",
                    bytes.len()
                )));
            }
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

impl SctpSocket {
    fn new(fd: OwnedFd, ppid: u32, max_message: usize) -> io::Result<Self> {
        configure(&fd)?;
        Ok(Self {
            fd: sys::async_fd(fd)?,
            ppid,
            reassembler: wire::Reassembler::new(max_message),
            buf: vec![0u8; READ_CHUNK],
        })
    }

    /// Opens an association to `addr` (the kernel chooses the local addresses: all of them).
    pub async fn connect(addr: SocketAddr, ppid: u32, max_message: usize) -> io::Result<Self> {
        let fd = sys::socket(addr.is_ipv6()).map_err(explain)?;
        let sock = Self::new(fd, ppid, max_message)?;
        match sys::connect(sock.fd.get_ref().as_fd(), &addr) {
            Ok(()) => return Ok(sock),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        // A one-to-one socket polls writable only once established, or with an error.
        let _ready = sock.fd.writable().await?;
        match sys::take_error(sock.fd.get_ref().as_fd())? {
            Some(e) => Err(e),
            None => Ok(sock),
        }
    }

    pub fn ppid(&self) -> u32 {
        self.ppid
    }

    /// Sends one message on `stream` with the socket's PPID.
    pub async fn send(&self, bytes: &[u8], stream: u16) -> io::Result<()> {
        self.send_with_ppid(bytes, stream, self.ppid).await
    }

    /// Sends one message with another PPID (tests of a peer's reaction to a wrong one).
    pub async fn send_with_ppid(&self, bytes: &[u8], stream: u16, ppid: u32) -> io::Result<()> {
        let mut cmsg: sys::CmsgBuf = [0; 8];
        let len = wire::encode_sndinfo(sys::cmsg_bytes_mut(&mut cmsg), stream, ppid);
        send_message(&self.fd, bytes, None, &cmsg, len).await
    }

    /// The next message or notification. Cancel-safe: pieces already read stay buffered.
    pub async fn recv(&mut self) -> io::Result<Incoming> {
        loop {
            let mut guard = self.fd.ready(Interest::READABLE).await?;
            let mut cmsg: sys::CmsgBuf = [0; 8];
            let buf = &mut self.buf;
            let (got, _) =
                match guard.try_io(|fd| sys::recvmsg(fd.get_ref().as_fd(), buf, &mut cmsg)) {
                    Ok(r) => r?,
                    Err(_would_block) => continue,
                };
            let notification = got.flags & sys::MSG_NOTIFICATION != 0;
            if got.len == 0 && !notification {
                return Ok(Incoming::Closed);
            }
            let piece = wire::Piece {
                bytes: &self.buf[..got.len],
                end: got.flags & libc::MSG_EOR != 0,
                notification,
                info: wire::decode_rcvinfo(&sys::cmsg_bytes(&cmsg)[..got.cmsg_len]),
            };
            if let Some(unit) = self.reassembler.push(piece) {
                return Ok(unit.into());
            }
        }
    }

    /// Every address of the peer (several when it is multi-homed).
    pub fn peer_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(wire::decode_getaddrs(&sys::get_addrs(
            self.fd.get_ref().as_fd(),
            true,
            0,
        )?))
    }

    /// Every local address of the association: those in scope of the peer's (no loopback
    /// address towards a peer that is not on loopback).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        let fd = self.fd.get_ref().as_fd();
        // Asked with id 0, the kernel answers with the endpoint's addresses; the association's
        // id comes with its peer addresses.
        let peer = sys::get_addrs(fd, true, 0)?;
        let assoc = wire::getaddrs_assoc_id(&peer);
        let mut local = wire::decode_getaddrs(&sys::get_addrs(fd, false, assoc)?);
        // Linux lists loopback addresses even for an association between two addresses of
        // one host that are not on loopback (seen on 6.1); the peer cannot use them.
        if wire::decode_getaddrs(&peer)
            .iter()
            .any(|a| !a.ip().is_loopback())
        {
            local.retain(|a| !a.ip().is_loopback());
        }
        Ok(local)
    }

    /// Ends the association with an ABORT (nothing queued is sent).
    pub fn abort(self) {
        let _ = sys::set_abort_on_close(self.fd.get_ref().as_fd());
    }
}

/// A listening SCTP socket (one-to-one style); each accepted association is an [`SctpSocket`].
#[derive(Debug)]
pub struct SctpListener {
    fd: AsyncFd<OwnedFd>,
    ppid: u32,
    max_message: usize,
    /// Its addresses, all with one port (the first as bound).
    local: Vec<SocketAddr>,
}

impl SctpListener {
    /// Binds `addrs`: one endpoint, multi-homed when there are several (one port, one family;
    /// see [`endpoints`]); an unspecified address means every local address.
    pub fn bind(addrs: &[SocketAddr], ppid: u32, max_message: usize) -> io::Result<Self> {
        let (fd, local) = bind_listening(sys::socket, addrs)?;
        Ok(Self {
            fd,
            ppid,
            max_message,
            local,
        })
    }

    /// The first bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local[0]
    }

    /// Every address of the endpoint, the first as bound.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    pub async fn accept(&self) -> io::Result<SctpSocket> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| sys::accept(fd.get_ref().as_fd())) {
                Ok(Ok(fd)) => return SctpSocket::new(fd, self.ppid, self.max_message),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// What [`SctpEndpoint::recv`] returns: one unit and the association it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointIncoming {
    /// The association (the kernel's `sctp_assoc_t`).
    pub assoc: i32,
    /// The sender's address for a message (one of the association's peer addresses).
    pub from: Option<SocketAddr>,
    pub incoming: Incoming,
}

/// A one-to-many style SCTP socket (`SOCK_SEQPACKET`): one socket, bound to one port, carries
/// every association of the endpoint, set up by the peer or implicitly by the first message
/// sent to a new address. This is how rsplib's registrars speak ENRP, and the only way to send
/// from the port peers know: rsplib accepts a peer's Presence only from an association whose
/// peer port is the one the Presence names. One task receives; any task may send.
#[derive(Debug)]
pub struct SctpEndpoint {
    fd: AsyncFd<OwnedFd>,
    ppid: u32,
    /// Its addresses, all with one port (the first as bound).
    local: Vec<SocketAddr>,
    rx: std::sync::Mutex<EndpointRx>,
}

/// What a receiver keeps between reads.
#[derive(Debug)]
struct EndpointRx {
    reassembler: wire::Reassembler,
    /// Association and sender of the message being reassembled.
    assoc: i32,
    from: Option<SocketAddr>,
    buf: Vec<u8>,
}

impl EndpointRx {
    /// Takes one read; a complete unit when it ends one.
    fn take(&mut self, got: &sys::Received, cmsg: &[u8], name: &[u8]) -> Option<EndpointIncoming> {
        let notification = got.flags & sys::MSG_NOTIFICATION != 0;
        let info = wire::decode_rcvinfo(cmsg);
        if !notification && !self.reassembler.pending() {
            self.assoc = info.map_or(0, |i| i.assoc_id);
            self.from = wire::decode_sockaddr(name).map(|(a, _)| a);
        }
        let piece = wire::Piece {
            bytes: &self.buf[..got.len],
            end: got.flags & libc::MSG_EOR != 0,
            notification,
            info,
        };
        let unit = self.reassembler.push(piece)?;
        Some(match unit {
            wire::Assembled::Notification(_) => EndpointIncoming {
                assoc: self.reassembler.notification_assoc(),
                from: None,
                incoming: unit.into(),
            },
            _ => EndpointIncoming {
                assoc: self.assoc,
                from: self.from,
                incoming: unit.into(),
            },
        })
    }
}

impl SctpEndpoint {
    /// Binds `addrs` (one endpoint with all of them: multi-homed; the port is the first's, and
    /// an unspecified address means every local address) and accepts associations on it.
    pub fn bind(addrs: &[SocketAddr], ppid: u32, max_message: usize) -> io::Result<Self> {
        let (fd, local) = bind_listening(sys::socket_one_to_many, addrs)?;
        Ok(Self {
            fd,
            ppid,
            local,
            rx: std::sync::Mutex::new(EndpointRx {
                reassembler: wire::Reassembler::new(max_message),
                assoc: 0,
                from: None,
                buf: vec![0u8; READ_CHUNK],
            }),
        })
    }

    /// The first bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local[0]
    }

    /// Every address of the endpoint, the first as bound.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Sends one message to `to`: on the association with that address, set up now if there
    /// is none (its failure comes back as a notification, `CantStartAssoc`).
    pub async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
        self.send_inner(bytes, Some(to), 0, 0).await
    }

    /// Sends one message on association `assoc`.
    pub async fn send_assoc(&self, bytes: &[u8], assoc: i32) -> io::Result<()> {
        self.send_inner(bytes, None, assoc, 0).await
    }

    /// Ends association `assoc` with an ABORT.
    pub async fn abort(&self, assoc: i32) -> io::Result<()> {
        self.send_inner(&[], None, assoc, wire::SCTP_ABORT).await
    }

    async fn send_inner(
        &self,
        bytes: &[u8],
        to: Option<SocketAddr>,
        assoc: i32,
        flags: u16,
    ) -> io::Result<()> {
        let mut cmsg: sys::CmsgBuf = [0; 8];
        let len =
            wire::encode_sndinfo_assoc(sys::cmsg_bytes_mut(&mut cmsg), 0, flags, self.ppid, assoc);
        send_message(&self.fd, bytes, to.as_ref(), &cmsg, len).await
    }

    /// The next message or notification of any association (one receiving task). Cancel-safe:
    /// pieces already read stay buffered.
    pub async fn recv(&self) -> io::Result<EndpointIncoming> {
        loop {
            let mut guard = self.fd.ready(Interest::READABLE).await?;
            let mut rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
            let mut cmsg: sys::CmsgBuf = [0; 8];
            let buf = &mut rx.buf;
            let (got, name) =
                match guard.try_io(|fd| sys::recvmsg(fd.get_ref().as_fd(), buf, &mut cmsg)) {
                    Ok(r) => r?,
                    Err(_would_block) => continue,
                };
            let cmsg_bytes = &sys::cmsg_bytes(&cmsg)[..got.cmsg_len];
            if let Some(unit) = rx.take(&got, cmsg_bytes, &name) {
                return Ok(unit);
            }
        }
    }

    /// Every peer address of association `assoc`.
    pub fn peer_addrs(&self, assoc: i32) -> io::Result<Vec<SocketAddr>> {
        Ok(wire::decode_getaddrs(&sys::get_addrs(
            self.fd.get_ref().as_fd(),
            true,
            assoc,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_of_one_port_and_family_make_one_endpoint() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let got = endpoints(&[
            a("198.18.0.1:3863"),
            a("[2001:db8::1]:3863"),
            a("198.18.1.1:3863"),
            a("198.18.0.1:3864"),
            a("198.18.0.1:3863"),
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                vec![a("198.18.0.1:3863"), a("198.18.1.1:3863")],
                vec![a("[2001:db8::1]:3863")],
                vec![a("198.18.0.1:3864")],
            ]
        );
        assert_eq!(
            endpoints(&[a("0.0.0.0:3863"), a("[::]:3863")])
                .unwrap()
                .len(),
            2
        );
        let e = endpoints(&[a("198.18.0.1:3863"), a("0.0.0.0:3863")]).unwrap_err();
        assert!(
            e.contains("unspecified address already means every local address"),
            "{e}"
        );
    }

    /// On a kernel without SCTP (this project's build host) binding fails with a message that
    /// says so; where SCTP exists, a loopback association carries a message with its PPID.
    #[tokio::test]
    async fn loopback_association_or_a_clear_error() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let l = match SctpListener::bind(&[addr], PPID_ASAP, 65535) {
            Ok(l) => l,
            Err(e) => {
                assert!(is_unsupported(&e), "{e}");
                assert!(e.to_string().contains("no SCTP"), "{e}");
                return;
            }
        };
        let to = l.local_addr();
        let (accepted, mut client) =
            tokio::join!(l.accept(), SctpSocket::connect(to, PPID_ASAP, 65535));
        let mut server = accepted.unwrap();
        let client = client.as_mut().unwrap();
        client.send(b"\x05\x00\x00\x04", 0).await.unwrap();
        loop {
            match server.recv().await.unwrap() {
                Incoming::Notification(_) => continue,
                m => {
                    assert_eq!(
                        m,
                        Incoming::Message {
                            stream: 0,
                            ppid: PPID_ASAP,
                            bytes: b"\x05\x00\x00\x04".to_vec()
                        }
                    );
                    break;
                }
            }
        }
        assert!(!server.peer_addrs().unwrap().is_empty());
    }
}
