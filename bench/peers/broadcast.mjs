// The baseline drakon-bench compares drakon with: the smallest broadcast server on Node's `ws` package that speaks
// enough of drakon's native protocol for the same load generator to drive it.
//
// - WebSocket at /data/websocket. A frame {"route","verb":"subscribe","args":{"name"},"callbackname"} adds the
//   socket to channel `name` and gets a success reply shaped like drakon's; any other request gets an error reply.
// - POST /api/publish with {"channel","data"} (and the api key, as drakon wants it): the frame
//   {"channel","data"} is encoded once and handed to ws.send for every subscriber, the usual broadcast path.
// - Prints "baseline listening on http://ADDR" once listening; binds 127.0.0.1:0 unless --bind says otherwise.
//
// It has no store, no filters, no queue bounds and no heartbeats: it is the floor a broadcast costs in Node.

import http from 'node:http';
import { WebSocketServer } from 'ws';

const args = process.argv.slice(2);
const bindAt = args.indexOf('--bind');
const [host, port] = (bindAt >= 0 ? args[bindAt + 1] : '127.0.0.1:0').split(':');
const apiKey = process.env.DRAKON_API_KEY || '';

/** channel name → Set of sockets */
const channels = new Map();

/** Answers with a JSON body and its length, so that keep-alive clients need not decode chunks. */
function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/api/publish') {
    answer(res, 404, '{"code":"not_found"}');
    return;
  }
  const auth = req.headers.authorization || '';
  if (apiKey === '' || auth !== `Bearer ${apiKey}`) {
    answer(res, 403, '{"code":"permission_denied"}');
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      answer(res, 400, '{"code":"bad_json"}');
      return;
    }
    const frame = JSON.stringify({ channel: body.channel, data: body.data ?? null });
    const subs = channels.get(body.channel);
    if (subs) {
      for (const ws of subs) ws.send(frame);
    }
    answer(res, 200, '{"ok":true}');
  });
});

const wss = new WebSocketServer({ server, path: '/data/websocket', perMessageDeflate: false });

function reply(ws, callback, verb, state, data, channelData) {
  const out = { data, context: { client_callback_name: callback ?? null, verb, state } };
  if (channelData) out.channel_data = channelData;
  ws.send(JSON.stringify(out));
}

wss.on('connection', (ws) => {
  const mine = new Set();
  ws.on('message', (raw, isBinary) => {
    let req;
    try {
      req = JSON.parse(isBinary ? '' : raw.toString('utf8'));
    } catch {
      reply(ws, null, '', 'error', { code: 'bad_json', message: 'frame is not valid JSON' });
      return;
    }
    const callback = req.callbackname == null ? null : String(req.callbackname);
    const verb = req.verb ?? '';
    const name = req.args && req.args.name;
    if (verb !== 'subscribe' || typeof name !== 'string' || name === '') {
      reply(ws, callback, verb, 'error', { code: 'unknown_verb', message: 'the baseline only knows subscribe' });
      return;
    }
    let subs = channels.get(name);
    if (!subs) {
      subs = new Set();
      channels.set(name, subs);
    }
    subs.add(ws);
    mine.add(name);
    reply(ws, callback, verb, 'success', 'subscribed', {
      local_channel: req.args.channel ?? name,
      remote_channels: [name],
      action: 'subscribe',
    });
  });
  ws.on('close', () => {
    for (const name of mine) {
      const subs = channels.get(name);
      if (subs) {
        subs.delete(ws);
        if (subs.size === 0) channels.delete(name);
      }
    }
  });
  ws.on('error', () => {});
});

server.listen(Number(port), host, () => {
  const a = server.address();
  console.log(`baseline listening on http://${a.address}:${a.port}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
