// SwampDragon's own browser client, unmodified, against drakon: `swampdragon.js` from the SwampDragon 0.4.2.2 sdist
// on PyPI (downloaded into .cache/ by this script, never committed) and the SockJS 0.3.4 client it bundles, in a
// page that uses it the way the talk's front end did: `subscribe` to a list's items under a local channel name,
// `getSingle` the list, `getList` its items, `update` an item. Two pages stay live with each other and with a
// native WebSocket client; then the same with the pages' xhr-streaming blocked (a proxy that buffers responses), so
// that SockJS falls back to xhr-polling.
//
// Needs DRAKON_BIN (the drakon binary), Debian's Chromium, `npm ci` here, and `python3 -m pip` (for the download).

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { CHROMIUM, HERE, Session, check, importPackages, log, runMain, until, withTimeout } from './lib.mjs';

const [{ chromium }, { default: WebSocket }] = await importPackages('playwright-core', 'ws');

const DRAKON_BIN = process.env.DRAKON_BIN || path.join(HERE, '..', '..', 'target', 'debug', 'drakon');
const ARTIFACTS = process.env.E2E_ARTIFACTS || path.join(HERE, 'artifacts', 'swampdragon');
const CACHE = path.join(HERE, '.cache');
const SDIST = 'SwampDragon-0.4.2.2';
const LIVE_MS = 2000;

/** swampdragon.js from the sdist, downloaded once. */
function swampdragonJs() {
  const cached = path.join(CACHE, 'swampdragon-0.4.2.2.js');
  if (fs.existsSync(cached)) return fs.readFileSync(cached, 'utf8');
  fs.mkdirSync(CACHE, { recursive: true });
  log('downloading SwampDragon 0.4.2.2 from PyPI');
  execFileSync('python3', ['-m', 'pip', 'download', 'swampdragon==0.4.2.2', '--no-deps', '--no-binary', ':all:',
    '--quiet', '-d', CACHE], { stdio: 'inherit' });
  const zip = path.join(CACHE, `${SDIST}.zip`);
  check(fs.existsSync(zip), `pip did not leave ${zip}`);
  const inner = `${SDIST}/swampdragon/static/swampdragon/js/dist/swampdragon.js`;
  const text = execFileSync('python3', ['-c',
    'import sys, zipfile; sys.stdout.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode("utf-8"))', zip, inner],
  { maxBuffer: 16 << 20 }).toString('utf8');
  check(text.includes('SockJS'), 'the sdist\'s swampdragon.js should bundle the SockJS client');
  fs.writeFileSync(cached, text);
  return text;
}

// The talk's page, reduced to what it did with the client: the list's name, its items, ticking one.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>SwampDragon front end</title>
<script src="/settings.js"></script>
<script src="/swampdragon.js"></script>
<h1 id="list">…</h1>
<ul id="items"></ul>
<script>
  var LIST = Number(location.hash.slice(1));
  window.items = {};
  window.events = [];
  function render() {
    var ul = document.getElementById('items');
    ul.innerHTML = '';
    Object.keys(window.items).sort().forEach(function (id) {
      var li = document.createElement('li');
      li.setAttribute('data-id', id);
      li.setAttribute('data-done', String(window.items[id].done));
      li.textContent = window.items[id].text;
      ul.appendChild(li);
    });
  }
  swampdragon.onChannelMessage(function (channels, message) {
    if (!channels || channels.indexOf('local-items') < 0) return;
    window.events.push(message.action);
    var row = message.data;
    if (message.action === 'deleted') delete window.items[row.id];
    else window.items[row.id] = Object.assign(window.items[row.id] || {}, row);
    render();
  });
  swampdragon.ready(function () {
    swampdragon.subscribe('todo-item', 'local-items', {todo_list__id: LIST}, function () {
      window.subscribed = true;
    }, function (context, data) { window.failed = JSON.stringify(data); });
    swampdragon.getSingle('todo-list', {id: LIST}, function (context, data) {
      document.getElementById('list').textContent = data.name;
    });
    swampdragon.getList('todo-item', {todo_list__id: LIST}, function (context, data) {
      data.forEach(function (row) { window.items[row.id] = row; });
      render();
    });
  });
  window.tick = function (id, done) {
    swampdragon.update('todo-item', {id: id, done: done}, function () {}, function (context, data) {
      window.failed = JSON.stringify(data);
    });
  };
</script>
`;

const session = new Session({ artifacts: ARTIFACTS });
const { step, shot, newPage } = session;
let tmp = null;
let server = null;

function startDrakon(dir) {
  return new Promise((resolve, reject) => {
    const child = spawn(DRAKON_BIN, ['serve', '--config', path.join(dir, 'drakon.toml'), '--bind', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const listening = /drakon listening on (http:\/\/\S+)/.exec(out);
      if (listening) resolve({ child, base: listening[1].replace(/\/$/, '') });
    });
    child.stderr.on('data', (chunk) => { out += chunk; });
    child.once('exit', (code) => reject(new Error(`drakon exited (${code}) before it was ready:\n${out}`)));
  });
}

/** A native WebSocket client: the "admin" writing from elsewhere. */
async function nativeClient(base) {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/data/websocket`);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  let n = 0;
  const replies = new Map();
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data));
    if (frame.context) replies.get(frame.context.client_callback_name)?.(frame);
  });
  const call = (route, verb, args) => new Promise((resolve) => {
    const callbackname = `cb_${++n}`;
    replies.set(callbackname, resolve);
    ws.send(JSON.stringify({ route, verb, args, callbackname }));
  });
  return { ws, call };
}

const doneOf = (page, id) => page.locator(`li[data-id="${id}"]`).getAttribute('data-done', { timeout: 200 }).catch(() => null);

async function run() {
  check(fs.existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM}; install it with: apt-get install -y chromium`);
  session.clearArtifacts();
  const js = swampdragonJs();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drakon-swampdragon-'));
  const example = fs.readFileSync(path.join(HERE, '..', '..', 'examples', 'todo', 'drakon.toml'), 'utf8');
  fs.writeFileSync(path.join(tmp, 'drakon.toml'), example.replace(/^database = .*$/m, 'database = "todo.db"'));
  fs.mkdirSync(path.join(tmp, 'public'));
  fs.writeFileSync(path.join(tmp, 'public', 'swampdragon.js'), js);
  fs.writeFileSync(path.join(tmp, 'public', 'index.html'), PAGE);
  server = await startDrakon(tmp);
  log(`drakon at ${server.base}`);
  await session.launch(chromium);
  const admin = await nativeClient(server.base);
  const list = (await admin.call('todo-list', 'create', { name: 'Groceries' })).data.id;
  const milk = (await admin.call('todo-item', 'create', { text: 'milk', todo_list: list })).data.id;
  const eggs = (await admin.call('todo-item', 'create', { text: 'eggs', todo_list: list })).data.id;

  for (const [variant, blockStreaming] of [['xhr-streaming', false], ['xhr-polling (streaming blocked)', true]]) {
    const pages = [];
    await step(`${variant}: two SwampDragon pages load the list and its items`, async () => {
      for (const label of ['one', 'two']) {
        const page = await newPage(`${label} (${variant})`, { viewport: { width: 800, height: 500 } });
        page.sockjsRequests = [];
        page.on('request', (request) => {
          const transport = /\/data\/[^/]+\/[^/]+\/([a-z_]+)$/.exec(new URL(request.url()).pathname);
          if (transport) page.sockjsRequests.push(transport[1]);
        });
        if (blockStreaming) await page.route('**/xhr_streaming', (route) => route.abort());
        await page.goto(`${server.base}/index.html#${list}`);
        pages.push(page);
      }
      for (const page of pages) {
        await until(`${page.label}: the list's name`, async () => (await page.textContent('#list')) === 'Groceries', 10000);
        await until(`${page.label}: both items`, async () => (await page.locator('li').count()) === 2, 10000);
        await until(`${page.label}: subscribed`, () => page.evaluate(() => window.subscribed === true), 10000);
      }
      await shot(pages[0]);
    });

    await step(`${variant}: an update in one page shows in the other, and the admin's in both`, async () => {
      const [one, two] = pages;
      await one.evaluate((id) => window.tick(id, true), milk);
      await until('page two: milk done', async () => (await doneOf(two, milk)) === 'true', LIVE_MS);
      await admin.call('todo-item', 'update', { id: eggs, done: true });
      await until('both pages: eggs done', async () =>
        (await doneOf(one, eggs)) === 'true' && (await doneOf(two, eggs)) === 'true', LIVE_MS);
      await admin.call('todo-item', 'update', { id: milk, done: false });
      await admin.call('todo-item', 'update', { id: eggs, done: false });
      await until('both pages: undone', async () =>
        (await doneOf(one, milk)) === 'false' && (await doneOf(two, eggs)) === 'false', LIVE_MS);
      for (const page of pages) {
        const failed = await page.evaluate(() => window.failed);
        check(!failed, `${page.label}: a call failed: ${failed}`);
        const used = [...new Set(page.sockjsRequests)].sort().join(', ');
        const wanted = blockStreaming ? 'xhr' : 'xhr_streaming';
        check(page.sockjsRequests.includes(wanted), `${page.label}: SockJS should receive over ${wanted}; it used ${used}`);
        log(`  ${page.label}: SockJS requests: ${used}`);
      }
      await shot(two);
      for (const page of pages) await session.closePage(page);
    });
  }
  admin.ws.close();
}

await runMain({
  session,
  runMs: 120_000,
  body: run,
  cleanup: async () => {
    if (server) {
      server.child.kill('SIGTERM');
      await withTimeout(new Promise((r) => server.child.once('exit', r)), 5000, 'drakon stopping').catch(() => {
        server.child.kill('SIGKILL');
      });
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  },
});
