//! Bytes to typed messages (being filled in).

use super::{DecodeError, DecodeErrorKind, Decoded};
use crate::message::{AsapMessage, EnrpMessage};

/// Decodes an ASAP message.
pub fn decode_asap(bytes: &[u8]) -> Result<Decoded<AsapMessage>, DecodeError> {
    Err(DecodeError::new(
        DecodeErrorKind::Truncated,
        bytes,
        "decoder not written yet",
    ))
}

/// Decodes an ENRP message.
pub fn decode_enrp(bytes: &[u8]) -> Result<Decoded<EnrpMessage>, DecodeError> {
    Err(DecodeError::new(
        DecodeErrorKind::Truncated,
        bytes,
        "decoder not written yet",
    ))
}
