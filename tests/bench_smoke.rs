//! Smoke test of the benchmark harness (issue 7): `bench/run.sh --quick`
//! with this build's proxy and load generator (debug builds: no release
//! build in CI). It must finish and write a results table; timings are
//! not asserted.

use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn quick_benchmark_finishes_and_writes_a_table() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proxy = PathBuf::from(env!("CARGO_BIN_EXE_oauthbearer-proxy"));
    // `cargo test` builds the examples next to the binaries' directory.
    let loadgen = proxy
        .parent()
        .expect("target dir")
        .join("examples")
        .join("loadgen");
    assert!(
        loadgen.exists(),
        "{} is missing: `cargo test` builds examples (or run `cargo build --example loadgen`)",
        loadgen.display()
    );
    let out = tempfile::tempdir().expect("tempdir");
    let status = Command::new("bash")
        .arg(repo.join("bench/run.sh"))
        .args(["--quick", "--no-build", "--proxy-bin"])
        .arg(&proxy)
        .arg("--loadgen-bin")
        .arg(&loadgen)
        .arg("--out")
        .arg(out.path())
        .stdin(Stdio::null())
        .status()
        .expect("run bench/run.sh");
    assert!(status.success(), "bench/run.sh --quick failed: {status}");

    let md = std::fs::read_to_string(out.path().join("benchmarks.md")).expect("benchmarks.md");
    for needle in [
        "| contender |",
        "| Dovecot direct, plaintext |",
        "| Dovecot direct, TLS |",
        "| nginx mail proxy, TLS |",
        "| oauthbearer-proxy, TLS, every login at the provider |",
        "Goals (issue 7)",
    ] {
        assert!(md.contains(needle), "no {needle:?} in:\n{md}");
    }
    let png = std::fs::read(out.path().join("benchmarks.png")).expect("benchmarks.png");
    assert!(png.starts_with(b"\x89PNG"), "the chart is not a PNG");
    let json = std::fs::read_to_string(out.path().join("results.json")).expect("results.json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("results JSON");
    let logins = v["summary"]["proxy-provider"]["lps_1"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(logins > 0.0, "no login through the proxy succeeded:\n{md}");
    // Every session of every cell succeeded (a failed session would make
    // its rate meaningless), up to c=64 from one address.
    let summary = v["summary"].as_object().expect("summary");
    let mut cells = 0;
    for (contender, row) in summary {
        for (key, errors) in row.as_object().expect("row") {
            if key.starts_with("errors_") {
                cells += 1;
                assert_eq!(errors.as_u64(), Some(0), "{contender} {key}:\n{md}");
            }
        }
    }
    assert!(cells >= 12, "only {cells} cells with an error count:\n{md}");
    assert!(
        v["summary"]["proxy-provider"]["lps_64"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "no c=64 logins through the proxy:\n{md}"
    );
    assert!(
        md.contains("CPU seconds per GiB relayed"),
        "no CPU budget table:\n{md}"
    );
}
