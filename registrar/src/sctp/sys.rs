//! Every system call of the SCTP socket layer, and the only `unsafe` code in it.
//!
//! Invariants the callers rely on and the functions below keep:
//! - Every function takes a `BorrowedFd` (or returns an `OwnedFd`), so a descriptor is never used
//!   after it was closed and never closed twice.
//! - Every pointer handed to the kernel points into a Rust buffer that lives for the whole call
//!   and whose length is the one passed beside it (`iovec`, `msg_control`, option values).
//! - Control-message buffers are `u64` arrays, so they satisfy `cmsghdr`'s alignment; their
//!   contents are encoded and decoded as plain bytes by the safe code in `super::wire`.
//! - Nothing here interprets what the kernel returned beyond lengths and flags: parsing
//!   (addresses, notifications, `sctp_rcvinfo`) is safe code with unit tests.
//!
//! The constants are Linux's `<linux/sctp.h>` values; they are defined here rather than taken
//! from `libc` so the layer compiles (and fails at run time with EPROTONOSUPPORT) everywhere.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub const IPPROTO_SCTP: libc::c_int = 132;
pub const SOL_SCTP: libc::c_int = 132;
pub const SCTP_NODELAY: libc::c_int = 3;
pub const SCTP_EVENTS: libc::c_int = 11;
pub const SCTP_RECVRCVINFO: libc::c_int = 32;
pub const SCTP_GET_PEER_ADDRS: libc::c_int = 108;
pub const SCTP_GET_LOCAL_ADDRS: libc::c_int = 109;
/// `SCTP_SOCKOPT_BINDX_ADD` (`sctp_bindx(..., SCTP_BINDX_ADD_ADDR)`).
pub const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = 100;
/// `msg_flags` bit of a notification (`MSG_NOTIFICATION`).
pub const MSG_NOTIFICATION: libc::c_int = 0x8000;

/// Control-message buffer: `u64`s for `cmsghdr` alignment; 64 bytes hold one `sctp_rcvinfo` or
/// `sctp_sndinfo` with its header.
pub type CmsgBuf = [u64; 8];

/// Registers a socket with tokio's reactor (must run inside a runtime).
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until the AsyncFd
    // drops it; OwnedFd::as_raw_fd always returns the same descriptor.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// A new non-blocking one-to-one SCTP socket (`SOCK_STREAM`, `IPPROTO_SCTP`) of the address's
/// family. EPROTONOSUPPORT when the kernel has no SCTP.
pub fn socket(v6: bool) -> io::Result<OwnedFd> {
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain system call; a non-negative result is a new descriptor we own.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            IPPROTO_SCTP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor returned by socket(2) and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new non-blocking one-to-many SCTP socket (`SOCK_SEQPACKET`, `IPPROTO_SCTP`): one socket
/// for every association of an endpoint, as rsplib's registrars use for ENRP.
pub fn socket_one_to_many(v6: bool) -> io::Result<OwnedFd> {
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain system call; a non-negative result is a new descriptor we own.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            IPPROTO_SCTP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor returned by socket(2) and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    // SAFETY: value is a live buffer of value.len() bytes.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    })
    .map(drop)
}

pub fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt_bytes(fd, level, name, &value.to_ne_bytes())
}

/// `struct sctp_event_subscribe` (SCTP_EVENTS): one byte per event class, in order.
pub fn subscribe_events(fd: BorrowedFd<'_>, flags: &[u8]) -> io::Result<()> {
    setsockopt_bytes(fd, SOL_SCTP, SCTP_EVENTS, flags)
}

/// `SO_LINGER` with a zero timeout: `close` then sends an ABORT instead of a SHUTDOWN.
pub fn set_abort_on_close(fd: BorrowedFd<'_>) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: l is a live linger struct of the size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `struct sockaddr_storage` for an address, and its length.
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let bytes = super::wire::encode_sockaddr(addr);
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let n = bytes.len().min(size_of::<libc::sockaddr_storage>());
    // SAFETY: both regions are valid for n bytes and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            n,
        )
    };
    (ss, n as libc::socklen_t)
}

pub fn bind(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    // SAFETY: ss is a live sockaddr of len bytes.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
    .map(drop)
}

/// `sctp_bindx(fd, addrs, SCTP_BINDX_ADD_ADDR)`: adds addresses to a bound endpoint, which
/// then uses all of them (multi-homing). Each address must have the endpoint's port.
pub fn bindx_add(fd: BorrowedFd<'_>, addrs: &[SocketAddr]) -> io::Result<()> {
    // The kernel takes the addresses packed one after the other, each at its own length.
    let packed: Vec<u8> = addrs
        .iter()
        .flat_map(super::wire::encode_sockaddr)
        .collect();
    setsockopt_bytes(fd, SOL_SCTP, SCTP_SOCKOPT_BINDX_ADD, &packed)
}

pub fn listen(fd: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// Starts a non-blocking connect: `Ok(())` when connected at once, EINPROGRESS otherwise.
pub fn connect(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    // SAFETY: ss is a live sockaddr of len bytes.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
    .map(drop)
}

/// `SO_ERROR`: the outcome of a non-blocking connect.
pub fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are live and len is v's size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok((v != 0).then(|| io::Error::from_raw_os_error(v)))
}

/// A new association of a listening socket, non-blocking.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address arguments are allowed; a non-negative result is a new descriptor.
    let r = cvt(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: r is a fresh descriptor returned by accept4(2), owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `getsockname`, as the raw `sockaddr` bytes.
pub fn local_addr_raw(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    // SAFETY: sockaddr_storage is plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss and len are live; len is ss's size.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    let n = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: ss is valid for its whole size, n is within it.
    let bytes = unsafe {
        std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), n)
    };
    Ok(bytes.to_vec())
}

/// `SCTP_GET_PEER_ADDRS` / `SCTP_GET_LOCAL_ADDRS` (`sctp_getpaddrs` / `sctp_getladdrs`): the
/// raw `struct sctp_getaddrs` (association id, count, packed `sockaddr`s). `assoc_id` 0 means
/// the socket's association for peer addresses, but the endpoint's (every local address of a
/// wildcard-bound socket, loopback included) for local ones.
pub fn get_addrs(fd: BorrowedFd<'_>, peer: bool, assoc_id: i32) -> io::Result<Vec<u8>> {
    let name = if peer {
        SCTP_GET_PEER_ADDRS
    } else {
        SCTP_GET_LOCAL_ADDRS
    };
    // Room for 64 IPv6 addresses (rsplib's limit per element) after the 8-byte header.
    let mut buf = vec![0u8; 8 + 64 * 28];
    buf[..4].copy_from_slice(&assoc_id.to_ne_bytes());
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is live for len bytes.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_SCTP,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // Not truncated to `len`: for SCTP_GET_LOCAL_ADDRS of a wildcard-bound socket, Linux
    // (seen on 6.1) returns the length of the addresses without the 8-byte header. The
    // addresses are read by their count; the rest of the buffer stays zero.
    let _ = len;
    Ok(buf)
}

/// One `sendmsg` of `data` with the control messages in `cmsg[..cmsg_len]`; to `dest` when
/// given (one-to-many sockets: the association to that address, set up on the way when there is
/// none).
pub fn sendmsg(
    fd: BorrowedFd<'_>,
    data: &[u8],
    dest: Option<&SocketAddr>,
    cmsg: &CmsgBuf,
    cmsg_len: usize,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let name = dest.map(sockaddr);
    // SAFETY: msghdr is plain old data; every pointer set below stays valid during the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some((ss, len)) = &name {
        msg.msg_name = (ss as *const libc::sockaddr_storage) as *mut libc::c_void;
        msg.msg_namelen = *len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_ptr() as *mut libc::c_void;
    msg.msg_controllen = cmsg_len.min(size_of::<CmsgBuf>()) as _;
    // SAFETY: msg points at live buffers of the lengths given; the kernel only reads them.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One `recvmsg`; also returns the sender's address (`msg_name`), as raw `sockaddr` bytes.
pub fn recvmsg(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    cmsg: &mut CmsgBuf,
) -> io::Result<(Received, Vec<u8>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: sockaddr_storage is plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // SAFETY: msghdr is plain old data; every pointer set below stays valid during the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<CmsgBuf>() as _;
    // SAFETY: the kernel writes at most iov_len bytes into buf, msg_controllen into cmsg and
    // msg_namelen into ss.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let name_len = (msg.msg_namelen as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: ss is valid for its whole size, name_len is within it.
    let name = unsafe {
        std::slice::from_raw_parts(
            (&ss as *const libc::sockaddr_storage).cast::<u8>(),
            name_len,
        )
    };
    Ok((
        Received {
            len: n as usize,
            flags: msg.msg_flags,
            cmsg_len: (msg.msg_controllen as usize).min(size_of::<CmsgBuf>()),
        },
        name.to_vec(),
    ))
}

/// What one `recvmsg` returned: bytes read into the buffer, `msg_flags`, and the length of the
/// control messages written into the control buffer.
pub struct Received {
    pub len: usize,
    pub flags: libc::c_int,
    pub cmsg_len: usize,
}

/// View a control buffer as bytes (for the safe encoders and decoders).
pub fn cmsg_bytes(cmsg: &CmsgBuf) -> &[u8] {
    // SAFETY: u64 arrays have no padding; any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(cmsg.as_ptr().cast::<u8>(), size_of::<CmsgBuf>()) }
}

pub fn cmsg_bytes_mut(cmsg: &mut CmsgBuf) -> &mut [u8] {
    // SAFETY: as above; writes of any byte pattern leave valid u64s.
    unsafe { std::slice::from_raw_parts_mut(cmsg.as_mut_ptr().cast::<u8>(), size_of::<CmsgBuf>()) }
}
