#!/usr/bin/env bash
# The benchmark of issue 7, in one command (Debian 12, as root):
#
#   bash bench/run.sh            # full run (~15 min): writes docs/benchmarks.md and .png
#   bash bench/run.sh --quick    # smoke run (< 2 min): writes target/bench-quick/
#
# Installs what is missing (test peers, nginx + libnginx-mod-mail, matplotlib),
# builds the release proxy and load generator, raises the open-file limit to
# the hard limit, then runs bench/bench.py (see its docstring and
# docs/benchmarks.md). Other options are passed to bench.py (--reps, --duration,
# --sessions, --out DIR, --keep). --no-build uses --proxy-bin/--loadgen-bin as given.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

quick=0
build=1
args=()
proxy_bin=
loadgen_bin=
out=
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) quick=1; args+=("$1") ;;
        --no-build) build=0 ;;
        --proxy-bin) proxy_bin=$2; shift ;;
        --loadgen-bin) loadgen_bin=$2; shift ;;
        --out) out=$2; shift ;;
        *) args+=("$1") ;;
    esac
    shift
done

bash bench/install-deps.sh

if [[ $build -eq 1 ]]; then
    cargo build --release --bin oauthbearer-proxy --example loadgen
    target=$(cargo metadata --format-version 1 --no-deps | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    proxy_bin=${proxy_bin:-$target/release/oauthbearer-proxy}
    loadgen_bin=${loadgen_bin:-$target/release/examples/loadgen}
fi
if [[ -z $proxy_bin || -z $loadgen_bin ]]; then
    echo "bench/run.sh: --no-build needs --proxy-bin and --loadgen-bin" >&2
    exit 2
fi
if [[ -z $out ]]; then
    if [[ $quick -eq 1 ]]; then out=$repo/target/bench-quick; else out=$repo/docs; fi
fi

# 10,000 proxied sessions need 20,000 descriptors in one process.
ulimit -n "$(ulimit -Hn)"
exec /usr/bin/python3 bench/bench.py --proxy-bin "$proxy_bin" --loadgen-bin "$loadgen_bin" \
    --out "$out" "${args[@]}"
