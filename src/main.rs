use clap::{Parser, Subcommand};
use oauthbearer_proxy::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

mod verify_token;

const DEFAULT_CONFIG: &str = "/etc/oauthbearer-proxy/config.toml";

/// jemalloc instead of glibc's malloc: after a burst of sessions glibc kept
/// the freed memory mapped (RSS stayed at the peak until a `malloc_trim`);
/// jemalloc's background thread gives freed pages back to the system within
/// seconds, busy or idle (README, *Dependencies*).
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
        None => run(config, cli.config),
    }
}

fn run(config: Config, path: PathBuf) -> ExitCode {
    init_logging(config.server.log_json);
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
    let filter =
        EnvFilter::try_from_env("OAUTHBEARER_PROXY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
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
