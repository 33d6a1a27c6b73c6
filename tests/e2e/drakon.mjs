// The drakon side of the browser tests: a `drakon serve` process of this build, and a native-protocol client from
// Node for changes made next to the browsers.

import { spawn } from 'node:child_process';
import path from 'node:path';

import { ROOT, withTimeout } from './lib.mjs';

/** The binary under test: DRAKON_BIN, else the debug build. */
export const DRAKON_BIN = path.resolve(process.env.DRAKON_BIN || path.join(ROOT, 'target', 'debug', 'drakon'));

/** A `drakon serve` child process, started once its two stdout lines (address and admin link) are out. */
export class Server {
  static async start(config, bind, label) {
    const server = new Server(label);
    server.child = spawn(DRAKON_BIN, ['serve', '--config', config, '--bind', bind], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DRAKON_LOG: process.env.DRAKON_LOG || 'info', NO_COLOR: '1' },
    });
    server.exited = new Promise((resolve) => server.child.once('exit', (code, signal) => resolve({ code, signal })));
    liveServers.add(server);
    server.exited.then(() => liveServers.delete(server));
    const ready = new Promise((resolve, reject) => {
      let stdout = '';
      server.child.stdout.on('data', (chunk) => {
        stdout += chunk;
        server.output.push(...String(chunk).split('\n').filter(Boolean).map((l) => `${label} stdout: ${l}`));
        const listening = /drakon listening on (http:\/\/\S+)/.exec(stdout);
        const admin = /^admin: (\S+)/m.exec(stdout);
        if (listening && admin) {
          server.base = listening[1].replace(/\/$/, '');
          server.adminLink = admin[1];
          resolve();
        }
      });
      server.child.once('error', (err) => reject(new Error(`cannot run ${DRAKON_BIN}: ${err.message}`)));
      server.exited.then(({ code, signal }) =>
        reject(new Error(`drakon serve exited (code ${code}, signal ${signal}) before it was ready:\n${server.tail()}`)));
    });
    server.child.stderr.on('data', (chunk) => {
      server.output.push(...String(chunk).split('\n').filter(Boolean).map((l) => `${label} stderr: ${l}`));
      if (server.output.length > 400) server.output.splice(0, server.output.length - 400);
    });
    await withTimeout(ready, 15000, `drakon serve (${label}) did not print its address and admin link`);
    server.port = Number(new URL(server.base).port);
    server.ws = `ws://${new URL(server.base).host}/data/websocket`;
    return server;
  }

  constructor(label) {
    this.label = label;
    this.output = [];
  }

  tail(lines = 30) {
    return this.output.slice(-lines).join('\n').replace(/\x1b\[[0-9;]*m/g, '');
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. Resolves to how it exited. */
  async stop(graceMs = 5000) {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }
}

/** Every server started and not yet exited, for a script to kill on its way out. */
export const liveServers = new Set();

// ---- the native protocol from Node, for changes made while the browsers are away ---------------------------------

export class Wire {
  static async open(url) {
    const { default: WebSocket } = await import('ws');
    const wire = new Wire();
    wire.socket = new WebSocket(url);
    wire.socket.on('message', (raw) => {
      const frame = JSON.parse(String(raw));
      const name = frame.context && frame.context.client_callback_name;
      const waiter = name && wire.waiting.get(name);
      if (!waiter) return;
      wire.waiting.delete(name);
      if (frame.context.state === 'success') waiter.resolve(frame.data);
      else waiter.reject(Object.assign(new Error(`${frame.data.code}: ${frame.data.message}`), frame.data));
    });
    await withTimeout(
      new Promise((resolve, reject) => {
        wire.socket.once('open', resolve);
        wire.socket.once('error', reject);
      }),
      5000,
      `WebSocket to ${url} did not open`,
    );
    return wire;
  }

  constructor() {
    this.waiting = new Map();
    this.next = 0;
  }

  call(route, verb, args = {}) {
    const callbackname = `e2e_${++this.next}`;
    const reply = new Promise((resolve, reject) => this.waiting.set(callbackname, { resolve, reject }));
    this.socket.send(JSON.stringify({ route, verb, args, callbackname }));
    return withTimeout(reply, 5000, `no reply to ${route} ${verb}`);
  }

  close() {
    this.socket.close();
  }
}
