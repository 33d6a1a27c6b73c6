// sockjs-client (npm, unmodified) against drakon's SockJS endpoint at /data, over each HTTP transport drakon offers:
// connect, create a list, subscribe to the lists, and receive the event of a list another client creates.
//
// Usage: node sockjs.e2e.mjs http://127.0.0.1:PORT   (the server runs the todo demo's config)

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const SockJS = require('sockjs-client');
const WebSocket = require('ws');

const base = process.argv[2];
if (!base) {
  console.error('usage: node sockjs.e2e.mjs <http base URL>');
  process.exit(2);
}
const TIMEOUT_MS = 10_000;

/** One SockJS connection: its replies by callback name, and every publication. */
function open(transport) {
  return new Promise((resolve, reject) => {
    const sock = new SockJS(`${base}/data`, null, { transports: [transport], timeout: TIMEOUT_MS });
    const replies = new Map();
    const publications = [];
    const waiting = [];
    sock.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (frame.context) replies.set(frame.context.client_callback_name, frame);
      else if (frame.channel) publications.push(frame);
      for (const w of [...waiting]) w();
    };
    sock.onclose = (event) => reject(new Error(`${transport}: closed ${event.code} ${event.reason}`));
    sock.onopen = () => {
      if (sock.transport !== transport) reject(new Error(`${transport}: opened over ${sock.transport}`));
      const until = (what, test) =>
        new Promise((done, fail) => {
          const timer = setTimeout(() => fail(new Error(`${transport}: no ${what} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
          const check = () => {
            const found = test();
            if (found === undefined) return;
            clearTimeout(timer);
            waiting.splice(waiting.indexOf(check), 1);
            done(found);
          };
          waiting.push(check);
          check();
        });
      let n = 0;
      const call = (route, verb, args) => {
        const callbackname = `cb_${++n}`;
        sock.send(JSON.stringify({ route, verb, args, callbackname }));
        return until(`reply to ${verb}`, () => replies.get(callbackname));
      };
      resolve({ sock, call, until, publications });
    };
  });
}

/** A plain WebSocket client on the native endpoint, to write from elsewhere. */
function writer() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/data/websocket`);
    ws.on('error', reject);
    ws.on('open', () => resolve(ws));
  });
}

function check(ok, message) {
  if (!ok) throw new Error(message);
}

for (const transport of ['xhr-streaming', 'xhr-polling']) {
  const client = await open(transport);
  const created = await client.call('todo-list', 'create', { name: `made over ${transport}` });
  check(created.context.state === 'success', `${transport}: create failed: ${JSON.stringify(created)}`);
  const subscribed = await client.call('todo-list', 'subscribe', { channel: 'lists' });
  check(subscribed.channel_data?.local_channel === 'lists', `${transport}: subscribe: ${JSON.stringify(subscribed)}`);
  const ws = await writer();
  const name = `from elsewhere, for ${transport}`;
  ws.send(JSON.stringify({ route: 'todo-list', verb: 'create', args: { name }, callbackname: 'w' }));
  const event = await client.until('the other client\'s list', () =>
    client.publications.find((p) => p.action === 'created' && p.data.name === name));
  check(typeof event.offset === 'number', `${transport}: the event carries its offset: ${JSON.stringify(event)}`);
  const bad = await client.call('todo-list', 'no_such_verb', {});
  check(bad.context.state === 'error' && bad.data.code === 'unknown_verb', `${transport}: ${JSON.stringify(bad)}`);
  client.sock.onclose = null;
  client.sock.close();
  ws.close();
  console.log(`ok ${transport}: calls, a subscription and a live event`);
}
process.exit(0);
