// End-to-end test of the todo demo on three drakon nodes (PostgreSQL + Redis, as in docs/deployment.md), in
// Debian's Chromium: three pages, each on a different node, used like a person would.
//
// Page 1 creates a list and items: they appear in pages 2 and 3 within a second. Page 3 ticks, edits and deletes:
// pages 1 and 2 follow within a second. Then node 3 (the relay, which publishes the change log to Redis) is killed
// with SIGKILL: page 3 says it is offline and keeps what it knew, while pages 1 and 2 stay live, the first change
// waiting for another node to take over the relay. Page 3 reaches its node through a small TCP proxy standing in
// for the guide's nginx; once the others have changed things, the proxy fails over to node 1 and page 3's client
// reconnects there by itself, resumes, and shows everything it missed; then all three pages are live again.
//
// The nodes, PostgreSQL and Redis belong to crates/drakon/tests/browser_nodes.rs, which runs this script; the
// script only drives the browsers and the proxy. To kill node 3 it prints the line `E2E-CONTROL kill node 3` and
// waits for the line `node 3 killed` on its stdin (run by hand, kill the node yourself and type that line).
//
// Environment: DRAKON_NODES (required: the base URLs of nodes 1, 2 and 3, comma-separated, e.g.
// http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003, on an empty database), E2E_ARTIFACTS
// (screenshots, NN-step-page.png; default tests/e2e/artifacts/nodes), DRAKON_JS (optional client build served as
// /drakon.js). Needs `apt-get install -y chromium` and `npm ci` in tests/e2e; the helpers are in lib.mjs.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';

import {
  CHROMIUM, HERE, LIVE_MS, Session, UI_MS, check, expectChecked, expectGone, expectHidden, expectText,
  expectVisible, importPackages, itemId, log, probe, runMain, until, withTimeout,
} from './lib.mjs';

const [{ chromium }] = await importPackages('playwright-core');

const NODES = (process.env.DRAKON_NODES || '').split(',').map((url) => url.trim().replace(/\/$/, '')).filter(Boolean);
const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS || path.join(HERE, 'artifacts', 'nodes'));
const DRAKON_JS = process.env.DRAKON_JS ? path.resolve(process.env.DRAKON_JS) : null;

/** The first change after the relay died: another node takes the relay lock within about a second. */
const HANDOVER_MS = 5000;
/** From the proxy failing over to page 3 showing current data, across the client's reconnect backoff (≤ 10 s). */
const RECONNECT_MS = 20000;
/** The whole run; it normally takes 15 to 25 seconds. */
const RUN_MS = 120000;

const session = new Session({ artifacts: ARTIFACTS, drakonJs: DRAKON_JS });
const { step, shot, newPage } = session;

// ---- the proxy in front of page 3 -------------------------------------------------------------------------------

/**
 * A TCP proxy standing in for the deployment guide's nginx: each connection goes to the first of `upstreams` that
 * accepts it (nginx's `proxy_next_upstream error`) and is cut as soon as either side closes; `connections` counts
 * what each upstream took. `upstreams` can be changed while it runs.
 */
class Proxy {
  static async start(upstreams) {
    const proxy = new Proxy(upstreams);
    proxy.server = net.createServer((client) => proxy.accept(client));
    await new Promise((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(0, '127.0.0.1', resolve);
    });
    proxy.base = `http://127.0.0.1:${proxy.server.address().port}`;
    return proxy;
  }

  constructor(upstreams) {
    this.upstreams = upstreams;
    this.connections = new Map();
    this.sockets = new Set();
  }

  accept(client, tried = 0) {
    if (tried === 0) {
      this.track(client);
      client.on('error', () => {});
    }
    const upstream = this.upstreams[tried];
    if (upstream === undefined) {
      client.destroy();
      return;
    }
    const { hostname, port } = new URL(upstream);
    const server = net.connect(Number(port), hostname);
    this.track(server);
    server.once('error', () => {
      server.destroy();
      if (!server.linked) this.accept(client, tried + 1);
    });
    server.once('connect', () => {
      if (client.destroyed) {
        server.destroy();
        return;
      }
      server.linked = true;
      this.connections.set(upstream, (this.connections.get(upstream) || 0) + 1);
      server.on('error', () => client.destroy());
      server.once('close', () => client.destroy());
      client.once('close', () => server.destroy());
      client.pipe(server);
      server.pipe(client);
    });
  }

  track(socket) {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  async close() {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

let proxy = null;

// ---- asking browser_nodes.rs to kill a node ---------------------------------------------------------------------

const stdinLines = [];
let stdinWaiter = null;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  stdinLines.push(line.trim());
  if (stdinWaiter) stdinWaiter();
});

async function control(request, reply, timeout = 15000) {
  console.log(`E2E-CONTROL ${request}`);
  await withTimeout(new Promise((resolve) => {
    stdinWaiter = () => {
      if (stdinLines.includes(reply)) resolve();
    };
    stdinWaiter();
  }), timeout, `no "${reply}" on stdin after asking to ${request}`);
  stdinWaiter = null;
}

// ---- the run ----------------------------------------------------------------------------------------------------

/** Whether page 3's items are drawn as stale (the app does this while its subscription is reconnecting). */
const itemsStale = (page) => page.evaluate(() => document.getElementById('items').classList.contains('stale'));

async function run() {
  check(fs.existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM}; install it with: apt-get install -y chromium`);
  check(NODES.length === 3, `DRAKON_NODES should name three nodes' base URLs, comma-separated; it is ${JSON.stringify(process.env.DRAKON_NODES)}`);
  check(!DRAKON_JS || fs.existsSync(DRAKON_JS), `DRAKON_JS names a missing file: ${DRAKON_JS}`);
  const [node1, node2, node3] = NODES;
  session.clearArtifacts();

  proxy = await Proxy.start([node3]);
  log(`nodes: 1 ${node1}, 2 ${node2}, 3 ${node3} (page 3 through the proxy at ${proxy.base})`);

  await session.launch(chromium);
  const one = await newPage('page 1 (node 1)', { viewport: { width: 1180, height: 760 } });
  const two = await newPage('page 2 (node 2)', { viewport: { width: 960, height: 700 } });
  const three = await newPage('page 3 (node 3, phone)', {
    viewport: { width: 390, height: 760 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const pages = [one, two, three];
  const ids = {};
  let groceries;

  await step('three pages, each on its own node', async () => {
    await Promise.all([one.goto(`${node1}/`), two.goto(`${node2}/`), three.goto(`${proxy.base}/`)]);
    for (const page of pages) {
      const client = await page.evaluate(() => typeof drakon === 'object' && typeof drakon.connect === 'function');
      check(client, `${page.label}: /drakon.js defines no \`drakon.connect\`: the binary holds a placeholder client; `
        + 'run `npm run build` in clients/js, then `cargo build -p drakon` (or point DRAKON_JS at a client build)');
    }
    await expectHidden(pages, 'connection-banner', UI_MS);
    for (const page of pages) {
      await until(`${page.label}: the sidebar should say there are no lists yet`, async () =>
        (await page.locator('#lists-status').textContent()).includes('No lists yet'), UI_MS);
    }
    check(proxy.connections.get(node3) > 0 && proxy.connections.size === 1,
      `page 3 should have reached node 3 only, the proxy counted ${JSON.stringify([...proxy.connections])}`);
  }, three);

  await step('create a list in page 1', async () => {
    await one.getByTestId('new-list-name').fill('Groceries');
    await one.getByTestId('new-list-submit').click();
    await until('page 1: the new list should go in the URL hash', () => /#list=\d+$/.test(one.url()), UI_MS);
    groceries = Number(/#list=(\d+)$/.exec(one.url())[1]);
    await expectText([one], 'current-list-name', 'Groceries', UI_MS);
    const start = Date.now();
    await expectText([two, three], `list-link-${groceries}`, 'Groceries', LIVE_MS);
    log(`   the new list reached nodes 2 and 3's pages in ${Date.now() - start} ms`);
    // The others open it from their sidebars.
    await two.getByTestId(`list-link-${groceries}`).click();
    await three.getByTestId(`list-link-${groceries}`).click();
    await expectText([two, three], 'current-list-name', 'Groceries', UI_MS);
    await expectVisible([one, two, three], 'empty-state', UI_MS);
    await shot(two);
  });

  await step('add items in page 1', async () => {
    for (const text of ['milk', 'eggs', 'bread']) {
      await one.getByTestId('new-item-text').fill(text);
      await one.getByTestId('new-item-submit').click();
      ids[text] = await itemId(one, text, UI_MS);
      const start = Date.now();
      await expectText([two, three], `item-text-${ids[text]}`, text, LIVE_MS);
      log(`   ${text} reached pages 2 and 3 in ${Date.now() - start} ms`);
    }
    await expectHidden(pages, 'empty-state');
    await shot(two);
    await shot(three);
  });

  await step('tick an item in page 3', async () => {
    await three.getByTestId(`item-done-${ids.milk}`).check();
    const start = Date.now();
    await expectChecked([one, two], `item-done-${ids.milk}`, true, LIVE_MS);
    log(`   the tick reached pages 1 and 2 in ${Date.now() - start} ms`);
  }, one);

  await step('edit an item in page 3', async () => {
    await three.getByTestId(`item-edit-${ids.eggs}`).click();
    await three.getByTestId(`item-edit-input-${ids.eggs}`).fill('a dozen eggs');
    await three.getByTestId(`item-edit-input-${ids.eggs}`).press('Enter');
    const start = Date.now();
    await expectText([one, two], `item-text-${ids.eggs}`, 'a dozen eggs', LIVE_MS);
    log(`   the edit reached pages 1 and 2 in ${Date.now() - start} ms`);
    await expectHidden([three], `item-edit-input-${ids.eggs}`);
  }, two);

  await step('delete an item in page 3', async () => {
    await three.getByTestId(`item-delete-${ids.bread}`).click();
    const start = Date.now();
    await expectGone([one, two], `item-${ids.bread}`, LIVE_MS);
    log(`   the delete reached pages 1 and 2 in ${Date.now() - start} ms`);
    await expectGone([three], `item-${ids.bread}`);
    await shot(one);
    await shot(three);
  });

  await step('node 3 dies', async () => {
    await control('kill node 3', 'node 3 killed');
    await expectVisible([three], 'connection-banner', UI_MS);
    await until('page 3: its items should be drawn as stale', () => itemsStale(three), UI_MS);
    // What page 3 knew stays on screen; the other two pages never lose their connection.
    await expectText([three], `item-text-${ids.eggs}`, 'a dozen eggs');
    await expectChecked([three], `item-done-${ids.milk}`, true);
    await expectHidden([one, two], 'connection-banner');
  }, three);

  await step('pages 1 and 2 stay live without node 3', async () => {
    // Every node delivers what the relay publishes, its own writes included: this is the relay's handover.
    await two.getByTestId('new-item-text').fill('coffee');
    const start = Date.now();
    await two.getByTestId('new-item-submit').click();
    ids.coffee = await itemId(two, 'coffee', HANDOVER_MS);
    await expectText([one], `item-text-${ids.coffee}`, 'coffee', HANDOVER_MS);
    log(`   the first change after node 3 died was in pages 1 and 2 ${Date.now() - start} ms after the click`);
    await one.getByTestId(`item-done-${ids.eggs}`).check();
    const tick = Date.now();
    await expectChecked([two], `item-done-${ids.eggs}`, true, LIVE_MS);
    log(`   then a tick in page 1 reached page 2 in ${Date.now() - tick} ms`);
    // Page 3 is still away and shows none of it.
    await expectVisible([three], 'connection-banner');
    check(!(await probe(three, `item-${ids.coffee}`)).exists, 'page 3: offline, it should not show coffee yet');
    await expectChecked([three], `item-done-${ids.eggs}`, false);
    await shot(one);
    await shot(three);
  });

  await step('page 3 resumes on node 1', async () => {
    // As nginx would from the start: node 3 refuses, so the proxy takes node 1.
    proxy.upstreams = [node3, node1];
    const start = Date.now();
    await expectHidden([three], 'connection-banner', RECONNECT_MS);
    await expectText([three], `item-text-${ids.coffee}`, 'coffee', UI_MS);
    await expectChecked([three], `item-done-${ids.eggs}`, true, UI_MS);
    await until('page 3: its items should no longer be drawn as stale', async () => !(await itemsStale(three)), UI_MS);
    log(`   page 3 was back with what it missed ${Date.now() - start} ms after the proxy failed over`);
    check(proxy.connections.get(node1) > 0, `page 3 should now be on node 1; the proxy counted ${JSON.stringify([...proxy.connections])}`);
    await expectText([three], `item-text-${ids.eggs}`, 'a dozen eggs');
    await expectChecked([three], `item-done-${ids.milk}`, true);
    await expectGone([three], `item-${ids.bread}`);
    await expectText([three], 'current-list-name', 'Groceries');
  }, three);

  await step('live again on the two nodes left', async () => {
    await three.getByTestId('new-item-text').fill('jam');
    await three.getByTestId('new-item-submit').click();
    ids.jam = await itemId(three, 'jam', UI_MS);
    let start = Date.now();
    await expectText([one, two], `item-text-${ids.jam}`, 'jam', LIVE_MS);
    log(`   jam, added in page 3, reached pages 1 and 2 in ${Date.now() - start} ms`);
    await two.getByTestId(`item-delete-${ids.coffee}`).click();
    start = Date.now();
    await expectGone([one, three], `item-${ids.coffee}`, LIVE_MS);
    log(`   a delete in page 2 reached pages 1 and 3 in ${Date.now() - start} ms`);
    for (const page of pages) await shot(page);
  });
}

// ---- start, fail loudly, always clean up ------------------------------------------------------------------------

await runMain({
  session,
  runMs: RUN_MS,
  body: run,
  cleanup: async () => {
    if (proxy) await withTimeout(proxy.close(), 2000, 'closing the proxy').catch(() => {});
  },
  report: () => {
    if (proxy) console.error(`  proxy connections per node: ${JSON.stringify([...proxy.connections])}`);
  },
});
