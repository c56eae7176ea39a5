//! Parsing pre-authentication ManageSieve commands (RFC 5804 §2.1
//! AUTHENTICATE, §2.2 STARTTLS, §2.3 LOGOUT, §2.4 CAPABILITY, §2.16 NOOP).
//! Pure functions over one complete command, in which literals appear
//! inline (see [`super::syntax`]). Anything else is [`Command::Other`]:
//! a `NO` reply, not a disconnect.

use super::syntax::Lexer;
use zeroize::Zeroizing;

#[derive(Debug)]
pub enum Command {
    Authenticate {
        /// The mechanism name as sent (compared case-insensitively later).
        mechanism: String,
        /// The initial response: base64 text, still encoded; `Some("")`
        /// is an empty initial response.
        initial: Option<Zeroizing<Vec<u8>>>,
    },
    StartTls,
    Capability,
    Logout,
    /// `NOOP` with the optional tag echoed in `OK (TAG ...)`.
    Noop {
        tag: Option<Vec<u8>>,
    },
    /// A command this proxy does not accept before login (upper-cased).
    Other(String),
}

/// A syntax error: answered with `NO "<message>"`.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError(pub &'static str);

pub fn parse(line: &[u8]) -> Result<Command, SyntaxError> {
    let mut p = Lexer::new(line);
    let name = p.atom().ok_or(SyntaxError(
        "Error in MANAGESIEVE command: missing command name.",
    ))?;
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let command = match name.as_str() {
        "AUTHENTICATE" => return authenticate(p),
        "NOOP" => {
            let tag = if p.eat(b' ') {
                Some(
                    p.string()
                        .ok_or(SyntaxError("Error in NOOP command: expected a string."))?,
                )
            } else {
                None
            };
            Command::Noop { tag }
        }
        "STARTTLS" => Command::StartTls,
        "CAPABILITY" => Command::Capability,
        "LOGOUT" => Command::Logout,
        _ => return Ok(Command::Other(name)),
    };
    if !p.at_end() {
        return Err(SyntaxError(
            "Error in MANAGESIEVE command: unexpected arguments.",
        ));
    }
    Ok(command)
}

/// `AUTHENTICATE SP auth-type [SP string]`; auth-type is a string too.
fn authenticate(mut p: Lexer<'_>) -> Result<Command, SyntaxError> {
    const MISSING: SyntaxError =
        SyntaxError("Error in AUTHENTICATE command: expected a mechanism name string.");
    if !p.eat(b' ') {
        return Err(MISSING);
    }
    let mechanism = p.string().ok_or(MISSING)?;
    let mechanism = match String::from_utf8(mechanism) {
        Ok(m) if !m.is_empty() => m,
        _ => return Err(MISSING),
    };
    let initial = if p.eat(b' ') {
        let ir = Zeroizing::new(p.string().ok_or(SyntaxError(
            "Error in AUTHENTICATE command: expected an initial response string.",
        ))?);
        Some(ir)
    } else {
        None
    };
    if !p.at_end() {
        return Err(SyntaxError(
            "Error in AUTHENTICATE command: unexpected arguments.",
        ));
    }
    Ok(Command::Authenticate { mechanism, initial })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case with the line as it arrives after CRLF stripping; the
    /// session strips `\r\n` and bare `\n` alike.
    fn ok(line: &[u8]) -> Command {
        match parse(line) {
            Ok(c) => c,
            Err(e) => panic!("{}: {e:?}", String::from_utf8_lossy(line)),
        }
    }

    fn auth(line: &[u8]) -> (String, Option<Vec<u8>>) {
        match ok(line) {
            Command::Authenticate { mechanism, initial } => {
                (mechanism, initial.map(|i| i.to_vec()))
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn simple_commands() {
        let table: &[(&[u8], &str)] = &[
            (b"CAPABILITY", "Capability"),
            (b"capability", "Capability"),
            (b"StartTls", "StartTls"),
            (b"LOGOUT", "Logout"),
            (b"NOOP", "Noop { tag: None }"),
            (b"NOOP \"abc\"", "Noop { tag: Some([97, 98, 99]) }"),
            (b"NOOP {3+}\r\nabc", "Noop { tag: Some([97, 98, 99]) }"),
            (b"PUTSCRIPT \"x\" {5+}\r\nkeep;", "Other(\"PUTSCRIPT\")"),
            (b"listscripts", "Other(\"LISTSCRIPTS\")"),
            (b"UNAUTHENTICATE", "Other(\"UNAUTHENTICATE\")"),
        ];
        for (line, expected) in table {
            assert_eq!(&format!("{:?}", ok(line)), expected);
        }
    }

    #[test]
    fn authenticate_forms() {
        let ir = b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWF1dGg9QmVhcmVyIHgBAQ==";
        let mut quoted = b"AUTHENTICATE \"OAUTHBEARER\" \"".to_vec();
        quoted.extend_from_slice(ir);
        quoted.push(b'"');
        assert_eq!(auth(&quoted), ("OAUTHBEARER".into(), Some(ir.to_vec())));
        for mark in ["+", ""] {
            let mut literal =
                format!("Authenticate \"XOAUTH2\" {{{}{mark}}}\r\n", ir.len()).into_bytes();
            literal.extend_from_slice(ir);
            assert_eq!(auth(&literal), ("XOAUTH2".into(), Some(ir.to_vec())));
        }
        assert_eq!(auth(b"AUTHENTICATE \"PLAIN\""), ("PLAIN".into(), None));
        assert_eq!(
            auth(b"AUTHENTICATE \"PLAIN\" \"\""),
            ("PLAIN".into(), Some(Vec::new()))
        );
        assert_eq!(auth(b"AUTHENTICATE {5+}\r\nPLAIN"), ("PLAIN".into(), None));
    }

    #[test]
    fn syntax_errors() {
        let table: &[&[u8]] = &[
            b"",
            b" CAPABILITY",
            b"\"CAPABILITY\"",
            b"CAPABILITY extra",
            b"LOGOUT \"x\"",
            b"STARTTLS now",
            b"NOOP tag",
            b"NOOP \"a\" \"b\"",
            b"AUTHENTICATE",
            b"AUTHENTICATE PLAIN",
            b"AUTHENTICATE \"\"",
            b"AUTHENTICATE \"PLAIN\" =",
            b"AUTHENTICATE \"PLAIN\" \"a\" \"b\"",
            b"AUTHENTICATE \"PLAIN\" \"unterminated",
            b"AUTHENTICATE \"PLAIN\" {10+}\r\nshort",
            b"AUTHENTICATE \"PLAIN\" {5+}\r\nabcdeXYZ",
            b"AUTHENTICATE \"\xff\"",
        ];
        for line in table {
            assert!(parse(line).is_err(), "{}", String::from_utf8_lossy(line));
        }
    }
}
