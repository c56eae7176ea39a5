//! The GS2 / OAUTHBEARER decoder (RFC 7628 §3.1), on raw messages and on
//! the base64 path the front-ends use.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauthbearer_proxy::sasl::{self, oauthbearer, Mechanism};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = oauthbearer::parse(data) {
        assert!(!c.token.is_empty());
    }
    if let Some(decoded) = sasl::decode_response(data) {
        let _ = sasl::decode_bearer(Mechanism::OAuthBearer, &decoded);
    }
});
