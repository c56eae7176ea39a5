//! Configuration tests for the session keys: `session.*`,
//! `backchannel-logout.*`, `server.control-socket`, introspection
//! credentials on a JWT directory.

use super::*;

const BASE: &str = r#"
[server]
hostname = "mail.example.com"
#SERVER

[listener.imaps]
protocol = "imap"
bind = "127.0.0.1:993"
directory = "idp"
upstream = "dovecot"

[upstream.dovecot]
address = "127.0.0.1:10143"
login.method = "master-user"
login.username = "proxy"
login.secret = "s3cret"

[directory.idp]
type = "oidc"
required-scope = "email"
#DIRECTORY
"#;

fn parse(server: &str, directory: &str) -> Result<Config> {
    Config::parse(
        &BASE
            .replace("#SERVER", server)
            .replace("#DIRECTORY", directory),
    )
}

const USERINFO: &str = "endpoint.url = \"https://idp/userinfo\"\n";

#[test]
fn sessions_are_kept_and_not_revalidated_by_default() {
    let c = parse("", USERINFO).unwrap();
    let d = &c.directories["idp"];
    assert_eq!(d.session, SessionPolicy::default());
    assert_eq!(d.session.at_expiry, AtExpiry::Keep);
    assert_eq!(d.backchannel_logout, None);
    assert_eq!(c.server.control_socket, None);
}

#[test]
fn session_keys_parse() {
    let c = parse(
        "control-socket = \"/run/p/control.sock\"\n",
        &format!("{USERINFO}session.revalidate = \"5m\"\nsession.at-expiry = \"end\"\n"),
    )
    .unwrap();
    let d = &c.directories["idp"];
    assert_eq!(d.session.revalidate, Some(Duration::from_secs(300)));
    assert_eq!(d.session.at_expiry, AtExpiry::End);
    assert_eq!(
        c.server.control_socket.as_deref(),
        Some(Path::new("/run/p/control.sock"))
    );
}

#[test]
fn bad_session_keys_are_named() {
    for (server, directory, key) in [
        (
            "",
            "session.revalidate = \"500ms\"\n",
            "directory.idp.session.revalidate",
        ),
        (
            "",
            "session.at-expiry = \"later\"\n",
            "expected `keep` or `end`",
        ),
        (
            "control-socket = \"control.sock\"\n",
            "",
            "server.control-socket",
        ),
        (
            "",
            "backchannel-logout.audience = \"mail\"\n",
            "directory.idp.issuer",
        ),
        (
            "",
            "backchannel-logout.audience = \"\"\nissuer = \"https://idp\"\n",
            "backchannel-logout.audience",
        ),
    ] {
        let err = parse(server, &format!("{USERINFO}{directory}")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(key), "{directory}: {text}");
    }
}

#[test]
fn backchannel_logout_needs_an_issuer_and_names_its_audience() {
    let c = parse(
        "",
        &format!(
            "{USERINFO}issuer = \"https://idp\"\nbackchannel-logout.audience = \"mail-proxy\"\n"
        ),
    )
    .unwrap();
    assert_eq!(
        c.directories["idp"].backchannel_logout,
        Some(BackchannelLogout {
            audience: "mail-proxy".into()
        })
    );
}

#[test]
fn a_jwt_directory_takes_introspection_credentials_for_revalidation() {
    let jwt = "endpoint.method = \"jwt\"\naudience = \"urn:mail\"\n";
    let err = parse("", &format!("{jwt}jwks.url = \"https://idp/jwks\"\nauth.method = \"basic\"\nauth.username = \"p\"\nauth.secret = \"s\"\n"))
        .unwrap_err();
    assert!(err.to_string().contains("directory.idp.issuer"), "{err}");
    let c = parse(
        "",
        &format!("{jwt}issuer = \"https://idp\"\nauth.method = \"basic\"\nauth.username = \"p\"\nauth.secret = \"s\"\n"),
    )
    .unwrap();
    let Endpoint::Jwt(settings) = &c.directories["idp"].endpoint else {
        panic!("not jwt");
    };
    assert!(matches!(
        settings.introspect,
        Some(IntrospectAuth::Basic { .. })
    ));
}
