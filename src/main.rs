use clap::{Parser, Subcommand};
use oauthbearer_proxy::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

mod admin;
mod route_user;
mod verify_token;

const DEFAULT_CONFIG: &str = "/etc/oauthbearer-proxy/config.toml";

/// jemalloc instead of glibc's malloc: after a burst of sessions glibc kept
/// the freed memory mapped (RSS stayed at the peak until a `malloc_trim`);
/// jemalloc's background thread gives freed pages back to the system within
/// seconds, busy or idle (README, *Dependencies*).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// IMAP/SMTP front proxy that logs mail clients in with OAuth bearer tokens.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the whole configuration (secrets, certificates, names) and exit.
    Check,
    /// Validate one token exactly as a login would (without the cache) and
    /// print the identity and the claims used as JSON, or the reason.
    /// Exit status: 0 valid, 1 invalid, 2 provider unavailable (or a
    /// configuration error).
    VerifyToken {
        /// The `[directory.NAME]` to validate with.
        #[arg(long)]
        directory: String,
        /// The token; read from standard input when omitted.
        token: Option<String>,
    },
    /// Print which backend USER's sessions go to (its name first), why,
    /// and whether it is up. Exit status: 0 routed, 1 no backend for the
    /// user, 2 configuration error.
    Route {
        /// The `[upstream.NAME]` (default: the one with several backends).
        #[arg(long)]
        upstream: Option<String>,
        /// The value of the token's routing claim (`routing.method = "claim"`).
        #[arg(long)]
        claim: Option<String>,
        /// The user as the upstream knows them.
        user: String,
    },
    /// List the relayed sessions of the running proxy (over its
    /// `server.control-socket`).
    Who {
        /// One JSON object per session instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// End relayed sessions of the running proxy: a user's, a token
    /// subject's or a client address's. Prints how many were ended.
    Kick {
        /// The user name the sessions logged in as.
        #[arg(required_unless_present_any = ["sub", "ip"], conflicts_with_all = ["sub", "ip"])]
        user: Option<String>,
        /// The token subject (`sub`).
        #[arg(long, conflicts_with = "ip")]
        sub: Option<String>,
        /// The client address.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
    },
    /// A user's app passwords in the running proxy's store (over its
    /// `server.control-socket`).
    AppPasswords {
        #[command(subcommand)]
        action: AppPasswordsAction,
    },
}

#[derive(Subcommand)]
enum AppPasswordsAction {
    /// List a user's app passwords: name, id, created, last used.
    List {
        /// The owner (the user name the passwords log in as).
        user: String,
        /// One JSON object per app password instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Create an app password for a user and print it (once; it is not
    /// stored in clear and cannot be shown again).
    Create {
        user: String,
        /// What it is for ("Phone", "Outlook at work").
        name: String,
    },
    /// Revoke one app password (by name or id) or all of a user's; the
    /// sessions that logged in with them end.
    Revoke {
        user: String,
        /// The app password's name or id; all of the user's when omitted.
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Check) => match oauthbearer_proxy::server::build(&config) {
            Ok(services) => {
                for warning in config.warnings() {
                    eprintln!("WARNING {}: {warning}", cli.config.display());
                }
                println!(
                    "{}: configuration OK ({} listeners)",
                    cli.config.display(),
                    services.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", cli.config.display());
                ExitCode::from(2)
            }
        },
        Some(Command::VerifyToken { directory, token }) => {
            verify_token::run(&config, &directory, token)
        }
        Some(Command::Route {
            upstream,
            claim,
            user,
        }) => route_user::run(&config, upstream.as_deref(), claim.as_deref(), &user),
        Some(Command::Who { json }) => admin::who(&config, &cli.config, json),
        Some(Command::Kick { user, sub, ip }) => {
            let target = oauthbearer_proxy::control::Target { user, sub, ip };
            admin::kick(&config, &cli.config, target)
        }
        Some(Command::AppPasswords { action }) => match action {
            AppPasswordsAction::List { user, json } => {
                admin::app_passwords_list(&config, &cli.config, user, json)
            }
            AppPasswordsAction::Create { user, name } => {
                admin::app_passwords_create(&config, &cli.config, user, name)
            }
            AppPasswordsAction::Revoke { user, name } => {
                admin::app_passwords_revoke(&config, &cli.config, user, name)
            }
        },
        None => run(config, cli.config),
    }
}

fn run(config: Config, path: PathBuf) -> ExitCode {
    init_logging(config.server.log_json);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    // Signals, reloads, metrics and the directories' background work; the
    // sessions run on `server.workers` threads of their own (server.rs).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(oauthbearer_proxy::server::run(config, path));
    // Sessions still open after the graceful stop are closed here.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let spec = std::env::var("OAUTHBEARER_PROXY_LOG").unwrap_or_else(|_| "info".into());
    let filter =
        EnvFilter::try_new(quiet_tls_noise(&spec)).unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd the journal adds its own timestamps.
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match (json, under_systemd) {
        (true, _) => builder.json().init(),
        (false, true) => builder.without_time().init(),
        (false, false) => builder.init(),
    }
}

/// rustls warns once per handshake about what a client put in its hello
/// (an IP address in SNI, as PHP, GnuTLS and Go clients that connect by
/// address do): noise, one line per connection, in an administrator's
/// journal. Those messages come from one module; they are shown only when
/// the log level is debug or finer, or the filter names rustls itself.
fn quiet_tls_noise(spec: &str) -> String {
    let lower = spec.to_ascii_lowercase();
    if lower.contains("rustls") || lower.contains("debug") || lower.contains("trace") {
        return spec.to_string();
    }
    format!("{spec},rustls::msgs::handshake=error")
}
