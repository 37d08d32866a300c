#!/usr/bin/env bash
# The sigv4-proxy benchmark: the same workloads against a local nginx TLS upstream, directly and
# through the proxy (and through a plain nginx reverse proxy for reference), interleaved in one
# run, printing ratios to direct. See docs/performance.md for what is measured and why.
#
#   bench/run.sh                 # everything, ~4 minutes after the build
#   BENCH_SECONDS=5 BENCH_ROUNDS=2 bench/run.sh   # quicker, noisier
#   BENCH_SKIP_BUILD=1 bench/run.sh               # use the existing target/release binary
#
# Needs Debian's nginx and wrk (installed with apt-get when missing), openssl, curl, python3.
# Touches only loopback; everything it writes is under a fresh temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
    echo "installing ${need[*]} with apt-get" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get install -y "${need[@]}" >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y "${need[@]}" >/dev/null; }
fi

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    cargo build --release --bin sigv4-proxy
fi
exec python3 bench/bench.py "$@"
