//! `oauthbearer-proxy verify-token`: one validation, as a login would do it
//! (without the cache), printed as JSON. Exit status 0 valid, 1 invalid,
//! 2 provider unavailable or unusable configuration.

use oauthbearer_proxy::config::{Config, IdentityCase, IdentityField};
use oauthbearer_proxy::idp::{Error, Validator};
use oauthbearer_proxy::secret::Secret;
use serde_json::{json, Map, Value};
use std::io::Read;
use std::process::ExitCode;

/// Claims worth showing besides the mapped `fields.*`.
const SHOWN: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "scope",
    "scp",
    "client_id",
    "azp",
    "active",
    "token_type",
];

pub fn run(config: &Config, name: &str, token: Option<String>) -> ExitCode {
    let Some(directory) = config.directories.get(name) else {
        eprintln!("no [directory.{name}] is configured");
        return ExitCode::from(2);
    };
    let token = match token {
        Some(t) => Secret::new(t.trim()),
        None => {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().take(1 << 20).read_to_string(&mut text) {
                eprintln!("cannot read the token from standard input: {e}");
                return ExitCode::from(2);
            }
            Secret::new(text.trim())
        }
    };
    if token.is_empty() {
        eprintln!("no token given (argument or standard input)");
        return ExitCode::from(2);
    }
    // The identity field the upstream of the first listener using this
    // directory needs.
    let (need, case) = config
        .listeners
        .iter()
        .find(|l| l.directories.iter().any(|d| d == name))
        .and_then(|l| config.upstreams.get(&l.upstream))
        .map(|u| (u.identity, u.identity_case))
        .unwrap_or((IdentityField::Username, IdentityCase::default()));
    let fields = directory.fields.clone();
    let validator = match Validator::new(directory.clone()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("`directory.{name}`: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(validator.inspect(&token, need));
    let (out, code) = match result {
        Ok(inspection) => {
            let mut used = Map::new();
            let mapped = [&fields.email, &fields.username, &fields.full_name];
            for (k, v) in &inspection.claims {
                if SHOWN.contains(&k.as_str()) || mapped.iter().any(|f| f.as_deref() == Some(k)) {
                    used.insert(k.clone(), v.clone());
                }
            }
            let user = inspection.identity.get(need).map(|u| case.apply(u));
            if let Some(Err(why)) = user {
                let out = json!({"valid": false, "directory": name, "reason": why});
                println!("{out:#}");
                return ExitCode::from(1);
            }
            let user = user.and_then(Result::ok);
            (
                json!({
                    "valid": true,
                    "directory": name,
                    "user": user,
                    "identity": *inspection.identity,
                    "claims": Value::Object(used),
                }),
                0,
            )
        }
        Err(Error::Rejected(r)) => (
            json!({"valid": false, "directory": name, "reason": r.to_string()}),
            1,
        ),
        Err(Error::Unavailable(why)) => (
            json!({"valid": false, "directory": name, "unavailable": true, "reason": why}),
            2,
        ),
    };
    println!("{out:#}");
    ExitCode::from(code)
}
