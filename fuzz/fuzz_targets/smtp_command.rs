//! The pre-auth SMTP command parser: any line, no panic; an EHLO/HELO
//! name it returns never carries a line break (it is echoed in replies
//! and sent upstream in XCLIENT HELO=).
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauthbearer_proxy::smtp::command::{self, Command};

fuzz_target!(|line: &[u8]| {
    if let Ok(Command::Ehlo(name) | Command::Helo(name)) = command::parse(line) {
        assert!(!name.contains(['\r', '\n']));
    }
});
