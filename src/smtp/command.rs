//! Parsing pre-authentication SMTP command lines (RFC 5321 §4.1, STARTTLS
//! RFC 3207, AUTH RFC 4954 §4). Pure functions over one line; the verb is
//! case-insensitive and trailing whitespace (including a stray CR) is
//! ignored, as every real server does.

/// A command the front-end knows how to answer before authentication.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    StartTls,
    Auth {
        mechanism: String,
        /// The initial response exactly as sent (`=` is the empty one);
        /// decoding is the session's job, so that it can answer 501.
        initial: Option<Vec<u8>>,
    },
    Noop,
    Rset,
    Help,
    Quit,
    /// A mail transaction command, only possible after AUTH (530).
    NeedsAuth(String),
    /// Anything else (500).
    Unknown(String),
}

/// A syntax error in a known command: answered with `501 <code> <text>`.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// The enhanced status code, `5.5.4` (bad parameters) or `5.5.2`.
    pub code: &'static str,
    pub text: &'static str,
}

/// Commands that belong to a mail transaction or address lookup.
const NEEDS_AUTH: &[&str] = &[
    "MAIL", "RCPT", "DATA", "BDAT", "VRFY", "EXPN", "ETRN", "BURL",
];

pub fn parse(line: &[u8]) -> Result<Command, SyntaxError> {
    let line = line.trim_ascii_end();
    let (verb, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_ascii_start()),
        None => (line, &[][..]),
    };
    let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
    let no_args = |cmd| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(syntax("Syntax error (no parameters allowed)"))
        }
    };
    match verb.as_str() {
        "EHLO" => domain(args, "Syntax: EHLO hostname").map(Command::Ehlo),
        "HELO" => domain(args, "Syntax: HELO hostname").map(Command::Helo),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => auth(args),
        // RFC 5321 §4.1.1.9/.8: NOOP and HELP may carry a string.
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        v if NEEDS_AUTH.contains(&v) => Ok(Command::NeedsAuth(verb)),
        _ => Ok(Command::Unknown(printable_verb(&verb))),
    }
}

fn syntax(text: &'static str) -> SyntaxError {
    SyntaxError {
        code: "5.5.4",
        text,
    }
}

/// The EHLO/HELO argument: one token of printable characters (a domain or
/// an address literal; UTF-8 allowed for SMTPUTF8 clients).
fn domain(args: &[u8], usage: &'static str) -> Result<String, SyntaxError> {
    if args.is_empty() || args.len() > 255 || args.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(syntax(usage));
    }
    match std::str::from_utf8(args) {
        Ok(name) => Ok(name.to_string()),
        Err(_) => Err(syntax(usage)),
    }
}

/// `AUTH mechanism [initial-response]` (RFC 4954 §4).
fn auth(args: &[u8]) -> Result<Command, SyntaxError> {
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let Some(mechanism) = words.next() else {
        return Err(syntax("Syntax: AUTH mechanism [initial-response]"));
    };
    let initial = words.next().map(<[u8]>::to_vec);
    if words.next().is_some() {
        return Err(syntax("Syntax: AUTH mechanism [initial-response]"));
    }
    // RFC 4422 §3.1 mechanism names: upper-case letters, digits, - and _.
    if mechanism.len() > 20
        || !mechanism
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(syntax("Invalid mechanism name"));
    }
    Ok(Command::Auth {
        mechanism: String::from_utf8_lossy(mechanism).to_ascii_uppercase(),
        initial,
    })
}

/// An unknown verb made safe to log (it is never echoed to the client).
fn printable_verb(verb: &str) -> String {
    verb.chars()
        .take(32)
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case runs with the line endings clients really send, as in
    /// stalwartlabs/smtp-proto.
    const ENDINGS: &[&str] = &["\n", "\r\n", " \n", " \r\n"];

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
    fn greetings() {
        check(
            "EHLO client.example",
            Ok(Command::Ehlo("client.example".into())),
        );
        check(
            "ehlo client.example",
            Ok(Command::Ehlo("client.example".into())),
        );
        check("EhLo [192.0.2.1]", Ok(Command::Ehlo("[192.0.2.1]".into())));
        check("EHLO [IPv6:::1]", Ok(Command::Ehlo("[IPv6:::1]".into())));
        check("HELO mua", Ok(Command::Helo("mua".into())));
        check("helo  mua", Ok(Command::Helo("mua".into())));
        check("EHLO", Err(syntax("Syntax: EHLO hostname")));
        check("HELO", Err(syntax("Syntax: HELO hostname")));
        check("EHLO two words", Err(syntax("Syntax: EHLO hostname")));
    }

    #[test]
    fn simple_commands() {
        check("STARTTLS", Ok(Command::StartTls));
        check("starttls", Ok(Command::StartTls));
        check("NOOP", Ok(Command::Noop));
        check("noop hello there", Ok(Command::Noop));
        check("RSET", Ok(Command::Rset));
        check("HELP", Ok(Command::Help));
        check("help AUTH", Ok(Command::Help));
        check("QUIT", Ok(Command::Quit));
        check("Quit", Ok(Command::Quit));
        let no_params = Err(syntax("Syntax error (no parameters allowed)"));
        check("STARTTLS now", no_params);
        check(
            "QUIT x",
            Err(syntax("Syntax error (no parameters allowed)")),
        );
        check(
            "RSET x",
            Err(syntax("Syntax error (no parameters allowed)")),
        );
    }

    #[test]
    fn auth_with_and_without_initial_response() {
        check("AUTH OAUTHBEARER", auth("OAUTHBEARER", None));
        check("auth xoauth2", auth("XOAUTH2", None));
        check(
            "AUTH OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAQ==",
            auth("OAUTHBEARER", Some("bixhPXVzZXJAZXhhbXBsZS5jb20sAQ==")),
        );
        check("AUTH PLAIN =", auth("PLAIN", Some("=")));
        check("AUTH PLAIN *", auth("PLAIN", Some("*")));
        check("AUTH CRAM-MD5", auth("CRAM-MD5", None));
        check(
            "AUTH",
            Err(syntax("Syntax: AUTH mechanism [initial-response]")),
        );
        check(
            "AUTH PLAIN abc def",
            Err(syntax("Syntax: AUTH mechanism [initial-response]")),
        );
        check("AUTH PL/AIN", Err(syntax("Invalid mechanism name")));
    }

    #[test]
    fn transaction_commands_need_auth() {
        check(
            "MAIL FROM:<alice@example.com>",
            Ok(Command::NeedsAuth("MAIL".into())),
        );
        check(
            "mail from:<alice@example.com> SIZE=100",
            Ok(Command::NeedsAuth("MAIL".into())),
        );
        check(
            "RCPT TO:<bob@example.com>",
            Ok(Command::NeedsAuth("RCPT".into())),
        );
        check("DATA", Ok(Command::NeedsAuth("DATA".into())));
        check("BDAT 100 LAST", Ok(Command::NeedsAuth("BDAT".into())));
        check("VRFY bob", Ok(Command::NeedsAuth("VRFY".into())));
    }

    #[test]
    fn unknown_commands() {
        check("XCLIENT LOGIN=bob", Ok(Command::Unknown("XCLIENT".into())));
        check(
            "XFORWARD ADDR=1.2.3.4",
            Ok(Command::Unknown("XFORWARD".into())),
        );
        check("GET / HTTP/1.1", Ok(Command::Unknown("GET".into())));
        check("", Ok(Command::Unknown(String::new())));
        assert_eq!(parse(b"\x01\x02\xff"), Ok(Command::Unknown(String::new())));
    }
}
