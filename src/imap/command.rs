//! Parsing pre-authentication IMAP commands (RFC 3501 §6.1, §6.2, §9;
//! SASL-IR RFC 4959; ID RFC 2971). Pure functions over one complete
//! command, in which literals appear inline as `{n}\r\n<n bytes>` (the
//! session reads them and appends them before parsing).

use crate::secret::SecretBytes;

#[derive(Debug)]
pub struct Command {
    pub tag: String,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    Capability,
    Noop,
    Logout,
    Id,
    StartTls,
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        username: Vec<u8>,
        /// As sent: passed on to the upstream byte for byte.
        password: SecretBytes,
    },
    /// A command this proxy does not accept before login.
    Other(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// No usable tag: answer with an untagged `* BAD`.
    NoTag,
    /// A tagged syntax error: answer `<tag> BAD <message>`.
    Syntax { tag: String, message: &'static str },
}

/// The tag of a command line, if it starts with a valid one (for replies
/// to a command that cannot be parsed whole, e.g. a refused literal).
pub fn leading_tag(line: &[u8]) -> Option<&str> {
    let end = line.iter().position(|&b| b == b' ')?;
    let tag = std::str::from_utf8(&line[..end]).ok()?;
    let valid = !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b));
    valid.then_some(tag)
}

/// If `line` ends with a literal announcement `{n}` / `{n+}`, returns
/// `(n, synchronizing)`.
pub fn trailing_literal(line: &[u8]) -> Option<(usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let mut digits = &inner[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, sync))
}

pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let mut p = Parser {
        input: line,
        pos: 0,
    };
    let tag = p.take_while(is_tag_char);
    if tag.is_empty() || !p.eat(b' ') {
        return Err(ParseError::NoTag);
    }
    let tag = String::from_utf8_lossy(tag).into_owned();
    let syntax = |message| ParseError::Syntax {
        tag: tag.clone(),
        message,
    };
    let name = p.take_while(is_atom_char);
    if name.is_empty() {
        return Err(syntax("Error in IMAP command: missing command name"));
    }
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let kind = match name.as_str() {
        "CAPABILITY" | "NOOP" | "LOGOUT" | "STARTTLS" => {
            if !p.at_end() {
                return Err(syntax("Error in IMAP command: unexpected arguments"));
            }
            match name.as_str() {
                "CAPABILITY" => Kind::Capability,
                "NOOP" => Kind::Noop,
                "LOGOUT" => Kind::Logout,
                _ => Kind::StartTls,
            }
        }
        // The client's ID parameters are accepted and not interpreted.
        "ID" => {
            if !p.eat(b' ') {
                return Err(syntax("Error in IMAP command ID: missing parameters"));
            }
            Kind::Id
        }
        "AUTHENTICATE" => {
            if !p.eat(b' ') {
                return Err(syntax(
                    "Error in IMAP command AUTHENTICATE: missing mechanism",
                ));
            }
            let mechanism = p.take_while(is_atom_char);
            if mechanism.is_empty() {
                return Err(syntax(
                    "Error in IMAP command AUTHENTICATE: missing mechanism",
                ));
            }
            let mechanism = String::from_utf8_lossy(mechanism).into_owned();
            let initial = if p.eat(b' ') {
                let ir = p.rest();
                if ir.is_empty()
                    || !ir
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                {
                    return Err(syntax(
                        "Error in IMAP command AUTHENTICATE: invalid initial response",
                    ));
                }
                Some(ir.to_vec())
            } else {
                None
            };
            if !p.at_end() {
                return Err(syntax(
                    "Error in IMAP command AUTHENTICATE: unexpected arguments",
                ));
            }
            Kind::Authenticate { mechanism, initial }
        }
        "LOGIN" => {
            let username = p.eat(b' ').then(|| p.astring()).flatten();
            let password = p.eat(b' ').then(|| p.astring()).flatten();
            match (username, password) {
                (Some(u), Some(pw)) if p.at_end() => Kind::Login {
                    username: u,
                    password: SecretBytes::new(pw),
                },
                _ => {
                    return Err(syntax(
                        "Error in IMAP command LOGIN: expected user name and password",
                    ))
                }
            }
        }
        _ => Kind::Other(name),
    };
    Ok(Command { tag, kind })
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.input.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn rest(&mut self) -> &'a [u8] {
        let r = &self.input[self.pos..];
        self.pos = self.input.len();
        r
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.input.get(self.pos).is_some_and(|&b| f(b)) {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    /// astring = 1*ASTRING-CHAR / string (quoted or literal).
    fn astring(&mut self) -> Option<Vec<u8>> {
        match self.input.get(self.pos)? {
            b'"' => self.quoted(),
            b'{' => self.literal(),
            _ => {
                let atom = self.take_while(|b| is_atom_char(b) || b == b']');
                (!atom.is_empty()).then(|| atom.to_vec())
            }
        }
    }

    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match *self.input.get(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    let next = *self.input.get(self.pos + 1)?;
                    if next != b'"' && next != b'\\' {
                        return None;
                    }
                    out.push(next);
                    self.pos += 2;
                }
                b'\r' | b'\n' | 0 => return None,
                b => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Option<Vec<u8>> {
        let close = self.input[self.pos..].iter().position(|&b| b == b'}')? + self.pos;
        let (n, _) = trailing_literal(&self.input[self.pos..=close])?;
        let start = close + 1;
        let data_start = start + 2;
        if self.input.get(start..data_start)? != b"\r\n" {
            return None;
        }
        let data = self.input.get(data_start..data_start + n)?;
        self.pos = data_start + n;
        Some(data.to_vec())
    }
}

/// ATOM-CHAR: any CHAR except atom-specials (RFC 3501 §9).
fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b)
}

/// tag = 1*<any ASTRING-CHAR except "+">
fn is_tag_char(b: u8) -> bool {
    (is_atom_char(b) || b == b']') && b != b'+'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &[u8]) -> Kind {
        parse(line).unwrap().kind
    }

    #[test]
    fn simple_commands() {
        let c = parse(b"a001 capability").unwrap();
        assert_eq!(c.tag, "a001");
        assert!(matches!(c.kind, Kind::Capability));
        assert!(matches!(kind(b"A NOOP"), Kind::Noop));
        assert!(matches!(kind(b"x LOGOUT"), Kind::Logout));
        assert!(matches!(kind(b"x StartTLS"), Kind::StartTls));
        assert!(matches!(kind(b"x ID (\"name\" \"mutt\")"), Kind::Id));
        assert!(matches!(kind(b"x ID NIL"), Kind::Id));
        assert!(matches!(kind(b"x SELECT INBOX"), Kind::Other(n) if n == "SELECT"));
    }

    #[test]
    fn authenticate_with_and_without_initial_response() {
        match kind(b"a AUTHENTICATE OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAQ==") {
            Kind::Authenticate { mechanism, initial } => {
                assert_eq!(mechanism, "OAUTHBEARER");
                assert_eq!(initial.unwrap(), b"bixhPXVzZXJAZXhhbXBsZS5jb20sAQ==");
            }
            k => panic!("{k:?}"),
        }
        match kind(b"a authenticate xoauth2") {
            Kind::Authenticate { mechanism, initial } => {
                assert_eq!(mechanism, "xoauth2");
                assert!(initial.is_none());
            }
            k => panic!("{k:?}"),
        }
        match kind(b"a AUTHENTICATE PLAIN =") {
            Kind::Authenticate { initial, .. } => assert_eq!(initial.unwrap(), b"="),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn login_atoms_quoted_and_literals() {
        match kind(b"a LOGIN alice secret") {
            Kind::Login { username, password } => {
                assert_eq!(username, b"alice");
                assert_eq!(password.expose(), b"secret");
            }
            k => panic!("{k:?}"),
        }
        match kind(b"a LOGIN \"alice@example.com\" \"pa ss\\\"w\\\\d\"") {
            Kind::Login { username, password } => {
                assert_eq!(username, b"alice@example.com");
                assert_eq!(password.expose(), b"pa ss\"w\\d");
            }
            k => panic!("{k:?}"),
        }
        match kind(b"a LOGIN {5}\r\nalice {6+}\r\nse cre") {
            Kind::Login { username, password } => {
                assert_eq!(username, b"alice");
                assert_eq!(password.expose(), b"se cre");
            }
            k => panic!("{k:?}"),
        }
        // A Latin-1 password in a literal stays as it was sent.
        match kind(b"a LOGIN alice {4+}\r\np\xe4ss") {
            Kind::Login { password, .. } => assert_eq!(password.expose(), b"p\xe4ss"),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn trailing_literals() {
        assert_eq!(trailing_literal(b"a LOGIN {5}"), Some((5, true)));
        assert_eq!(trailing_literal(b"a LOGIN alice {12+}"), Some((12, false)));
        assert_eq!(trailing_literal(b"a LOGIN {}"), None);
        assert_eq!(trailing_literal(b"a LOGIN {x}"), None);
        assert_eq!(trailing_literal(b"a NOOP"), None);
        assert_eq!(trailing_literal(b"a {9999999999}"), None);
    }

    #[test]
    fn malformed() {
        assert_eq!(parse(b"").unwrap_err(), ParseError::NoTag);
        assert_eq!(parse(b"NOOP").unwrap_err(), ParseError::NoTag);
        assert_eq!(parse(b"+ NOOP").unwrap_err(), ParseError::NoTag);
        assert_eq!(parse(b"* NOOP").unwrap_err(), ParseError::NoTag);
        assert!(matches!(
            parse(b"a ").unwrap_err(),
            ParseError::Syntax { .. }
        ));
        assert!(matches!(
            parse(b"a NOOP extra").unwrap_err(),
            ParseError::Syntax { .. }
        ));
        assert!(matches!(
            parse(b"a LOGIN alice").unwrap_err(),
            ParseError::Syntax { .. }
        ));
        assert!(matches!(
            parse(b"a LOGIN \"alice pw").unwrap_err(),
            ParseError::Syntax { .. }
        ));
        assert!(matches!(
            parse(b"a LOGIN {10}\r\nabc x").unwrap_err(),
            ParseError::Syntax { .. }
        ));
        assert!(matches!(
            parse(b"a AUTHENTICATE").unwrap_err(),
            ParseError::Syntax { .. }
        ));
        assert!(matches!(
            parse(b"a AUTHENTICATE PLAIN not*base64").unwrap_err(),
            ParseError::Syntax { .. }
        ));
        assert!(matches!(
            parse(b"a AUTHENTICATE PLAIN a b").unwrap_err(),
            ParseError::Syntax { .. }
        ));
    }
}
