//! ManageSieve's wire syntax (RFC 5804 §4): atoms, quoted strings,
//! literals and response lines. Pure functions, used by the front-end's
//! command parser and by the upstream login alike.
//!
//! A complete command or response is one line in which each literal
//! appears inline as `{n}\r\n<n octets>` or `{n+}\r\n<n octets>` (the
//! readers collect them before parsing). The client sends non-synchronizing
//! literals `{n+}` (`literal-c2s`), the server synchronizing ones `{n}`
//! (`literal-s2c`); both forms are accepted in either direction.

/// The longest quoted string this proxy writes (RFC 5804 §4: servers and
/// clients may refuse longer quoted strings); longer values go as literals.
const MAX_QUOTED: usize = 1024;

/// If `line` ends with a literal announcement `{n}` / `{n+}`, returns
/// `(n, synchronizing)`.
pub fn trailing_literal(line: &[u8]) -> Option<(usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let (digits, sync) = match digits.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (digits, true),
    };
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, sync))
}

/// A string as a client writes it: quoted when it can be, else a
/// non-synchronizing literal (`literal-c2s`).
pub fn client_string(value: &[u8]) -> Vec<u8> {
    string(value, "+")
}

/// A string as a server writes it: quoted when it can be, else a
/// synchronizing literal (`literal-s2c`).
pub fn server_string(value: &[u8]) -> Vec<u8> {
    string(value, "")
}

fn string(value: &[u8], literal_mark: &str) -> Vec<u8> {
    let quotable =
        value.len() <= MAX_QUOTED && !value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'));
    if quotable {
        let mut out = Vec::with_capacity(value.len() + 2);
        out.push(b'"');
        for &b in value {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        out
    } else {
        let mut out = format!("{{{}{literal_mark}}}\r\n", value.len()).into_bytes();
        out.extend_from_slice(value);
        out
    }
}

/// `OK`, `NO` or `BYE`: the three responses (RFC 5804 §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bye,
}

/// A parsed response line: `status [SP "(" code ")"] [SP string]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// The response code's name, upper-cased (`TRYLATER`, `SASL`,
    /// `QUOTA/MAXSIZE`, ...), without its argument.
    pub code: Option<String>,
    /// The human-readable text, if any.
    pub text: Option<Vec<u8>>,
}

/// Parses a response line; `None` when it is not one (e.g. a capability
/// line or a SASL challenge).
pub fn parse_response(line: &[u8]) -> Option<Response> {
    let mut p = Lexer::new(line);
    let status = match p.atom()?.to_ascii_uppercase().as_slice() {
        b"OK" => Status::Ok,
        b"NO" => Status::No,
        b"BYE" => Status::Bye,
        _ => return None,
    };
    let mut code = None;
    if p.eat(b' ') && p.peek() == Some(b'(') {
        code = Some(p.response_code()?);
        if !p.eat(b' ') {
            return p.at_end().then_some(Response {
                status,
                code,
                text: None,
            });
        }
    }
    let text = if p.at_end() { None } else { Some(p.string()?) };
    p.at_end().then_some(Response { status, code, text })
}

/// A capability line: `"NAME"` or `"NAME" SP "value"` (RFC 5804 §1.7).
/// The name is upper-cased.
pub fn parse_capability(line: &[u8]) -> Option<(String, Option<Vec<u8>>)> {
    let mut p = Lexer::new(line);
    let name = p.string()?;
    let name = String::from_utf8(name).ok()?.to_ascii_uppercase();
    let value = if p.eat(b' ') { Some(p.string()?) } else { None };
    p.at_end().then_some((name, value))
}

/// A cursor over one complete command or response line.
pub struct Lexer<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Self { input, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Consumes `b` if it is next.
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// An atom (a command name): one or more ATOM-CHARs.
    pub fn atom(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        while self.peek().is_some_and(is_atom_char) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.input[start..self.pos])
    }

    /// A quoted string or a literal.
    pub fn string(&mut self) -> Option<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' => self.literal(),
            _ => None,
        }
    }

    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
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
        let data_start = close + 3;
        if self.input.get(close + 1..data_start)? != b"\r\n" {
            return None;
        }
        let data = self.input.get(data_start..data_start.checked_add(n)?)?;
        self.pos = data_start + n;
        Some(data.to_vec())
    }

    /// `"(" name [SP argument] ")"`: the name, upper-cased. The argument
    /// (a string, a number or an atom) is skipped.
    fn response_code(&mut self) -> Option<String> {
        self.eat(b'(').then_some(())?;
        let start = self.pos;
        while self.peek().is_some_and(|b| is_atom_char(b) || b == b'/') {
            self.pos += 1;
        }
        let name = std::str::from_utf8(&self.input[start..self.pos]).ok()?;
        if name.is_empty() {
            return None;
        }
        let name = name.to_ascii_uppercase();
        if self.eat(b' ') {
            if matches!(self.peek(), Some(b'"' | b'{')) {
                self.string()?;
            } else {
                self.atom()?;
            }
        }
        self.eat(b')').then_some(name)
    }
}

/// ATOM-CHAR (RFC 5804 §4): any CHAR except atom-specials.
fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"(){\"\\%*]".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        assert_eq!(client_string(b"PLAIN"), b"\"PLAIN\"".to_vec());
        assert_eq!(server_string(b"a\"b\\c"), b"\"a\\\"b\\\\c\"".to_vec());
        assert_eq!(client_string(b"a\r\nb"), b"{4+}\r\na\r\nb".to_vec());
        assert_eq!(server_string(b"a\0b"), b"{3}\r\na\0b".to_vec());
        let long = vec![b'x'; 1025];
        assert!(client_string(&long).starts_with(b"{1025+}\r\nxxx"));
        // UTF-8 may be quoted.
        assert_eq!(client_string("é".as_bytes()), "\"é\"".as_bytes().to_vec());
    }

    #[test]
    fn literal_announcements() {
        assert_eq!(
            trailing_literal(b"AUTHENTICATE \"PLAIN\" {12+}"),
            Some((12, false))
        );
        assert_eq!(trailing_literal(b"NO {5}"), Some((5, true)));
        assert_eq!(trailing_literal(b"{0}"), Some((0, true)));
        assert_eq!(trailing_literal(b"NO {}"), None);
        assert_eq!(trailing_literal(b"NO {+}"), None);
        assert_eq!(trailing_literal(b"NO {1x}"), None);
        assert_eq!(trailing_literal(b"NO {1234567890}"), None);
        assert_eq!(trailing_literal(b"NO \"x\""), None);
    }

    fn response(status: Status, code: Option<&str>, text: Option<&[u8]>) -> Option<Response> {
        Some(Response {
            status,
            code: code.map(str::to_string),
            text: text.map(<[u8]>::to_vec),
        })
    }

    fn response_table() -> Vec<(&'static [u8], Option<Response>)> {
        vec![
            (b"OK", response(Status::Ok, None, None)),
            (
                b"ok \"Logged in.\"",
                response(Status::Ok, None, Some(b"Logged in.")),
            ),
            (
                b"NO \"Authentication failed.\"",
                response(Status::No, None, Some(b"Authentication failed.")),
            ),
            (
                b"NO (TRYLATER) \"Try later\"",
                response(Status::No, Some("TRYLATER"), Some(b"Try later")),
            ),
            (
                b"NO (trylater)",
                response(Status::No, Some("TRYLATER"), None),
            ),
            (
                b"OK (SASL \"cnNwYXV0aD1lYTQwZjYwMzM1YzQyN2I1NTI3Yjg0ZGJhYmNkZmZmZA==\")",
                response(Status::Ok, Some("SASL"), None),
            ),
            (
                b"NO (QUOTA/MAXSIZE) \"Too big\"",
                response(Status::No, Some("QUOTA/MAXSIZE"), Some(b"Too big")),
            ),
            (
                b"OK (TAG {3}\r\nabc) \"Done\"",
                response(Status::Ok, Some("TAG"), Some(b"Done")),
            ),
            (
                b"BYE (REFERRAL sieve://example.org) \"Moved\"",
                response(Status::Bye, Some("REFERRAL"), Some(b"Moved")),
            ),
            (
                b"NO {11}\r\nline\r\nbreak",
                response(Status::No, None, Some(b"line\r\nbreak")),
            ),
            (
                b"BYE \"Too many invalid commands.\"",
                response(Status::Bye, None, Some(b"Too many invalid commands.")),
            ),
            (b"\"SIEVE\" \"fileinto\"", None),
            (b"\"cmVhZHk=\"", None),
            (b"OKAY", None),
            (b"OK \"unterminated", None),
            (b"OK \"x\" trailing", None),
            (b"NO (TRYLATER", None),
            (b"NO ()", None),
            (b"NO {5}\r\nabc", None),
            (b"", None),
        ]
    }

    #[test]
    fn responses() {
        for (line, expected) in response_table() {
            assert_eq!(
                parse_response(line),
                expected,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn capabilities() {
        assert_eq!(
            parse_capability(b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\""),
            Some((
                "IMPLEMENTATION".into(),
                Some(b"Dovecot Pigeonhole".to_vec())
            ))
        );
        assert_eq!(
            parse_capability(b"\"StartTLS\""),
            Some(("STARTTLS".into(), None))
        );
        assert_eq!(
            parse_capability(b"\"SIEVE\" {8}\r\nfileinto"),
            Some(("SIEVE".into(), Some(b"fileinto".to_vec())))
        );
        assert_eq!(parse_capability(b"OK \"ready\""), None);
        assert_eq!(parse_capability(b"\"SIEVE\" \"a\" \"b\""), None);
        assert_eq!(parse_capability(b"\"\xff\""), None);
    }
}
