/* drakon client: built from clients/js by `npm run build`; edit src/, not this file */

// src/errors.ts
var DrakonError = class extends Error {
  constructor(code, message, fields) {
    super(message);
    this.name = "DrakonError";
    this.code = code;
    if (fields !== void 0) this.fields = fields;
  }
};
var CLIENT_CODES = {
  timeout: "timeout",
  unavailable: "unavailable",
  disconnected: "disconnected",
  closed: "closed",
  loginRequired: "login_required",
  badReply: "bad_reply",
  tokenUnavailable: "token_unavailable"
};
function errorFromReply(state, data) {
  if (state === "login_required") {
    return new DrakonError(CLIENT_CODES.loginRequired, "this call needs a logged-in connection");
  }
  if (isObject(data) && typeof data.code === "string") {
    const message = typeof data.message === "string" ? data.message : data.code;
    return new DrakonError(data.code, message, fieldMessages(data.fields));
  }
  return new DrakonError(CLIENT_CODES.badReply, `error reply without a code (state ${JSON.stringify(state)})`);
}
function fieldMessages(fields) {
  if (!isObject(fields)) return void 0;
  const out = {};
  for (const [name, messages] of Object.entries(fields)) {
    out[name] = Array.isArray(messages) ? messages.map(String) : [String(messages)];
  }
  return out;
}
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// src/protocol.ts
var HEARTBEAT = '{"heartbeat":"1"}';
function encodeRequest(route, verb, args, callbackname) {
  return JSON.stringify({ route, verb, args, callbackname });
}
function parseIncoming(text) {
  var _a;
  let frame;
  try {
    frame = JSON.parse(text);
  } catch (e) {
    return { kind: "unknown" };
  }
  if (!isObject(frame)) return { kind: "unknown" };
  if ("heartbeat" in frame && !("context" in frame) && !("channel" in frame)) return { kind: "heartbeat" };
  if (frame.auth === "expiring" && typeof frame.expires === "number") return { kind: "token-expiring", expires: frame.expires };
  if (frame.auth === "signed_in" && isObject(frame.user) && typeof frame.user.id === "string") {
    const roles = Array.isArray(frame.user.roles) ? frame.user.roles.map(String) : [];
    return { kind: "signed-in", user: { id: frame.user.id, roles, info: (_a = frame.user.info) != null ? _a : null } };
  }
  if (isObject(frame.context) && typeof frame.context.state === "string") {
    const reply = { data: frame.data, context: frame.context };
    const cd = frame.channel_data;
    if (isObject(cd) && Array.isArray(cd.remote_channels)) {
      reply.channel_data = {
        local_channel: String(cd.local_channel),
        remote_channels: cd.remote_channels.map(String),
        action: String(cd.action)
      };
    }
    return { kind: "reply", reply };
  }
  if (typeof frame.channel === "string") {
    const publication = { channel: frame.channel, data: frame.data };
    if (typeof frame.action === "string") publication.action = frame.action;
    if (typeof frame.offset === "number") publication.offset = frame.offset;
    return { kind: "publication", publication };
  }
  return { kind: "unknown" };
}

// src/calls.ts
var Calls = class {
  constructor(transport, timeoutMs) {
    this.transport = transport;
    this.timeoutMs = timeoutMs;
    this.pending = /* @__PURE__ */ new Map();
    this.nextId = 0;
    this.sendCount = 0;
    this.closed = false;
  }
  /** Sends (or queues) a request and resolves with its successful reply; rejects with a {@link DrakonError}. */
  request(route, verb, args, options) {
    if (this.closed) return Promise.reject(new DrakonError(CLIENT_CODES.closed, "the client is closed"));
    const open = this.transport.isOpen();
    if (!open && !options.queue) {
      return Promise.reject(new DrakonError(CLIENT_CODES.unavailable, "not connected; try again once the client is open"));
    }
    const callbackname = `cb_${this.nextId++}`;
    const frame = encodeRequest(route, verb, args, callbackname);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(callbackname)) {
          reject(new DrakonError(CLIENT_CODES.timeout, `no reply to ${route}.${verb} within ${this.timeoutMs} ms`));
        }
      }, this.timeoutMs);
      const call = { frame, resolve, reject, timer };
      this.pending.set(callbackname, call);
      if (open) this.send(call);
    });
  }
  /** Settles the call a reply answers; returns false when no pending call matches. */
  handleReply(reply) {
    const name = reply.context.client_callback_name;
    const key = typeof name === "string" ? name : this.oldestSent();
    const call = key === void 0 ? void 0 : this.pending.get(key);
    if (key === void 0 || call === void 0 || call.sent === void 0) return false;
    this.pending.delete(key);
    clearTimeout(call.timer);
    if (reply.context.state === "success") call.resolve(reply);
    else call.reject(errorFromReply(reply.context.state, reply.data));
    return true;
  }
  /** The socket opened: sends the queued calls, oldest first. */
  flush() {
    for (const call of this.pending.values()) {
      if (call.sent === void 0) this.send(call);
    }
  }
  /** The socket was lost: sent calls reject with `disconnected`, queued calls wait for the next connection. */
  disconnected() {
    for (const [key, call] of this.pending) {
      if (call.sent === void 0) continue;
      this.pending.delete(key);
      clearTimeout(call.timer);
      call.reject(new DrakonError(CLIENT_CODES.disconnected, "the connection was lost before the reply; the call may or may not have run"));
    }
    this.sendCount = 0;
  }
  /** The client closed: every pending call rejects with `closed`, and so will every later one. */
  close() {
    this.closed = true;
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.reject(new DrakonError(CLIENT_CODES.closed, "the client was closed before the reply"));
    }
    this.pending.clear();
  }
  send(call) {
    call.sent = this.sendCount++;
    this.transport.send(call.frame);
  }
  /**
   * The server answers a frame it could not read (e.g. `frame_too_large`) without a callback name. It handles a
   * connection's requests one at a time, in order, so such a reply belongs to the oldest sent call still waiting.
   */
  oldestSent() {
    let best;
    for (const [key, call] of this.pending) {
      if (call.sent !== void 0 && (best === void 0 || call.sent < best[1])) best = [key, call.sent];
    }
    return best == null ? void 0 : best[0];
  }
};

// src/host.ts
function startOn(host, route, verb, args, current, succeeded, failed) {
  const router = host.router;
  const ticket = router.begin();
  host.requestReply(route, verb, args, { queue: false }).then(
    (reply) => {
      if (current()) succeeded(ticket, reply);
      else router.abandon(ticket);
    },
    (err) => {
      router.abandon(ticket);
      if (current()) failed(err);
    }
  );
}

// src/held.ts
var Held = class {
  constructor(host, route, closedEarly) {
    this.host = host;
    this.route = route;
    this.closedEarly = closedEarly;
    this.closed = false;
    this.attempt = 0;
    this.settled = false;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {
    });
  }
  /** Called once, when it closes, before `ready` rejects (if it still can). */
  stopped() {
  }
  /** Whether it is started on the connection that is open now. */
  isHeld() {
    return this.heldOn === this.host.generation && this.host.isOpen();
  }
  /** Resolves `ready`, the first time. */
  settle() {
    if (!this.settled) {
      this.settled = true;
      this.resolveReady();
    }
  }
  close() {
    if (this.closed) return Promise.resolve();
    const held = this.isHeld();
    this.stop();
    this.host.router.remove(this);
    this.host.forget(this);
    if (!held) return Promise.resolve();
    const { verb, args } = this.end();
    return this.host.requestReply(this.route, verb, args, { queue: false }).then(
      () => void 0,
      () => void 0
    );
  }
  connected() {
    if (this.closed) return;
    const attempt = ++this.attempt;
    this.heldOn = this.host.generation;
    const { verb, args } = this.start();
    startOn(
      this.host,
      this.route,
      verb,
      args,
      () => attempt === this.attempt,
      (ticket, reply) => this.started(ticket, reply),
      (err) => {
        if (err.code !== CLIENT_CODES.disconnected && !this.settled) {
          this.settled = true;
          this.rejectReady(err);
        }
      }
    );
  }
  disconnected() {
    this.attempt++;
    this.heldOn = void 0;
  }
  shutdown() {
    if (!this.closed) this.stop();
  }
  stop() {
    this.closed = true;
    this.attempt++;
    this.heldOn = void 0;
    this.stopped();
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(new DrakonError(CLIENT_CODES.closed, this.closedEarly));
    }
  }
};

// src/channel.ts
var PlainChannel = class extends Held {
  constructor(host, route, name, handler, local) {
    super(host, route, "the channel was closed before it was subscribed");
    this.handler = handler;
    this.args = name === void 0 ? { channel: local } : { channel: local, name };
  }
  start() {
    return { verb: "subscribe", args: this.args };
  }
  end() {
    return { verb: "unsubscribe", args: this.args };
  }
  deliver(publication) {
    if (this.closed) return;
    try {
      this.handler(publication.data);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
  started(ticket, reply) {
    var _a, _b;
    const buffered = this.host.router.finish(ticket, this, (_b = (_a = reply.channel_data) == null ? void 0 : _a.remote_channels) != null ? _b : []);
    this.settle();
    for (const publication of buffered) this.deliver(publication);
  }
};

// src/limits.ts
var DEFAULTS = {
  reconnect: true,
  /** Short enough that a server restart is barely noticed, long enough to spread a crowd of reconnecting clients. */
  minDelayMs: 250,
  /** Caps the wait for a server that stays down at a delay a person still tolerates. */
  maxDelayMs: 1e4,
  /** A reply slower than this means a stuck connection or server, and the UI should be told. */
  callTimeoutMs: 15e3,
  queueWhileDisconnected: true
};
var STABLE_CONNECTION_MS = 5e3;
var CONNECT_TIMEOUT_MS = 1e4;
var MAX_BACKOFF_EXPONENT = 30;
var WEBSOCKET_FAILURES_BEFORE_FALLBACK = 2;

// src/backoff.ts
function backoffDelay(attempt, minDelayMs, maxDelayMs, random = Math.random) {
  const cap = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(Math.max(attempt, 0), MAX_BACKOFF_EXPONENT));
  return Math.floor(random() * Math.max(cap, 0));
}
var Backoff = class {
  constructor(minDelayMs, maxDelayMs, random = Math.random) {
    this.minDelayMs = minDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.random = random;
    this.attempt = 0;
  }
  /** The delay before the next attempt; each call counts one more failure. */
  next() {
    return backoffDelay(this.attempt++, this.minDelayMs, this.maxDelayMs, this.random);
  }
  /** Starts over after a connection that proved healthy. */
  reset() {
    this.attempt = 0;
  }
};

// src/sockjs.ts
function sockJsBase(wsUrl) {
  return wsUrl.replace(/^ws/i, "http").replace(/\/websocket\/?(\?.*)?$/, "");
}
function randomId() {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
var SockJsPolling = class {
  constructor(url) {
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    this.ended = false;
    this.outgoing = [];
    this.sending = false;
    this.session = `${sockJsBase(url)}/${Math.floor(Math.random() * 1e3)}/${randomId()}`;
    queueMicrotask(() => void this.receive());
  }
  send(text) {
    if (this.ended) throw new Error("the SockJS session is closed");
    this.outgoing.push(text);
    void this.flush();
  }
  close(code = 1e3, reason = "client closed") {
    this.end(code, reason);
  }
  async receive() {
    while (!this.ended) {
      let text;
      try {
        const response = await fetch(`${this.session}/xhr`, { method: "POST", credentials: "include" });
        if (!response.ok) return this.end(1006, `SockJS answered HTTP ${response.status}`);
        text = await response.text();
      } catch (err) {
        return this.end(1006, `SockJS request failed: ${String(err)}`);
      }
      for (const line of text.split("\n")) {
        if (this.ended) return;
        this.frame(line);
      }
    }
  }
  frame(line) {
    var _a, _b;
    const kind = line.charAt(0);
    if (kind === "o") {
      (_a = this.onopen) == null ? void 0 : _a.call(this, {});
    } else if (kind === "a") {
      let messages;
      try {
        messages = JSON.parse(line.slice(1));
      } catch (e) {
        return this.end(1006, "a SockJS frame that is not JSON");
      }
      for (const message of Array.isArray(messages) ? messages : []) {
        if (this.ended) return;
        (_b = this.onmessage) == null ? void 0 : _b.call(this, { data: typeof message === "string" ? message : JSON.stringify(message) });
      }
    } else if (kind === "c") {
      let code = 1006;
      let reason = "closed by the server";
      try {
        const parsed = JSON.parse(line.slice(1));
        [code, reason] = parsed;
      } catch (e) {
      }
      this.end(code, reason);
    }
  }
  /** Sends what waits, one request at a time, in order. */
  async flush() {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.outgoing.length > 0 && !this.ended) {
        const batch = this.outgoing;
        this.outgoing = [];
        const response = await fetch(`${this.session}/xhr_send`, {
          method: "POST",
          credentials: "include",
          headers: { "Content-Type": "text/plain;charset=UTF-8" },
          body: JSON.stringify(batch)
        });
        if (!response.ok) return this.end(1006, `SockJS refused a message: HTTP ${response.status}`);
      }
    } catch (err) {
      this.end(1006, `SockJS send failed: ${String(err)}`);
    } finally {
      this.sending = false;
    }
  }
  end(code, reason) {
    var _a;
    if (this.ended) return;
    this.ended = true;
    (_a = this.onclose) == null ? void 0 : _a.call(this, { code, reason });
  }
};

// src/connection.ts
var Connection = class {
  constructor(settings, hooks) {
    this.settings = settings;
    this.hooks = hooks;
    this.current = "connecting";
    this.urlIndex = 0;
    /** WebSocket attempts in a row that never opened. */
    this.unopened = 0;
    this.backoff = new Backoff(settings.minDelayMs, settings.maxDelayMs, settings.random);
    this.polling = settings.WebSocket === void 0;
  }
  /** Whether the connection has moved to SockJS (no WebSocket here, or none could be opened). */
  get transport() {
    return this.polling ? "sockjs-polling" : "websocket";
  }
  get state() {
    return this.current;
  }
  isOpen() {
    return this.current === "open";
  }
  /** Makes the first attempt. */
  start() {
    this.attempt();
  }
  send(text) {
    var _a;
    try {
      (_a = this.socket) == null ? void 0 : _a.send(text);
    } catch (e) {
    }
  }
  /** Closes for good. */
  close() {
    if (this.current === "closed") return;
    this.clearTimers();
    this.discard(1e3, "client closed");
    this.setState("closed");
  }
  attempt() {
    this.retryTimer = void 0;
    const url = this.settings.urls[this.urlIndex % this.settings.urls.length];
    this.urlIndex = (this.urlIndex + 1) % this.settings.urls.length;
    let socket;
    try {
      const Socket = this.polling || this.settings.WebSocket === void 0 ? SockJsPolling : this.settings.WebSocket;
      socket = new Socket(url);
    } catch (e) {
      this.unopenedAttempt();
      this.failed();
      return;
    }
    this.socket = socket;
    this.connectTimer = setTimeout(() => {
      this.connectTimer = void 0;
      if (this.socket === socket && this.openedAt === void 0) {
        this.discard(1e3, "connect timeout");
        this.unopenedAttempt();
        this.failed();
      }
    }, CONNECT_TIMEOUT_MS);
    socket.onopen = () => {
      if (this.socket !== socket) return;
      clearTimeout(this.connectTimer);
      this.connectTimer = void 0;
      this.openedAt = Date.now();
      this.unopened = 0;
      this.current = "open";
      this.hooks.opened();
      this.hooks.state("open");
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      const text = asText(event.data);
      if (text !== void 0) this.hooks.message(text);
    };
    const gone = () => {
      if (this.socket !== socket) return;
      const wasOpen = this.openedAt !== void 0;
      if (wasOpen && Date.now() - this.openedAt >= STABLE_CONNECTION_MS) this.backoff.reset();
      this.discard(1e3, "socket lost");
      if (wasOpen) this.hooks.lost();
      else this.unopenedAttempt();
      this.failed();
    };
    socket.onclose = gone;
    socket.onerror = gone;
  }
  /** A WebSocket attempt that never opened: after a few in a row, the next attempts go over SockJS. */
  unopenedAttempt() {
    if (this.polling) return;
    this.unopened++;
    if (this.settings.fallback && this.unopened >= WEBSOCKET_FAILURES_BEFORE_FALLBACK) this.polling = true;
  }
  /** After a lost socket or a failed attempt: schedule the next attempt, or stop. */
  failed() {
    if (this.current === "closed") return;
    if (!this.settings.reconnect) {
      this.setState("closed");
      return;
    }
    this.setState("reconnecting");
    this.retryTimer = setTimeout(() => this.attempt(), this.backoff.next());
  }
  /** Forgets the current socket, closing it if asked; its late events are ignored. */
  discard(code, reason) {
    const socket = this.socket;
    this.socket = void 0;
    this.openedAt = void 0;
    clearTimeout(this.connectTimer);
    this.connectTimer = void 0;
    if (socket === void 0) return;
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
    if (code !== void 0) {
      try {
        socket.close(code, reason);
      } catch (e) {
      }
    }
  }
  clearTimers() {
    clearTimeout(this.retryTimer);
    this.retryTimer = void 0;
    clearTimeout(this.connectTimer);
    this.connectTimer = void 0;
  }
  setState(state) {
    if (this.current === state) return;
    this.current = state;
    this.hooks.state(state);
  }
};
function asText(data) {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    return new TextDecoder().decode(data);
  }
  return void 0;
}
function resolveUrl(url) {
  if (/^wss?:\/\//i.test(url)) return url;
  if (/^https?:\/\//i.test(url)) return url.replace(/^http/i, "ws");
  const location = globalThis.location;
  if ((location == null ? void 0 : location.href) !== void 0) {
    const resolved = new URL(url, location.href).href;
    return resolved.replace(/^http/i, "ws");
  }
  return url;
}

// src/emitter.ts
var Emitter = class {
  constructor() {
    this.listeners = {};
  }
  on(event, fn) {
    let set = this.listeners[event];
    if (set === void 0) {
      set = /* @__PURE__ */ new Set();
      this.listeners[event] = set;
    }
    const entry = (...args) => fn(...args);
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }
  /**
   * Calls every listener of `event`. A throwing listener must not leave the client half-way through a state change,
   * so its error is rethrown on a fresh microtask, where the host reports it as uncaught.
   */
  emit(event, ...args) {
    const set = this.listeners[event];
    if (set === void 0) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
  clear() {
    for (const key of Object.keys(this.listeners)) delete this.listeners[key];
  }
};

// src/mirror.ts
function parseOrder(order) {
  const names = order === void 0 ? [] : typeof order === "string" ? [order] : [...order];
  const keys = names.map(
    (name) => name.startsWith("-") ? { field: name.slice(1), descending: true } : { field: name, descending: false }
  );
  if (!keys.some((k) => k.field === "id")) keys.push({ field: "id", descending: false });
  return keys;
}
function compareValues(a, b) {
  var _a, _b;
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 0:
      return 0;
    case 1: {
      const x = Number(a);
      const y = Number(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case 2:
      return compareStrings(a, b);
    default:
      return compareStrings((_a = JSON.stringify(a)) != null ? _a : "", (_b = JSON.stringify(b)) != null ? _b : "");
  }
}
function rank(value) {
  if (value === null || value === void 0) return 0;
  if (typeof value === "number" || typeof value === "boolean") return 1;
  if (typeof value === "string") return 2;
  return 3;
}
function compareStrings(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) < codePointRank(y) ? -1 : 1;
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}
function codePointRank(unit) {
  if (unit >= 55296 && unit <= 57343) return unit + 8192;
  if (unit >= 57344) return unit - 2048;
  return unit;
}
function compareRows(a, b, keys) {
  for (const key of keys) {
    const c = compareValues(a[key.field], b[key.field]);
    if (c !== 0) return key.descending ? -c : c;
  }
  return 0;
}
function sortRows(rows, keys) {
  return [...rows].sort((a, b) => compareRows(a, b, keys));
}
function fromSnapshot(rows, offset, keys) {
  return { rows: sortRows(rows, keys), offset };
}
function applyEvent(state, event, keys) {
  var _a;
  if (event.offset !== void 0 && event.offset <= state.offset) return void 0;
  const data = event.data;
  if (!isObject(data) || typeof data.id !== "number") return void 0;
  const id = data.id;
  const offset = (_a = event.offset) != null ? _a : state.offset;
  const at = state.rows.findIndex((row) => row.id === id);
  switch (event.action) {
    case "created": {
      const row = { ...data };
      return { state: { rows: insertSorted(without(state.rows, at), row, keys), offset }, change: { action: "created", id, row } };
    }
    case "updated": {
      if (at < 0) return void 0;
      const row = { ...state.rows[at], ...data };
      return { state: { rows: insertSorted(without(state.rows, at), row, keys), offset }, change: { action: "updated", id, row } };
    }
    case "deleted": {
      if (at < 0) return void 0;
      const row = state.rows[at];
      return { state: { rows: without(state.rows, at), offset }, change: { action: "deleted", id, row } };
    }
    default:
      return void 0;
  }
}
function without(rows, at) {
  if (at < 0) return [...rows];
  return [...rows.slice(0, at), ...rows.slice(at + 1)];
}
function insertSorted(rows, row, keys) {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = lo + hi >>> 1;
    if (compareRows(rows[mid], row, keys) <= 0) lo = mid + 1;
    else hi = mid;
  }
  rows.splice(lo, 0, row);
  return rows;
}
function resumeMirror(state, data, keys) {
  if (!isObject(data) || typeof data.offset !== "number") {
    return { kind: "unusable", reason: "the resume reply has no offset" };
  }
  const offset = data.offset;
  if (data.reload === true) {
    if (!Array.isArray(data.rows)) return { kind: "unusable", reason: "the reload reply has no rows" };
    return { kind: "reload", state: fromSnapshot(data.rows, offset, keys) };
  }
  if (!Array.isArray(data.events)) return { kind: "unusable", reason: "the resume reply has neither events nor a reload" };
  if (offset < state.offset) {
    return { kind: "unusable", reason: `the server's change log ends at ${offset}, before ${state.offset} which this mirror applied` };
  }
  const steps = [];
  let current = state;
  for (const raw of data.events) {
    if (!isObject(raw) || typeof raw.action !== "string") continue;
    const event = { action: raw.action, data: raw.data };
    if (typeof raw.offset === "number") event.offset = raw.offset;
    const applied = applyEvent(current, event, keys);
    if (applied === void 0) continue;
    steps.push(applied);
    current = applied.state;
  }
  return { kind: "replay", steps, state: { rows: current.rows, offset: Math.max(current.offset, offset) } };
}

// src/live.ts
var NO_OFFSET = -1;
var Live = class {
  constructor(host, route, filter, order, local) {
    this.host = host;
    this.route = route;
    this.filter = filter;
    this.local = local;
    this.mirror = { rows: [], offset: NO_OFFSET };
    this.currentStatus = "loading";
    this.events = new Emitter();
    /** A snapshot was applied, so the mirror is a true picture as of its offset and can resume from there. */
    this.hasMirror = false;
    /** Bumped whenever an in-flight subscribe stops mattering (disconnect, close), so its late outcome is ignored. */
    this.attempt = 0;
    this.settled = false;
    this.keys = parseOrder(order);
    this.subscribeArgs = { ...filter, ...order === void 0 ? {} : { _order: order }, channel: local };
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {
    });
  }
  get items() {
    return this.mirror.rows;
  }
  get status() {
    return this.currentStatus;
  }
  get error() {
    return this.currentError;
  }
  get lastOffset() {
    return this.mirror.offset;
  }
  get(id) {
    if (this.byId === void 0) this.byId = new Map(this.mirror.rows.map((row) => [row.id, row]));
    return this.byId.get(id);
  }
  on(event, fn) {
    return this.events.on(event, fn);
  }
  close() {
    if (this.currentStatus === "closed") return Promise.resolve();
    const subscribed = this.subscribedOn === this.host.generation && this.host.isOpen();
    this.stop();
    this.host.router.remove(this);
    this.host.forget(this);
    if (!subscribed) return Promise.resolve();
    const args = { ...this.filter, channel: this.local };
    return this.host.requestReply(this.route, "unsubscribe", args, { queue: false }).then(
      () => void 0,
      () => void 0
    );
  }
  connected() {
    if (this.currentStatus === "closed") return;
    const resumable = this.hasMirror && Number.isSafeInteger(this.mirror.offset) && this.mirror.offset >= 0;
    this.subscribe(resumable ? this.mirror.offset : void 0);
  }
  /** Sends `subscribe`: resuming after `since` when given, else for a snapshot. */
  subscribe(since) {
    const attempt = ++this.attempt;
    this.subscribedOn = this.host.generation;
    const args = { ...this.subscribeArgs, ...since === void 0 ? { snapshot: true } : { since } };
    startOn(
      this.host,
      this.route,
      "subscribe",
      args,
      () => attempt === this.attempt,
      (ticket, reply) => since === void 0 ? this.subscribed(ticket, reply) : this.resumed(ticket, reply),
      (err) => {
        if (since !== void 0 && !isConnectionLoss(err)) this.subscribe(void 0);
        else this.failed(err);
      }
    );
  }
  disconnected() {
    if (this.currentStatus === "closed") return;
    this.attempt++;
    this.subscribedOn = void 0;
    this.setStatus("reconnecting");
  }
  shutdown() {
    if (this.currentStatus !== "closed") this.stop();
  }
  deliver(publication) {
    var _a;
    if (this.currentStatus === "closed") return;
    const event = { action: (_a = publication.action) != null ? _a : "", data: publication.data, offset: publication.offset };
    const applied = applyEvent(this.mirror, event, this.keys);
    if (applied === void 0) return;
    this.mirror = applied.state;
    this.byId = void 0;
    this.events.emit("change", this.mirror.rows, applied.change);
  }
  subscribed(ticket, reply) {
    var _a, _b;
    const router = this.host.router;
    const data = reply.data;
    if (!isObject(data) || !Array.isArray(data.rows)) {
      router.abandon(ticket);
      this.failed(new DrakonError(CLIENT_CODES.badReply, "the subscribe reply has no snapshot; is the server older than the client?"));
      return;
    }
    const buffered = router.finish(ticket, this, (_b = (_a = reply.channel_data) == null ? void 0 : _a.remote_channels) != null ? _b : []);
    const offset = typeof data.offset === "number" ? data.offset : NO_OFFSET;
    this.reload(fromSnapshot(data.rows, offset, this.keys), buffered);
  }
  /** The reply to a subscribe with `since`: replay the missed events, or take the reload snapshot. */
  resumed(ticket, reply) {
    var _a, _b;
    const router = this.host.router;
    const outcome = resumeMirror(this.mirror, reply.data, this.keys);
    if (outcome.kind === "unusable") {
      router.abandon(ticket);
      this.subscribe(void 0);
      return;
    }
    const buffered = router.finish(ticket, this, (_b = (_a = reply.channel_data) == null ? void 0 : _a.remote_channels) != null ? _b : []);
    if (outcome.kind === "reload") {
      this.reload(outcome.state, buffered);
      return;
    }
    for (const step of outcome.steps) {
      if (this.currentStatus === "closed") return;
      this.mirror = step.state;
      this.byId = void 0;
      this.events.emit("change", this.mirror.rows, step.change);
    }
    if (this.currentStatus === "closed") return;
    this.mirror = outcome.state;
    this.currentError = void 0;
    this.setStatus("live");
    for (const publication of buffered) this.deliver(publication);
  }
  /** Replaces the mirror with a snapshot, then applies the publications that arrived with or after it. */
  reload(state, buffered) {
    this.mirror = state;
    this.hasMirror = true;
    this.byId = void 0;
    this.currentError = void 0;
    this.setStatus("live");
    this.events.emit("change", this.mirror.rows, { action: "reload" });
    for (const publication of buffered) this.deliver(publication);
    if (!this.settled) {
      this.settled = true;
      this.resolveReady();
    }
  }
  failed(err) {
    if (isConnectionLoss(err)) return;
    this.currentError = err;
    this.setStatus("error");
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(err);
    }
  }
  stop() {
    this.attempt++;
    this.subscribedOn = void 0;
    this.setStatus("closed");
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(new DrakonError(CLIENT_CODES.closed, "the live collection was closed before its first snapshot"));
    }
    this.events.clear();
  }
  setStatus(status) {
    if (this.currentStatus === status) return;
    this.currentStatus = status;
    this.events.emit("status", status);
  }
};
function isConnectionLoss(err) {
  return err.code === CLIENT_CODES.disconnected || err.code === CLIENT_CODES.closed;
}

// src/presence.ts
function toMember(value) {
  if (typeof value !== "object" || value === null) return void 0;
  const { id, info, state } = value;
  if (typeof id !== "string") return void 0;
  const object = (v) => typeof v === "object" && v !== null ? v : {};
  return { id, info: object(info), state: object(state) };
}
function list(value) {
  return Array.isArray(value) ? value : [];
}
function sameMember(a, b) {
  return JSON.stringify([a.info, a.state]) === JSON.stringify([b.info, b.state]);
}
var Presence = class extends Held {
  constructor(host, route, idOrName, local, state) {
    super(host, route, "the presence was closed before it joined");
    this.local = local;
    this.current = /* @__PURE__ */ new Map();
    this.total = 0;
    this.isLarge = false;
    this.hasMore = false;
    this.events = new Emitter();
    this.target = typeof idOrName === "number" ? { id: idOrName } : { name: idOrName };
    this.state = state;
  }
  get members() {
    return this.current;
  }
  get count() {
    return this.total;
  }
  get large() {
    return this.isLarge;
  }
  get partial() {
    return this.hasMore;
  }
  on(event, fn) {
    return this.events.on(event, fn);
  }
  set(state) {
    if (this.closed) return Promise.reject(new DrakonError(CLIENT_CODES.closed, "this presence was closed"));
    this.state = state;
    if (!this.isHeld()) return Promise.resolve();
    return this.host.requestReply(this.route, "set_presence", { ...this.target, state }, { queue: false }).then(() => void 0);
  }
  page(after, limit) {
    const args = { ...this.target };
    if (after !== void 0) args.after = after;
    if (limit !== void 0) args.limit = limit;
    return this.host.requestReply(this.route, "get_presence", args, { queue: true }).then((reply) => {
      var _a, _b;
      const data = (_a = reply.data) != null ? _a : {};
      const members = list(data.members).map(toMember).filter((m) => m !== void 0);
      return { members, count: Number((_b = data.count) != null ? _b : members.length), next: typeof data.next === "string" ? data.next : null };
    });
  }
  start() {
    const args = { ...this.target, channel: this.local };
    if (this.state !== void 0) args.state = this.state;
    return { verb: "join_presence", args };
  }
  end() {
    return { verb: "leave_presence", args: { ...this.target, channel: this.local } };
  }
  // Subscriber
  deliver(publication) {
    if (this.closed) return;
    const data = publication.data;
    switch (publication.action) {
      case "member_joined":
      case "member_updated": {
        const member = toMember(data);
        if (member !== void 0) this.put(member);
        break;
      }
      case "member_left": {
        if (typeof (data == null ? void 0 : data.id) === "string") this.drop(data.id);
        break;
      }
      case "presence_batch": {
        if (data === null) return;
        for (const value of [...list(data.joined), ...list(data.updated)]) {
          const member = toMember(value);
          if (member !== void 0) this.put(member, false);
        }
        for (const id of list(data.left)) {
          if (typeof id === "string") this.drop(id, false);
        }
        if (typeof data.count === "number") this.total = data.count;
        if (data.truncated === true) this.hasMore = true;
        this.isLarge = true;
        this.events.emit("change", this.current);
        return;
      }
      default:
        return;
    }
    this.events.emit("change", this.current);
  }
  started(ticket, reply) {
    var _a, _b, _c;
    const buffered = this.host.router.finish(ticket, this, (_b = (_a = reply.channel_data) == null ? void 0 : _a.remote_channels) != null ? _b : []);
    const data = (_c = reply.data) != null ? _c : {};
    const fresh = /* @__PURE__ */ new Map();
    for (const value of list(data.members)) {
      const member = toMember(value);
      if (member !== void 0) fresh.set(member.id, member);
    }
    const before = this.current;
    this.current = fresh;
    this.total = typeof data.count === "number" ? data.count : fresh.size;
    this.isLarge = data.large === true;
    this.hasMore = typeof data.next === "string";
    for (const [id, member] of before) if (!fresh.has(id)) this.events.emit("left", member);
    for (const [id, member] of fresh) {
      const was = before.get(id);
      if (was === void 0) this.events.emit("joined", member);
      else if (!sameMember(was, member)) this.events.emit("updated", member);
    }
    this.settle();
    this.events.emit("change", this.current);
    for (const publication of buffered) this.deliver(publication);
  }
  put(member, count = true) {
    const was = this.current.get(member.id);
    if (was !== void 0 && sameMember(was, member)) return;
    this.current = new Map(this.current).set(member.id, member);
    if (was === void 0) {
      if (count) this.total++;
      this.events.emit("joined", member);
    } else {
      this.events.emit("updated", member);
    }
  }
  drop(id, count = true) {
    const was = this.current.get(id);
    if (was === void 0) return;
    this.current = new Map(this.current);
    this.current.delete(id);
    if (count) this.total = Math.max(0, this.total - 1);
    this.events.emit("left", was);
  }
  stopped() {
    this.events.clear();
  }
};

// src/router.ts
var ChannelRouter = class {
  constructor() {
    this.byRemote = /* @__PURE__ */ new Map();
    this.open = /* @__PURE__ */ new Set();
    this.log = [];
    /** The sequence number of `log[0]`; sequence numbers keep counting across trims. */
    this.logStart = 0;
  }
  /** Call right before sending a subscribe: publications from now on are kept until {@link finish} or {@link abandon}. */
  begin() {
    const ticket = { mark: this.logStart + this.log.length };
    this.open.add(ticket);
    return ticket;
  }
  /**
   * The subscribe succeeded: `subscriber` now receives the publications of `remotes`. Returns those of them that
   * arrived since the request was sent, in order, for the subscriber to apply after its snapshot. Returns nothing
   * for a ticket from before the last {@link reset}.
   */
  finish(ticket, subscriber, remotes) {
    if (!this.open.delete(ticket)) return [];
    for (const remote of remotes) {
      let set = this.byRemote.get(remote);
      if (set === void 0) {
        set = /* @__PURE__ */ new Set();
        this.byRemote.set(remote, set);
      }
      set.add(subscriber);
    }
    const wanted = new Set(remotes);
    const buffered = this.log.slice(Math.max(ticket.mark - this.logStart, 0)).filter((p) => wanted.has(p.channel));
    this.trim();
    return buffered;
  }
  /** The subscribe failed, timed out or is no longer wanted. */
  abandon(ticket) {
    if (this.open.delete(ticket)) this.trim();
  }
  /** Stops delivering to `subscriber`. */
  remove(subscriber) {
    for (const [remote, set] of this.byRemote) {
      if (set.delete(subscriber) && set.size === 0) this.byRemote.delete(remote);
    }
  }
  /** Delivers one publication to its subscribers, and logs it while a subscribe is in flight. */
  dispatch(publication) {
    if (this.open.size > 0) this.log.push(publication);
    const set = this.byRemote.get(publication.channel);
    if (set === void 0) return;
    for (const subscriber of [...set]) subscriber.deliver(publication);
  }
  /** The connection is gone, and with it every server-side subscription: forget them all. */
  reset() {
    this.byRemote.clear();
    this.open.clear();
    this.trim();
  }
  /** How many publications are held back (for tests). */
  get buffered() {
    return this.log.length;
  }
  /** Drops the part of the log that no open ticket can still ask for. */
  trim() {
    let keepFrom = this.logStart + this.log.length;
    for (const ticket of this.open) keepFrom = Math.min(keepFrom, ticket.mark);
    const drop = keepFrom - this.logStart;
    if (drop > 0) {
      this.log = this.log.slice(drop);
      this.logStart = keepFrom;
    }
  }
};

// src/client.ts
var SERVER_ROUTE = "drakon";
var DrakonClient = class {
  constructor(url, options = {}) {
    this.router = new ChannelRouter();
    this.connections = 0;
    this.liveCount = 0;
    this.channelCount = 0;
    this.presenceCount = 0;
    this.subscriptions = /* @__PURE__ */ new Set();
    this.events = new Emitter();
    /** True from a connection's opening until its token is sent: calls wait meanwhile, so none goes out anonymous. */
    this.signingIn = false;
    /**
     * True from a connection's opening until its first frame: a connection the upgrade signed in (a session cookie,
     * the app's own login, `?token=`) hears `signed_in` before anything else, so any other first frame means anonymous.
     */
    this.firstFrame = false;
    var _a, _b, _c, _d, _e, _f, _g;
    const urls = (typeof url === "string" ? [url] : [...url]).map(resolveUrl);
    if (urls.length === 0) throw new TypeError("connect needs at least one URL");
    const own = globalThis.WebSocket;
    const WebSocket = (_a = options.WebSocket) != null ? _a : own;
    if (typeof WebSocket !== "function" && typeof globalThis.fetch !== "function") {
      throw new TypeError("no WebSocket implementation here: pass one as options.WebSocket (in Node, the ws package)");
    }
    this.queueWhileDisconnected = (_b = options.queueWhileDisconnected) != null ? _b : DEFAULTS.queueWhileDisconnected;
    const token = options.token;
    this.getToken = (_c = options.getToken) != null ? _c : token === void 0 ? void 0 : () => token;
    this.calls = new Calls(
      { isOpen: () => this.connection.isOpen() && !this.signingIn, send: (text) => this.connection.send(text) },
      (_d = options.callTimeoutMs) != null ? _d : DEFAULTS.callTimeoutMs
    );
    this.connection = new Connection(
      {
        urls,
        reconnect: (_e = options.reconnect) != null ? _e : DEFAULTS.reconnect,
        minDelayMs: (_f = options.minDelayMs) != null ? _f : DEFAULTS.minDelayMs,
        maxDelayMs: (_g = options.maxDelayMs) != null ? _g : DEFAULTS.maxDelayMs,
        WebSocket: typeof WebSocket === "function" ? WebSocket : void 0,
        // A WebSocket passed in is used as is; the runtime's own may be blocked on the way, and then SockJS helps.
        fallback: options.WebSocket === void 0
      },
      {
        opened: () => this.opened(),
        message: (text) => this.message(text),
        lost: () => this.lost(),
        state: (state) => this.stateChanged(state)
      }
    );
    this.connection.start();
  }
  get state() {
    return this.connection.state;
  }
  get transport() {
    return this.connection.transport;
  }
  get generation() {
    return this.connections;
  }
  get user() {
    return this.currentUser;
  }
  on(event, fn) {
    return this.events.on(event, fn);
  }
  call(route, verb, args) {
    return this.request(route, verb, args).then((reply) => reply.data);
  }
  request(route, verb, args) {
    return this.calls.request(route, verb, args != null ? args : {}, { queue: this.queueWhileDisconnected }).then((reply) => ({ data: reply.data, context: reply.context }));
  }
  live(route, filter, options) {
    const live = new Live(this, route, filter != null ? filter : {}, options == null ? void 0 : options.order, `live_${this.liveCount++}`);
    this.adopt(live);
    return live;
  }
  channel(route, name, handler) {
    const channel = new PlainChannel(this, route, name, handler, `channel_${this.channelCount++}`);
    this.adopt(channel);
    return channel;
  }
  presence(route, idOrName, options) {
    const room = new Presence(this, route, idOrName, `presence_${this.presenceCount++}`, options == null ? void 0 : options.state);
    this.adopt(room);
    return room;
  }
  close() {
    this.connection.close();
  }
  // SubscriptionHost
  isOpen() {
    return this.connection.isOpen() && !this.signingIn;
  }
  requestReply(route, verb, args, options) {
    return this.calls.request(route, verb, args, options);
  }
  forget(subscription) {
    this.subscriptions.delete(subscription);
  }
  adopt(subscription) {
    if (this.connection.state === "closed") {
      subscription.shutdown();
      return;
    }
    this.subscriptions.add(subscription);
    if (this.isOpen()) subscription.connected();
  }
  opened() {
    this.connections++;
    this.firstFrame = true;
    if (this.getToken === void 0) {
      this.ready();
      return;
    }
    const generation = this.connections;
    this.signingIn = true;
    this.fetchToken().then((token) => {
      if (generation !== this.connections || !this.connection.isOpen()) return;
      this.signingIn = false;
      if (token !== void 0) this.sendToken(token);
      this.ready();
    });
  }
  /** The connection is open and signed in, if it signs in at all: resubscribe and send what waited. */
  ready() {
    for (const subscription of [...this.subscriptions]) subscription.connected();
    this.calls.flush();
  }
  fetchToken() {
    return Promise.resolve().then(() => {
      var _a;
      return (_a = this.getToken) == null ? void 0 : _a.call(this);
    }).catch((err) => {
      this.events.emit("user", void 0, new DrakonError(CLIENT_CODES.tokenUnavailable, `getToken failed: ${String(err)}`));
      return void 0;
    });
  }
  sendToken(token) {
    this.calls.request(SERVER_ROUTE, "auth", { token }, { queue: false }).then(
      (reply) => {
        var _a;
        const user = (_a = reply.data) == null ? void 0 : _a.user;
        this.currentUser = user;
        this.events.emit("user", user);
      },
      (err) => {
        this.currentUser = void 0;
        this.events.emit("user", void 0, err);
      }
    );
  }
  message(text) {
    var _a;
    const incoming = parseIncoming(text);
    if (this.firstFrame) {
      this.firstFrame = false;
      if (incoming.kind !== "signed-in" && this.getToken === void 0 && this.currentUser !== void 0) {
        this.currentUser = void 0;
        this.events.emit("user", void 0);
      }
    }
    switch (incoming.kind) {
      case "signed-in":
        if (((_a = this.currentUser) == null ? void 0 : _a.id) !== incoming.user.id) {
          this.currentUser = incoming.user;
          this.events.emit("user", incoming.user);
        }
        break;
      case "heartbeat":
        this.connection.send(HEARTBEAT);
        break;
      case "reply":
        this.calls.handleReply(incoming.reply);
        break;
      case "publication":
        this.router.dispatch(incoming.publication);
        break;
      case "token-expiring": {
        const generation = this.connections;
        void this.fetchToken().then((token) => {
          if (token !== void 0 && generation === this.connections && this.connection.isOpen()) this.sendToken(token);
        });
        break;
      }
      case "unknown":
        break;
    }
  }
  lost() {
    this.calls.disconnected();
    this.router.reset();
    for (const subscription of [...this.subscriptions]) subscription.disconnected();
  }
  stateChanged(state) {
    if (state === "closed") {
      this.calls.close();
      this.router.reset();
      for (const subscription of [...this.subscriptions]) subscription.shutdown();
      this.subscriptions.clear();
    }
    this.events.emit("state", state);
  }
};

// src/index.ts
function connect(url, options) {
  return new DrakonClient(url, options);
}
export {
  DrakonError,
  connect
};
