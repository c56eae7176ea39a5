//! The pre-auth POP3 command parser: any line, no panic; a user name or a
//! password it returns never carries a line break (both are sent upstream
//! inside an AUTH PLAIN message, and a user name reaches the log line).
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauthbearer_proxy::pop3::command::{self, Command};

fuzz_target!(|line: &[u8]| {
    match command::parse(line) {
        Ok(Command::User(name)) => assert!(!name.iter().any(|&b| b == b'\r' || b == b'\n')),
        Ok(Command::Pass(password)) => {
            assert!(!password.iter().any(|&b| b == b'\r' || b == b'\n'))
        }
        Ok(Command::Auth { mechanism, .. }) => assert!(mechanism.len() <= 20),
        _ => {}
    }
});
