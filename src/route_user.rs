//! `oauthbearer-proxy route USER`: which backend the user's sessions go
//! to and why, as a login would decide it (`routing.*`), with the
//! backend's health checked once. The first line is the backend's name
//! alone, for scripts. Exit status: 0 routed, 1 no backend for the user
//! (refused, or a claim naming no backend), 2 unusable configuration.

use oauthbearer_proxy::backends::{self, RouteKey};
use oauthbearer_proxy::config::{Config, Protocol, Upstream};
use oauthbearer_proxy::upstream::Target;
use std::process::ExitCode;

pub fn run(config: &Config, upstream: Option<&str>, claim: Option<&str>, user: &str) -> ExitCode {
    let up = match pick(config, upstream) {
        Ok(u) => u,
        Err(why) => {
            eprintln!("{why}");
            return ExitCode::from(2);
        }
    };
    let backends = &up.backends;
    let user = up
        .identity_case
        .apply(user)
        .unwrap_or_else(|_| user.to_ascii_lowercase());
    let key = RouteKey { user: &user, claim };
    let route = match backends::route(backends, key) {
        Ok(r) => r,
        Err(e) => {
            println!("-");
            println!("upstream: {}", up.name);
            println!("why:      no backend for {user}: {e}");
            return ExitCode::from(1);
        }
    };
    let b = &backends.list[route.home];
    println!("{}", b.name);
    println!("upstream: {}", up.name);
    println!(
        "backend:  {} at {} (weight {})",
        b.name, b.address, b.weight
    );
    println!("user:     {user}");
    println!("why:      {}", route.why);
    println!("health:   {}", health(config, up, route.home));
    let moving = if backends.failover {
        "failover = true: while it is down, mailbox sessions go to the next healthy backend \
         in the user's hash order"
    } else {
        "failover = false: while it is down, mailbox logins get a temporary failure \
         (SMTP goes to any healthy backend)"
    };
    println!("when down: {moving}");
    ExitCode::SUCCESS
}

/// `--upstream`, else the only upstream with several backends, else the
/// only upstream.
fn pick<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a Upstream, String> {
    if let Some(name) = name {
        return config
            .upstreams
            .get(name)
            .ok_or_else(|| format!("no [upstream.{name}] is configured"));
    }
    let grouped: Vec<&Upstream> = config
        .upstreams
        .values()
        .filter(|u| u.backends.list.len() > 1)
        .collect();
    match (grouped.as_slice(), config.upstreams.len()) {
        ([one], _) => Ok(one),
        ([], 1) => config.upstreams.values().next().ok_or_else(String::new),
        _ => Err(format!(
            "several upstreams: name one with --upstream ({})",
            config
                .upstreams
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// One active check of the backend, as the proxy's own checks do it.
fn health(config: &Config, up: &Upstream, index: usize) -> String {
    let protocol = up.protocol.or_else(|| {
        let mut users = config.listeners.iter().filter(|l| l.upstream == up.name);
        users.next().map(|l| l.protocol)
    });
    let (Some(protocol), Ok(target)) = (protocol, Target::new(up.for_backend(index))) else {
        return "not checked (no listener uses this upstream)".into();
    };
    let timeout = up
        .backends
        .health
        .map_or(std::time::Duration::from_secs(2), |h| h.timeout);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return format!("not checked ({e})"),
    };
    let probe = backends::health::probe(&target, protocol, timeout);
    match runtime.block_on(probe) {
        Ok(()) => format!("up (it greets as {} should)", name(protocol)),
        Err(why) => format!("DOWN: {why}"),
    }
}

fn name(p: Protocol) -> String {
    p.name().to_uppercase()
}
