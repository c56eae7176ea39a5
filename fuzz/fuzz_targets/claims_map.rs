//! The claim mapper: any JSON the provider sends; an identity it accepts
//! is always safe to put into IMAP / SMTP syntax.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauthbearer_proxy::config::{Fields, IdentityField};
use oauthbearer_proxy::idp::claims;

fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(data) else {
        return;
    };
    let fields = Fields {
        email: Some("email".into()),
        username: Some("preferred_username".into()),
        full_name: Some("name".into()),
        routing: vec!["mailhost".into()],
    };
    for need in [IdentityField::Email, IdentityField::Username] {
        if let Ok(id) = claims::map(&map, &fields, need) {
            let user = id.get(need).expect("the needed field is present");
            assert!(claims::is_safe_identity(user));
            assert!(!user.bytes().any(|b| b < 0x20 || b == b' ' || b == b'"'));
        }
    }
});
