//! The ASAP (RFC 5352) and ENRP (RFC 5353) wire format with the parameters of RFC 5354, the
//! policies of RFC 5356 and the Handle Resolution Option (0x803f,
//! draft-dreibholz-rserpool-asap-hropt): typed [`crate::message`] values to bytes and back.
//!
//! # Layout
//! - Message header: Type(8) Flags(8) Length(16). rsplb's encoder counts the header, the fixed
//!   fields and every parameter *with* its padding, i.e. the Length is the number of bytes sent
//!   (what rsplib sends and what `shared/oracle/decode_check.py` checks).
//! - Parameter (TLV): Type(16) Length(16) Value; the Length counts the 4 header bytes and the
//!   value but not the padding; every TLV is padded with zeros to 4 bytes; a parent's Length counts
//!   the padding of the TLVs nested in it (RFC 5354 section 2).
//! - ENRP messages carry Sender Server ID(32) and Receiver Server ID(32) after the header (RFC 5353
//!   section 2.1); Handle Update then has Update Action(16) + Reserved(16); the three takeover
//!   messages have Target Server ID(32). ASAP Endpoint Keep-Alive and Server Announce carry a
//!   Server ID(32) after the header (RFC 5352 sections 2.2.7, 2.2.10).
//!
//! # Decoder policy (what the receiver tolerates and what it rejects)
//! - Padding: RFC 5354 section 2 says the receiver MUST ignore padding bytes, so non-zero padding
//!   is accepted (and not reproduced: the encoder always pads with zeros). The Length of a message
//!   may end at the last parameter's unpadded end (padding of the last TLV left out of the
//!   message Length), and a buffer may hold up to 3 bytes beyond the message Length (padding);
//!   more than that is refused (`BadLength`), since it is not padding but a second message or junk.
//! - Reserved fields (UDP/UDP-Lite/DCCP transports, Handle Update) and undefined flag bits are
//!   ignored on receipt and sent as zero (the usual "MUST be zero on send, ignored on receipt").
//! - Unknown parameter types follow their two top bits (RFC 5354 section 2 / RFC 5352 section 3):
//!   `00` stop and discard, `01` stop, discard and report, `10` skip, `11` skip and report. "Stop"
//!   is a [`DecodeError`] (cause Unrecognized Parameter, info = the parameter; `report` set for
//!   `01`); "skip and report" adds an Unrecognized Parameter cause to [`Decoded::reports`] which the
//!   caller sends back in an ERROR message.
//! - A known parameter in a message (or parameter) that cannot carry it, a second copy of a
//!   single parameter, a missing required parameter, a value out of range: see [`DecodeErrorKind`]
//!   for the cause each maps to.

mod decode;
mod encode;

use std::fmt;

use crate::message::Message;
use crate::types::{CauseCode, ErrorCause};

pub use decode::{decode_asap, decode_enrp};
pub use encode::{
    encode_asap, encode_enrp, encode_policy_param, encode_pool_element_param,
    encode_transport_param,
};

/// Size of the common message header: Type(8) Flags(8) Length(16).
pub const HEADER_LEN: usize = 4;
/// Largest message the 16-bit Length field can describe.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// Parameter type codes (RFC 5354 section 3; 0x803f from draft-dreibholz-rserpool-asap-hropt).
pub mod param_type {
    pub const IPV4_ADDRESS: u16 = 0x0001;
    pub const IPV6_ADDRESS: u16 = 0x0002;
    pub const DCCP_TRANSPORT: u16 = 0x0003;
    pub const SCTP_TRANSPORT: u16 = 0x0004;
    pub const TCP_TRANSPORT: u16 = 0x0005;
    pub const UDP_TRANSPORT: u16 = 0x0006;
    pub const UDP_LITE_TRANSPORT: u16 = 0x0007;
    pub const POLICY: u16 = 0x0008;
    pub const POOL_HANDLE: u16 = 0x0009;
    pub const POOL_ELEMENT: u16 = 0x000a;
    pub const SERVER_INFORMATION: u16 = 0x000b;
    pub const OPERATION_ERROR: u16 = 0x000c;
    pub const COOKIE: u16 = 0x000d;
    pub const PE_IDENTIFIER: u16 = 0x000e;
    pub const PE_CHECKSUM: u16 = 0x000f;
    /// rsplib's `ATT_HANDLE_RESOLUTION` 0x3f with the action bits `10` (skip if unknown).
    pub const HANDLE_RESOLUTION_OPTION: u16 = 0x803f;
}

/// Policy type codes with a typed [`crate::types::Policy`] arm.
pub const KNOWN_POLICY_TYPES: [u32; 16] = {
    use crate::types::policy_type::*;
    [
        ROUND_ROBIN,
        WEIGHTED_ROUND_ROBIN,
        RANDOM,
        WEIGHTED_RANDOM,
        PRIORITY,
        LEAST_USED,
        LEAST_USED_DEGRADATION,
        PRIORITY_LEAST_USED,
        RANDOMIZED_LEAST_USED,
        RANDOMIZED_PRIORITY_LEAST_USED,
        RANDOMIZED_LEAST_USED_DEGRADATION,
        PRIORITY_LEAST_USED_DEGRADATION,
        RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION,
        WEIGHTED_RANDOM_DPF,
        LEAST_USED_DPF,
        LEAST_USED_DEGRADATION_DPF,
    ]
};

/// Flag bits of the message header.
pub mod flags {
    /// ASAP Registration Response / ENRP Handle Table Response / ENRP List Response: Reject.
    pub const REJECT: u8 = 0x01;
    /// ASAP Endpoint Keep-Alive: Home.
    pub const HOME: u8 = 0x01;
    /// ENRP Presence: Reply required.
    pub const REPLY_REQUIRED: u8 = 0x01;
    /// ENRP Handle Table Request: oWn children only.
    pub const OWN_CHILDREN_ONLY: u8 = 0x01;
    /// ENRP Handle Table Response: More to send.
    pub const MORE: u8 = 0x02;
    /// ENRP Handle Update: Takeover suggested.
    pub const TAKEOVER_SUGGESTED: u8 = 0x01;
}

/// A decoded message and the error causes the receiver should report to the sender (unknown
/// parameters whose action bits say "skip and report"). When `reports` is not empty the caller
/// sends an ERROR message (ASAP 0x0e / ENRP 0x0a) with these causes and processes `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<M> {
    pub message: M,
    pub reports: Vec<ErrorCause>,
}

/// What was wrong with a message that could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// Fewer bytes than the header or the message's fixed fields (cause Unspecified Error, no
    /// info: there is no well-formed parameter to quote, and a peer's dissector reads the info of
    /// Invalid Values as one).
    Truncated,
    /// Message Length or a parameter Length inconsistent with the data (cause Unspecified Error,
    /// no info, as for `Truncated`).
    BadLength,
    /// Unknown message type (cause Unrecognized Message, info = the message; RFC 5352 section 5.4
    /// and RFC 5353 section 3 ask for an ERROR).
    UnknownMessage,
    /// Unknown parameter type with action bits `00` or `01` (cause Unrecognized Parameter, info =
    /// the parameter; reported only for `01`).
    UnknownParameter,
    /// A known parameter where the message or parameter layout has none (cause Unrecognized
    /// Parameter, info = the parameter; reported).
    UnexpectedParameter,
    /// The same single-valued parameter twice (cause Invalid Values, info = the second one; a
    /// second Pool Element is not quoted: Unspecified Error).
    DuplicateParameter,
    /// A required parameter is absent (RFC 5352 has no "missing parameter" cause: Invalid Values
    /// with the parameter that lacks a nested one, else Unspecified Error with no info).
    MissingParameter,
    /// A field out of its range: oversize or empty pool handle, transport use or update action
    /// not 0/1, address parameter of the wrong length, SCTP transport without addresses, wrong
    /// number of policy values, empty Operation Error... (cause Invalid Values, info = the
    /// parameter).
    InvalidValue,
}

/// A message that cannot be processed. `cause` and `info` form the error cause to report;
/// `report` says whether the RFCs ask the receiver to send it (false for unknown parameters with
/// action bits `00`: silently discarded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub cause: CauseCode,
    /// Cause-specific information: the offending parameter (TLV bytes padded to 4, so itself a TLV) or message.
    pub info: Vec<u8>,
    /// Human-readable description for logs.
    pub detail: String,
    /// Whether an ERROR message should be sent back.
    pub report: bool,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind, info: &[u8], detail: impl Into<String>) -> Self {
        let (cause, report) = match kind {
            DecodeErrorKind::UnknownMessage => (CauseCode::UnrecognizedMessage, true),
            DecodeErrorKind::UnknownParameter => (CauseCode::UnrecognizedParameter, false),
            DecodeErrorKind::UnexpectedParameter => (CauseCode::UnrecognizedParameter, true),
            // Invalid Values carries the offending parameter (RFC 5354 section 3.10); with none
            // to quote (a truncated message, a length that does not fit, a missing parameter)
            // the cause is Unspecified Error, whose Cause Length is 4. An Invalid Values cause
            // without a parameter is malformed to Wireshark's ASAP/ENRP dissectors, which read
            // its information as a TLV.
            _ if info.is_empty() => (CauseCode::Unspecified, true),
            _ => (CauseCode::InvalidValues, true),
        };
        Self {
            kind,
            cause,
            info: info.to_vec(),
            detail: detail.into(),
            report,
        }
    }

    /// The error cause to put into an Operation Error parameter of an ERROR message (or of a
    /// rejecting response).
    pub fn to_error_cause(&self) -> ErrorCause {
        ErrorCause {
            code: self.cause,
            info: self.info.clone(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cause, self.detail)
    }
}

impl std::error::Error for DecodeError {}

/// A message the encoder refuses to produce.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message or one of its parameters would exceed the 16-bit Length field.
    #[error("{what} would be {len} bytes, more than the 65535 a length field holds")]
    TooBig { what: &'static str, len: usize },
    /// A value that the wire format cannot carry (e.g. an SCTP transport without addresses).
    #[error("cannot encode: {0}")]
    Invalid(String),
}

/// For stream framing (TCP): given at least 4 bytes of a message header, the message's total
/// length in bytes (its Length field); `Ok(None)` while fewer than 4 bytes are available. Errors
/// when the Length is below 4 (the stream cannot be re-synchronised) or above `max`.
pub fn frame_length(header: &[u8], max: usize) -> Result<Option<usize>, DecodeError> {
    let Some(h) = header.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if len < HEADER_LEN {
        return Err(DecodeError::new(
            DecodeErrorKind::BadLength,
            &[],
            format!("message Length {len} is below the 4-byte header"),
        ));
    }
    if len > max {
        return Err(DecodeError::new(
            DecodeErrorKind::BadLength,
            &[],
            format!("message Length {len} exceeds the limit of {max} bytes"),
        ));
    }
    Ok(Some(len))
}

/// Which protocol a byte string carries (SCTP PPID 11 / 12, or the port it arrived on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Asap,
    Enrp,
}

/// Encodes either protocol.
pub fn encode(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    match msg {
        Message::Asap(m) => encode_asap(m),
        Message::Enrp(m) => encode_enrp(m),
    }
}

/// Decodes either protocol.
pub fn decode(protocol: Protocol, bytes: &[u8]) -> Result<Decoded<Message>, DecodeError> {
    Ok(match protocol {
        Protocol::Asap => {
            let d = decode_asap(bytes)?;
            Decoded {
                message: Message::Asap(d.message),
                reports: d.reports,
            }
        }
        Protocol::Enrp => {
            let d = decode_enrp(bytes)?;
            Decoded {
                message: Message::Enrp(d.message),
                reports: d.reports,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::AsapMessage;

    /// The ERROR a receiver sends for `bad`, as bytes.
    fn error_for(bad: &[u8]) -> Vec<u8> {
        let e = decode_asap(bad).unwrap_err();
        assert!(e.report, "{e}");
        encode_asap(&AsapMessage::Error {
            causes: vec![e.to_error_cause()],
        })
        .unwrap()
    }

    #[test]
    fn a_cause_with_nothing_to_quote_is_unspecified_not_invalid_values() {
        // Wireshark's ASAP dissector reads the information of an Invalid Values cause as a
        // parameter: an empty one is a Malformed Packet on a capture. With no parameter to quote,
        // the cause is Unspecified Error (Cause Length 4).
        let op_error_unspecified = [0x00, 0x0c, 0x00, 0x08, 0x00, 0x00, 0x00, 0x04];
        // A Deregistration whose Pool Handle claims 64 bytes (the message has 20).
        let overrun = [
            0x02, 0, 0, 20, 0x00, 0x09, 0x00, 0x40, b'w', b'e', b'b', 0, 0x00, 0x0e, 0x00, 0x08, 0,
            0, 0, 1,
        ];
        // A Deregistration without its PE Identifier; a message cut short.
        let missing = [0x02, 0, 0, 12, 0x00, 0x09, 0x00, 0x07, b'w', b'e', b'b', 0];
        let truncated = [0x07, 0, 0, 6, 0, 0];
        for bad in [&overrun[..], &missing, &truncated] {
            let e = decode_asap(bad).unwrap_err();
            assert_eq!((e.cause, e.info.len()), (CauseCode::Unspecified, 0), "{e}");
            let bytes = error_for(bad);
            assert_eq!(bytes[..4], [0x0e, 0, 0, 12]);
            assert_eq!(bytes[4..], op_error_unspecified);
        }
        // A bad value inside a well-formed parameter stays Invalid Values, quoting it.
        let empty_handle = [0x05, 0, 0, 8, 0x00, 0x09, 0x00, 0x04];
        let e = decode_asap(&empty_handle).unwrap_err();
        assert_eq!(e.cause, CauseCode::InvalidValues);
        assert_eq!(e.info, [0x00, 0x09, 0x00, 0x04]);
    }
}
