// SwampDragon's own browser client, unmodified, against drakon: `swampdragon.js` from the SwampDragon 0.4.2.2 sdist
// on PyPI (downloaded into .cache/ by this script, never committed) and the SockJS 0.3.4 client it bundles, in a
// page that uses it the way the talk's front end did: `subscribe` to a list's items under a local channel name,
// `getSingle` the list, `getList` its items, `update` an item. Two pages stay live with each other and with a
// native WebSocket client; then the same with the pages' xhr-streaming blocked (a proxy that buffers responses), so
// that SockJS falls back to xhr-polling.
//
// Needs DRAKON_BIN (the drakon binary), Debian's Chromium, `npm ci` here, and `python3 -m pip` (for the download).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Server, Wire } from './drakon.mjs';
import { CHROMIUM, HERE, Session, check, importPackages, log, runMain, until } from './lib.mjs';

const [{ chromium }] = await importPackages('playwright-core');

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
  server = await Server.start(path.join(tmp, 'drakon.toml'), '127.0.0.1:0', 'server');
  log(`drakon at ${server.base}`);
  await session.launch(chromium);
  // A native WebSocket client: the "admin" writing from elsewhere.
  const admin = await Wire.open(server.ws);
  const list = (await admin.call('todo-list', 'create', { name: 'Groceries' })).id;
  const milk = (await admin.call('todo-item', 'create', { text: 'milk', todo_list: list })).id;
  const eggs = (await admin.call('todo-item', 'create', { text: 'eggs', todo_list: list })).id;

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
  admin.close();
}

await runMain({
  session,
  runMs: 120_000,
  body: run,
  cleanup: async () => {
    if (server) await server.stop(2000).catch(() => {});
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  },
  report: () => {
    if (server) console.error(`  drakon output (last lines):\n${server.tail()}`);
  },
});
