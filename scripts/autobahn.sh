#!/usr/bin/env bash
# drakon's WebSocket implementation (its handshake, framing and decoder) against the Autobahn test suite's server
# cases: `wstest -m fuzzingclient` from the autobahntestsuite package on PyPI (Python 2 code, so it runs on a
# Python 2.7, e.g. pyenv's), against an echo endpoint built from drakon-server with the `autobahn` feature. Every
# case but the performance (9.*) and compression (12.*, 13.*) series runs; the run fails unless each case is OK,
# NON-STRICT or INFORMATIONAL. Prints a summary (docs/autobahn.md holds the latest one, with what each exception means).
set -euo pipefail
cd "$(dirname "$0")/.."

py2=""
for candidate in "$HOME"/.pyenv/versions/2.7*/bin/python python2.7 python2; do
  if "$candidate" -c 'import sys; assert sys.version_info[0] == 2' >/dev/null 2>&1; then
    py2=$candidate
    break
  fi
done
if [[ -z $py2 ]]; then
  echo "the Autobahn suite needs Python 2.7 (autobahntestsuite is Python 2 code): pyenv install 2.7.18" >&2
  exit 1
fi
wstest="$("$py2" -c 'import site; print(site.USER_BASE)')/bin/wstest"
if [[ ! -x $wstest ]]; then
  echo "==> installing autobahntestsuite (PyPI) for $py2"
  "$py2" -m pip install -q --user --disable-pip-version-check autobahntestsuite==25.10.1 2>&1 | grep -v DEPRECATION || true
fi

cargo build -q -p drakon-server --features autobahn --example autobahn_echo
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
"${CARGO_TARGET_DIR:-target}/debug/examples/autobahn_echo" "127.0.0.1:$port" >"$work/echo.log" 2>&1 &
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null; rm -rf "$work"' EXIT
listening=
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { listening=1; break; }
  sleep 0.1
done
if [[ -z $listening ]]; then
  echo "the echo endpoint did not start on 127.0.0.1:$port:" >&2
  cat "$work/echo.log" >&2
  exit 1
fi

cat >"$work/spec.json" <<SPEC
{"outdir": "$work/report", "servers": [{"agent": "drakon", "url": "ws://127.0.0.1:$port"}],
 "cases": ["*"], "exclude-cases": ["9.*", "12.*", "13.*"], "exclude-agent-cases": {}}
SPEC
echo "==> wstest -m fuzzingclient against ws://127.0.0.1:$port"
(cd "$work" && timeout 600 "$wstest" -m fuzzingclient -s spec.json >"$work/wstest.log" 2>&1) || {
  tail -20 "$work/wstest.log" >&2
  exit 1
}

python3 - "$work/report/index.json" <<'PY'
import collections, json, sys

cases = json.load(open(sys.argv[1]))["drakon"]
def key(case):
    return [int(part) for part in case.split(".")]
passing = {"OK", "NON-STRICT", "INFORMATIONAL"}
counts = collections.Counter(result["behavior"] for result in cases.values())
failed = [case for case, result in cases.items() if result["behavior"] not in passing]
lines = [f"{len(cases)} cases: " + ", ".join(f"{n} {b}" for b, n in sorted(counts.items()))]
for case in sorted(cases, key=key):
    result = cases[case]
    if result["behavior"] != "OK":
        lines.append(f"- {case}: {result['behavior']} (close: {result['behaviorClose']})")
print("\n".join(lines))
if failed:
    print("failed: " + ", ".join(sorted(failed, key=key)), file=sys.stderr)
    sys.exit(1)
PY
