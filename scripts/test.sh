#!/usr/bin/env bash
# The test command: installs missing prerequisites, then runs every check.
# Exits non-zero on any failure. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
ensure_build_tools
# The browser test drives Debian's headless Chromium over chromedriver.
ensure_tools chromium:chromium chromedriver:chromium-driver

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test --all-targets"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Proptest case count is bounded so the suite stays fast on 2 cores.
export PROPTEST_CASES="${PROPTEST_CASES:-64}"
status=0
cargo test --all-targets 2>&1 | tee "$log" || status=$?
echo
echo "==> summary"
grep -E '^test result:' "$log" || true
passed=$(grep -oE '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "${passed} passed, ${failed} failed"
exit "$status"
