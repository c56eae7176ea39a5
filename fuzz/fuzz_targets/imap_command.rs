//! The pre-auth IMAP command parser: any line, no panic; a parsed command
//! keeps its tag free of spaces and line breaks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauthbearer_proxy::imap::command;

fuzz_target!(|line: &[u8]| {
    let _ = command::trailing_literal(line);
    if let Ok(cmd) = command::parse(line) {
        assert!(!cmd.tag.is_empty());
        assert!(!cmd.tag.contains([' ', '\r', '\n']));
    }
});
