//! The byte layouts the SCTP socket API exchanges with the kernel (RFC 6458, Linux
//! `<linux/sctp.h>`): `sockaddr`s, `sctp_getaddrs`, the `SCTP_SNDINFO` and `SCTP_RCVINFO` control
//! messages, notifications, and the reassembly of messages delivered in pieces. Safe code
//! only, tested on any host (no kernel SCTP needed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// `cmsg_level` of SCTP's control messages.
pub const CMSG_LEVEL_SCTP: i32 = 132;
/// `cmsg_type` of `struct sctp_sndinfo` (RFC 6458 5.3.4).
pub const SCTP_SNDINFO: i32 = 2;
/// `cmsg_type` of `struct sctp_rcvinfo` (RFC 6458 5.3.5).
pub const SCTP_RCVINFO: i32 = 3;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Notification types (`sn_type`).
pub const SCTP_ASSOC_CHANGE: u16 = 0x8001;
pub const SCTP_PEER_ADDR_CHANGE: u16 = 0x8002;
pub const SCTP_REMOTE_ERROR: u16 = 0x8004;
pub const SCTP_SHUTDOWN_EVENT: u16 = 0x8005;
pub const SCTP_PARTIAL_DELIVERY_EVENT: u16 = 0x8006;

/// `struct sctp_event_subscribe` for SCTP_EVENTS: data I/O (off: SCTP_RCVINFO replaces it),
/// association, address, send failure (off: it would hand back whole messages), peer error,
/// shutdown, partial delivery.
pub const EVENT_SUBSCRIPTION: [u8; 7] = [0, 1, 1, 0, 1, 1, 1];

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn i32_ne(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// `struct sockaddr_in` / `sockaddr_in6` bytes.
pub fn encode_sockaddr(addr: &SocketAddr) -> Vec<u8> {
    match addr {
        SocketAddr::V4(a) => {
            let mut b = Vec::with_capacity(16);
            b.extend_from_slice(&AF_INET.to_ne_bytes());
            b.extend_from_slice(&a.port().to_be_bytes());
            b.extend_from_slice(&a.ip().octets());
            b.extend_from_slice(&[0; 8]);
            b
        }
        SocketAddr::V6(a) => {
            let mut b = Vec::with_capacity(28);
            b.extend_from_slice(&AF_INET6.to_ne_bytes());
            b.extend_from_slice(&a.port().to_be_bytes());
            b.extend_from_slice(&a.flowinfo().to_be_bytes());
            b.extend_from_slice(&a.ip().octets());
            b.extend_from_slice(&a.scope_id().to_ne_bytes());
            b
        }
    }
}

/// One `sockaddr` at the start of `b`: the address and its encoded size. IPv4-mapped IPv6
/// addresses (a dual-stack socket reports them) come back as IPv4.
pub fn decode_sockaddr(b: &[u8]) -> Option<(SocketAddr, usize)> {
    match u16_ne(b, 0)? {
        AF_INET => {
            let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            b.get(..16)?;
            Some((SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port), 16))
        }
        AF_INET6 => {
            let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
            let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32_ne(b, 24)?;
            let ip = Ipv6Addr::from(ip);
            let addr = match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope)),
            };
            Some((addr, 28))
        }
        _ => None,
    }
}

/// The addresses of a `struct sctp_getaddrs` (`sctp_getpaddrs`/`sctp_getladdrs`): association
/// id, count, then the packed `sockaddr`s. Stops at the first it cannot read.
pub fn decode_getaddrs(b: &[u8]) -> Vec<SocketAddr> {
    let count = u32_ne(b, 4).unwrap_or(0) as usize;
    let mut out = Vec::new();
    let mut at = 8;
    while out.len() < count {
        let Some((addr, len)) = b.get(at..).and_then(decode_sockaddr) else {
            break;
        };
        out.push(addr);
        at += len;
    }
    out
}

/// The association id the kernel wrote into a `struct sctp_getaddrs` (it does so for peer
/// addresses).
pub fn getaddrs_assoc_id(b: &[u8]) -> i32 {
    i32_ne(b, 0).unwrap_or(0)
}

/// Size of a `cmsghdr` rounded up to the control-message alignment (`CMSG_ALIGN`): the offset
/// of a control message's data.
const fn cmsg_align(n: usize) -> usize {
    let a = std::mem::size_of::<usize>();
    (n + a - 1) & !(a - 1)
}
const CMSG_HDR: usize = cmsg_align(std::mem::size_of::<usize>() + 8);

/// Writes one `SCTP_SNDINFO` control message (stream, PPID, no flags, association 0) at the
/// start of `out`; returns its `CMSG_SPACE`. The PPID goes on the wire in network byte order
/// (RFC 6458: the kernel copies it unchanged).
pub fn encode_sndinfo(out: &mut [u8], stream: u16, ppid: u32) -> usize {
    let mut data = [0u8; 16];
    data[0..2].copy_from_slice(&stream.to_ne_bytes()); // snd_sid
    data[2..4].copy_from_slice(&0u16.to_ne_bytes()); // snd_flags
    data[4..8].copy_from_slice(&ppid.to_be_bytes()); // snd_ppid, network order
    // snd_context (8..12) and snd_assoc_id (12..16) stay 0.
    let len = CMSG_HDR + data.len();
    let space = cmsg_align(len);
    out[..space].fill(0);
    out[..std::mem::size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
    let s = std::mem::size_of::<usize>();
    out[s..s + 4].copy_from_slice(&CMSG_LEVEL_SCTP.to_ne_bytes());
    out[s + 4..s + 8].copy_from_slice(&SCTP_SNDINFO.to_ne_bytes());
    out[CMSG_HDR..CMSG_HDR + data.len()].copy_from_slice(&data);
    space
}

/// Writes one `SCTP_SNDINFO` for a one-to-many socket: `flags` (`snd_flags`, e.g.
/// [`SCTP_ABORT`]) and the association `assoc_id` (0: the one the destination address names);
/// returns its `CMSG_SPACE`.
pub fn encode_sndinfo_assoc(
    out: &mut [u8],
    stream: u16,
    flags: u16,
    ppid: u32,
    assoc_id: i32,
) -> usize {
    let space = encode_sndinfo(out, stream, ppid);
    out[CMSG_HDR + 2..CMSG_HDR + 4].copy_from_slice(&flags.to_ne_bytes());
    out[CMSG_HDR + 12..CMSG_HDR + 16].copy_from_slice(&assoc_id.to_ne_bytes());
    space
}

/// `snd_flags`: end the association with an ABORT.
pub const SCTP_ABORT: u16 = 1 << 2;

/// The association a complete notification is about (0 when it names none or is too short).
pub fn notification_assoc_id(b: &[u8]) -> i32 {
    let at = match u16_ne(b, 0).unwrap_or(0) {
        SCTP_ASSOC_CHANGE => 16,
        SCTP_PEER_ADDR_CHANGE => 144,
        SCTP_REMOTE_ERROR => 12,
        SCTP_SHUTDOWN_EVENT => 8,
        _ => return 0,
    };
    i32_ne(b, at).unwrap_or(0)
}

/// What `SCTP_RCVINFO` says about a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcvInfo {
    pub stream: u16,
    /// As sent (host order here).
    pub ppid: u32,
    /// The association it came on (`rcv_assoc_id`; what a one-to-many socket answers on).
    pub assoc_id: i32,
}

/// Finds the `SCTP_RCVINFO` among the control messages `cmsg`.
pub fn decode_rcvinfo(cmsg: &[u8]) -> Option<RcvInfo> {
    let s = std::mem::size_of::<usize>();
    let mut at = 0;
    while at + CMSG_HDR <= cmsg.len() {
        let len = usize::from_ne_bytes(cmsg.get(at..at + s)?.try_into().ok()?);
        if len < CMSG_HDR || at + len > cmsg.len() {
            return None;
        }
        let level = i32_ne(cmsg, at + s)?;
        let kind = i32_ne(cmsg, at + s + 4)?;
        if level == CMSG_LEVEL_SCTP && kind == SCTP_RCVINFO {
            let d = cmsg.get(at + CMSG_HDR..at + len)?;
            // struct sctp_rcvinfo: sid u16, ssn u16, flags u16, (pad), ppid u32 at 8, tsn,
            // cumtsn, context, assoc_id i32 at 24.
            let stream = u16_ne(d, 0)?;
            let ppid = u32::from_be_bytes(d.get(8..12)?.try_into().ok()?);
            let assoc_id = i32_ne(d, 24)?;
            return Some(RcvInfo {
                stream,
                ppid,
                assoc_id,
            });
        }
        at += cmsg_align(len);
    }
    None
}

/// `sac_state` of an association change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssocState {
    CommUp,
    CommLost,
    Restart,
    ShutdownComplete,
    CantStartAssoc,
    Other(u16),
}

/// `spc_state` of a peer address change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrState {
    Available,
    Unreachable,
    Removed,
    Added,
    MadePrimary,
    Confirmed,
    PotentiallyFailed,
    Other(i32),
}

/// An SCTP notification (RFC 6458 6.1), as far as this layer acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    AssocChange {
        state: AssocState,
        error: u16,
        outbound_streams: u16,
        inbound_streams: u16,
    },
    PeerAddrChange {
        addr: Option<SocketAddr>,
        state: AddrState,
        error: i32,
    },
    RemoteError {
        error: u16,
    },
    /// The peer sent SHUTDOWN: it sends nothing more.
    Shutdown,
    /// A partially delivered message will not be completed (`SCTP_PARTIAL_DELIVERY_ABORTED`).
    PartialDeliveryAborted,
    /// Any other notification type, or one too short to read.
    Other {
        kind: u16,
    },
}

/// Parses one complete notification.
pub fn decode_notification(b: &[u8]) -> Notification {
    let kind = u16_ne(b, 0).unwrap_or(0);
    let other = Notification::Other { kind };
    match kind {
        SCTP_ASSOC_CHANGE => {
            let (Some(state), Some(error), Some(out), Some(inb)) =
                (u16_ne(b, 8), u16_ne(b, 10), u16_ne(b, 12), u16_ne(b, 14))
            else {
                return other;
            };
            Notification::AssocChange {
                state: match state {
                    0 => AssocState::CommUp,
                    1 => AssocState::CommLost,
                    2 => AssocState::Restart,
                    3 => AssocState::ShutdownComplete,
                    4 => AssocState::CantStartAssoc,
                    s => AssocState::Other(s),
                },
                error,
                outbound_streams: out,
                inbound_streams: inb,
            }
        }
        SCTP_PEER_ADDR_CHANGE => {
            // struct sctp_paddr_change is packed: sockaddr_storage (128 bytes) at 8, then
            // state and error.
            let (Some(state), Some(error)) = (i32_ne(b, 136), i32_ne(b, 140)) else {
                return other;
            };
            Notification::PeerAddrChange {
                addr: b.get(8..136).and_then(decode_sockaddr).map(|(a, _)| a),
                state: match state {
                    0 => AddrState::Available,
                    1 => AddrState::Unreachable,
                    2 => AddrState::Removed,
                    3 => AddrState::Added,
                    4 => AddrState::MadePrimary,
                    5 => AddrState::Confirmed,
                    6 => AddrState::PotentiallyFailed,
                    s => AddrState::Other(s),
                },
                error,
            }
        }
        SCTP_REMOTE_ERROR => match b.get(8..10) {
            Some(e) => Notification::RemoteError {
                error: u16::from_be_bytes([e[0], e[1]]),
            },
            None => other,
        },
        SCTP_SHUTDOWN_EVENT => Notification::Shutdown,
        SCTP_PARTIAL_DELIVERY_EVENT => match u32_ne(b, 8) {
            Some(0) => Notification::PartialDeliveryAborted,
            _ => other,
        },
        _ => other,
    }
}

/// One `recvmsg` result, as the reassembler sees it.
#[derive(Clone, Copy, Debug)]
pub struct Piece<'a> {
    pub bytes: &'a [u8],
    /// `MSG_EOR`: this piece ends the message.
    pub end: bool,
    /// `MSG_NOTIFICATION`.
    pub notification: bool,
    /// `SCTP_RCVINFO` of the piece, when the kernel gave one.
    pub info: Option<RcvInfo>,
}

/// A complete unit from the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assembled {
    Message {
        stream: u16,
        ppid: u32,
        bytes: Vec<u8>,
    },
    Notification(Notification),
    /// A message longer than the limit was discarded (`len`: bytes seen before its end).
    TooLarge {
        len: usize,
    },
}

/// Joins the pieces of messages that the kernel delivers in several reads (partial delivery,
/// or a message larger than the read buffer) until `MSG_EOR`; at most `max` bytes are kept per
/// message. Data and notifications are kept apart, since a notification (such as partial
/// delivery aborted) may arrive while a message is incomplete.
#[derive(Debug)]
pub struct Reassembler {
    max: usize,
    data: Vec<u8>,
    info: Option<RcvInfo>,
    /// Bytes of the current message beyond `max` (it is being discarded).
    overflow: usize,
    notification: Vec<u8>,
    /// The association the last complete notification is about ([`notification_assoc_id`]).
    notification_assoc: i32,
}

impl Reassembler {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            data: Vec::new(),
            info: None,
            overflow: 0,
            notification: Vec::new(),
            notification_assoc: 0,
        }
    }

    /// The association the last notification [`Reassembler::push`] returned is about (one-to-many
    /// sockets; 0 when it names none).
    pub fn notification_assoc(&self) -> i32 {
        self.notification_assoc
    }

    /// Whether part of a data message is held.
    pub fn pending(&self) -> bool {
        !self.data.is_empty() || self.overflow > 0
    }

    pub fn push(&mut self, piece: Piece<'_>) -> Option<Assembled> {
        if piece.notification {
            if self.notification.len() + piece.bytes.len() <= 64 * 1024 {
                self.notification.extend_from_slice(piece.bytes);
            }
            if !piece.end {
                return None;
            }
            let raw = std::mem::take(&mut self.notification);
            self.notification_assoc = notification_assoc_id(&raw);
            let n = decode_notification(&raw);
            if n == Notification::PartialDeliveryAborted {
                self.data.clear();
                self.info = None;
                self.overflow = 0;
            }
            return Some(Assembled::Notification(n));
        }
        if self.info.is_none() {
            self.info = piece.info;
        }
        if self.overflow > 0 || self.data.len() + piece.bytes.len() > self.max {
            self.overflow += self.data.len() + piece.bytes.len();
            self.data.clear();
        } else {
            self.data.extend_from_slice(piece.bytes);
        }
        if !piece.end {
            return None;
        }
        let info = self.info.take();
        if self.overflow > 0 {
            let len = std::mem::take(&mut self.overflow);
            return Some(Assembled::TooLarge { len });
        }
        let info = info.unwrap_or(RcvInfo {
            stream: 0,
            ppid: 0,
            assoc_id: 0,
        });
        Some(Assembled::Message {
            stream: info.stream,
            ppid: info.ppid,
            bytes: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcvinfo_cmsg(stream: u16, ppid: u32) -> Vec<u8> {
        let s = std::mem::size_of::<usize>();
        let mut data = [0u8; 28];
        data[0..2].copy_from_slice(&stream.to_ne_bytes());
        data[2..4].copy_from_slice(&7u16.to_ne_bytes()); // ssn
        data[8..12].copy_from_slice(&ppid.to_be_bytes());
        data[24..28].copy_from_slice(&5i32.to_ne_bytes()); // assoc id
        let len = CMSG_HDR + data.len();
        let mut b = vec![0u8; cmsg_align(len)];
        b[..s].copy_from_slice(&len.to_ne_bytes());
        b[s..s + 4].copy_from_slice(&CMSG_LEVEL_SCTP.to_ne_bytes());
        b[s + 4..s + 8].copy_from_slice(&SCTP_RCVINFO.to_ne_bytes());
        b[CMSG_HDR..CMSG_HDR + 28].copy_from_slice(&data);
        b
    }

    #[test]
    fn sndinfo_carries_the_ppid_in_network_order() {
        let mut buf = [0u8; 64];
        let space = encode_sndinfo(&mut buf, 3, 11);
        assert_eq!(
            space, 32,
            "CMSG_SPACE(sizeof(struct sctp_sndinfo)) on 64-bit Linux"
        );
        assert_eq!(usize::from_ne_bytes(buf[..8].try_into().unwrap()), 32);
        assert_eq!(i32::from_ne_bytes(buf[8..12].try_into().unwrap()), 132);
        assert_eq!(
            i32::from_ne_bytes(buf[12..16].try_into().unwrap()),
            SCTP_SNDINFO
        );
        assert_eq!(u16::from_ne_bytes(buf[16..18].try_into().unwrap()), 3);
        assert_eq!(&buf[20..24], &[0, 0, 0, 11]);
    }

    #[test]
    fn rcvinfo_is_found_after_other_control_messages() {
        let s = std::mem::size_of::<usize>();
        // An unrelated control message first (level SOL_SOCKET, 4 bytes of data).
        let mut other = vec![0u8; cmsg_align(CMSG_HDR + 4)];
        other[..s].copy_from_slice(&(CMSG_HDR + 4).to_ne_bytes());
        other[s..s + 4].copy_from_slice(&1i32.to_ne_bytes());
        let mut b = other;
        b.extend(rcvinfo_cmsg(4, 12));
        assert_eq!(
            decode_rcvinfo(&b),
            Some(RcvInfo {
                stream: 4,
                ppid: 12,
                assoc_id: 5,
            })
        );
        assert_eq!(decode_rcvinfo(&b[..10]), None);
        assert_eq!(decode_rcvinfo(&[]), None);
    }

    #[test]
    fn sockaddrs_round_trip_and_mapped_addresses_read_as_ipv4() {
        for a in ["198.18.77.2:3863", "[fd00::2]:9901"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(
                decode_sockaddr(&encode_sockaddr(&a)),
                Some((a, encode_sockaddr(&a).len()))
            );
        }
        let mapped: SocketAddr = "[::ffff:198.18.77.2]:3863".parse().unwrap();
        assert_eq!(
            decode_sockaddr(&encode_sockaddr(&mapped)).unwrap().0,
            "198.18.77.2:3863".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(decode_sockaddr(&[2, 0, 1]), None);
    }

    #[test]
    fn getaddrs_lists_every_address_of_a_multihomed_peer() {
        let addrs: Vec<SocketAddr> = vec![
            "198.18.77.2:5000".parse().unwrap(),
            "[fd00::7]:5000".parse().unwrap(),
            "10.0.0.2:5000".parse().unwrap(),
        ];
        let mut b = Vec::new();
        b.extend_from_slice(&0i32.to_ne_bytes());
        b.extend_from_slice(&3u32.to_ne_bytes());
        for a in &addrs {
            b.extend(encode_sockaddr(a));
        }
        assert_eq!(decode_getaddrs(&b), addrs);
        b[..4].copy_from_slice(&77i32.to_ne_bytes());
        assert_eq!(getaddrs_assoc_id(&b), 77);
        // A count larger than the buffer holds stops at what is there.
        b[4..8].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(decode_getaddrs(&b), addrs);
        assert!(decode_getaddrs(&[0; 3]).is_empty());
    }

    fn assoc_change(state: u16) -> Vec<u8> {
        let mut b = vec![0u8; 20];
        b[0..2].copy_from_slice(&SCTP_ASSOC_CHANGE.to_ne_bytes());
        b[4..8].copy_from_slice(&20u32.to_ne_bytes());
        b[8..10].copy_from_slice(&state.to_ne_bytes());
        b[12..14].copy_from_slice(&10u16.to_ne_bytes());
        b[14..16].copy_from_slice(&5u16.to_ne_bytes());
        b
    }

    #[test]
    fn association_changes_are_read() {
        for (code, state) in [
            (0, AssocState::CommUp),
            (1, AssocState::CommLost),
            (2, AssocState::Restart),
            (3, AssocState::ShutdownComplete),
            (4, AssocState::CantStartAssoc),
            (9, AssocState::Other(9)),
        ] {
            assert_eq!(
                decode_notification(&assoc_change(code)),
                Notification::AssocChange {
                    state,
                    error: 0,
                    outbound_streams: 10,
                    inbound_streams: 5
                }
            );
        }
        // Truncated: not misread.
        assert_eq!(
            decode_notification(&assoc_change(1)[..12]),
            Notification::Other {
                kind: SCTP_ASSOC_CHANGE
            }
        );
    }

    #[test]
    fn peer_address_changes_name_the_address() {
        let mut b = vec![0u8; 148];
        b[0..2].copy_from_slice(&SCTP_PEER_ADDR_CHANGE.to_ne_bytes());
        let a: SocketAddr = "198.18.77.3:4000".parse().unwrap();
        let enc = encode_sockaddr(&a);
        b[8..8 + enc.len()].copy_from_slice(&enc);
        b[136..140].copy_from_slice(&3i32.to_ne_bytes());
        assert_eq!(
            decode_notification(&b),
            Notification::PeerAddrChange {
                addr: Some(a),
                state: AddrState::Added,
                error: 0
            }
        );
        b[136..140].copy_from_slice(&1i32.to_ne_bytes());
        assert!(matches!(
            decode_notification(&b),
            Notification::PeerAddrChange {
                state: AddrState::Unreachable,
                ..
            }
        ));
    }

    #[test]
    fn shutdown_and_partial_delivery_events() {
        let mut b = vec![0u8; 12];
        b[0..2].copy_from_slice(&SCTP_SHUTDOWN_EVENT.to_ne_bytes());
        assert_eq!(decode_notification(&b), Notification::Shutdown);
        let mut p = vec![0u8; 24];
        p[0..2].copy_from_slice(&SCTP_PARTIAL_DELIVERY_EVENT.to_ne_bytes());
        assert_eq!(
            decode_notification(&p),
            Notification::PartialDeliveryAborted
        );
        assert_eq!(decode_notification(&[]), Notification::Other { kind: 0 });
    }

    fn data(bytes: &[u8], end: bool, info: Option<RcvInfo>) -> Piece<'_> {
        Piece {
            bytes,
            end,
            notification: false,
            info,
        }
    }

    #[test]
    fn a_message_in_several_pieces_is_joined_with_the_first_pieces_info() {
        let info = Some(RcvInfo {
            stream: 2,
            ppid: 11,
            assoc_id: 0,
        });
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(data(b"abc", false, info)), None);
        assert!(r.pending());
        assert_eq!(r.push(data(b"def", false, None)), None);
        assert_eq!(
            r.push(data(b"g", true, None)),
            Some(Assembled::Message {
                stream: 2,
                ppid: 11,
                bytes: b"abcdefg".to_vec()
            })
        );
        assert!(!r.pending());
        // The next message starts afresh.
        assert_eq!(
            r.push(data(
                b"x",
                true,
                Some(RcvInfo {
                    stream: 0,
                    ppid: 12,
                    assoc_id: 0,
                })
            )),
            Some(Assembled::Message {
                stream: 0,
                ppid: 12,
                bytes: b"x".to_vec()
            })
        );
    }

    #[test]
    fn an_oversized_message_is_dropped_whole_and_the_next_one_reads_normally() {
        let mut r = Reassembler::new(4);
        assert_eq!(r.push(data(b"abc", false, None)), None);
        assert_eq!(r.push(data(b"def", false, None)), None);
        assert_eq!(
            r.push(data(b"gh", true, None)),
            Some(Assembled::TooLarge { len: 8 })
        );
        assert!(matches!(
            r.push(data(b"ok", true, None)),
            Some(Assembled::Message { bytes, .. }) if bytes == b"ok"
        ));
    }

    #[test]
    fn an_aborted_partial_delivery_discards_the_pieces() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(data(b"abc", false, None)), None);
        let mut p = vec![0u8; 24];
        p[0..2].copy_from_slice(&SCTP_PARTIAL_DELIVERY_EVENT.to_ne_bytes());
        let n = r.push(Piece {
            bytes: &p,
            end: true,
            notification: true,
            info: None,
        });
        assert_eq!(
            n,
            Some(Assembled::Notification(
                Notification::PartialDeliveryAborted
            ))
        );
        assert!(!r.pending());
        assert!(matches!(
            r.push(data(b"new", true, None)),
            Some(Assembled::Message { bytes, .. }) if bytes == b"new"
        ));
    }

    #[test]
    fn a_notification_in_pieces_does_not_disturb_a_pending_message() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(data(b"ab", false, None)), None);
        let mut n = assoc_change(2);
        n[16..20].copy_from_slice(&77i32.to_ne_bytes()); // sac_assoc_id
        let piece = |b, end| Piece {
            bytes: b,
            end,
            notification: true,
            info: None,
        };
        assert_eq!(r.push(piece(&n[..6], false)), None);
        assert!(matches!(
            r.push(piece(&n[6..], true)),
            Some(Assembled::Notification(Notification::AssocChange {
                state: AssocState::Restart,
                ..
            }))
        ));
        // One-to-many sockets need the association a notification is about.
        assert_eq!(r.notification_assoc(), 77);
        assert!(matches!(
            r.push(data(b"c", true, None)),
            Some(Assembled::Message { bytes, .. }) if bytes == b"abc"
        ));
    }
}
