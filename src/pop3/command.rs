//! Parsing pre-authentication POP3 command lines (RFC 1939 §3 and the
//! AUTHORIZATION state, CAPA RFC 2449, STLS RFC 2595 §4, AUTH RFC 5034 §4).
//! Pure functions over one line. The keyword is case-insensitive; trailing
//! whitespace (including a stray CR) is ignored, except in `PASS`, whose
//! argument is the rest of the line as sent (RFC 1939: a server may treat
//! spaces in it as part of the password, and Dovecot does).

use zeroize::Zeroizing;

/// A command the front-end answers before authentication.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Capa,
    Stls,
    Auth {
        mechanism: String,
        /// The initial response exactly as sent (`=` is the empty one);
        /// decoding is the shared login path's job.
        initial: Option<Vec<u8>>,
    },
    /// `AUTH` without a mechanism: list the SASL mechanisms (RFC 1734's
    /// form, which clients still probe with).
    AuthList,
    User(Vec<u8>),
    /// The password, zeroized when dropped.
    Pass(Zeroizing<Vec<u8>>),
    Quit,
    /// APOP (RFC 1939 §7) needs the shared secret in clear at the server:
    /// never offered here.
    Apop,
    /// A TRANSACTION-state command (STAT, RETR, NOOP, ...) before login.
    NeedsAuth(String),
    /// Anything else.
    Unknown(String),
}

/// A syntax error in a known command, answered with `-ERR <text>`.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError(pub &'static str);

/// RFC 1939 §5 and RFC 2449 TRANSACTION-state commands.
const NEEDS_AUTH: &[&str] = &[
    "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "LAST",
];

/// RFC 2449 §4: a keyword is at most 4 characters, an argument at most 40;
/// we accept longer arguments (tokens in AUTH, long user names) and leave
/// the line limit to the reader.
pub fn parse(line: &[u8]) -> Result<Command, SyntaxError> {
    let (keyword, raw_args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line.trim_ascii_end(), &[][..]),
    };
    let args = raw_args.trim_ascii();
    let keyword = String::from_utf8_lossy(keyword).to_ascii_uppercase();
    let no_args = |cmd| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(SyntaxError("Too many arguments."))
        }
    };
    match keyword.as_str() {
        "CAPA" => no_args(Command::Capa),
        "STLS" => no_args(Command::Stls),
        "QUIT" => no_args(Command::Quit),
        "AUTH" if args.is_empty() => Ok(Command::AuthList),
        "AUTH" => auth(args),
        "USER" => user(args),
        "PASS" => pass(raw_args),
        "APOP" => Ok(Command::Apop),
        k if NEEDS_AUTH.contains(&k) => Ok(Command::NeedsAuth(keyword)),
        _ => Ok(Command::Unknown(printable_keyword(&keyword))),
    }
}

/// `AUTH mechanism [initial-response]` (RFC 5034 §4).
fn auth(args: &[u8]) -> Result<Command, SyntaxError> {
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let mechanism = words.next().unwrap_or_default();
    let initial = words.next().map(<[u8]>::to_vec);
    if words.next().is_some() {
        return Err(SyntaxError("Syntax: AUTH mechanism [initial-response]"));
    }
    // RFC 4422 §3.1 mechanism names: upper-case letters, digits, - and _.
    if mechanism.len() > 20
        || !mechanism
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(SyntaxError("Invalid mechanism name."));
    }
    Ok(Command::Auth {
        mechanism: String::from_utf8_lossy(mechanism).to_ascii_uppercase(),
        initial,
    })
}

/// `USER name`: one argument without controls (it is sent upstream).
fn user(args: &[u8]) -> Result<Command, SyntaxError> {
    if args.is_empty() || args.iter().any(|&b| b < b' ' || b == 0x7f) {
        return Err(SyntaxError("Syntax: USER name"));
    }
    Ok(Command::User(args.to_vec()))
}

/// `PASS password`: everything after the keyword's space, as sent.
fn pass(raw_args: &[u8]) -> Result<Command, SyntaxError> {
    if raw_args.is_empty() || raw_args.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(SyntaxError("Syntax: PASS password"));
    }
    Ok(Command::Pass(Zeroizing::new(raw_args.to_vec())))
}

/// An unknown keyword made safe to log (it is never echoed to the client).
fn printable_keyword(keyword: &str) -> String {
    keyword
        .chars()
        .take(32)
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case runs with the line endings clients really send (the line
    /// reader strips the LF and a CR before it), as in stalwartlabs/smtp-proto.
    const ENDINGS: &[&str] = &["", "\r", " ", " \r"];

    fn check(line: &str, expected: Result<Command, SyntaxError>) {
        for ending in ENDINGS {
            let input = format!("{line}{ending}");
            assert_eq!(parse(input.as_bytes()), expected, "input {input:?}");
        }
    }

    fn auth(mechanism: &str, initial: Option<&str>) -> Result<Command, SyntaxError> {
        Ok(Command::Auth {
            mechanism: mechanism.into(),
            initial: initial.map(|i| i.as_bytes().to_vec()),
        })
    }

    #[test]
    fn simple_commands() {
        check("CAPA", Ok(Command::Capa));
        check("capa", Ok(Command::Capa));
        check("STLS", Ok(Command::Stls));
        check("stls", Ok(Command::Stls));
        check("QUIT", Ok(Command::Quit));
        check("Quit", Ok(Command::Quit));
        check("STLS now", Err(SyntaxError("Too many arguments.")));
        check("CAPA x", Err(SyntaxError("Too many arguments.")));
        check("QUIT x", Err(SyntaxError("Too many arguments.")));
    }

    #[test]
    fn auth_with_and_without_initial_response() {
        check("AUTH", Ok(Command::AuthList));
        check("AUTH OAUTHBEARER", auth("OAUTHBEARER", None));
        check("auth xoauth2", auth("XOAUTH2", None));
        check(
            "AUTH OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAQ==",
            auth("OAUTHBEARER", Some("bixhPXVzZXJAZXhhbXBsZS5jb20sAQ==")),
        );
        check("AUTH  XOAUTH2  dXNlcj0=", auth("XOAUTH2", Some("dXNlcj0=")));
        check("AUTH PLAIN =", auth("PLAIN", Some("=")));
        check("AUTH CRAM-MD5", auth("CRAM-MD5", None));
        check(
            "AUTH PLAIN abc def",
            Err(SyntaxError("Syntax: AUTH mechanism [initial-response]")),
        );
        check("AUTH PL/AIN", Err(SyntaxError("Invalid mechanism name.")));
        check(
            "AUTH ABCDEFGHIJKLMNOPQRSTU",
            Err(SyntaxError("Invalid mechanism name.")),
        );
    }

    #[test]
    fn user_and_pass() {
        check(
            "USER alice@example.com",
            Ok(Command::User(b"alice@example.com".to_vec())),
        );
        check("user alice", Ok(Command::User(b"alice".to_vec())));
        check("USER", Err(SyntaxError("Syntax: USER name")));
        assert_eq!(parse(b"USER a\x01b"), Err(SyntaxError("Syntax: USER name")));
        let pass = |p: &[u8]| Ok(Command::Pass(Zeroizing::new(p.to_vec())));
        // The password is the rest of the line, spaces and all.
        assert_eq!(parse(b"PASS secret"), pass(b"secret"));
        assert_eq!(parse(b"pass two words "), pass(b"two words "));
        assert_eq!(parse(b"PASS caf\xe9"), pass(b"caf\xe9"));
        assert_eq!(parse(b"PASS  lead"), pass(b" lead"));
        assert_eq!(parse(b"PASS"), Err(SyntaxError("Syntax: PASS password")));
        assert_eq!(parse(b"PASS "), Err(SyntaxError("Syntax: PASS password")));
        assert_eq!(
            parse(b"PASS a\rb"),
            Err(SyntaxError("Syntax: PASS password"))
        );
    }

    #[test]
    fn transaction_commands_need_auth() {
        check("STAT", Ok(Command::NeedsAuth("STAT".into())));
        check("retr 1", Ok(Command::NeedsAuth("RETR".into())));
        check("NOOP", Ok(Command::NeedsAuth("NOOP".into())));
        check("UIDL", Ok(Command::NeedsAuth("UIDL".into())));
        check("TOP 1 10", Ok(Command::NeedsAuth("TOP".into())));
        check("DELE 1", Ok(Command::NeedsAuth("DELE".into())));
    }

    #[test]
    fn apop_and_unknown_commands() {
        check(
            "APOP alice c4c9334bac560ecc979e58001b3e22fb",
            Ok(Command::Apop),
        );
        check(
            "XCLIENT ADDR=1.2.3.4",
            Ok(Command::Unknown("XCLIENT".into())),
        );
        check("GET / HTTP/1.1", Ok(Command::Unknown("GET".into())));
        check("", Ok(Command::Unknown(String::new())));
        assert_eq!(parse(b"\x01\x02\xff"), Ok(Command::Unknown(String::new())));
    }
}
