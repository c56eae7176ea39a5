//! The XOAUTH2 decoder (`user=` ^A `auth=Bearer` ^A ^A).
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauthbearer_proxy::sasl::{self, xoauth2, Mechanism};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = xoauth2::parse(data) {
        assert!(!c.token.is_empty());
    }
    let _ = sasl::decode_bearer(Mechanism::XOAuth2, data);
});
