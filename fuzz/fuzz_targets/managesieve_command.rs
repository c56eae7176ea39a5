//! The pre-auth ManageSieve parsers: any command, response or SASL answer
//! line, no panic; a mechanism name is never empty; and every string the
//! proxy writes (quoted or literal) reads back as itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauthbearer_proxy::managesieve::{command, read, syntax};

fuzz_target!(|line: &[u8]| {
    if let Ok(command::Command::Authenticate { mechanism, .. }) = command::parse(line) {
        assert!(!mechanism.is_empty());
    }
    let _ = syntax::trailing_literal(line);
    let _ = syntax::parse_response(line);
    let _ = syntax::parse_capability(line);
    let _ = read::decode_response(line);
    for written in [syntax::client_string(line), syntax::server_string(line)] {
        let mut lexer = syntax::Lexer::new(&written);
        assert_eq!(lexer.string().as_deref(), Some(line));
        assert!(lexer.at_end());
    }
});
