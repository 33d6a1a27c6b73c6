// The JS client (clients/js/dist/drakon.mjs) as one more mirror in the convergence test: one live collection,
// reconnecting and resuming on its own, printed as JSON on request.
//
//   node mirror.mjs <ws url> <route> <filter as JSON>
//
// Reads commands from stdin, one per line, and answers each with one JSON line on stdout:
//   dump -> {"rows": [...], "status": "...", "error": null | "...", "states": {"open": n, ...}, "changes": n,
//            "lastOffset": n}
//   quit -> closes the client and exits
// Nothing else is written to stdout.

import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { connect } from '../../../../../clients/js/dist/drakon.mjs';

const [url, route, filterJson] = process.argv.slice(2);
if (url === undefined || route === undefined) {
  process.stderr.write('usage: node mirror.mjs <ws url> <route> [filter JSON]\n');
  process.exit(2);
}
const filter = JSON.parse(filterJson ?? '{}');

// Short backoff: the test disconnects this client often and waits for it to catch up.
const client = connect(url, { WebSocket, minDelayMs: 20, maxDelayMs: 300 });
const states = {};
client.on('state', (state) => {
  states[state] = (states[state] ?? 0) + 1;
});
const live = client.live(route, filter);
let changes = 0;
live.on('change', () => {
  changes += 1;
});

const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  const command = line.trim();
  if (command === 'dump') {
    const error = live.error === undefined ? null : `${live.error.code}: ${live.error.message}`;
    const dump = { rows: live.items, status: live.status, error, states, changes, lastOffset: live.lastOffset };
    process.stdout.write(`${JSON.stringify(dump)}\n`);
  } else if (command === 'quit') {
    client.close();
    process.exit(0);
  } else if (command !== '') {
    process.stderr.write(`mirror.mjs: unknown command ${JSON.stringify(command)}\n`);
  }
});
input.on('close', () => {
  client.close();
  process.exit(0);
});
