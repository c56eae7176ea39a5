//! Tests of `imap`.
use super::*;

#[test]
fn dovecot_refusals() {
    let cases: &[(&[u8], Option<Refusal>)] = &[
        (
            b"NO [AUTHORIZATIONFAILED] Authorization failed",
            Some(Refusal::User),
        ),
        (b"NO [AUTHENTICATIONFAILED] Authentication failed.", None),
        (
            b"NO [UNAVAILABLE] Temporary authentication failure.",
            Some(Refusal::Upstream),
        ),
        (b"NO [SERVERBUG] Internal error", Some(Refusal::Upstream)),
        (b"BAD Error in IMAP command", Some(Refusal::Upstream)),
    ];
    for (reply, want) in cases {
        assert_eq!(refusal(reply), *want, "{}", printable(reply));
    }
}

#[test]
fn astrings() {
    assert_eq!(astring(b"alice"), b"\"alice\"".to_vec());
    assert_eq!(astring(b"a\"b\\c"), b"\"a\\\"b\\\\c\"".to_vec());
    assert_eq!(
        astring("pässword".as_bytes()),
        b"{9+}\r\np\xc3\xa4ssword".to_vec()
    );
}
