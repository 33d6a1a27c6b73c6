#!/usr/bin/env bash
# The full test suite: Rust unit and integration tests (real server processes, real WebSocket clients), the
# browser end-to-end test (Debian's Chromium), the PostgreSQL store tests (throwaway servers), the JS client's
# unit tests, and the Autobahn WebSocket suite (scripts/autobahn.sh). Installs what the tests need when it is
# missing: Debian's chromium, postgresql, redis-server and openssl (as root, through apt), the npm packages from
# their lock files, and autobahntestsuite from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

# need <path that must exist (a glob is fine)> <Debian package> <what needs it>
need() {
  if compgen -G "$1" >/dev/null; then return; fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "$3 need Debian's $2: sudo apt-get install -y $2" >&2
    exit 1
  fi
  echo "==> installing $2 (apt) for $3"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need /usr/bin/chromium chromium "the browser tests"
need '/usr/lib/postgresql/*/bin/initdb' postgresql "the PostgreSQL tests (they start their own throwaway servers)"
need /usr/bin/redis-server redis-server "the Redis bus tests (they start their own throwaway servers)"
need /usr/bin/openssl openssl "the PostgreSQL TLS tests (they make a throwaway CA)"
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

echo "==> the Autobahn test suite's server cases against drakon's WebSocket implementation"
scripts/autobahn.sh
