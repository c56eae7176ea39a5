#!/usr/bin/env bash
# The main job on a local default: installs what is missing, starts Dovecot,
# Postfix and the OpenID provider on loopback, starts the proxy in front of
# them, and shows real clients logging in with an OAuth access token.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash scripts/install-deps.sh
cargo build --bin oauthbearer-proxy
exec python3 scripts/demo.py
