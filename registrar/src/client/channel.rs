//! The client's ASAP channel to a registrar over either transport: TCP (messages framed by
//! their Length, [`AsapStream`]) or kernel SCTP (one association, PPID 11, message boundaries
//! kept by SCTP). The PE and PU logic only sends and receives [`AsapMessage`]s through it.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

use crate::message::AsapMessage;
use crate::sctp::{self, AssocState, Incoming, Notification, SctpSocket};
use crate::tls::{ClientTls, MaybeTlsStream};
use crate::wire::{self, MAX_MESSAGE_LEN};

use super::{AsapStream, ClientError};

/// How a client reaches registrars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AsapTransport {
    /// ASAP over TCP (rsplb's registrars; hosts without SCTP). The default.
    #[default]
    Tcp,
    /// ASAP over kernel SCTP with PPID 11 (RFC 5352; rsplib's registrars speak only this).
    Sctp,
}

impl std::fmt::Display for AsapTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Sctp => "sctp",
        })
    }
}

/// An open ASAP channel to one registrar.
#[derive(Debug)]
pub enum AsapChannel {
    Tcp(AsapStream<MaybeTlsStream>),
    Sctp(SctpAsap),
}

impl AsapChannel {
    /// Connects to `addr` over `transport`, with TLS over TCP when `tls` is given (no
    /// timeout: the caller bounds it). There is no TLS over SCTP (rsplib has none either).
    pub async fn connect(
        transport: AsapTransport,
        addr: SocketAddr,
        tls: Option<&ClientTls>,
    ) -> io::Result<Self> {
        Ok(match transport {
            AsapTransport::Tcp => {
                let stream = TcpStream::connect(addr).await?;
                let _ = stream.set_nodelay(true);
                let stream = match tls {
                    None => MaybeTlsStream::Plain(stream),
                    Some(tls) => tls
                        .connect(stream, addr)
                        .await
                        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?,
                };
                Self::Tcp(AsapStream::new(stream))
            }
            AsapTransport::Sctp if tls.is_some() => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "TLS is available over TCP only, not over SCTP",
                ));
            }
            AsapTransport::Sctp => Self::Sctp(SctpAsap {
                sock: SctpSocket::connect(addr, sctp::PPID_ASAP, MAX_MESSAGE_LEN).await?,
            }),
        })
    }

    pub async fn send(&mut self, msg: &AsapMessage) -> Result<(), ClientError> {
        match self {
            Self::Tcp(s) => s.send(msg).await,
            Self::Sctp(s) => s.send(msg).await,
        }
    }

    /// The next message (cancel-safe on both transports).
    pub async fn recv(&mut self) -> Result<AsapMessage, ClientError> {
        match self {
            Self::Tcp(s) => s.recv().await,
            Self::Sctp(s) => s.recv().await,
        }
    }

    /// This end's addresses: every local address of an SCTP association (a multi-homed
    /// element registers them all), the one of a TCP connection.
    pub fn local_addrs(&self) -> Vec<IpAddr> {
        let addrs = match self {
            Self::Tcp(s) => s.get_ref().tcp().local_addr().into_iter().collect(),
            Self::Sctp(s) => s.sock.local_addrs().unwrap_or_default(),
        };
        let mut ips: Vec<IpAddr> = Vec::new();
        for a in addrs {
            if !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
        ips
    }
}

/// ASAP over one SCTP association.
#[derive(Debug)]
pub struct SctpAsap {
    sock: SctpSocket,
}

impl SctpAsap {
    async fn send(&mut self, msg: &AsapMessage) -> Result<(), ClientError> {
        let bytes = wire::encode_asap(msg)?;
        self.sock.send(&bytes, 0).await?;
        Ok(())
    }

    /// As over TCP, an undecodable message is skipped; a message with another PPID means the
    /// peer is not an ASAP registrar (rsplib aborts such an association): the channel fails and
    /// the client hunts again. A lost or shut-down association ends it like a closed connection,
    /// and so does a restart (the registrar came back without what was registered).
    async fn recv(&mut self) -> Result<AsapMessage, ClientError> {
        loop {
            match self.sock.recv().await? {
                Incoming::Message { ppid, bytes, .. } => {
                    if ppid != sctp::PPID_ASAP {
                        return Err(ClientError::Protocol(format!(
                            "registrar sent PPID {ppid} instead of {}",
                            sctp::PPID_ASAP
                        )));
                    }
                    match wire::decode_asap(&bytes) {
                        Ok(decoded) => return Ok(decoded.message),
                        Err(e) => log::warn!("ignoring an undecodable ASAP message: {e}"),
                    }
                }
                Incoming::TooLarge { len } => {
                    log::warn!("ignoring an ASAP message of {len} bytes or more");
                }
                Incoming::Notification(Notification::AssocChange {
                    state:
                        state @ (AssocState::CommLost
                        | AssocState::Restart
                        | AssocState::ShutdownComplete
                        | AssocState::CantStartAssoc),
                    ..
                }) => {
                    return Err(ClientError::Io(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        format!("registrar association ended ({state:?})"),
                    )));
                }
                Incoming::Notification(Notification::Shutdown) | Incoming::Closed => {
                    return Err(ClientError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "registrar closed the association",
                    )));
                }
                Incoming::Notification(n) => log::debug!("registrar association: {n:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::hunt::parse_announce;
    use crate::types::{RegistrarId, TransportAddress, TransportUse};

    fn announce(transports: Vec<TransportAddress>) -> Vec<u8> {
        wire::encode_asap(&AsapMessage::ServerAnnounce {
            server_id: RegistrarId(0x722d8a36),
            transports,
        })
        .unwrap()
    }

    #[test]
    fn rsplibs_bare_announce_gives_its_source_port_for_either_transport() {
        // rsplib: 8 bytes, no transport; its registrar listens on a random port, which only
        // the datagram's source port tells.
        let bytes = announce(vec![]);
        assert_eq!(bytes.len(), 8);
        let from: SocketAddr = "198.18.77.2:41234".parse().unwrap();
        for t in [AsapTransport::Tcp, AsapTransport::Sctp] {
            assert_eq!(
                parse_announce(&bytes, from, t),
                Some((from, RegistrarId(0x722d8a36)))
            );
        }
    }

    #[test]
    fn an_announce_with_transports_gives_each_transport_its_own_endpoint() {
        let bytes = announce(vec![
            TransportAddress::Tcp {
                port: 3863,
                transport_use: TransportUse::DataOnly,
                addr: "198.18.0.1".parse().unwrap(),
            },
            TransportAddress::Sctp {
                port: 3864,
                transport_use: TransportUse::DataOnly,
                addrs: vec!["0.0.0.0".parse().unwrap(), "198.18.1.1".parse().unwrap()],
            },
        ]);
        let from: SocketAddr = "198.18.0.9:5000".parse().unwrap();
        let tcp = parse_announce(&bytes, from, AsapTransport::Tcp).unwrap().0;
        assert_eq!(tcp, "198.18.0.1:3863".parse::<SocketAddr>().unwrap());
        // An unspecified address stands for the datagram's source address.
        let sctp = parse_announce(&bytes, from, AsapTransport::Sctp).unwrap().0;
        assert_eq!(sctp, "198.18.0.9:3864".parse::<SocketAddr>().unwrap());
        // Transports listed, none of the protocol asked for: not a candidate.
        let tcp_only = announce(vec![TransportAddress::Tcp {
            port: 3863,
            transport_use: TransportUse::DataOnly,
            addr: "198.18.0.1".parse().unwrap(),
        }]);
        assert_eq!(parse_announce(&tcp_only, from, AsapTransport::Sctp), None);
    }

    /// On a kernel without SCTP a connect fails with a message that says so.
    #[tokio::test]
    async fn sctp_without_kernel_support_says_so() {
        if crate::sctp::supported().is_ok() {
            return;
        }
        let err =
            AsapChannel::connect(AsapTransport::Sctp, "127.0.0.1:3863".parse().unwrap(), None)
                .await
                .unwrap_err();
        assert!(crate::sctp::is_unsupported(&err), "{err}");
        assert!(err.to_string().contains("no SCTP"), "{err}");
    }
}
