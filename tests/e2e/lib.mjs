// What the browser tests share (todo.e2e.mjs, nodes.e2e.mjs): Debian's Chromium, waiting for what a page shows
// through its data-testid elements, numbered steps with screenshots, and a run that fails loudly and always cleans
// up.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** "Appears within one second". */
export const LIVE_MS = 1000;
/** Page loads, admin round trips and other things that are not the live path. */
export const UI_MS = 5000;

/** Imports the npm packages a script needs, or exits saying how to install them. */
export async function importPackages(...names) {
  try {
    return await Promise.all(names.map((name) => import(name)));
  } catch (err) {
    console.error(`FAIL: cannot load ${names.join(' and ')} (${err.message.split('\n')[0]}); run \`npm ci\` in ${HERE}`);
    process.exit(1);
  }
}

const started = Date.now();
export const log = (message) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${message}`);
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- waiting and looking ----------------------------------------------------------------------------------------

export function withTimeout(promise, ms, message) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${message} (after ${ms} ms)`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls `check` until it returns `true`; fails with `what` and the last thing it returned. Returns the ms taken. */
export async function until(what, check, timeout) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      last = await withTimeout(Promise.resolve(check()), Math.max(timeout, 1000), 'a check hung');
      if (last === true) return Date.now() - start;
    } catch (err) {
      last = `error: ${err.message.split('\n')[0]}`;
    }
    if (Date.now() - start >= timeout) {
      throw new Error(`${what}: not so within ${timeout} ms (last seen: ${JSON.stringify(last)})`);
    }
    await sleep(20);
  }
}

/** What one `data-testid` element looks like right now, without Playwright's auto-waiting. */
export function probe(page, testid) {
  return page.evaluate((id) => {
    const el = document.querySelector(`[data-testid="${CSS.escape(id)}"]`);
    if (!el) return { exists: false, visible: false };
    return {
      exists: true,
      visible: el.checkVisibility({ visibilityProperty: true }),
      text: el.textContent.replace(/\s+/g, ' ').trim(),
      checked: 'checked' in el ? el.checked : null,
      value: 'value' in el ? el.value : null,
    };
  }, testid);
}

/** Runs one expectation on several pages at once. */
export const onEach = (pages, fn) => Promise.all(pages.map((page) => fn(page)));

export const expectText = (pages, testid, text, timeout = LIVE_MS) =>
  onEach(pages, (page) =>
    until(`${page.label}: ${testid} should read ${JSON.stringify(text)}`, async () => {
      const p = await probe(page, testid);
      return p.visible && p.text === text ? true : p;
    }, timeout));

export const expectVisible = (pages, testid, timeout = LIVE_MS) =>
  onEach(pages, (page) =>
    until(`${page.label}: ${testid} should be visible`, async () => (await probe(page, testid)).visible, timeout));

export const expectHidden = (pages, testid, timeout = LIVE_MS) =>
  onEach(pages, (page) =>
    until(`${page.label}: ${testid} should not be visible`, async () => !(await probe(page, testid)).visible, timeout));

export const expectChecked = (pages, testid, checked, timeout = LIVE_MS) =>
  onEach(pages, (page) =>
    until(`${page.label}: ${testid} should be ${checked ? 'ticked' : 'unticked'}`, async () => {
      const p = await probe(page, testid);
      return p.visible && p.checked === checked ? true : p;
    }, timeout));

export const expectGone = (pages, testid, timeout = LIVE_MS) =>
  onEach(pages, (page) =>
    until(`${page.label}: ${testid} should be gone`, async () => !(await probe(page, testid)).exists, timeout));

/** The id of the item whose text is `text` on `page`, once it is there. */
export async function itemId(page, text, timeout = LIVE_MS) {
  let id = null;
  await until(`${page.label}: an item reading ${JSON.stringify(text)} should be listed`, async () => {
    id = await page.evaluate((wanted) => {
      for (const el of document.querySelectorAll('[data-testid^="item-text-"]')) {
        if (el.textContent.trim() === wanted) return Number(el.dataset.testid.slice('item-text-'.length));
      }
      return null;
    }, text);
    return id !== null;
  }, timeout);
  return id;
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

const slug = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

// ---- one run: Chromium, its pages, steps and screenshots ---------------------------------------------------------

/**
 * The browser side of one run. Each step saves screenshots as NN-step-page.png in `artifacts`; `drakonJs`, when
 * set, is a client build the pages get as /drakon.js instead of the copy compiled into the binary. The methods are
 * bound, so `const { step, shot } = session` works.
 */
export class Session {
  constructor({ artifacts, drakonJs = null }) {
    this.artifacts = artifacts;
    this.drakonJs = drakonJs;
    this.browser = null;
    this.pages = [];
    this.pageErrors = [];
    this.stepNumber = 0;
    this.stepName = 'setup';
    this.shotsThisStep = 0;
  }

  /** Creates the artifacts directory and removes the screenshots of an earlier run from it. */
  clearArtifacts = () => {
    fs.mkdirSync(this.artifacts, { recursive: true });
    for (const file of fs.readdirSync(this.artifacts)) if (file.endsWith('.png')) fs.rmSync(path.join(this.artifacts, file));
  };

  launch = async (chromium) => {
    this.browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 20000 });
  };

  /** A page in a browser context of its own (its own cookies and storage), as another person's browser. */
  newPage = (label, options) => this.pageIn(this.browser, label, options);

  /**
   * A page in a Chromium process of its own; its `kill()` ends that process at once (SIGKILL), as a browser that
   * crashes or is killed, which closes nothing politely.
   */
  crashablePage = async (chromium, label, options) => {
    const server = await chromium.launchServer({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 20000 });
    const browser = await chromium.connect(server.wsEndpoint(), { timeout: 20000 });
    const page = await this.pageIn(browser, label, options);
    page.kill = () => {
      this.pages = this.pages.filter((p) => p !== page);
      server.process().kill('SIGKILL');
    };
    return page;
  };

  pageIn = async (browser, label, options) => {
    const context = await browser.newContext(options);
    context.setDefaultTimeout(UI_MS);
    if (this.drakonJs) {
      await context.route('**/drakon.js', (route) =>
        route.fulfill({ contentType: 'text/javascript; charset=utf-8', body: fs.readFileSync(this.drakonJs, 'utf8') }));
    }
    const page = await context.newPage();
    page.label = label;
    page.consoleErrors = [];
    page.on('pageerror', (err) => this.pageErrors.push(`${label}: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') page.consoleErrors.push(msg.text());
    });
    this.pages.push(page);
    return page;
  };

  /** Closes a page from `newPage` and its context. */
  closePage = async (page) => {
    await page.context().close();
    this.pages = this.pages.filter((p) => p !== page);
  };

  shot = async (page, what = page.label) => {
    this.shotsThisStep++;
    const name = `${String(this.stepNumber).padStart(2, '0')}-${slug(this.stepName)}-${slug(what)}.png`;
    await page.screenshot({ path: path.join(this.artifacts, name), timeout: 5000, animations: 'disabled' });
  };

  /** Runs one numbered step; a step that took no screenshot of its own gets one of `defaultShot`. */
  step = async (name, fn, defaultShot) => {
    this.stepNumber++;
    this.stepName = name;
    this.shotsThisStep = 0;
    const start = Date.now();
    await fn();
    check(this.pageErrors.length === 0, `uncaught error in a page: ${this.pageErrors.join(' | ')}`);
    if (this.shotsThisStep === 0 && defaultShot) await this.shot(defaultShot);
    log(`ok ${String(this.stepNumber).padStart(2, '0')} ${name} (${Date.now() - start} ms)`);
  };

  close = async () => {
    if (this.browser) await withTimeout(this.browser.close(), 5000, 'closing Chromium').catch(() => {});
  };
}

/**
 * Runs `body` within `runMs`. A failure, a timeout or an interruption saves NN-step-FAIL-*.png of every page, prints
 * each page's console errors and what `report` adds (servers' last log lines), and exits non-zero; Chromium and
 * then `cleanup` run in every case.
 */
export async function runMain({ session, runMs, body, cleanup = async () => {}, report = () => {} }) {
  const finish = async () => {
    await session.close();
    await cleanup();
  };

  const reportFailure = async (err) => {
    console.error(`\nFAIL in step ${String(session.stepNumber).padStart(2, '0')} "${session.stepName}": ${err.message}`);
    for (const page of session.pages) {
      if (page.isClosed()) continue;
      await session.shot(page, `FAIL ${page.label}`).catch(() => {});
      if (page.consoleErrors.length) console.error(`  ${page.label} console errors:\n    ${page.consoleErrors.slice(-10).join('\n    ')}`);
    }
    report();
    console.error(`  screenshots: ${session.artifacts}`);
  };

  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, async () => {
      console.error(`\ninterrupted by ${signal}`);
      await finish();
      process.exit(130);
    });
  }

  const watchdog = setTimeout(async () => {
    await reportFailure(new Error(`the run took longer than ${runMs / 1000} s`));
    await finish();
    process.exit(1);
  }, runMs);

  let failed = false;
  try {
    await body();
    log(`PASS: ${session.stepNumber} steps; screenshots in ${session.artifacts}`);
  } catch (err) {
    failed = true;
    await reportFailure(err);
  } finally {
    clearTimeout(watchdog);
    await finish();
  }
  process.exit(failed ? 1 : 0);
}
