#!/usr/bin/env bash
# The full test suite: Rust unit and integration tests (real server processes, real WebSocket clients), the
# browser end-to-end test (Debian's Chromium), the PostgreSQL store tests (throwaway servers), and the JS client's
# unit tests. Installs what the tests need when it is missing: Debian's chromium, postgresql and redis-server (as root, through
# apt) and the npm packages from their lock files.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "the browser test needs Debian's chromium: sudo apt-get install -y chromium" >&2
    exit 1
  fi
  echo "==> installing chromium (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "the PostgreSQL store tests need Debian's postgresql: sudo apt-get install -y postgresql" >&2
    exit 1
  fi
  echo "==> installing postgresql (apt; the tests start their own throwaway servers)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if [[ ! -x /usr/bin/redis-server ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "the Redis bus tests need Debian's redis-server: sudo apt-get install -y redis-server" >&2
    exit 1
  fi
  echo "==> installing redis-server (apt; the tests start their own throwaway servers)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

echo "==> npm packages (from lock files)"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
(cd crates/drakon/tests/convergence/node && npm ci --no-audit --no-fund --loglevel=error)
(cd clients/js && npm ci --no-audit --no-fund --loglevel=error)

echo "==> JS client unit tests"
(cd clients/js && npm test --silent)

echo "==> Rust tests, including the browser test"
cargo nextest run --workspace "$@"
