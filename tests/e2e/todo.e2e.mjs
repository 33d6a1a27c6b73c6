// End-to-end test of the todo demo (examples/todo/public) and the admin page, in Debian's Chromium.
//
// The talk's demo, checked: three independent browsers on one list and a fourth logged into the admin. Edits in the
// admin reach every browser within a second; a tick, an inline edit or a delete in one browser reaches the others
// and the admin; moving an item to another list through the admin moves it between browsers, and deleting the open
// list says so; the admin refuses requests without its secret and shows validation errors by their fields; a call
// the server refuses shows the server's message; and after the server stops and restarts on the same port, the
// browsers show that they are offline, then everything that changed while they were away.
//
// Each step saves screenshots as NN-step-browser.png; a failure stops the run at once, saves NN-step-FAIL-*.png of
// every page, prints the server's last log lines and exits 1. The server and Chromium are always stopped.
//
//   node tests/e2e/todo.e2e.mjs
//
// Environment: DRAKON_BIN (default <repo>/target/debug/drakon), E2E_ARTIFACTS (screenshots, one or more per step;
// default tests/e2e/artifacts), DRAKON_JS (optional: a client build the browsers get as /drakon.js instead of the copy
// compiled into the binary, to try client changes without rebuilding drakon). Needs `apt-get install -y chromium` and
// `npm ci` in tests/e2e. The helpers it shares with nodes.e2e.mjs are in lib.mjs.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { DRAKON_BIN, Server, Wire, liveServers } from './drakon.mjs';
import {
  CHROMIUM, HERE, LIVE_MS, ROOT, Session, UI_MS, check, expectChecked, expectHidden, expectText, expectVisible,
  importPackages, itemId, log, onEach, probe, runMain, until,
} from './lib.mjs';

const [{ chromium }] = await importPackages('playwright-core');

const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS || path.join(HERE, 'artifacts'));
const DRAKON_JS = process.env.DRAKON_JS ? path.resolve(process.env.DRAKON_JS) : null;

/** From the server being back to every page showing current data, across the client's reconnect backoff. */
const RECONNECT_MS = 20000;
/** The whole run; it normally takes 10 to 15 seconds. */
const RUN_MS = 90000;

const session = new Session({ artifacts: ARTIFACTS, drakonJs: DRAKON_JS });
const { step, shot, newPage } = session;

// ---- the admin page, through its test ids -----------------------------------------------------------------------

async function setField(page, name, value) {
  const field = page.getByTestId(`field-${name}`);
  const kind = await field.evaluate((el) => `${el.tagName.toLowerCase()}:${el.type || ''}`);
  if (kind.startsWith('select')) await field.selectOption(String(value));
  else if (kind === 'input:checkbox') await field.setChecked(Boolean(value));
  else await field.fill(String(value));
}

async function fieldValue(page, name) {
  return page.getByTestId(`field-${name}`).evaluate((el) => (el.type === 'checkbox' ? el.checked : el.value));
}

async function adminLogin(admin, link) {
  // An admin page left open across a restart finds its secret gone and navigates itself to the login form; a
  // blank page first keeps that navigation from racing the login.
  await admin.goto('about:blank').catch(() => {});
  // The login answers with the admin page's address; a navigation that lands there before `goto` settles
  // "interrupts" it. Where the page ends up is what counts, and is checked below.
  const response = await admin.goto(link).catch((e) => {
    if (/interrupted by another navigation to .*\/admin/.test(String(e))) return null;
    throw e;
  });
  check(!response || response.ok(), `the admin page should load after logging in, got ${response && response.status()}`);
  await until('admin: the login link should lead to /admin', () => new URL(admin.url()).pathname === '/admin', UI_MS);
  await expectVisible([admin], 'connection-state', UI_MS);
  await expectVisible([admin], 'model-link-todo_item', UI_MS);
}

async function adminOpenModel(admin, model) {
  await admin.getByTestId(`model-link-${model}`).click();
  await expectVisible([admin], 'rows', UI_MS);
}

/** Opens row `id` of the shown model for editing, sets `fields` and saves; `adminFormClosed` waits for the result. */
async function adminEdit(admin, id, fields) {
  await admin.getByTestId(`edit-${id}`).click();
  await expectVisible([admin], 'save', UI_MS);
  for (const [name, value] of Object.entries(fields)) await setField(admin, name, value);
  await admin.getByTestId('save').click();
}

async function adminFormClosed(admin) {
  await until('admin: the form should close after saving', async () => {
    const [save, formError] = await Promise.all([probe(admin, 'save'), probe(admin, 'form-error')]);
    if (formError.visible && formError.text) throw new Error(`the admin form shows an error: ${formError.text}`);
    return !save.visible;
  }, UI_MS);
}

// ---- the run ----------------------------------------------------------------------------------------------------

let tmp = null;

async function run() {
  check(fs.existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM}; install it with: apt-get install -y chromium`);
  check(fs.existsSync(DRAKON_BIN), `no drakon binary at ${DRAKON_BIN}; build it with: cargo build -p drakon (or set DRAKON_BIN)`);
  check(!DRAKON_JS || fs.existsSync(DRAKON_JS), `DRAKON_JS names a missing file: ${DRAKON_JS}`);
  session.clearArtifacts();

  // A private copy of the example, so its relative database and static paths land in the temp dir.
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drakon-e2e-'));
  const appDir = path.join(tmp, 'todo');
  fs.cpSync(path.join(ROOT, 'examples', 'todo'), appDir, {
    recursive: true,
    filter: (src) => !/\.db(-wal|-shm|-journal)?$/.test(src),
  });
  const config = path.join(appDir, 'drakon.toml');

  let server = await Server.start(config, '127.0.0.1:0', 'server');
  log(`drakon at ${server.base}`);

  await session.launch(chromium);

  // Three browsers as in the talk (the third with a phone-sized screen), and the admin.
  const one = await newPage('browser 1', { viewport: { width: 1180, height: 760 } });
  const two = await newPage('browser 2', { viewport: { width: 960, height: 700 } });
  const three = await newPage('browser 3 (phone)', {
    viewport: { width: 390, height: 760 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const admin = await newPage('admin', { viewport: { width: 1180, height: 760 } });
  admin.on('dialog', (dialog) => dialog.accept()); // "really delete?" confirmations
  const browsers = [one, two, three];

  let groceries;
  let hardware;
  const ids = {};

  await step('start with no list', async () => {
    await one.goto(`${server.base}/`);
    const client = await one.evaluate(() => typeof drakon === 'object' && typeof drakon.connect === 'function');
    check(client, '/drakon.js defines no `drakon.connect`: the binary holds a placeholder client; run `npm run build` '
      + 'in clients/js, then `cargo build -p drakon` (or point DRAKON_JS at a client build)');
    await expectHidden([one], 'connection-banner', UI_MS);
    await until('browser 1: the sidebar should say there are no lists yet', async () =>
      (await one.locator('#lists-status').textContent()).includes('No lists yet'), UI_MS);
  }, one);

  await step('create a list', async () => {
    await one.getByTestId('new-list-name').fill('Groceries');
    await one.getByTestId('new-list-submit').click();
    await until('browser 1: the new list should go in the URL hash', () => /#list=\d+$/.test(one.url()), UI_MS);
    groceries = Number(/#list=(\d+)$/.exec(one.url())[1]);
    await expectText([one], 'current-list-name', 'Groceries', UI_MS);
    await expectVisible([one], 'empty-state', UI_MS);
    await expectVisible([one], `list-link-${groceries}`);
  }, one);

  await step('open the same list in two more browsers', async () => {
    await Promise.all([two.goto(`${server.base}/#list=${groceries}`), three.goto(`${server.base}/#list=${groceries}`)]);
    await expectText([two, three], 'current-list-name', 'Groceries', UI_MS);
    await expectVisible([two, three], 'empty-state', UI_MS);
    await expectHidden([two, three], 'connection-banner', UI_MS);
  }, three);

  await step('add items in each browser', async () => {
    const adds = [[one, 'milk'], [two, 'eggs'], [three, 'bread']];
    for (const [page, text] of adds) {
      await page.getByTestId('new-item-text').fill(text);
      await page.getByTestId('new-item-submit').click();
      ids[text] = await itemId(page, text, UI_MS);
      await expectText(browsers, `item-text-${ids[text]}`, text);
    }
    await expectHidden(browsers, 'empty-state');
    // Nothing to add: the input says so, and nothing is sent.
    await two.getByTestId('new-item-submit').click();
    await until('browser 2: submitting an empty item should mark the input', () =>
      two.getByTestId('new-item-text').evaluate((el) => el.getAttribute('aria-invalid') === 'true'), LIVE_MS);
    const input = await probe(one, 'new-item-text');
    check(input.value === '', `browser 1: the new-item input should be cleared after adding, has ${JSON.stringify(input.value)}`);
    // The list is in the URL, so a reload opens it again.
    await two.reload();
    await expectText([two], 'current-list-name', 'Groceries', UI_MS);
    await expectText([two], `item-text-${ids.bread}`, 'bread', UI_MS);
    await shot(one);
    await shot(three);
  });

  await step('log in to the admin', async () => {
    await adminLogin(admin, server.adminLink);
    await adminOpenModel(admin, 'todo_item');
    await expectVisible([admin], `row-${ids.milk}`, UI_MS);
    // The sidebar lists who is connected: the three browsers (anonymous) and the admin itself.
    await expectText([admin], 'connected-anonymous', 'anonymous · 3 connections', UI_MS);
    await expectText([admin], 'connected-admins', 'admin secret · 1 connection', UI_MS);
  }, admin);

  await step('edit an item in the admin', async () => {
    await adminEdit(admin, ids.milk, { text: 'oat milk' });
    const start = Date.now();
    await expectText(browsers, `item-text-${ids.milk}`, 'oat milk', LIVE_MS);
    log(`   the admin's edit reached all three browsers in ${Date.now() - start} ms`);
    await adminFormClosed(admin);
    await shot(two);
    await shot(admin);
  });

  await step('tick an item in one browser', async () => {
    await two.getByTestId(`item-done-${ids.milk}`).check();
    const start = Date.now();
    await expectChecked([one, three], `item-done-${ids.milk}`, true, LIVE_MS);
    log(`   the tick reached the other two browsers in ${Date.now() - start} ms`);
    await admin.reload();
    await expectVisible([admin], 'connection-state', UI_MS);
    if (!(await probe(admin, `row-${ids.milk}`)).visible) await adminOpenModel(admin, 'todo_item');
    await admin.getByTestId(`edit-${ids.milk}`).click();
    const done = await fieldValue(admin, 'done');
    check(done === true || done === 'true', `admin: after a reload, item ${ids.milk} should be done, its done field is ${JSON.stringify(done)}`);
    await shot(one);
    await shot(admin);
    await admin.getByTestId('cancel').click();
  });

  await step('edit an item inline', async () => {
    // Double-click, type, Escape: nothing changes anywhere.
    await three.getByTestId(`item-text-${ids.eggs}`).dblclick();
    await expectVisible([three], `item-edit-input-${ids.eggs}`, UI_MS);
    await three.getByTestId(`item-edit-input-${ids.eggs}`).fill('never saved');
    await three.getByTestId(`item-edit-input-${ids.eggs}`).press('Escape');
    await expectHidden([three], `item-edit-input-${ids.eggs}`);
    await expectText(browsers, `item-text-${ids.eggs}`, 'eggs');
    // The edit button, type, Enter: saved for everyone.
    await one.getByTestId(`item-edit-${ids.eggs}`).click();
    await one.getByTestId(`item-edit-input-${ids.eggs}`).fill('a dozen eggs');
    await shot(one, 'editing');
    await one.getByTestId(`item-edit-input-${ids.eggs}`).press('Enter');
    await expectText(browsers, `item-text-${ids.eggs}`, 'a dozen eggs', LIVE_MS);
    await expectHidden([one], `item-edit-input-${ids.eggs}`);
    await shot(three);
  });

  await step('delete an item in one browser', async () => {
    await one.getByTestId(`item-delete-${ids.bread}`).click();
    await onEach(browsers, (page) =>
      until(`${page.label}: item ${ids.bread} should be gone`, async () => !(await probe(page, `item-${ids.bread}`)).exists, LIVE_MS));
    await admin.reload();
    await expectVisible([admin], 'connection-state', UI_MS);
    if (!(await probe(admin, 'rows')).visible) await adminOpenModel(admin, 'todo_item');
    await expectVisible([admin], `row-${ids.milk}`, UI_MS);
    check(!(await probe(admin, `row-${ids.bread}`)).exists, `admin: row ${ids.bread} should be gone after a delete`);
    await shot(two);
  });

  await step('move an item to another list in the admin', async () => {
    await three.getByTestId('new-list-name').fill('Hardware');
    await three.getByTestId('new-list-submit').click();
    await until('browser 3: the new list should go in the URL hash', () =>
      /#list=(\d+)$/.test(three.url()) && Number(/#list=(\d+)$/.exec(three.url())[1]) !== groceries, UI_MS);
    hardware = Number(/#list=(\d+)$/.exec(three.url())[1]);
    await expectText([three], 'current-list-name', 'Hardware', UI_MS);
    await expectVisible([three], 'empty-state', UI_MS);
    await expectText([one, two], `list-link-${hardware}`, 'Hardware', LIVE_MS);

    await one.getByTestId('new-item-text').fill('nails');
    await one.getByTestId('new-item-submit').click();
    ids.nails = await itemId(one, 'nails', UI_MS);
    await expectText([two], `item-text-${ids.nails}`, 'nails');

    await admin.reload();
    await expectVisible([admin], 'connection-state', UI_MS);
    if (!(await probe(admin, 'rows')).visible) await adminOpenModel(admin, 'todo_item');
    await expectVisible([admin], `row-${ids.nails}`, UI_MS);
    await adminEdit(admin, ids.nails, { todo_list: hardware });
    const start = Date.now();
    await Promise.all([
      onEach([one, two], (page) =>
        until(`${page.label}: item ${ids.nails} should leave Groceries`, async () => !(await probe(page, `item-${ids.nails}`)).exists, LIVE_MS)),
      expectText([three], `item-text-${ids.nails}`, 'nails', LIVE_MS),
    ]);
    log(`   the move reached all three browsers in ${Date.now() - start} ms`);
    await expectHidden([three], 'empty-state');
    await adminFormClosed(admin);
    await shot(three);
    await shot(one);
  });

  await step('delete the open list in the admin', async () => {
    await adminOpenModel(admin, 'todo_list');
    await admin.getByTestId(`delete-${hardware}`).click();
    await expectVisible([three], 'list-gone', LIVE_MS);
    await until('browser 3: it should say which list was deleted', async () =>
      (await probe(three, 'list-gone')).text.includes('Hardware'), LIVE_MS);
    await onEach([one, two], (page) =>
      until(`${page.label}: the deleted list should leave the sidebar`, async () => !(await probe(page, `list-link-${hardware}`)).exists, LIVE_MS));
    await shot(three);
    await three.getByTestId(`list-link-${groceries}`).click();
    await expectText([three], 'current-list-name', 'Groceries', UI_MS);
    await expectText([three], `item-text-${ids.eggs}`, 'a dozen eggs', UI_MS);
  });

  await step('the admin needs its secret', async () => {
    const plain = await fetch(`${server.base}/admin`, { redirect: 'manual' });
    const body = await plain.text();
    check(plain.status === 401, `GET /admin without the cookie should be 401, got ${plain.status}`);
    check(/<form/i.test(body), 'GET /admin without the cookie should show the login form');
    const wrong = await fetch(`${server.base}/admin/login?token=not-the-secret`, { redirect: 'manual' });
    check(wrong.status === 401, `a login link with the wrong token should be 401, got ${wrong.status}`);
    check(!wrong.headers.get('set-cookie'), 'a login link with the wrong token should set no cookie');

    // A page without the cookie, e.g. the todo page, cannot use the admin routes, neither raw nor through the client.
    const raw = await one.evaluate((url) => new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      const timer = setTimeout(() => reject(new Error('no reply from the server')), 4000);
      socket.onopen = () => socket.send(JSON.stringify({
        route: 'admin:todo_item', verb: 'update', args: { id: 1, text: 'hijacked' }, callbackname: 'e2e_admin',
      }));
      socket.onmessage = (message) => {
        const frame = JSON.parse(message.data);
        if (frame.context && frame.context.client_callback_name === 'e2e_admin') {
          clearTimeout(timer);
          socket.close();
          resolve(frame);
        }
      };
      socket.onerror = () => reject(new Error('the WebSocket failed'));
    }), server.ws);
    check(raw.context.state === 'error' && raw.data.code === 'unknown_route',
      `admin:todo_item from a non-admin page should fail with unknown_route, got ${JSON.stringify(raw)}`);
    const viaClient = await one.evaluate(async (url) => {
      const client = drakon.connect(url);
      try {
        await client.call('admin:todo_item', 'get_list', {});
        return { ok: true };
      } catch (err) {
        return { ok: false, isDrakonError: err instanceof drakon.DrakonError, code: err.code, message: err.message };
      } finally {
        if (typeof client.close === 'function') client.close();
      }
    }, server.ws);
    check(!viaClient.ok && viaClient.isDrakonError && viaClient.code === 'unknown_route',
      `client.call('admin:todo_item', …) from a non-admin page should reject with a DrakonError unknown_route, got ${JSON.stringify(viaClient)}`);
    await expectText(browsers, `item-text-${ids.milk}`, 'oat milk');

    const outsider = await newPage('no cookie', { viewport: { width: 900, height: 600 } });
    const response = await outsider.goto(`${server.base}/admin`);
    check(response.status() === 401, `a browser without the cookie should get 401 at /admin, got ${response.status()}`);
    await shot(outsider);
    await session.closePage(outsider);
  });

  await step('the admin shows validation errors by their field', async () => {
    await adminOpenModel(admin, 'todo_item');
    await admin.getByTestId('new-row').click();
    await setField(admin, 'text', 'ghost');
    await setField(admin, 'todo_list', 9999);
    await admin.getByTestId('save').click();
    await until('admin: error-todo_list should explain the bad reference', async () => {
      const p = await probe(admin, 'error-todo_list');
      return p.visible && p.text.length > 0 ? true : p;
    }, UI_MS);
    await shot(admin);
    await admin.getByTestId('cancel').click();
    await expectHidden([admin], 'save', UI_MS);
    check((await one.getByText('ghost', { exact: true }).count()) === 0, 'browser 1: a rejected row should not appear');
  });

  await step('a failed call shows the server\'s message', async () => {
    // A fourth browser whose socket is tampered with: its "refused" item names a list that does not exist, so the
    // server (not the page) refuses it, and the page has to show what the server said.
    const tampered = await newPage('browser 4 (tampered)', { viewport: { width: 960, height: 640 } });
    await tampered.routeWebSocket(/\/data\/websocket$/, (socket) => {
      const upstream = socket.connectToServer();
      socket.onMessage((message) => {
        const frame = JSON.parse(String(message));
        if (frame.route === 'todo-item' && frame.verb === 'create' && frame.args && frame.args.text === 'refused') {
          frame.args.todo_list = 999999;
        }
        upstream.send(JSON.stringify(frame));
      });
    });
    await tampered.goto(`${server.base}/#list=${groceries}`);
    await expectText([tampered], `item-text-${ids.eggs}`, 'a dozen eggs', UI_MS);
    await tampered.getByTestId('new-item-text').fill('refused');
    await tampered.getByTestId('new-item-submit').click();
    await until('browser 4: error-banner should show the server\'s message', async () => {
      const p = await probe(tampered, 'error-banner');
      return p.visible && p.text.includes('todo_list refers to a todo_list that does not exist') ? true : p;
    }, UI_MS);
    const input = await probe(tampered, 'new-item-text');
    check(input.value === 'refused', 'browser 4: a refused item\'s text should stay in the input to try again');
    await shot(tampered);
    await tampered.locator('#error-dismiss').click();
    await expectHidden([tampered], 'error-banner');
    check((await one.getByText('refused', { exact: true }).count()) === 0, 'browser 1: a refused item should not appear');
    await session.closePage(tampered);
  });

  await step('the server stops', async () => {
    const exit = await server.stop();
    check(exit.code === 0, `drakon should exit 0 on SIGTERM, got ${JSON.stringify(exit)}`);
    await expectVisible(browsers, 'connection-banner', 5000);
    // What the pages knew stays on screen while they are offline.
    await expectText(browsers, `item-text-${ids.milk}`, 'oat milk');
    await shot(one);
    await shot(three);
  });

  await step('changes made while the browsers are away', async () => {
    // Another drakon on the same database but another port: the browsers, still trying the old port, cannot see it.
    const side = await Server.start(config, '127.0.0.1:0', 'side server');
    const wire = await Wire.open(side.ws);
    ids.butter = (await wire.call('todo-item', 'create', { text: 'butter', todo_list: groceries })).id;
    await wire.call('todo-item', 'update', { id: ids.milk, text: 'soy milk', done: false });
    wire.close();
    const exit = await side.stop();
    check(exit.code === 0, `the side server should exit 0 on SIGTERM, got ${JSON.stringify(exit)}`);
    await expectVisible(browsers, 'connection-banner');
    await expectText(browsers, `item-text-${ids.milk}`, 'oat milk');
  }, two);

  await step('the server restarts on the same port', async () => {
    server = await Server.start(config, `127.0.0.1:${server.port}`, 'server (restarted)');
    // One more change the moment it is back, racing the browsers' reconnect.
    const wire = await Wire.open(server.ws);
    ids.jam = (await wire.call('todo-item', 'create', { text: 'jam', todo_list: groceries })).id;
    wire.close();
    const start = Date.now();
    await expectHidden(browsers, 'connection-banner', RECONNECT_MS);
    await expectText(browsers, `item-text-${ids.butter}`, 'butter', UI_MS);
    await expectText(browsers, `item-text-${ids.jam}`, 'jam', UI_MS);
    await expectText(browsers, `item-text-${ids.milk}`, 'soy milk', UI_MS);
    await expectChecked(browsers, `item-done-${ids.milk}`, false, UI_MS);
    log(`   all three browsers were back with current data ${Date.now() - start} ms after the restart`);
    await expectText(browsers, 'current-list-name', 'Groceries');

    // The secret is new for this run, so the admin logs in again with the new link.
    await adminLogin(admin, server.adminLink);
    await adminOpenModel(admin, 'todo_item');
    await expectVisible([admin], `row-${ids.butter}`, UI_MS);
    await shot(one);
    await shot(three);
    await shot(admin);
  });

  await step('live again after the restart', async () => {
    await three.getByTestId(`item-done-${ids.butter}`).check();
    await expectChecked([one, two], `item-done-${ids.butter}`, true, LIVE_MS);
    await two.getByTestId('new-item-text').fill('coffee');
    await two.getByTestId('new-item-submit').click();
    ids.coffee = await itemId(two, 'coffee', UI_MS);
    await expectText([one, three], `item-text-${ids.coffee}`, 'coffee', LIVE_MS);
    await shot(one);
    await shot(three);
  });

  await step('a browser whose WebSockets are blocked moves to SockJS and stays live', async () => {
    // Every WebSocket this page opens fails at once, as behind a proxy that refuses upgrades.
    const blocked = await newPage('browser 5 (no WebSocket)', { viewport: { width: 960, height: 640 } });
    await blocked.addInitScript(() => {
      window.WebSocket = class {
        constructor() {
          setTimeout(() => {
            this.onerror?.({});
            this.onclose?.({ code: 1006, reason: 'blocked' });
          }, 5);
        }
        send() {}
        close() {}
      };
    });
    await blocked.goto(`${server.base}/#list=${groceries}`);
    await expectText([blocked], `item-text-${ids.coffee}`, 'coffee', RECONNECT_MS);
    await expectHidden([blocked], 'connection-banner', UI_MS);
    // Live both ways, over xhr-polling.
    await one.getByTestId(`item-done-${ids.coffee}`).check();
    await expectChecked([blocked], `item-done-${ids.coffee}`, true, LIVE_MS);
    await blocked.getByTestId('new-item-text').fill('tea');
    await blocked.getByTestId('new-item-submit').click();
    ids.tea = await itemId(blocked, 'tea', UI_MS);
    await expectText([one, two, three], `item-text-${ids.tea}`, 'tea', LIVE_MS);
    await shot(blocked);
    await session.closePage(blocked);
  });

  await runUsers(appDir);
}

// ---- the demo with users ----------------------------------------------------------------------------------------

/** Every list name the page has ever shown, kept across reloads in sessionStorage by an init script. */
function recordListNames() {
  const seen = new Set(JSON.parse(sessionStorage.getItem('seenLists') || '[]'));
  const record = () => {
    for (const a of document.querySelectorAll('.list-link')) seen.add(a.textContent);
    sessionStorage.setItem('seenLists', JSON.stringify([...seen]));
  };
  new MutationObserver(record).observe(document, { subtree: true, childList: true, characterData: true });
}

const seenLists = (page) => page.evaluate(() => JSON.parse(sessionStorage.getItem('seenLists') || '[]'));

const listLink = (page, name) => page.locator('.list-link', { hasText: name });

async function logIn(page, name, password) {
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-password').fill(password);
  await Promise.all([page.waitForNavigation({ timeout: UI_MS }), page.getByTestId('login-submit').click()]);
  await until(`${page.label}: the page should say who is signed in`, async () =>
    (await page.getByTestId('account-who').textContent()).includes(`Signed in as ${name}`), UI_MS);
  await expectHidden([page], 'connection-banner', UI_MS);
}

async function createList(page, name, visibility) {
  await page.getByTestId('new-list-name').fill(name);
  await page.getByTestId('new-list-visibility').selectOption(visibility);
  await page.getByTestId('new-list-submit').click();
  await until(`${page.label}: "${name}" should open`, async () =>
    (await page.getByTestId('current-list-name').textContent()) === name, UI_MS);
  return Number(/#list=(\d+)$/.exec(page.url())[1]);
}

/**
 * The same page served by `drakon-users.toml`: Alice and Bob log in through the page's form, Alice keeps a private
 * list, shares one and publishes one. Bob sees the shared and public lists appear live, never the private one (a
 * recorder in his page keeps every list name it ever showed); they work on the shared list together; a visitor sees
 * only the public list; and Alice, logged out, is a visitor too.
 */
async function runUsers(appDir) {
  const server = await Server.start(path.join(appDir, 'drakon-users.toml'), '127.0.0.1:0', 'users server');
  log(`drakon with users at ${server.base}`);
  const alice = await newPage('alice', { viewport: { width: 1180, height: 760 } });
  const bob = await newPage('bob', { viewport: { width: 1180, height: 760 } });
  const visitor = await newPage('visitor', { viewport: { width: 960, height: 700 } });
  for (const page of [alice, bob, visitor]) await page.addInitScript(recordListNames);
  let shared;

  await step('users: a visitor sees a login box and no lists', async () => {
    await onEach([alice, bob, visitor], (page) => page.goto(`${server.base}/`));
    await expectVisible([alice, bob, visitor], 'login-form', UI_MS);
    await until('visitor: the sidebar should say there are no lists yet', async () =>
      (await visitor.locator('#lists-status').textContent()).includes('No lists yet'), UI_MS);
  }, visitor);

  await step('users: alice and bob log in', async () => {
    await logIn(alice, 'alice', 'alice-demo-pass');
    await logIn(bob, 'bob', 'bob-demo-pass');
    await expectHidden([alice, bob], 'login-form', UI_MS);
    await expectVisible([alice, bob], 'new-list-visibility', UI_MS);
  }, alice);

  await step('users: alice keeps a private list, shares one and publishes one', async () => {
    const secret = await createList(alice, 'Alice private plans', 'private');
    await alice.getByTestId('new-item-text').fill('birthday present for bob');
    await alice.getByTestId('new-item-submit').click();
    await itemId(alice, 'birthday present for bob', UI_MS);
    shared = await createList(alice, 'Shared groceries', 'shared');
    await createList(alice, 'Public notice board', 'public');
    await listLink(bob, 'Shared groceries').waitFor({ timeout: LIVE_MS });
    await listLink(bob, 'Public notice board').waitFor({ timeout: LIVE_MS });
    await listLink(visitor, 'Public notice board').waitFor({ timeout: LIVE_MS });
    check(await listLink(alice, 'Alice private plans').count() === 1, 'alice should see her private list');
    check(await bob.getByTestId(`list-link-${secret}`).count() === 0, 'bob must not see the private list');
    await shot(alice);
    await shot(bob);
    await shot(visitor);
  });

  await step('users: the shared list is live for both', async () => {
    await onEach([alice, bob], (page) => page.goto(`${server.base}/#list=${shared}`));
    await expectText([alice, bob], 'current-list-name', 'Shared groceries', UI_MS);
    await bob.getByTestId('new-item-text').fill('oat milk');
    await bob.getByTestId('new-item-submit').click();
    const milk = await itemId(bob, 'oat milk', UI_MS);
    await expectText([alice], `item-text-${milk}`, 'oat milk', LIVE_MS);
    await alice.getByTestId(`item-done-${milk}`).check();
    await expectChecked([bob], `item-done-${milk}`, true, LIVE_MS);
    await shot(alice);
    await shot(bob);
  });

  await step('users: presence shows who has the list open and who is editing, and clears when they go', async () => {
    // Alice and Bob both have the shared list open.
    await alice.getByTestId('presence-member-bob').waitFor({ timeout: LIVE_MS });
    await bob.getByTestId('presence-member-alice').waitFor({ timeout: LIVE_MS });
    const milk = await itemId(alice, 'oat milk', UI_MS);
    const editing = alice.getByTestId(`item-editing-${milk}`);
    const shows = async (what, wanted, ms) => {
      const started = Date.now();
      await until(`alice should ${what} within ${ms} ms`, async () =>
        wanted === null ? await editing.isHidden() : (await editing.isVisible()) && (await editing.textContent()) === wanted, ms);
      return Date.now() - started;
    };

    // Bob edits the item in his page and stops: Alice sees it come and go.
    await bob.getByTestId(`item-edit-${milk}`).click();
    log(`  bob is editing: shown after ${await shows('see "bob is editing"', 'bob is editing', 1000)} ms`);
    await shot(alice, 'alice sees bob editing');
    // The admin says who has the list open, in its sidebar and in the list's edit form.
    const admin = await newPage('users-admin', { viewport: { width: 1280, height: 800 } });
    await adminLogin(admin, server.adminLink);
    await adminOpenModel(admin, 'todo_list');
    await expectVisible([admin], `viewing-todo_list-${shared}`, UI_MS);
    await admin.getByTestId(`edit-${shared}`).click();
    await until('admin: the edit form should say alice and bob (editing) have the list open', async () => {
      const note = await probe(admin, 'editor-viewers');
      return note.visible && note.text.includes('alice') && note.text.includes(`bob (editing ${milk})`);
    }, UI_MS);
    await shot(admin);
    await session.closePage(admin);
    await bob.getByTestId(`item-edit-input-${milk}`).press('Escape');
    log(`  bob stopped: cleared after ${await shows('see the editing note go', null, 1000)} ms`);

    // Bob edits in a second tab and closes it: what that tab set goes with it, and Bob (still here in his first
    // tab) stays listed.
    const tab = await newPage('bob-tab', { viewport: { width: 960, height: 700 } });
    await tab.goto(`${server.base}/`);
    await logIn(tab, 'bob', 'bob-demo-pass');
    await tab.goto(`${server.base}/#list=${shared}`);
    await itemId(tab, 'oat milk', UI_MS);
    await tab.getByTestId(`item-edit-${milk}`).click();
    await shows('see bob editing from his second tab', 'bob is editing', 1000);
    await session.closePage(tab);
    log(`  bob's tab closed: cleared after ${await shows('see the editing note go', null, 1000)} ms`);
    check(await alice.getByTestId('presence-member-bob').count() === 1, 'bob still has the list open in his first tab');

    // Bob edits from a browser that is then killed: cleared within the bound.
    const crashing = await session.crashablePage(chromium, 'bob-crash', { viewport: { width: 960, height: 700 } });
    await crashing.goto(`${server.base}/`);
    await logIn(crashing, 'bob', 'bob-demo-pass');
    await crashing.goto(`${server.base}/#list=${shared}`);
    await itemId(crashing, 'oat milk', UI_MS);
    await crashing.getByTestId(`item-edit-${milk}`).click();
    await shows('see bob editing from the browser about to crash', 'bob is editing', 1000);
    crashing.kill();
    log(`  bob's browser killed: cleared after ${await shows('see the editing note go', null, 20000)} ms`);

    // Bob leaves the list in his last page: Alice sees nobody else.
    await bob.goto(`${server.base}/`);
    await until('alice should see bob leave within 1 s', async () =>
      await alice.getByTestId('presence-member-bob').count() === 0, 1000);
    await expectHidden([alice], 'list-presence', UI_MS);
    await shot(alice);
  });

  await step('users: a visitor sees only the public list, and so does alice once logged out', async () => {
    await visitor.reload();
    await listLink(visitor, 'Public notice board').waitFor({ timeout: UI_MS });
    await Promise.all([alice.waitForNavigation({ timeout: UI_MS }), alice.getByTestId('logout').click()]);
    await expectVisible([alice], 'login-form', UI_MS);
    await listLink(alice, 'Public notice board').waitFor({ timeout: UI_MS });
    await until('alice, logged out: her private and shared lists should leave the page', async () =>
      await listLink(alice, 'Alice private plans').count() === 0 && await listLink(alice, 'Shared groceries').count() === 0,
    UI_MS);
    for (const [page, allowed] of [[bob, ['Shared groceries', 'Public notice board']], [visitor, ['Public notice board']]]) {
      const leaked = (await seenLists(page)).filter((name) => !allowed.includes(name));
      check(leaked.length === 0, `${page.label} showed lists it may not read: ${leaked.join(', ')}`);
    }
    await shot(alice);
    await shot(visitor);
  });
  await server.stop();
}

// ---- start, fail loudly, always clean up ------------------------------------------------------------------------

process.on('exit', () => {
  for (const server of liveServers) server.child.kill('SIGKILL');
});

await runMain({
  session,
  runMs: RUN_MS,
  body: run,
  cleanup: async () => {
    for (const server of [...liveServers]) await server.stop(2000).catch(() => {});
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  },
  report: () => {
    for (const server of liveServers) console.error(`  ${server.label} output (last lines):\n${server.tail()}`);
  },
});
