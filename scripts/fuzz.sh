#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for a bounded time each.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]    (default 30; CI uses 15)
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov)
# to rustc. This machine has only the stable toolchain, so the script sets
# RUSTC_BOOTSTRAP=1, which lets the stable compiler accept them; the
# AddressSanitizer runtime ships with stable's rust-std. cargo-fuzz itself
# comes from crates.io (`cargo install cargo-fuzz`).
#
# New inputs go to fuzz/target/run-corpus/TARGET (not committed); the seed
# corpus in fuzz/corpus/TARGET (RFC examples) is only read. A crash stops
# the run with libFuzzer's report and exits non-zero; the input is saved in
# fuzz/artifacts/TARGET/ (add it as a regression test, then fix).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-30}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cd "$repo/fuzz"
targets=$(cargo fuzz list)
cargo fuzz build
mkdir -p target/logs
# One target per core at a time (libFuzzer runs one process per target).
parallel=$(nproc 2>/dev/null || echo 1)
fuzz_one() {
    local t=$1 rc=0
    mkdir -p "target/run-corpus/$t"
    # -rss_limit_mb bounds memory; -max_len covers a 64 KiB command line.
    cargo fuzz run "$t" "target/run-corpus/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=70000 -print_final_stats=1 \
        >"target/logs/$t.log" 2>&1 || rc=$?
    echo "fuzz: $t for ${secs}s"
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "target/logs/$t.log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "target/logs/$t.log" >&2
        echo "fuzz: $t FAILED (input saved in fuzz/artifacts/$t)" >&2
    fi
    return "$rc"
}
failed=0
running=0
for t in $targets; do
    if [ "$running" -ge "$parallel" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    fuzz_one "$t" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz: a target failed" >&2
    exit 1
fi
echo "fuzz: all targets ran ${secs}s each without a crash"
