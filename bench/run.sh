#!/usr/bin/env bash
# Every drakon-bench scenario at sizes that finish in about a quarter of an hour on a 2-core machine: builds drakon
# and the load generator (release), installs the Node baseline's npm packages from their lock file, then runs each
# scenario against drakon and, where there is an equivalent, the baseline and the floor. Tables go to the terminal;
# JSON and SVG charts to bench/results/. Extra arguments are passed to every run (e.g. `bench/run.sh --no-pin` or
# `--no-baseline`).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building drakon and drakon-bench (release)"
cargo build --release --locked -p drakon -p drakon-bench

if command -v node >/dev/null && command -v npm >/dev/null; then
  echo "==> baseline npm packages (bench/peers, from package-lock.json)"
  (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "==> node/npm not found: the Node ws baseline is skipped (apt-get install -y nodejs npm)"
fi

echo "==> open files: soft $(ulimit -Sn), hard $(ulimit -Hn) (drakon-bench raises the soft limit to the hard one)"
bench=target/release/drakon-bench
started=$SECONDS

# Each command stops by itself (--time-limit); `timeout` is the backstop should anything hang.
run() { timeout --kill-after=10 900 "$bench" "$@" --time-limit 840; }

# Memory per idle subscribed connection and handshake + subscribe rate, up to 15,000 connections: first as a
# reconnect storm (512 handshakes in flight), then paced below a 128-connection listen backlog.
run idle --connections 5000,10000,15000 "$@"
run idle --connections 15000 --concurrency 100 --tag paced "$@"
# Fan-out of one channel: throughput against subscriber count at 10 messages/s...
run fanout --connections 1000,5000,10000 --rate 10 --duration 10 "$@"
# ...and against the publish rate at 5,000 subscribers.
run fanout --connections 5000 --rate 20,40,60,80 --duration 10 --tag rates "$@"
# 10,000 subscribers again, with loopback's receive work steered to the generator's core (lo's rps_cpus and the
# receive backlog bound, both restored afterwards): on loopback the sender's core otherwise runs its receivers'
# kernel TCP work, which on a real network happens on the client machines. Writing /sys and /proc/sys needs root.
if [ "$(id -u)" = 0 ]; then
  run fanout --connections 10000 --rate 10 --duration 10 --steer-receive --tag steered "$@"
else
  echo "==> fanout --steer-receive skipped: writing /sys/class/net/lo/queues/rx-0/rps_cpus needs root"
fi
# Writes through the store: 1,000 subscribers over 100 filters, 500 and 1,000 writes/s.
run writes --connections 1000 --rate 500,1000 --duration 10 "$@"
# A write that matches one subscription while 1k / 10k / 100k others exist (100 per connection at the top).
run selective --subscriptions 1000,10000,100000 --connections 1000 --rate 500 --duration 10 "$@"

# 100,000 connections over several drakon nodes behind one Redis, all receiving a broadcast (needs redis-server).
if [ -x /usr/bin/redis-server ] || [ -n "${DRAKON_REDIS_SERVER:-}" ]; then
  run nodes --connections 100000 --rate 1 --duration 10 "$@"
else
  echo "==> nodes skipped: redis-server is missing (apt-get install -y redis-server)"
fi

echo "==> done in $((SECONDS - started)) s; results in bench/results/"
