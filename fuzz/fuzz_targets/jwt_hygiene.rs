//! The access-token hygiene checks (`idp::hygiene`): the hand-decoded JOSE
//! header of any token (`crit`, `b64`, `typ`) and any claims JSON (ID-token
//! markers, `cnf`, `email_verified`, UserInfo scopes). Nothing panics, and
//! what is accepted really has the properties the checks promise.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauthbearer_proxy::idp::hygiene::{self, Typ};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    if let Ok(header) = hygiene::raw_header(&token) {
        for allow_untyped in [false, true] {
            if let Ok(typ) = hygiene::check_header(&header, allow_untyped) {
                assert!(!header.contains_key("crit"));
                let t = header.get("typ").and_then(Value::as_str).map(str::to_ascii_lowercase);
                match typ {
                    Typ::AccessToken => {
                        assert!(matches!(t.as_deref(), Some("at+jwt" | "application/at+jwt")))
                    }
                    Typ::Untyped => assert!(allow_untyped),
                }
            }
        }
    }
    let Ok(Value::Object(claims)) = serde_json::from_slice(data) else {
        return;
    };
    for typ in [Typ::AccessToken, Typ::Untyped] {
        if hygiene::check_claims(&claims, typ).is_ok() {
            for marker in ["nonce", "at_hash", "c_hash"] {
                assert!(!claims.contains_key(marker));
            }
            assert!(claims.get("cnf").is_none_or(Value::is_null));
        }
    }
    let _ = hygiene::check_cnf(&claims);
    let _ = hygiene::email_unverified(&claims);
    for scope in ["openid", "email", "profile", "address", "phone", "mail"] {
        let _ = hygiene::userinfo_has_scope(&claims, scope);
    }
});
