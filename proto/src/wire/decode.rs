//! Bytes to typed messages. The decoder never panics and allocates at most in proportion to the
//! input (every collection grows by one entry per TLV of at least 4 input bytes). Parameters are
//! parsed by the layout each message or parameter defines, so nesting is bounded by the format
//! itself (message > pool element / server information > transport > address: 3 levels); no
//! generic recursion exists.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{DecodeError, DecodeErrorKind as K, Decoded, HEADER_LEN, param_type as pt};
use crate::message::{AsapMessage, EnrpBody, EnrpMessage, UpdateAction, asap_type, enrp_type};
use crate::types::{
    CauseCode, ErrorCause, MAX_PE_ADDRESSES, PeId, Policy, PoolElement, PoolHandle, RegistrarId,
    ServerInformation, TransportAddress, TransportUse, policy_type,
};

/// Decodes an ASAP message (RFC 5352 section 2).
pub fn decode_asap(bytes: &[u8]) -> Result<Decoded<AsapMessage>, DecodeError> {
    let (mtype, mflags, msg) = frame(bytes)?;
    let mut cx = Cx::default();
    let body = &msg[HEADER_LEN..];
    use asap_type::*;
    let message = match mtype {
        REGISTRATION => {
            let mut f = cx.collect(body, &[pt::POOL_HANDLE, pt::POOL_ELEMENT], false)?;
            AsapMessage::Registration {
                pool_handle: required(f.pool_handle, "Pool Handle")?,
                element: exactly_one(&mut f.elements, "Pool Element")?,
            }
        }
        DEREGISTRATION | ENDPOINT_KEEP_ALIVE_ACK | ENDPOINT_UNREACHABLE => {
            let f = cx.collect(body, &[pt::POOL_HANDLE, pt::PE_IDENTIFIER], false)?;
            let pool_handle = required(f.pool_handle, "Pool Handle")?;
            let id = required(f.pe_id, "PE Identifier")?;
            match mtype {
                DEREGISTRATION => AsapMessage::Deregistration { pool_handle, id },
                ENDPOINT_KEEP_ALIVE_ACK => AsapMessage::EndpointKeepAliveAck { pool_handle, id },
                _ => AsapMessage::EndpointUnreachable { pool_handle, id },
            }
        }
        REGISTRATION_RESPONSE | DEREGISTRATION_RESPONSE => {
            let allowed = [pt::POOL_HANDLE, pt::PE_IDENTIFIER, pt::OPERATION_ERROR];
            let f = cx.collect(body, &allowed, false)?;
            let pool_handle = required(f.pool_handle, "Pool Handle")?;
            let id = required(f.pe_id, "PE Identifier")?;
            if mtype == REGISTRATION_RESPONSE {
                AsapMessage::RegistrationResponse {
                    reject: mflags & super::flags::REJECT != 0,
                    pool_handle,
                    id,
                    error: f.op_error,
                }
            } else {
                AsapMessage::DeregistrationResponse {
                    pool_handle,
                    id,
                    error: f.op_error,
                }
            }
        }
        HANDLE_RESOLUTION => {
            let allowed = [pt::POOL_HANDLE, pt::HANDLE_RESOLUTION_OPTION];
            let f = cx.collect(body, &allowed, false)?;
            AsapMessage::HandleResolution {
                pool_handle: required(f.pool_handle, "Pool Handle")?,
                items: f.hr_items,
            }
        }
        HANDLE_RESOLUTION_RESPONSE => {
            let allowed = [
                pt::POOL_HANDLE,
                pt::POLICY,
                pt::POOL_ELEMENT,
                pt::OPERATION_ERROR,
            ];
            let f = cx.collect(body, &allowed, false)?;
            AsapMessage::HandleResolutionResponse {
                pool_handle: required(f.pool_handle, "Pool Handle")?,
                policy: f.policy,
                elements: f.elements,
                error: f.op_error,
            }
        }
        ENDPOINT_KEEP_ALIVE => {
            let (server_id, rest) = fixed_u32(body, "Server Identifier")?;
            let f = cx.collect(rest, &[pt::POOL_HANDLE, pt::PE_IDENTIFIER], false)?;
            AsapMessage::EndpointKeepAlive {
                home: mflags & super::flags::HOME != 0,
                server_id: RegistrarId(server_id),
                pool_handle: required(f.pool_handle, "Pool Handle")?,
                id: required(f.pe_id, "PE Identifier")?,
            }
        }
        SERVER_ANNOUNCE => {
            let (server_id, rest) = fixed_u32(body, "Server Identifier")?;
            let f = cx.collect(rest, TRANSPORTS, false)?;
            AsapMessage::ServerAnnounce {
                server_id: RegistrarId(server_id),
                transports: f.transports,
            }
        }
        COOKIE | COOKIE_ECHO => {
            let f = cx.collect(body, &[pt::COOKIE], false)?;
            let cookie = required(f.cookie, "Cookie")?;
            if mtype == COOKIE {
                AsapMessage::Cookie { cookie }
            } else {
                AsapMessage::CookieEcho { cookie }
            }
        }
        BUSINESS_CARD => {
            let allowed = [pt::POOL_HANDLE, pt::POLICY, pt::POOL_ELEMENT];
            let f = cx.collect(body, &allowed, false)?;
            let pool_handle = required(f.pool_handle, "Pool Handle")?;
            if f.elements.is_empty() {
                return Err(missing("Pool Element"));
            }
            AsapMessage::BusinessCard {
                pool_handle,
                policy: f.policy,
                elements: f.elements,
            }
        }
        ERROR => {
            let f = cx.collect(body, &[pt::OPERATION_ERROR], false)?;
            AsapMessage::Error {
                causes: required(f.op_error, "Operation Error")?,
            }
        }
        // RFC 5352 section 5.4 (Unrecognized Message cause): info = the message.
        _ => return Err(unknown_message("ASAP", mtype, msg)),
    };
    Ok(Decoded {
        message,
        reports: cx.reports,
    })
}

/// Decodes an ENRP message (RFC 5353 section 2).
pub fn decode_enrp(bytes: &[u8]) -> Result<Decoded<EnrpMessage>, DecodeError> {
    let (mtype, mflags, msg) = frame(bytes)?;
    use enrp_type::*;
    if !(PRESENCE..=ERROR).contains(&mtype) {
        // RFC 5353 section 3 / RFC 5352 section 5.4: Unrecognized Message, info = the message.
        return Err(unknown_message("ENRP", mtype, msg));
    }
    let (sender, rest) = fixed_u32(&msg[HEADER_LEN..], "Sender Server's ID")?;
    let (receiver, body) = fixed_u32(rest, "Receiver Server's ID")?;
    let mut cx = Cx::default();
    let flag = |f: u8| mflags & f != 0;
    let body = match mtype {
        PRESENCE => {
            let allowed = [pt::PE_CHECKSUM, pt::SERVER_INFORMATION];
            let mut f = cx.collect(body, &allowed, false)?;
            EnrpBody::Presence {
                reply_required: flag(super::flags::REPLY_REQUIRED),
                checksum: required(f.checksum, "PE Checksum")?,
                info: at_most_one(&mut f.servers, "Server Information")?,
            }
        }
        HANDLE_TABLE_REQUEST => {
            cx.collect(body, &[], false)?;
            EnrpBody::HandleTableRequest {
                own_children_only: flag(super::flags::OWN_CHILDREN_ONLY),
            }
        }
        HANDLE_TABLE_RESPONSE => {
            let allowed = [pt::POOL_HANDLE, pt::POOL_ELEMENT];
            let f = cx.collect(body, &allowed, true)?;
            EnrpBody::HandleTableResponse {
                reject: flag(super::flags::REJECT),
                more: flag(super::flags::MORE),
                pools: f.pools,
            }
        }
        HANDLE_UPDATE => {
            // RFC 5353 section 2.1.4: Update Action(16), Reserved(16).
            let Some((fixed, rest)) = body.split_first_chunk::<4>() else {
                return Err(truncated("Update Action"));
            };
            let code = u16::from_be_bytes([fixed[0], fixed[1]]);
            let action = UpdateAction::from_code(code).ok_or_else(|| {
                DecodeError::new(
                    K::InvalidValue,
                    fixed,
                    format!("Update Action {code} is neither ADD_PE (0) nor DEL_PE (1)"),
                )
            })?;
            let mut f = cx.collect(rest, &[pt::POOL_HANDLE, pt::POOL_ELEMENT], false)?;
            EnrpBody::HandleUpdate {
                takeover_suggested: flag(super::flags::TAKEOVER_SUGGESTED),
                action,
                pool_handle: required(f.pool_handle, "Pool Handle")?,
                element: exactly_one(&mut f.elements, "Pool Element")?,
            }
        }
        LIST_REQUEST => {
            cx.collect(body, &[], false)?;
            EnrpBody::ListRequest
        }
        LIST_RESPONSE => {
            let f = cx.collect(body, &[pt::SERVER_INFORMATION], false)?;
            EnrpBody::ListResponse {
                reject: flag(super::flags::REJECT),
                servers: f.servers,
            }
        }
        INIT_TAKEOVER | INIT_TAKEOVER_ACK | TAKEOVER_SERVER => {
            let (target, rest) = fixed_u32(body, "Target Server's ID")?;
            cx.collect(rest, &[], false)?;
            let target = RegistrarId(target);
            match mtype {
                INIT_TAKEOVER => EnrpBody::InitTakeover { target },
                INIT_TAKEOVER_ACK => EnrpBody::InitTakeoverAck { target },
                _ => EnrpBody::TakeoverServer { target },
            }
        }
        _ => {
            let f = cx.collect(body, &[pt::OPERATION_ERROR], false)?;
            EnrpBody::Error {
                causes: required(f.op_error, "Operation Error")?,
            }
        }
    };
    Ok(Decoded {
        message: EnrpMessage {
            sender: RegistrarId(sender),
            receiver: RegistrarId(receiver),
            body,
        },
        reports: cx.reports,
    })
}

const TRANSPORTS: &[u16] = &[
    pt::SCTP_TRANSPORT,
    pt::TCP_TRANSPORT,
    pt::UDP_TRANSPORT,
    pt::UDP_LITE_TRANSPORT,
    pt::DCCP_TRANSPORT,
];

/// Checks the header and returns (type, flags, the message cut at its Length).
/// RFC 5352 section 2.1 / RFC 5353 section 2.1: Length counts the whole message. Up to 3 bytes
/// past it are tolerated as padding of the last parameter (ignored, RFC 5354 section 2).
fn frame(bytes: &[u8]) -> Result<(u8, u8, &[u8]), DecodeError> {
    let Some(h) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::new(
            K::Truncated,
            &[],
            format!("{} bytes, less than the 4-byte message header", bytes.len()),
        ));
    };
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if len < HEADER_LEN {
        return Err(DecodeError::new(
            K::BadLength,
            &[],
            format!("message Length {len} is below the 4-byte header"),
        ));
    }
    if len > bytes.len() {
        return Err(DecodeError::new(
            K::BadLength,
            &[],
            format!(
                "message Length {len} exceeds the {} bytes received",
                bytes.len()
            ),
        ));
    }
    if bytes.len() - len > 3 {
        return Err(DecodeError::new(
            K::BadLength,
            &[],
            format!(
                "{} bytes follow the message Length {len}: more than padding",
                bytes.len() - len
            ),
        ));
    }
    Ok((h[0], h[1], &bytes[..len]))
}

fn fixed_u32<'a>(data: &'a [u8], what: &str) -> Result<(u32, &'a [u8]), DecodeError> {
    match data.split_first_chunk::<4>() {
        Some((v, rest)) => Ok((u32::from_be_bytes(*v), rest)),
        None => Err(truncated(what)),
    }
}

fn truncated(what: &str) -> DecodeError {
    DecodeError::new(
        K::Truncated,
        &[],
        format!("message ends before its {what} field"),
    )
}

fn unknown_message(proto: &str, mtype: u8, msg: &[u8]) -> DecodeError {
    DecodeError::new(
        K::UnknownMessage,
        msg,
        format!("unknown {proto} message type 0x{mtype:02x}"),
    )
}

fn missing(what: &str) -> DecodeError {
    DecodeError::new(
        K::MissingParameter,
        &[],
        format!("required {what} parameter missing"),
    )
}

fn required<T>(v: Option<T>, what: &str) -> Result<T, DecodeError> {
    v.ok_or_else(|| missing(what))
}

fn exactly_one<T>(v: &mut Vec<T>, what: &str) -> Result<T, DecodeError> {
    match v.len() {
        0 => Err(missing(what)),
        1 => Ok(v.remove(0)),
        n => Err(DecodeError::new(
            K::DuplicateParameter,
            &[],
            format!("{n} {what} parameters where the message has one"),
        )),
    }
}

fn at_most_one<T>(v: &mut Vec<T>, what: &str) -> Result<Option<T>, DecodeError> {
    if v.is_empty() {
        Ok(None)
    } else {
        exactly_one(v, what).map(Some)
    }
}

/// One parameter as found in the data.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    ptype: u16,
    /// The value (Length - 4 bytes, without padding).
    value: &'a [u8],
    /// Header and value, without padding: what an error cause quotes.
    raw: &'a [u8],
}

/// Splits `data` into TLVs (RFC 5354 section 2). Every TLV must have Length >= 4 and lie inside
/// `data`; each is followed by padding to 4 bytes, which may be cut off at the end of `data`
/// (the last parameter), and whose value is ignored.
fn tlvs(data: &[u8]) -> Result<Vec<Tlv<'_>>, DecodeError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let rest = &data[off..];
        let Some(h) = rest.first_chunk::<4>() else {
            return Err(DecodeError::new(
                K::BadLength,
                &[],
                format!("{} stray bytes after the last parameter", rest.len()),
            ));
        };
        let ptype = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < 4 {
            return Err(DecodeError::new(
                K::BadLength,
                &[],
                format!("parameter 0x{ptype:04x} has Length {len}, below its 4-byte header"),
            ));
        }
        if len > rest.len() {
            return Err(DecodeError::new(
                K::BadLength,
                &[],
                format!(
                    "parameter 0x{ptype:04x} has Length {len}, beyond the {} bytes left",
                    rest.len()
                ),
            ));
        }
        out.push(Tlv {
            ptype,
            value: &rest[4..len],
            raw: &rest[..len],
        });
        off += len.next_multiple_of(4).min(rest.len());
    }
    Ok(out)
}

fn is_known(ptype: u16) -> bool {
    (pt::IPV4_ADDRESS..=pt::PE_CHECKSUM).contains(&ptype) || ptype == pt::HANDLE_RESOLUTION_OPTION
}

/// The parameter as an error cause quotes it: header and value, padded to 4 bytes (as the
/// oracle's vectors and rsplib quote it), so that the cause info is itself a well-formed TLV.
fn quote(tlv: &Tlv<'_>) -> Vec<u8> {
    let mut v = tlv.raw.to_vec();
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

fn param_error(kind: K, tlv: &Tlv<'_>, why: impl Into<String>) -> DecodeError {
    DecodeError::new(kind, &quote(tlv), why)
}

fn invalid(tlv: &Tlv<'_>, why: impl Into<String>) -> DecodeError {
    param_error(K::InvalidValue, tlv, why)
}

/// Top-level parameters found in a message.
#[derive(Default)]
struct Fields {
    pool_handle: Option<PoolHandle>,
    pe_id: Option<PeId>,
    elements: Vec<PoolElement>,
    policy: Option<Policy>,
    op_error: Option<Vec<ErrorCause>>,
    cookie: Option<Vec<u8>>,
    servers: Vec<ServerInformation>,
    checksum: Option<u16>,
    transports: Vec<TransportAddress>,
    hr_items: Option<u32>,
    /// ENRP Handle Table Response: each Pool Handle with the Pool Elements after it.
    pools: Vec<(PoolHandle, Vec<PoolElement>)>,
}

fn set_once<T>(slot: &mut Option<T>, v: T, tlv: &Tlv<'_>) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(param_error(
            K::DuplicateParameter,
            tlv,
            format!("parameter 0x{:04x} appears twice", tlv.ptype),
        ));
    }
    *slot = Some(v);
    Ok(())
}

/// Decoding context: the reports collected for "skip and report" parameters.
#[derive(Default)]
struct Cx {
    reports: Vec<ErrorCause>,
}

impl Cx {
    /// A parameter whose type is not recognized here. RFC 5354 section 2 (Parameter Type, the two
    /// high bits): 00 stop and discard; 01 stop, discard, report; 10 skip; 11 skip and report.
    /// A known type where the layout has no place for it is reported as Unrecognized Parameter
    /// (we do not recognize it *there*) and stops processing whatever its bits say, since RFC
    /// 5354's own types all carry the bits 00.
    fn not_here(&mut self, tlv: &Tlv<'_>, context: &str) -> Result<(), DecodeError> {
        if is_known(tlv.ptype) {
            return Err(param_error(
                K::UnexpectedParameter,
                tlv,
                format!("parameter 0x{:04x} cannot appear in {context}", tlv.ptype),
            ));
        }
        let detail =
            |act: &str| format!("unknown parameter 0x{:04x} in {context}: {act}", tlv.ptype);
        match tlv.ptype >> 14 {
            0b00 => Err(param_error(K::UnknownParameter, tlv, detail("discard"))),
            0b01 => Err(DecodeError {
                report: true,
                ..param_error(K::UnknownParameter, tlv, detail("discard and report"))
            }),
            0b10 => Ok(()),
            _ => {
                self.reports.push(ErrorCause {
                    code: CauseCode::UnrecognizedParameter,
                    info: quote(tlv),
                });
                Ok(())
            }
        }
    }

    /// Parses the top-level parameters of a message body, accepting the types in `allowed`.
    /// `grouped`: Pool Elements belong to the Pool Handle before them (Handle Table Response).
    fn collect(
        &mut self,
        body: &[u8],
        allowed: &[u16],
        grouped: bool,
    ) -> Result<Fields, DecodeError> {
        let mut f = Fields::default();
        for tlv in tlvs(body)? {
            if !allowed.contains(&tlv.ptype) {
                self.not_here(&tlv, "this message")?;
                continue;
            }
            match tlv.ptype {
                pt::POOL_HANDLE => {
                    let h = pool_handle(&tlv)?;
                    if grouped {
                        f.pools.push((h, Vec::new()));
                    } else {
                        set_once(&mut f.pool_handle, h, &tlv)?;
                    }
                }
                pt::POOL_ELEMENT => {
                    let e = self.pool_element(&tlv)?;
                    if grouped {
                        match f.pools.last_mut() {
                            Some((_, elements)) => elements.push(e),
                            None => {
                                return Err(param_error(
                                    K::MissingParameter,
                                    &tlv,
                                    "Pool Element before any Pool Handle",
                                ));
                            }
                        }
                    } else {
                        f.elements.push(e);
                    }
                }
                pt::PE_IDENTIFIER => {
                    let v = exact::<4>(&tlv, "PE Identifier")?;
                    set_once(&mut f.pe_id, PeId(u32::from_be_bytes(v)), &tlv)?;
                }
                pt::POLICY => set_once(&mut f.policy, policy(&tlv)?, &tlv)?,
                pt::OPERATION_ERROR => set_once(&mut f.op_error, operation_error(&tlv)?, &tlv)?,
                pt::COOKIE => set_once(&mut f.cookie, tlv.value.to_vec(), &tlv)?,
                pt::SERVER_INFORMATION => {
                    let s = self.server_information(&tlv)?;
                    f.servers.push(s);
                }
                pt::PE_CHECKSUM => {
                    // RFC 5354 section 3.12: a 16-bit checksum, Length 6.
                    let v = exact::<2>(&tlv, "PE Checksum")?;
                    set_once(&mut f.checksum, u16::from_be_bytes(v), &tlv)?;
                }
                pt::HANDLE_RESOLUTION_OPTION => {
                    let v = exact::<4>(&tlv, "Handle Resolution Option")?;
                    set_once(&mut f.hr_items, u32::from_be_bytes(v), &tlv)?;
                }
                _ => {
                    let t = self.transport(&tlv)?;
                    f.transports.push(t);
                }
            }
        }
        Ok(f)
    }

    /// RFC 5354 section 3.9: PE Identifier(32), Home ENRP Server Identifier(32), Registration
    /// Life(32, signed), User Transport parameter, Member Selection Policy parameter, [ASAP
    /// Transport parameter].
    fn pool_element(&mut self, tlv: &Tlv<'_>) -> Result<PoolElement, DecodeError> {
        let Some((fixed, rest)) = tlv.value.split_first_chunk::<12>() else {
            return Err(invalid(tlv, "Pool Element shorter than its 12 fixed bytes"));
        };
        let word = |i: usize| [fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]];
        let mut user_transport = None;
        let mut policy_v = None;
        let mut asap_transport = None;
        for inner in tlvs(rest)? {
            if TRANSPORTS.contains(&inner.ptype) {
                let t = self.transport(&inner)?;
                match (&user_transport, &policy_v, &asap_transport) {
                    (None, None, _) => user_transport = Some(t),
                    (Some(_), Some(_), None) => asap_transport = Some(t),
                    _ => self.not_here(&inner, "this position of a Pool Element")?,
                }
            } else if inner.ptype == pt::POLICY && user_transport.is_some() && policy_v.is_none() {
                policy_v = Some(policy(&inner)?);
            } else {
                self.not_here(&inner, "a Pool Element")?;
            }
        }
        let (Some(user_transport), Some(policy)) = (user_transport, policy_v) else {
            return Err(param_error(
                K::MissingParameter,
                tlv,
                "Pool Element without its user transport and policy parameters",
            ));
        };
        Ok(PoolElement {
            id: PeId(u32::from_be_bytes(word(0))),
            home_registrar: RegistrarId(u32::from_be_bytes(word(4))),
            registration_life_ms: i32::from_be_bytes(word(8)),
            user_transport,
            policy,
            asap_transport,
        })
    }

    /// RFC 5354 section 3.8: Server Identifier(32) + the server's transport parameter.
    fn server_information(&mut self, tlv: &Tlv<'_>) -> Result<ServerInformation, DecodeError> {
        let Some((id, rest)) = tlv.value.split_first_chunk::<4>() else {
            return Err(invalid(
                tlv,
                "Server Information shorter than its Server ID",
            ));
        };
        let mut transport = None;
        for inner in tlvs(rest)? {
            if TRANSPORTS.contains(&inner.ptype) && transport.is_none() {
                transport = Some(self.transport(&inner)?);
            } else {
                self.not_here(&inner, "a Server Information")?;
            }
        }
        let transport = transport.ok_or_else(|| {
            param_error(
                K::MissingParameter,
                tlv,
                "Server Information without a transport parameter",
            )
        })?;
        Ok(ServerInformation {
            id: RegistrarId(u32::from_be_bytes(*id)),
            transport,
        })
    }

    /// RFC 5354 sections 3.2-3.6: Port(16), Transport Use (SCTP, TCP) or Reserved (UDP, UDP-Lite,
    /// DCCP) (16), [DCCP: Service Code(32)], then address parameters: one or more for SCTP
    /// (multi-homing), exactly one for the others.
    fn transport(&mut self, tlv: &Tlv<'_>) -> Result<TransportAddress, DecodeError> {
        let fixed_len = if tlv.ptype == pt::DCCP_TRANSPORT {
            8
        } else {
            4
        };
        if tlv.value.len() < fixed_len {
            return Err(invalid(
                tlv,
                "transport parameter shorter than its fixed fields",
            ));
        }
        let (fixed, rest) = tlv.value.split_at(fixed_len);
        let port = u16::from_be_bytes([fixed[0], fixed[1]]);
        let use_code = u16::from_be_bytes([fixed[2], fixed[3]]);
        let mut addrs = Vec::new();
        for inner in tlvs(rest)? {
            match inner.ptype {
                pt::IPV4_ADDRESS | pt::IPV6_ADDRESS => {
                    if addrs.len() == MAX_PE_ADDRESSES {
                        return Err(invalid(
                            tlv,
                            format!("more than {MAX_PE_ADDRESSES} addresses in a transport"),
                        ));
                    }
                    addrs.push(address(&inner)?);
                }
                _ => self.not_here(&inner, "a transport parameter")?,
            }
        }
        let transport_use = || {
            // RFC 5354 sections 3.3, 3.4: 0x0000 data only, 0x0001 data plus control.
            TransportUse::from_code(use_code).ok_or_else(|| {
                invalid(
                    tlv,
                    format!("Transport Use {use_code} is neither 0 (data) nor 1 (data + control)"),
                )
            })
        };
        let single = |addrs: &[IpAddr]| match addrs {
            [a] => Ok(*a),
            _ => Err(invalid(
                tlv,
                format!(
                    "transport parameter 0x{:04x} with {} addresses, needs exactly 1",
                    tlv.ptype,
                    addrs.len()
                ),
            )),
        };
        Ok(match tlv.ptype {
            pt::SCTP_TRANSPORT => {
                if addrs.is_empty() {
                    return Err(invalid(tlv, "SCTP transport without any address"));
                }
                TransportAddress::Sctp {
                    port,
                    transport_use: transport_use()?,
                    addrs,
                }
            }
            pt::TCP_TRANSPORT => TransportAddress::Tcp {
                port,
                transport_use: transport_use()?,
                addr: single(&addrs)?,
            },
            pt::UDP_TRANSPORT => TransportAddress::Udp {
                port,
                addr: single(&addrs)?,
            },
            pt::UDP_LITE_TRANSPORT => TransportAddress::UdpLite {
                port,
                addr: single(&addrs)?,
            },
            _ => TransportAddress::Dccp {
                port,
                service_code: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
                addr: single(&addrs)?,
            },
        })
    }
}

/// A fixed-size value; any other Length is Invalid Values.
fn exact<const N: usize>(tlv: &Tlv<'_>, what: &str) -> Result<[u8; N], DecodeError> {
    <[u8; N]>::try_from(tlv.value).map_err(|_| {
        invalid(
            tlv,
            format!("{what} with {} value bytes instead of {N}", tlv.value.len()),
        )
    })
}

/// RFC 5354 section 3.1: IPv4 (Length 8) or IPv6 (Length 20) address.
fn address(tlv: &Tlv<'_>) -> Result<IpAddr, DecodeError> {
    Ok(if tlv.ptype == pt::IPV4_ADDRESS {
        IpAddr::V4(Ipv4Addr::from(exact::<4>(tlv, "IPv4 Address")?))
    } else {
        IpAddr::V6(Ipv6Addr::from(exact::<16>(tlv, "IPv6 Address")?))
    })
}

/// RFC 5354 section 3.7 (Pool Handle): 1 to [`crate::types::MAX_POOL_HANDLE_LEN`] bytes; longer or empty is
/// Invalid Values.
fn pool_handle(tlv: &Tlv<'_>) -> Result<PoolHandle, DecodeError> {
    PoolHandle::new(tlv.value).map_err(|e| invalid(tlv, e.to_string()))
}

/// RFC 5354 section 3.10 / RFC 5352 section 5.4: one or more causes, each Code(16) Length(16)
/// Info, padded to 4 bytes.
fn operation_error(tlv: &Tlv<'_>) -> Result<Vec<ErrorCause>, DecodeError> {
    let mut causes = Vec::new();
    let data = tlv.value;
    let mut off = 0;
    while off < data.len() {
        let rest = &data[off..];
        let Some(h) = rest.first_chunk::<4>() else {
            return Err(invalid(tlv, "stray bytes after the last error cause"));
        };
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < 4 || len > rest.len() {
            return Err(invalid(
                tlv,
                format!("error cause Length {len} outside 4..={}", rest.len()),
            ));
        }
        causes.push(ErrorCause {
            code: CauseCode::from_code(u16::from_be_bytes([h[0], h[1]])),
            info: rest[4..len].to_vec(),
        });
        off += len.next_multiple_of(4).min(rest.len());
    }
    if causes.is_empty() {
        return Err(invalid(tlv, "Operation Error without any error cause"));
    }
    Ok(causes)
}

/// RFC 5356 section 4 (and rsplib's extensions): Policy Type(32) and the policy's 32-bit values.
/// A known type with the wrong number of values is Invalid Values; an unknown type keeps its raw
/// values (the registrar refuses it when it has to select with it).
fn policy(tlv: &Tlv<'_>) -> Result<Policy, DecodeError> {
    let v = tlv.value;
    if v.len() < 4 || !v.len().is_multiple_of(4) {
        return Err(invalid(
            tlv,
            format!(
                "policy value of {} bytes is not a type and whole 32-bit values",
                v.len()
            ),
        ));
    }
    let ptype = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let values: Vec<u32> = v[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    use policy_type::*;
    let p = match (ptype, values.as_slice()) {
        (ROUND_ROBIN, []) => Policy::RoundRobin,
        (WEIGHTED_ROUND_ROBIN, &[weight]) => Policy::WeightedRoundRobin { weight },
        (RANDOM, []) => Policy::Random,
        (WEIGHTED_RANDOM, &[weight]) => Policy::WeightedRandom { weight },
        (PRIORITY, &[priority]) => Policy::Priority { priority },
        (LEAST_USED, &[load]) => Policy::LeastUsed { load },
        (LEAST_USED_DEGRADATION, &[load, degradation]) => {
            Policy::LeastUsedDegradation { load, degradation }
        }
        (PRIORITY_LEAST_USED, &[load, degradation]) => {
            Policy::PriorityLeastUsed { load, degradation }
        }
        (RANDOMIZED_LEAST_USED, &[load]) => Policy::RandomizedLeastUsed { load },
        (RANDOMIZED_PRIORITY_LEAST_USED, &[load, degradation]) => {
            Policy::RandomizedPriorityLeastUsed { load, degradation }
        }
        (RANDOMIZED_LEAST_USED_DEGRADATION, &[load, degradation]) => {
            Policy::RandomizedLeastUsedDegradation { load, degradation }
        }
        (PRIORITY_LEAST_USED_DEGRADATION, &[load, degradation]) => {
            Policy::PriorityLeastUsedDegradation { load, degradation }
        }
        (RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION, &[load, degradation]) => {
            Policy::RandomizedPriorityLeastUsedDegradation { load, degradation }
        }
        (WEIGHTED_RANDOM_DPF, &[weight, weight_dpf, distance]) => Policy::WeightedRandomDpf {
            weight,
            weight_dpf,
            distance,
        },
        (LEAST_USED_DPF, &[load, load_dpf, distance]) => Policy::LeastUsedDpf {
            load,
            load_dpf,
            distance,
        },
        (LEAST_USED_DEGRADATION_DPF, &[load, degradation, load_dpf, distance]) => {
            Policy::LeastUsedDegradationDpf {
                load,
                degradation,
                load_dpf,
                distance,
            }
        }
        (
            ROUND_ROBIN
            | WEIGHTED_ROUND_ROBIN
            | RANDOM
            | WEIGHTED_RANDOM
            | PRIORITY
            | LEAST_USED
            | LEAST_USED_DEGRADATION
            | PRIORITY_LEAST_USED
            | RANDOMIZED_LEAST_USED
            | RANDOMIZED_PRIORITY_LEAST_USED
            | RANDOMIZED_LEAST_USED_DEGRADATION
            | PRIORITY_LEAST_USED_DEGRADATION
            | RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION
            | WEIGHTED_RANDOM_DPF
            | LEAST_USED_DPF
            | LEAST_USED_DEGRADATION_DPF,
            _,
        ) => {
            return Err(invalid(
                tlv,
                format!(
                    "policy 0x{ptype:08x} with {} values, not the number it defines",
                    values.len()
                ),
            ));
        }
        _ => Policy::Unknown {
            policy_type: ptype,
            values,
        },
    };
    Ok(p)
}
