//! The administration subcommands (`who`, `kick`, `app-passwords`): they talk to the
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

pub fn app_passwords_list(config: &Config, path: &Path, user: String, json: bool) -> ExitCode {
    match ask(config, path, &Request::AppPasswordsList { user }) {
        Ok(Reply::AppPasswords {
            app_passwords,
            standing,
        }) => {
            if json {
                let both =
                    serde_json::json!({"app_passwords": app_passwords, "standing": standing});
                match serde_json::to_string_pretty(&both) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return failed(&e.to_string()),
                }
            } else {
                print!("{}", client::app_password_table(&app_passwords));
                let now = oauthbearer_proxy::idp::cache::unix_now();
                println!("standing: {}", standing.describe(now));
            }
            ExitCode::SUCCESS
        }
        Ok(_) => unexpected(),
        Err(e) => failed(&e),
    }
}

pub fn app_passwords_create(config: &Config, path: &Path, user: String, name: String) -> ExitCode {
    match ask(config, path, &Request::AppPasswordsCreate { user, name }) {
        Ok(Reply::Created {
            app_password,
            password,
        }) => {
            eprintln!(
                "app password {:?} (id {}) for {}; it is shown only now:",
                app_password.name, app_password.id, app_password.user
            );
            println!("{password}");
            ExitCode::SUCCESS
        }
        Ok(_) => unexpected(),
        Err(e) => failed(&e),
    }
}

pub fn app_passwords_revoke(
    config: &Config,
    path: &Path,
    user: String,
    name: Option<String>,
) -> ExitCode {
    match ask(config, path, &Request::AppPasswordsRevoke { user, name }) {
        Ok(Reply::Revoked {
            revoked,
            sessions_ended,
        }) => {
            println!("{revoked} app passwords revoked, {sessions_ended} sessions ended");
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
