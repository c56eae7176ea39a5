//! The shipped systemd unit: `systemd-analyze verify` accepts it and
//! `systemd-analyze security` rates its exposure "OK" or better (the score
//! is recorded in the README). systemd need not be running: both work
//! offline on the file (Debian's `systemd` package, from install-deps.sh).

use std::path::PathBuf;
use std::process::Command;

fn unit_with_built_binary(dir: &std::path::Path) -> PathBuf {
    let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd/oauthbearer-proxy.service");
    let text = std::fs::read_to_string(&unit).expect("read the unit");
    // verify checks that ExecStart= exists; point it at the binary under test.
    let text = text.replace(
        "/usr/bin/oauthbearer-proxy",
        env!("CARGO_BIN_EXE_oauthbearer-proxy"),
    );
    let path = dir.join("oauthbearer-proxy.service");
    std::fs::write(&path, text).expect("write the unit");
    path
}

#[test]
fn unit_is_notify_with_reload_and_watchdog() {
    let unit = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd/oauthbearer-proxy.service"),
    )
    .expect("read the unit");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.contains(line), "the unit lacks {line}");
    }
}

#[test]
fn systemd_analyze_verify_and_security() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_with_built_binary(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (install it with scripts/install-deps.sh)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall score: {text}"));
    let words: Vec<&str> = overall.split_whitespace().collect();
    let score: f64 = words
        .iter()
        .find_map(|w| w.parse().ok())
        .expect("a numeric score");
    assert!(
        ["OK", "SAFE", "PERFECT"].iter().any(|l| words.contains(l)),
        "{overall}"
    );
    assert!(score <= 2.0, "{overall}");
}
