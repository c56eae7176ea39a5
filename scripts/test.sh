#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine (as root): installs the real
# peers (Dovecot, Postfix, the npm OpenID provider, curl, msmtp), then runs
# the unit tests and the end-to-end tests, which start the peers on loopback
# ports under a temporary directory and stop them (by PID) when they finish.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash scripts/install-deps.sh
cargo build --all-targets
# Every test binary; a missing peer makes a test fail, never skip.
cargo test --all-targets -- --test-threads 4
