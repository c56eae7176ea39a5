//! Two proxy instances behind a real HAProxy (round robin, PROXY protocol
//! v2 to the proxies), in front of two Dovecots (`hash` routing): 50 users
//! log in in rounds, each round's order rotated by one so that round robin
//! gives each user the other instance (until every user has met both);
//! every user reaches the same backend each time, whichever instance
//! served them, and the one `route` names.

mod backends_support;
mod common;
use backends_support::*;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// HAProxy in TCP mode: one frontend, round robin over `servers` with
/// `send-proxy-v2`. Stopped by PID.
struct Haproxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(servers: &[u16]) -> Haproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut cfg = format!(
            "global\n    maxconn 200\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\nfrontend mail\n    bind 127.0.0.1:{port}\n    default_backend proxies\n\nbackend proxies\n    balance roundrobin\n"
        );
        for (i, server) in servers.iter().enumerate() {
            cfg.push_str(&format!(
                "    server proxy{i} 127.0.0.1:{server} send-proxy-v2\n"
            ));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start haproxy (install it with scripts/install-deps.sh)");
        let mut h = Haproxy { child, port, dir };
        h.wait_listening();
        h
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        // Through the kernel's table: a probe connection would count in
        // the round robin.
        let wanted = format!("0100007F:{:04X}", self.port);
        loop {
            let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
            if tcp.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1] == wanted && f[3] == "0A"
            }) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("haproxy exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An IMAP OAUTHBEARER login and LOGOUT; the tagged answer to the login.
fn imap_login(peers: &Peers, port: u16, token: &str) -> String {
    let mut c = Raw::connect(port, false, &peers.ca());
    c.expect_line();
    c.send(&format!(
        "a AUTHENTICATE OAUTHBEARER {}\r\n",
        oauthbearer(None, token)
    ));
    let reply = c.until("a ").pop().unwrap_or_default();
    c.send("b LOGOUT\r\n");
    let _ = c.until("b ");
    reply
}

/// (user, backend) of each group-imap login in a proxy's log.
fn logins(log: &str) -> Vec<(String, String)> {
    let field = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let len = line[start..].find('"')?;
        Some(line[start..start + len].to_string())
    };
    log.lines()
        .filter(|l| l.contains("connection closed") && l.contains("listener=group-imap"))
        .filter_map(|l| Some((field(l, "user")?, field(l, "backend")?)))
        // The connection that only shifted the round robin logged no one in.
        .filter(|(user, _)| user != "-")
        .collect()
}

type Served = BTreeMap<String, (BTreeSet<usize>, BTreeSet<String>)>;

/// Each user's instances and backends, once the instances logged
/// `logins` connections (each connection's line is written when it closes).
fn served(instances: &[(Proxy, GroupPorts)], logins_seen: usize) -> Served {
    let deadline = Instant::now() + Duration::from_secs(15);
    let seen = loop {
        let seen: Vec<Vec<(String, String)>> =
            instances.iter().map(|(p, _)| logins(&p.log())).collect();
        if seen.iter().map(Vec::len).sum::<usize>() >= logins_seen {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "log lines: {:?}",
            seen.iter().map(Vec::len).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut by_user = Served::new();
    for (instance, lines) in seen.iter().enumerate() {
        for (user, backend) in lines {
            let entry = by_user.entry(user.clone()).or_default();
            entry.0.insert(instance);
            entry.1.insert(backend.clone());
        }
    }
    by_user
}

#[test]
fn fifty_users_reach_the_same_backend_through_either_instance() {
    let peers = two_dovecots();
    let instances: Vec<(Proxy, GroupPorts)> = (0..2)
        .map(|_| {
            let ports = GroupPorts::new();
            let mut opts = ProxyOptions::new(&peers);
            opts.extra = group_config(&peers, &ports, "routing.method = \"hash\"", true);
            (Proxy::start(&peers, &opts), ports)
        })
        .collect();
    let haproxy = Haproxy::start(&[instances[0].1.imap, instances[1].1.imap]);
    let users: Vec<String> = (0..50).map(|i| format!("user{i:02}")).collect();
    let tokens: Vec<String> = users
        .iter()
        .map(|u| mint_token(&peers, u, SCOPE, 300))
        .collect();
    // Rounds of 50 logins, each round's order rotated by one so that round
    // robin gives every user the other instance; until each user has met
    // both (at most four rounds).
    let mut by_user = BTreeMap::new();
    for round in 0..4 {
        for i in 0..users.len() {
            let k = (i + round) % users.len();
            let reply = imap_login(&peers, haproxy.port, &tokens[k]);
            assert!(reply.starts_with("a OK"), "{}: {reply}", users[k]);
        }
        by_user = served(&instances, 50 * (round + 1));
        println!(
            "after round {}: {} users met both instances",
            round + 1,
            by_user.values().filter(|(i, _)| i.len() == 2).count()
        );
        if by_user.values().all(|(instances, _)| instances.len() == 2) {
            break;
        }
    }
    assert_eq!(by_user.len(), 50, "{by_user:?}");
    let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
    for (user, (served_by, backends)) in &by_user {
        assert_eq!(backends.len(), 1, "{user} reached {backends:?}");
        assert_eq!(served_by.len(), 2, "{user} only met instance {served_by:?}");
        let backend = backends.iter().next().cloned().unwrap_or_default();
        assert_eq!(route(&instances[0].0, "mail", user), backend, "{user}");
        *per_backend.entry(backend).or_default() += 1;
    }
    println!("50 users through HAProxy, each on both instances: {per_backend:?}");
    assert_eq!(per_backend.len(), 2, "all on one backend: {per_backend:?}");
}
