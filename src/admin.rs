//! The administration subcommands (`who`, `kick`): they talk to the
//! running proxy over its control socket.

use oauthbearer_proxy::config::Config;
use oauthbearer_proxy::control::{client, Reply, Request, Target};
use std::path::Path;
use std::process::ExitCode;

fn ask(config: &Config, config_path: &Path, request: &Request) -> Result<Reply, String> {
    let Some(socket) = &config.server.control_socket else {
        return Err(format!(
            "{}: no `server.control-socket` is configured, so the running proxy cannot be asked",
            config_path.display()
        ));
    };
    match client::ask(socket, request)? {
        Reply::Error { error } => Err(error),
        reply => Ok(reply),
    }
}

pub fn who(config: &Config, config_path: &Path, json: bool) -> ExitCode {
    match ask(config, config_path, &Request::Who) {
        Ok(Reply::Sessions { sessions }) => {
            if json {
                match serde_json::to_string_pretty(&sessions) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                let now = oauthbearer_proxy::idp::cache::unix_now().max(0) as u64;
                print!("{}", client::table(&sessions, now));
            }
            ExitCode::SUCCESS
        }
        Ok(_) => unexpected(),
        Err(e) => failed(&e),
    }
}

pub fn kick(config: &Config, config_path: &Path, target: Target) -> ExitCode {
    match ask(config, config_path, &Request::Kick(target)) {
        Ok(Reply::Ended { ended }) => {
            println!("{ended} sessions ended");
            ExitCode::SUCCESS
        }
        Ok(_) => unexpected(),
        Err(e) => failed(&e),
    }
}

fn unexpected() -> ExitCode {
    eprintln!("the proxy gave an answer this command does not understand (a different version?)");
    ExitCode::FAILURE
}

fn failed(e: &str) -> ExitCode {
    eprintln!("{e}");
    ExitCode::FAILURE
}
