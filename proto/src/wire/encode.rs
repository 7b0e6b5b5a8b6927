//! Typed messages to bytes. Every TLV is padded with zeros to 4 bytes; its Length excludes its own
//! padding and includes the padding of the TLVs nested in it; the message Length counts every
//! byte written (RFC 5354 section 2, RFC 5352 section 2.1).

use std::net::IpAddr;

use super::{EncodeError, MAX_MESSAGE_LEN, flags, param_type as pt};
use crate::message::{AsapMessage, EnrpBody, EnrpMessage};
use crate::types::{
    ErrorCause, MAX_PE_ADDRESSES, PeId, Policy, PoolElement, PoolHandle, ServerInformation,
    TransportAddress,
};

/// Encodes an ASAP message.
pub fn encode_asap(msg: &AsapMessage) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::message(msg.type_code());
    match msg {
        AsapMessage::Registration {
            pool_handle,
            element,
        } => {
            w.pool_handle(pool_handle)?;
            w.pool_element(element)?;
        }
        AsapMessage::Deregistration { pool_handle, id }
        | AsapMessage::EndpointKeepAliveAck { pool_handle, id }
        | AsapMessage::EndpointUnreachable { pool_handle, id } => {
            w.pool_handle(pool_handle)?;
            w.pe_id(*id)?;
        }
        AsapMessage::RegistrationResponse {
            reject,
            pool_handle,
            id,
            error,
        } => {
            if *reject {
                w.set_flags(flags::REJECT);
            }
            w.pool_handle(pool_handle)?;
            w.pe_id(*id)?;
            if let Some(causes) = error {
                w.operation_error(causes)?;
            }
        }
        AsapMessage::DeregistrationResponse {
            pool_handle,
            id,
            error,
        } => {
            w.pool_handle(pool_handle)?;
            w.pe_id(*id)?;
            if let Some(causes) = error {
                w.operation_error(causes)?;
            }
        }
        AsapMessage::HandleResolution { pool_handle, items } => {
            w.pool_handle(pool_handle)?;
            if let Some(items) = items {
                w.tlv(pt::HANDLE_RESOLUTION_OPTION, |w| {
                    w.u32(*items);
                    Ok(())
                })?;
            }
        }
        AsapMessage::HandleResolutionResponse {
            pool_handle,
            policy,
            elements,
            error,
        } => {
            w.pool_handle(pool_handle)?;
            if let Some(p) = policy {
                w.policy(p)?;
            }
            for e in elements {
                w.pool_element(e)?;
            }
            if let Some(causes) = error {
                w.operation_error(causes)?;
            }
        }
        AsapMessage::EndpointKeepAlive {
            home,
            server_id,
            pool_handle,
            id,
        } => {
            if *home {
                w.set_flags(flags::HOME);
            }
            w.u32(server_id.0);
            w.pool_handle(pool_handle)?;
            w.pe_id(*id)?;
        }
        AsapMessage::ServerAnnounce {
            server_id,
            transports,
        } => {
            w.u32(server_id.0);
            for t in transports {
                w.transport(t)?;
            }
        }
        AsapMessage::Cookie { cookie } | AsapMessage::CookieEcho { cookie } => {
            w.tlv(pt::COOKIE, |w| {
                w.bytes(cookie);
                Ok(())
            })?;
        }
        AsapMessage::BusinessCard {
            pool_handle,
            policy,
            elements,
        } => {
            if elements.is_empty() {
                // RFC 5352 section 2.2.13: a Business Card names at least one element.
                return Err(EncodeError::Invalid(
                    "Business Card without a Pool Element".into(),
                ));
            }
            w.pool_handle(pool_handle)?;
            if let Some(p) = policy {
                w.policy(p)?;
            }
            for e in elements {
                w.pool_element(e)?;
            }
        }
        AsapMessage::Error { causes } => w.operation_error(causes)?,
    }
    w.finish()
}

/// Encodes an ENRP message.
pub fn encode_enrp(msg: &EnrpMessage) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::message(msg.body.type_code());
    w.u32(msg.sender.0);
    w.u32(msg.receiver.0);
    match &msg.body {
        EnrpBody::Presence {
            reply_required,
            checksum,
            info,
        } => {
            if *reply_required {
                w.set_flags(flags::REPLY_REQUIRED);
            }
            w.tlv(pt::PE_CHECKSUM, |w| {
                w.bytes(&checksum.to_be_bytes());
                Ok(())
            })?;
            if let Some(info) = info {
                w.server_information(info)?;
            }
        }
        EnrpBody::HandleTableRequest { own_children_only } => {
            if *own_children_only {
                w.set_flags(flags::OWN_CHILDREN_ONLY);
            }
        }
        EnrpBody::HandleTableResponse {
            reject,
            more,
            pools,
        } => {
            let f = if *reject { flags::REJECT } else { 0 } | if *more { flags::MORE } else { 0 };
            w.set_flags(f);
            for (handle, elements) in pools {
                w.pool_handle(handle)?;
                for e in elements {
                    w.pool_element(e)?;
                }
            }
        }
        EnrpBody::HandleUpdate {
            takeover_suggested,
            action,
            pool_handle,
            element,
        } => {
            if *takeover_suggested {
                w.set_flags(flags::TAKEOVER_SUGGESTED);
            }
            w.bytes(&action.code().to_be_bytes());
            w.bytes(&[0, 0]);
            w.pool_handle(pool_handle)?;
            w.pool_element(element)?;
        }
        EnrpBody::ListRequest => {}
        EnrpBody::ListResponse { reject, servers } => {
            if *reject {
                w.set_flags(flags::REJECT);
            }
            for s in servers {
                w.server_information(s)?;
            }
        }
        EnrpBody::InitTakeover { target }
        | EnrpBody::InitTakeoverAck { target }
        | EnrpBody::TakeoverServer { target } => w.u32(target.0),
        EnrpBody::Error { causes } => w.operation_error(causes)?,
    }
    w.finish()
}

/// Encodes one parameter on its own (TLV bytes, unpadded), e.g. to quote it as the info of an
/// error cause.
pub fn encode_policy_param(policy: &Policy) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer { buf: Vec::new() };
    w.policy(policy)?;
    Ok(unpad(w.buf))
}

/// Encodes a transport parameter on its own (TLV bytes, unpadded).
pub fn encode_transport_param(t: &TransportAddress) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer { buf: Vec::new() };
    w.transport(t)?;
    Ok(unpad(w.buf))
}

/// Encodes a pool element parameter on its own (TLV bytes, unpadded).
pub fn encode_pool_element_param(e: &PoolElement) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer { buf: Vec::new() };
    w.pool_element(e)?;
    Ok(unpad(w.buf))
}

fn unpad(mut tlv: Vec<u8>) -> Vec<u8> {
    if tlv.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([tlv[2], tlv[3]]));
        tlv.truncate(len);
    }
    tlv
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn message(type_code: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[type_code, 0, 0, 0]);
        Self { buf }
    }

    fn set_flags(&mut self, f: u8) {
        self.buf[1] |= f;
    }

    fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        pad(&mut self.buf);
        let len = self.buf.len();
        if len > MAX_MESSAGE_LEN {
            return Err(EncodeError::TooBig {
                what: "message",
                len,
            });
        }
        self.buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        Ok(self.buf)
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Writes one TLV: header, the value `body` writes, Length patched, then zero padding.
    fn tlv(
        &mut self,
        ptype: u16,
        body: impl FnOnce(&mut Self) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&ptype.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        body(self)?;
        let len = self.buf.len() - start;
        if len > MAX_MESSAGE_LEN {
            return Err(EncodeError::TooBig {
                what: "parameter",
                len,
            });
        }
        self.buf[start + 2..start + 4].copy_from_slice(&(len as u16).to_be_bytes());
        pad(&mut self.buf);
        Ok(())
    }

    fn pool_handle(&mut self, h: &PoolHandle) -> Result<(), EncodeError> {
        self.tlv(pt::POOL_HANDLE, |w| {
            w.bytes(h.as_bytes());
            Ok(())
        })
    }

    fn pe_id(&mut self, id: PeId) -> Result<(), EncodeError> {
        self.tlv(pt::PE_IDENTIFIER, |w| {
            w.u32(id.0);
            Ok(())
        })
    }

    fn address(&mut self, a: &IpAddr) -> Result<(), EncodeError> {
        match a {
            IpAddr::V4(v4) => self.tlv(pt::IPV4_ADDRESS, |w| {
                w.bytes(&v4.octets());
                Ok(())
            }),
            IpAddr::V6(v6) => self.tlv(pt::IPV6_ADDRESS, |w| {
                w.bytes(&v6.octets());
                Ok(())
            }),
        }
    }

    fn transport(&mut self, t: &TransportAddress) -> Result<(), EncodeError> {
        match t {
            TransportAddress::Sctp {
                port,
                transport_use,
                addrs,
            } => {
                if addrs.is_empty() || addrs.len() > MAX_PE_ADDRESSES {
                    return Err(EncodeError::Invalid(format!(
                        "SCTP transport with {} addresses (1 to {MAX_PE_ADDRESSES} allowed)",
                        addrs.len()
                    )));
                }
                self.tlv(pt::SCTP_TRANSPORT, |w| {
                    w.bytes(&port.to_be_bytes());
                    w.bytes(&transport_use.code().to_be_bytes());
                    addrs.iter().try_for_each(|a| w.address(a))
                })
            }
            TransportAddress::Tcp {
                port,
                transport_use,
                addr,
            } => self.tlv(pt::TCP_TRANSPORT, |w| {
                w.bytes(&port.to_be_bytes());
                w.bytes(&transport_use.code().to_be_bytes());
                w.address(addr)
            }),
            TransportAddress::Udp { port, addr } => self.tlv(pt::UDP_TRANSPORT, |w| {
                w.bytes(&port.to_be_bytes());
                w.bytes(&[0, 0]);
                w.address(addr)
            }),
            TransportAddress::UdpLite { port, addr } => self.tlv(pt::UDP_LITE_TRANSPORT, |w| {
                w.bytes(&port.to_be_bytes());
                w.bytes(&[0, 0]);
                w.address(addr)
            }),
            TransportAddress::Dccp {
                port,
                service_code,
                addr,
            } => self.tlv(pt::DCCP_TRANSPORT, |w| {
                w.bytes(&port.to_be_bytes());
                w.bytes(&[0, 0]);
                w.u32(*service_code);
                w.address(addr)
            }),
        }
    }

    fn policy(&mut self, p: &Policy) -> Result<(), EncodeError> {
        if let Policy::Unknown { policy_type, .. } = p
            && super::KNOWN_POLICY_TYPES.contains(policy_type)
        {
            // The decoder would read it as the typed policy (or refuse a wrong value count).
            return Err(EncodeError::Invalid(format!(
                "Policy::Unknown with the known type 0x{policy_type:08x}"
            )));
        }
        let values: Vec<u32> = policy_values(p);
        self.tlv(pt::POLICY, |w| {
            w.u32(p.type_code());
            values.iter().for_each(|v| w.u32(*v));
            Ok(())
        })
    }

    fn pool_element(&mut self, e: &PoolElement) -> Result<(), EncodeError> {
        self.tlv(pt::POOL_ELEMENT, |w| {
            w.u32(e.id.0);
            w.u32(e.home_registrar.0);
            w.bytes(&e.registration_life_ms.to_be_bytes());
            w.transport(&e.user_transport)?;
            w.policy(&e.policy)?;
            if let Some(t) = &e.asap_transport {
                w.transport(t)?;
            }
            Ok(())
        })
    }

    fn server_information(&mut self, s: &ServerInformation) -> Result<(), EncodeError> {
        self.tlv(pt::SERVER_INFORMATION, |w| {
            w.u32(s.id.0);
            w.transport(&s.transport)
        })
    }

    fn operation_error(&mut self, causes: &[ErrorCause]) -> Result<(), EncodeError> {
        if causes.is_empty() {
            // RFC 5354 section 3.10: an Operation Error carries one or more causes.
            return Err(EncodeError::Invalid(
                "Operation Error without error causes".into(),
            ));
        }
        self.tlv(pt::OPERATION_ERROR, |w| {
            for c in causes {
                let len = 4 + c.info.len();
                if len > MAX_MESSAGE_LEN {
                    return Err(EncodeError::TooBig {
                        what: "error cause",
                        len,
                    });
                }
                w.bytes(&c.code.code().to_be_bytes());
                w.bytes(&(len as u16).to_be_bytes());
                w.bytes(&c.info);
                pad(&mut w.buf);
            }
            Ok(())
        })
    }
}

fn pad(buf: &mut Vec<u8>) {
    let n = buf.len().next_multiple_of(4);
    buf.resize(n, 0);
}

/// The 32-bit policy values after the type code, in wire order.
pub(super) fn policy_values(p: &Policy) -> Vec<u32> {
    p.named_values().into_iter().map(|(_, v)| v).collect()
}
