//! The issue 11 keys: a directory must say which tokens are meant for mail
//! (`audience` / `required-scope` / `allow-any-audience`), what a userinfo
//! directory can check, `jwt.allow-untyped`, and the upstream's `identity-case`.

use super::*;

const BASE: &str = r#"
[listener.imaps]
protocol = "imap"
bind = "127.0.0.1:993"
tls = "none"
directory = "idp"
upstream = "dovecot"

[upstream.dovecot]
address = "127.0.0.1:10143"
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"
"#;

const USERINFO: &str =
    "[directory.idp]\ntype = \"oidc\"\nendpoint.url = \"https://idp/userinfo\"\n";
const JWT: &str =
    "[directory.idp]\ntype = \"oidc\"\nendpoint.method = \"jwt\"\nissuer = \"https://idp\"\n";
const INTROSPECT: &str = "[directory.idp]\ntype = \"oidc\"\nendpoint.url = \"https://idp/i\"\nendpoint.method = \"introspect\"\n";

fn parse(directory: &str, extra: &str) -> Result<Config> {
    Config::parse(&format!("{BASE}{directory}{extra}\n"))
}

#[test]
fn a_directory_must_say_which_tokens_are_for_mail() {
    for dir in [USERINFO, JWT, INTROSPECT] {
        let err = parse(dir, "").unwrap_err();
        assert_eq!(err.key, "directory.idp", "{err}");
        for k in [
            "`audience`",
            "`required-scope`",
            "`allow-any-audience = true`",
        ] {
            assert!(err.message.contains(k), "{k}: {err}");
        }
        let c = parse(dir, "required-scope = \"email\"").unwrap();
        assert!(c.warnings().is_empty());
        let c = parse(dir, "allow-any-audience = true").unwrap();
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("directory.idp") && warnings[0].contains("ANY"));
        assert!(parse(dir, "allow-any-audience = false").is_err());
        let both = parse(dir, "allow-any-audience = true\nrequired-scope = \"email\"").unwrap();
        assert!(
            both.warnings()[0].contains("still checked"),
            "{:?}",
            both.warnings()
        );
    }
    for dir in [JWT, INTROSPECT] {
        let c = parse(dir, "audience = \"urn:mail\"").unwrap();
        assert_eq!(c.directories["idp"].audience.as_deref(), Some("urn:mail"));
    }
    // An empty audience is no audience.
    assert!(parse(JWT, "audience = \"\"").is_err());
}

#[test]
fn userinfo_checks_only_what_userinfo_shows() {
    let err = parse(USERINFO, "audience = \"urn:mail\"").unwrap_err();
    assert_eq!(err.key, "directory.idp.audience", "{err}");
    for scope in ["openid", "email", "profile", "address", "phone"] {
        assert!(parse(USERINFO, &format!("required-scope = \"{scope}\"")).is_ok());
    }
    let err = parse(USERINFO, "required-scope = \"mail\"").unwrap_err();
    assert_eq!(err.key, "directory.idp.required-scope", "{err}");
    assert!(err.message.contains("introspect") && err.message.contains("jwt"));
    // A scope of one's own is fine where the token's scope is visible.
    assert!(parse(INTROSPECT, "required-scope = \"mail\"").is_ok());
    assert!(parse(JWT, "required-scope = \"mail\"").is_ok());
}

#[test]
fn jwt_allow_untyped() {
    let jwt = |extra: &str| {
        let c = parse(JWT, &format!("audience = \"urn:mail\"\n{extra}")).unwrap();
        match &c.directories["idp"].endpoint {
            Endpoint::Jwt(j) => j.allow_untyped,
            other => panic!("{other:?}"),
        }
    };
    assert!(!jwt(""));
    assert!(jwt("jwt.allow-untyped = true"));
    assert!(!jwt("jwt.allow-untyped = false"));
    let err = parse(
        USERINFO,
        "required-scope = \"email\"\njwt.allow-untyped = true",
    )
    .unwrap_err();
    assert_eq!(err.key, "directory.idp.jwt.allow-untyped", "{err}");
    let err = parse(JWT, "audience = \"a\"\njwt.allow-typless = true").unwrap_err();
    assert!(err.to_string().contains("allow-typless"), "{err}");
}

#[test]
fn identity_case() {
    let dir = format!("{USERINFO}required-scope = \"email\"\n");
    let with = |line: &str| {
        Config::parse(&format!("{BASE}{dir}").replace(
            "login.secret = \"s3cret\"\n",
            &format!("login.secret = \"s3cret\"\n{line}\n"),
        ))
    };
    let case = |c: Config| c.upstreams["dovecot"].identity_case;
    assert_eq!(case(with("").unwrap()), IdentityCase::RequireLower);
    assert_eq!(
        case(with("identity-case = \"require-lower\"").unwrap()),
        IdentityCase::RequireLower
    );
    assert_eq!(
        case(with("identity-case = \"lower\"").unwrap()),
        IdentityCase::Lower
    );
    assert_eq!(
        case(with("identity-case = \"exact\"").unwrap()),
        IdentityCase::Exact
    );
    let err = with("identity-case = \"upper\"").unwrap_err();
    assert_eq!(err.key, "upstream.dovecot.identity-case", "{err}");

    let refused = IdentityCase::RequireLower
        .apply("Bob@example.com")
        .unwrap_err();
    assert!(refused.contains("identity-case = \"lower\""), "{refused}");
    assert!(IdentityCase::RequireLower
        .apply("ÉLISE@example.com")
        .is_err());
    assert_eq!(
        IdentityCase::RequireLower.apply("bob@example.com").unwrap(),
        "bob@example.com"
    );
    assert_eq!(
        IdentityCase::Lower.apply("Bob@Example.COM").unwrap(),
        "bob@example.com"
    );
    assert_eq!(
        IdentityCase::Exact.apply("Bob@example.com").unwrap(),
        "Bob@example.com"
    );
    assert!(IdentityCase::Lower.same("BOB@example.com", "bob@example.com"));
    assert!(!IdentityCase::Exact.same("BOB@example.com", "bob@example.com"));
}
