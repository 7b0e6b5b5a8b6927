//! Decoder fuzz target: any bytes, as ASAP and as ENRP. The decoder must not panic; whatever it
//! accepts must re-encode to a canonical form that decodes to the same message (the property of
//! proto/tests/wire_fuzz.rs, which runs it under plain `cargo test`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rserpool_proto::wire::{self, EncodeError, Protocol};

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::Asap, Protocol::Enrp] {
        let Ok(decoded) = wire::decode(protocol, data) else {
            continue;
        };
        let bytes = match wire::encode(&decoded.message) {
            Ok(b) => b,
            // Only an input whose Length left out its last padding can grow past the limit.
            Err(EncodeError::TooBig { .. }) if data.len() > 65_532 => continue,
            Err(e) => panic!("accepted input does not re-encode: {e}"),
        };
        let again = wire::decode(protocol, &bytes).expect("re-encoded message decodes");
        assert_eq!(again.message, decoded.message);
        assert!(again.reports.is_empty());
        assert_eq!(wire::encode(&again.message).expect("encodes"), bytes);
    }
});
