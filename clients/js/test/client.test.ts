// The Client against a fake WebSocket: calls, queueing, reconnects, live collections and channels, frame by frame.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { connect, DrakonError, type Client, type ConnectOptions, type LiveChange, type Row } from '../src/index';
import { FakeSocket } from './fake-socket';

const URL = 'ws://drakon.test/data/websocket';

/** Lets promise callbacks run; timers stay frozen. */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

function setup(options: ConnectOptions = {}, url: string | string[] = URL): Client {
  return connect(url, { WebSocket: FakeSocket, ...options });
}

/** A client whose first socket is open. */
function opened(options: ConnectOptions = {}): { client: Client; ws: FakeSocket } {
  const client = setup(options);
  const ws = FakeSocket.last;
  ws.open();
  return { client, ws };
}

/**
 * Advances past the longest possible backoff delay and returns the socket of the next attempt. One millisecond
 * short of the cap: a delay is below it, and the new attempt's connect timeout (10 s) must not fire too, which it
 * did when the random delay came out as 0 (one run in 250 failed).
 */
function nextAttempt(options: { maxDelayMs?: number } = {}): FakeSocket {
  const before = FakeSocket.instances.length;
  vi.advanceTimersByTime((options.maxDelayMs ?? 10_000) - 1);
  expect(FakeSocket.instances.length).toBe(before + 1);
  return FakeSocket.last;
}

function rejection(promise: Promise<unknown>): Promise<DrakonError> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => {
      expect(err).toBeInstanceOf(DrakonError);
      return err as DrakonError;
    },
  );
}

beforeEach(() => {
  FakeSocket.reset();
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('calls', () => {
  it('route replies by callback name, in any order, to data, whole replies and DrakonErrors', async () => {
    const { client, ws } = opened();
    const single = client.call('todo-item', 'get_single', { id: 1 });
    const r1 = ws.lastRequest();
    const list = client.request('todo-item', 'get_list', { list_id: 1, _page: 2 });
    const r2 = ws.lastRequest();
    const create = client.call('todo-item', 'create', { text: '' });
    const r3 = ws.lastRequest();
    expect([r1, r2.callbackname, r3.callbackname]).toEqual([
      { route: 'todo-item', verb: 'get_single', args: { id: 1 }, callbackname: 'cb_0' },
      'cb_1',
      'cb_2',
    ]);

    ws.replyError(r3, {
      code: 'validation_failed',
      message: 'the object is not valid',
      fields: { text: ['must not be empty'], todo_list: ['is required'] },
    });
    const page = { page: 2, page_count: 2, page_size: 1, total: 2, has_next: false, has_previous: true };
    ws.receive({
      data: [{ id: 2, _type: 'todo_item', text: 'b' }],
      context: { client_callback_name: 'cb_1', verb: 'get_list', state: 'success', client_context: { page }, page: 2 },
    });
    ws.reply(r1, { id: 1, _type: 'todo_item', text: 'a' });

    await expect(single).resolves.toEqual({ id: 1, _type: 'todo_item', text: 'a' });
    const whole = await list;
    expect(whole.data).toEqual([{ id: 2, _type: 'todo_item', text: 'b' }]);
    expect(whole.context).toMatchObject({ state: 'success', client_context: { page }, page: 2 });
    const err = await rejection(create);
    expect([err.code, err.message, err.fields]).toEqual([
      'validation_failed',
      'the object is not valid',
      { text: ['must not be empty'], todo_list: ['is required'] },
    ]);
  });

  it('maps login_required and error replies without fields', async () => {
    const { client, ws } = opened();
    const a = client.call('admin:todo_item', 'get_list');
    ws.receive({ data: null, context: { client_callback_name: ws.lastRequest().callbackname, verb: 'get_list', state: 'login_required' } });
    const b = client.call('nope', 'get_list');
    ws.replyError(ws.lastRequest(), { code: 'unknown_route', message: 'no route named nope' });
    expect((await rejection(a)).code).toBe('login_required');
    const err = await rejection(b);
    expect([err.code, err.message, err.fields]).toEqual(['unknown_route', 'no route named nope', undefined]);
  });

  it('an error reply without a callback name settles the oldest sent call', async () => {
    const { client, ws } = opened();
    const big = client.call('todo-item', 'create', { text: 'x'.repeat(10) });
    const small = client.call('todo-item', 'get_list');
    ws.receive({ data: { code: 'frame_too_large', message: 'frames may be at most 64 bytes' }, context: { client_callback_name: null, verb: '', state: 'error' } });
    expect((await rejection(big)).code).toBe('frame_too_large');
    ws.reply(ws.lastRequest(), []);
    await expect(small).resolves.toEqual([]);
  });

  it('time out after callTimeoutMs, and a late reply is ignored', async () => {
    const { client, ws } = opened({ callTimeoutMs: 1_000 });
    const call = client.call('todo-item', 'get_list');
    const request = ws.lastRequest();
    vi.advanceTimersByTime(999);
    await flush();
    let settled = false;
    call.then(() => (settled = true), () => (settled = true));
    await flush();
    expect(settled).toBe(false);
    vi.advanceTimersByTime(1);
    expect((await rejection(call)).code).toBe('timeout');
    ws.reply(request, []);
  });

  it('wait while connecting and are sent, in order, once open', async () => {
    const client = setup();
    const ws = FakeSocket.last;
    const first = client.call('todo-item', 'get_list');
    const second = client.call('todo-list', 'get_list');
    expect(ws.sent).toEqual([]);
    ws.open();
    expect(ws.frames().map((f) => [f.route, f.callbackname])).toEqual([
      ['todo-item', 'cb_0'],
      ['todo-list', 'cb_1'],
    ]);
    ws.reply(ws.frames()[1] as never, 'lists');
    ws.reply(ws.frames()[0] as never, 'items');
    await expect(first).resolves.toBe('items');
    await expect(second).resolves.toBe('lists');
  });

  it('queued calls still time out', async () => {
    const client = setup({ callTimeoutMs: 500 });
    const call = client.call('todo-item', 'get_list');
    vi.advanceTimersByTime(500);
    expect((await rejection(call)).code).toBe('timeout');
    FakeSocket.last.open();
    expect(FakeSocket.last.sent).toEqual([]);
  });

  it('reject with unavailable when not open and queueWhileDisconnected is false', async () => {
    const client = setup({ queueWhileDisconnected: false });
    const call = client.call('todo-item', 'get_list');
    expect((await rejection(call)).code).toBe('unavailable');
    FakeSocket.last.open();
    expect(FakeSocket.last.sent).toEqual([]);
  });

  it('sent calls reject with disconnected on a drop; calls made meanwhile go out on the next connection', async () => {
    const { client, ws } = opened();
    const states: string[] = [];
    client.on('state', (s) => states.push(s));
    const sent = client.call('todo-item', 'create', { text: 'a' });
    ws.drop(1006);
    expect((await rejection(sent)).code).toBe('disconnected');
    expect(client.state).toBe('reconnecting');
    const queued = client.call('todo-item', 'create', { text: 'b' });
    const ws2 = nextAttempt();
    expect(ws2.sent).toEqual([]);
    ws2.open();
    const request = ws2.lastRequest();
    expect(request.args).toEqual({ text: 'b' });
    ws2.reply(request, { id: 2 });
    await expect(queued).resolves.toEqual({ id: 2 });
    expect(states).toEqual(['reconnecting', 'open']);
  });
});

describe('connection', () => {
  it('echoes the app heartbeat exactly', () => {
    const { ws } = opened();
    ws.receive('{"heartbeat": "1"}');
    expect(ws.sent).toEqual(['{"heartbeat":"1"}']);
  });

  it.each([1001, 4000, 4008, 1006])('reconnects after close code %i', (code) => {
    const { client, ws } = opened();
    ws.drop(code);
    expect(client.state).toBe('reconnecting');
    nextAttempt().open();
    expect(client.state).toBe('open');
  });

  it('cycles through the URL list on each attempt', () => {
    const client = setup({}, ['ws://a.test/data/websocket', 'ws://b.test/data/websocket']);
    FakeSocket.last.drop(); // the first attempt fails before opening
    expect(client.state).toBe('reconnecting');
    nextAttempt().open();
    FakeSocket.last.drop();
    nextAttempt().drop();
    nextAttempt();
    expect(FakeSocket.instances.map((s) => new globalThis.URL(s.url).host)).toEqual(['a.test', 'b.test', 'a.test', 'b.test']);
  });

  it('turns http URLs into ws URLs', () => {
    setup({}, 'https://drakon.test/data/websocket');
    expect(FakeSocket.last.url).toBe('wss://drakon.test/data/websocket');
  });

  it('backs off exponentially with jitter, and starts over after a connection that stayed up', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999999);
    const { ws } = opened({ minDelayMs: 100, maxDelayMs: 1_000 });
    // Attempt k waits random * min(1000, 100 * 2^k): 99, 199, 399, 799, 999 ms with random ≈ 1.
    const waits: number[] = [];
    ws.drop();
    for (let i = 0; i < 5; i++) {
      const before = FakeSocket.instances.length;
      let waited = 0;
      while (FakeSocket.instances.length === before) {
        vi.advanceTimersByTime(1);
        waited++;
      }
      waits.push(waited);
      if (i < 4) FakeSocket.last.drop();
    }
    expect(waits).toEqual([99, 199, 399, 799, 999]);
    // Open briefly: the delay keeps growing (capped). Open for 5 s: it starts over.
    FakeSocket.last.open();
    FakeSocket.last.drop();
    vi.advanceTimersByTime(998);
    expect(FakeSocket.instances.length).toBe(6);
    vi.advanceTimersByTime(1);
    FakeSocket.last.open();
    vi.advanceTimersByTime(5_000);
    FakeSocket.last.drop();
    vi.advanceTimersByTime(98);
    expect(FakeSocket.instances.length).toBe(7);
    vi.advanceTimersByTime(1);
    expect(FakeSocket.instances.length).toBe(8);
  });

  it('abandons an attempt that does not open in time', () => {
    const client = setup();
    const stuck = FakeSocket.last;
    vi.advanceTimersByTime(10_000);
    expect(stuck.closedWith).toBeDefined();
    expect(client.state).toBe('reconnecting');
    stuck.open(); // too late: ignored
    expect(client.state).toBe('reconnecting');
    nextAttempt().open();
    expect(client.state).toBe('open');
  });

  it('with reconnect: false a drop closes the client', async () => {
    const { client, ws } = opened({ reconnect: false });
    const sent = client.call('todo-item', 'get_list');
    ws.drop(1001);
    expect(client.state).toBe('closed');
    expect((await rejection(sent)).code).toBe('disconnected');
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.instances.length).toBe(1);
  });

  it('close() rejects pending calls with closed and never reconnects', async () => {
    const { client, ws } = opened();
    const states: string[] = [];
    client.on('state', (s) => states.push(s));
    const pending = client.call('todo-item', 'get_list');
    const items = client.live('todo-item');
    client.close();
    expect(client.state).toBe('closed');
    expect(ws.closedWith?.code).toBe(1000);
    expect((await rejection(pending)).code).toBe('closed');
    expect((await rejection(client.call('todo-item', 'get_list'))).code).toBe('closed');
    expect(items.status).toBe('closed');
    expect((await rejection(items.ready)).code).toBe('closed');
    expect(client.live('todo-item').status).toBe('closed');
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.instances.length).toBe(1);
    expect(states).toEqual(['closed']);
  });

  it('off() removes a state listener', () => {
    const { client, ws } = opened();
    const states: string[] = [];
    const off = client.on('state', (s) => states.push(s));
    ws.drop();
    off();
    nextAttempt().open();
    expect(states).toEqual(['reconnecting']);
  });
});

interface Item extends Row {
  text: string;
  done: boolean;
  todo_list: number;
}

const item = (id: number, text: string, done = false): Item => ({ id, _type: 'todo_item', text, done, todo_list: 1 });
const REMOTE = 'todo-item|todo_list__id:1';

function event(action: string, data: Record<string, unknown>, offset: number, channel = REMOTE) {
  return { channel, action, data: { _type: 'todo_item', ...data }, offset };
}

describe('live collections', () => {
  it('subscribe with a snapshot, apply events that beat the reply, then follow; resume after a reconnect', async () => {
    const { client, ws } = opened();
    const items = client.live<Item>('todo-item', { list_id: 1 }, { order: ['done', 'text'] });
    const changes: [string, number[]][] = [];
    const statuses: string[] = [];
    items.on('change', (rows, change: LiveChange<Item>) => changes.push([change.action, rows.map((r) => r.id)]));
    items.on('status', (s) => statuses.push(s));
    expect(items.status).toBe('loading');

    const subscribe = ws.lastRequest();
    expect(subscribe).toMatchObject({
      route: 'todo-item',
      verb: 'subscribe',
      args: { list_id: 1, _order: ['done', 'text'], snapshot: true, channel: 'live_0' },
    });
    // Published between the server's registration and its read: offset 7 is in the snapshot, 8 is not.
    ws.receive(event('created', item(3, 'apples'), 7));
    ws.receive(event('updated', { id: 1, done: true }, 8));
    ws.receive(event('created', item(9, 'other list'), 9, 'todo-item|todo_list__id:2'));
    ws.replySubscribe(subscribe, REMOTE, { rows: [item(1, 'milk'), item(2, 'bread'), item(3, 'apples')], offset: 7 });
    await items.ready;
    expect(items.status).toBe('live');
    expect(items.items.map((r) => r.text)).toEqual(['apples', 'bread', 'milk']);
    expect(items.get(1)).toEqual(item(1, 'milk', true));
    expect(changes).toEqual([
      ['reload', [3, 2, 1]],
      ['updated', [3, 2, 1]],
    ]);

    ws.receive(event('created', item(4, 'butter'), 10));
    ws.receive(event('deleted', { id: 2 }, 11));
    ws.receive(event('deleted', { id: 2 }, 11)); // a duplicate changes nothing
    expect(items.items.map((r) => r.id)).toEqual([3, 4, 1]);
    expect(items.get(2)).toBeUndefined();

    expect(items.lastOffset).toBe(11);

    // The connection drops; meanwhile someone deletes 3 and creates 5.
    const before = items.items;
    ws.drop(1001);
    expect(items.status).toBe('reconnecting');
    expect(items.items).toBe(before);
    const ws2 = nextAttempt();
    ws2.open();
    const again = ws2.lastRequest();
    const { snapshot: _, ...rest } = subscribe.args;
    expect(again).toMatchObject({ route: 'todo-item', verb: 'subscribe' });
    expect(again.args).toEqual({ ...rest, since: 11 });
    // A live publication beats the reply; the replay covers it, so it is skipped once.
    ws2.receive(event('created', item(5, 'cheese'), 13));
    ws2.replySubscribe(again, REMOTE, {
      events: [event('deleted', { id: 3 }, 12), event('created', item(5, 'cheese'), 13)],
      offset: 14,
    });
    await flush();
    expect(items.status).toBe('live');
    expect(items.lastOffset).toBe(14);
    expect(items.items.map((r) => r.id)).toEqual([4, 5, 1]);
    expect(changes.slice(4)).toEqual([
      ['deleted', [4, 1]],
      ['created', [4, 5, 1]],
    ]);
    ws2.receive(event('updated', { id: 5, text: 'aged cheese' }, 14)); // at the reply's offset: covered
    ws2.receive(event('updated', { id: 5, text: 'aged cheese' }, 15));
    expect(items.get(5)?.text).toBe('aged cheese');
    expect(changes.slice(6)).toEqual([['updated', [5, 4, 1]]]);
    expect(items.lastOffset).toBe(15);
    expect(statuses).toEqual(['live', 'reconnecting', 'live']);
  });

  it('the single-object form holds at most one row', async () => {
    const { client, ws } = opened();
    const one = client.live<Item>('todo-item', { id: 5 });
    const subscribe = ws.lastRequest();
    expect(subscribe.args).toEqual({ id: 5, snapshot: true, channel: 'live_0' });
    ws.replySubscribe(subscribe, 'todo-item|id:5', { rows: [item(5, 'only')], offset: 3 });
    await one.ready;
    ws.receive(event('updated', { id: 5, done: true }, 4, 'todo-item|id:5'));
    expect(one.items).toEqual([item(5, 'only', true)]);
    ws.receive(event('deleted', { id: 5 }, 5, 'todo-item|id:5'));
    expect(one.items).toEqual([]);
  });

  it('a failed subscribe sets error and rejects ready; a later successful one clears it', async () => {
    const { client, ws } = opened();
    const items = client.live('todo-item', { colour: 'red' });
    ws.replyError(ws.lastRequest(), { code: 'unknown_field', message: 'todo_item has no field `colour`', fields: { colour: ['unknown field'] } });
    const err = await rejection(items.ready);
    expect(err.code).toBe('unknown_field');
    expect(items.status).toBe('error');
    expect(items.error?.fields).toEqual({ colour: ['unknown field'] });

    ws.drop();
    expect(items.status).toBe('reconnecting');
    const ws2 = nextAttempt();
    ws2.open();
    expect(ws2.lastRequest().args).toEqual({ colour: 'red', snapshot: true, channel: 'live_0' }); // nothing to resume
    ws2.replySubscribe(ws2.lastRequest(), 'todo-item|colour:"red"', { rows: [], offset: 0 });
    await flush();
    expect(items.status).toBe('live');
    expect(items.error).toBeUndefined();
  });

  it('a collection made while disconnected waits and subscribes once open', async () => {
    const client = setup();
    const items = client.live('todo-item');
    expect(items.status).toBe('loading');
    const ws = FakeSocket.last;
    expect(ws.sent).toEqual([]);
    ws.open();
    ws.replySubscribe(ws.lastRequest(), 'todo-item|', { rows: [item(2, 'b'), item(1, 'a')], offset: 0 });
    await items.ready;
    expect(items.items.map((r) => r.id)).toEqual([1, 2]);
  });

  it('close() unsubscribes with the same filter and stops changes', async () => {
    const { client, ws } = opened();
    const items = client.live('todo-item', { list_id: 1 });
    let changes = 0;
    items.on('change', () => changes++);
    ws.replySubscribe(ws.lastRequest(), REMOTE, { rows: [], offset: 0 });
    await items.ready;
    const closing = items.close();
    expect(items.status).toBe('closed');
    const unsubscribe = ws.lastRequest();
    expect(unsubscribe).toMatchObject({ route: 'todo-item', verb: 'unsubscribe', args: { list_id: 1, channel: 'live_0' } });
    ws.receive(event('created', item(1, 'a'), 1));
    ws.reply(unsubscribe, 'unsubscribed', {
      channel_data: { local_channel: 'live_0', remote_channels: [REMOTE], action: 'unsubscribe' },
    });
    await closing;
    expect(changes).toBe(1); // the reload only
    ws.drop();
    nextAttempt().open();
    expect(FakeSocket.last.sent).toEqual([]); // not resubscribed
  });

  it('two collections on the same server channel both follow it', async () => {
    const { client, ws } = opened();
    const a = client.live('todo-item', { list_id: 1 });
    const subA = ws.lastRequest();
    ws.replySubscribe(subA, REMOTE, { rows: [], offset: 0 });
    await a.ready;
    const b = client.live('todo-item', { list_id: 1 }, { order: '-id' });
    const subB = ws.lastRequest();
    expect(subB.args.channel).toBe('live_1');
    ws.receive(event('created', item(1, 'a'), 1)); // before b's reply: a applies it now, b after its snapshot
    ws.replySubscribe(subB, REMOTE, { rows: [], offset: 0 });
    await b.ready;
    ws.receive(event('created', item(2, 'b'), 2));
    expect(a.items.map((r) => r.id)).toEqual([1, 2]);
    expect(b.items.map((r) => r.id)).toEqual([2, 1]);
  });
});

/** What the fake server does with one subscribe request. */
type Answer = { ok: unknown } | { error: Record<string, unknown> } | 'timeout';

interface ResumeCase {
  name: string;
  /** The answers to the subscribes after the reconnect, in order. */
  answers: Answer[];
  /** `since` or `snapshot` of each of those subscribes. */
  asked: Record<string, unknown>[];
  ids: number[];
  offset: number;
  changes: string[];
  status: string;
}

const TIMEOUT_MS = 1_000;
const ERROR = { code: 'invalid_args', message: '`since` takes the last offset the client applied, an integer' };

const resumeCases: ResumeCase[] = [
  {
    name: 'events: a row enters, one leaves, one merges; each is a change',
    answers: [
      {
        ok: {
          events: [event('created', item(7, 'moved in'), 11), event('deleted', { id: 2 }, 12), event('updated', { id: 1, done: true }, 13)],
          offset: 20,
        },
      },
    ],
    asked: [{ since: 10 }],
    ids: [7, 1],
    offset: 20,
    changes: ['created 7', 'deleted 2', 'updated 1'],
    status: 'live',
  },
  {
    name: 'events: replayed duplicates and events at or below since are skipped',
    answers: [{ ok: { events: [event('created', item(3, 'x'), 9), event('created', item(4, 'd'), 11), event('created', item(4, 'd'), 11)], offset: 11 } }],
    asked: [{ since: 10 }],
    ids: [1, 2, 4],
    offset: 11,
    changes: ['created 4'],
    status: 'live',
  },
  {
    name: 'reload: the snapshot replaces the mirror',
    answers: [{ ok: { reload: true, rows: [item(2, 'b', true), item(8, 'h')], offset: 50 } }],
    asked: [{ since: 10 }],
    ids: [8, 2],
    offset: 50,
    changes: ['reload'],
    status: 'live',
  },
  {
    name: 'an error reply falls back to a fresh snapshot',
    answers: [{ error: ERROR }, { ok: { rows: [item(1, 'a'), item(9, 'i')], offset: 30 } }],
    asked: [{ since: 10 }, { snapshot: true }],
    ids: [1, 9],
    offset: 30,
    changes: ['reload'],
    status: 'live',
  },
  {
    name: 'a timed-out resume falls back to a fresh snapshot',
    answers: ['timeout', { ok: { rows: [item(1, 'a')], offset: 12 } }],
    asked: [{ since: 10 }, { snapshot: true }],
    ids: [1],
    offset: 12,
    changes: ['reload'],
    status: 'live',
  },
  {
    name: "a reply whose log ends before since (a replaced database) falls back to a fresh snapshot",
    answers: [{ ok: { events: [], offset: 2 } }, { ok: { rows: [item(5, 'e')], offset: 2 } }],
    asked: [{ since: 10 }, { snapshot: true }],
    ids: [5],
    offset: 2,
    changes: ['reload'],
    status: 'live',
  },
  {
    name: 'when the fallback snapshot fails too, the collection shows the error and keeps its mirror',
    answers: [{ error: ERROR }, { error: { code: 'permission_denied', message: 'no' } }],
    asked: [{ since: 10 }, { snapshot: true }],
    ids: [1, 2],
    offset: 10,
    changes: [],
    status: 'error',
  },
];

/** A collection on an open client, live at offset 10 with rows 1 ('a') and 2 ('b'), ordered by done then text. */
async function liveAt10(options: ConnectOptions = {}) {
  const { client, ws } = opened(options);
  const items = client.live<Item>('todo-item', { list_id: 1 }, { order: ['done', 'text'] });
  ws.replySubscribe(ws.lastRequest(), REMOTE, { rows: [item(1, 'a'), item(2, 'b')], offset: 10 });
  await items.ready;
  const changes: string[] = [];
  items.on('change', (_, change) => changes.push(change.id === undefined ? change.action : `${change.action} ${change.id}`));
  return { client, ws, items, changes };
}

function subscribes(ws: FakeSocket): ReturnType<FakeSocket['lastRequest']>[] {
  return ws.frames().filter((f) => f.verb === 'subscribe') as never;
}

describe('resume after a reconnect', () => {
  it('resubscribes on the next socket even when the random delay comes out as 0', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { client, ws } = opened();
    const live = client.live('todo-item');
    ws.replySubscribe(ws.lastRequest(), REMOTE, { rows: [], offset: 1 });
    await live.ready;
    ws.drop();
    const ws2 = nextAttempt();
    ws2.open();
    await flush();
    expect(subscribes(ws2).length).toBe(1);
  });

  it.each(resumeCases.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const { ws, items, changes } = await liveAt10({ callTimeoutMs: TIMEOUT_MS });
    expect(items.lastOffset).toBe(10);
    ws.drop(4008);
    const ws2 = nextAttempt();
    ws2.open();
    for (const [i, answer] of c.answers.entries()) {
      const request = subscribes(ws2)[i];
      expect(request, `subscribe #${i}`).toBeDefined();
      if (answer === 'timeout') vi.advanceTimersByTime(TIMEOUT_MS);
      else if ('ok' in answer) ws2.replySubscribe(request, REMOTE, answer.ok);
      else ws2.replyError(request, answer.error);
      await flush();
    }
    const asked = subscribes(ws2).map(({ args }) => {
      expect(args).toMatchObject({ list_id: 1, _order: ['done', 'text'], channel: 'live_0' });
      expect('since' in args && 'snapshot' in args).toBe(false);
      return 'since' in args ? { since: args.since } : { snapshot: args.snapshot };
    });
    expect(asked).toEqual(c.asked);
    expect(items.items.map((r) => r.id)).toEqual(c.ids);
    expect(items.lastOffset).toBe(c.offset);
    expect(changes).toEqual(c.changes);
    expect(items.status).toBe(c.status);
  });

  it('publications that beat the resume reply: those it covers are skipped, later ones follow it', async () => {
    const { ws, items, changes } = await liveAt10();
    ws.drop(1001);
    const ws2 = nextAttempt();
    ws2.open();
    const request = ws2.lastRequest();
    ws2.receive(event('updated', { id: 1, text: 'z' }, 11));
    ws2.receive(event('created', item(6, 'f'), 13));
    ws2.replySubscribe(request, REMOTE, { events: [event('updated', { id: 1, text: 'z' }, 11)], offset: 12 });
    await flush();
    expect(changes).toEqual(['updated 1', 'created 6']);
    expect(items.items.map((r) => r.text)).toEqual(['b', 'f', 'z']);
    expect(items.lastOffset).toBe(13);
  });

  it('a drop during the resume resumes again from the same offset', async () => {
    const { ws, items, changes } = await liveAt10();
    ws.drop();
    const ws2 = nextAttempt();
    ws2.open();
    expect(ws2.lastRequest().args.since).toBe(10);
    ws2.drop();
    expect(items.status).toBe('reconnecting');
    const ws3 = nextAttempt();
    ws3.open();
    expect(subscribes(ws3).map((r) => r.args.since)).toEqual([10]);
    ws3.replySubscribe(ws3.lastRequest(), REMOTE, { events: [event('deleted', { id: 1 }, 11)], offset: 11 });
    await flush();
    expect([items.status, items.lastOffset, changes]).toEqual(['live', 11, ['deleted 1']]);
  });

  it('after a failed resume and a failed snapshot, the next reconnect resumes from the kept mirror', async () => {
    const { ws, items } = await liveAt10();
    ws.drop();
    const ws2 = nextAttempt();
    ws2.open();
    ws2.replyError(ws2.lastRequest(), ERROR);
    await flush();
    ws2.replyError(ws2.lastRequest(), { code: 'internal', message: 'database is locked' });
    await flush();
    expect([items.status, items.error?.code]).toEqual(['error', 'internal']);
    ws2.drop();
    const ws3 = nextAttempt();
    ws3.open();
    expect(ws3.lastRequest().args.since).toBe(10);
    ws3.replySubscribe(ws3.lastRequest(), REMOTE, { events: [], offset: 15 });
    await flush();
    expect([items.status, items.error, items.lastOffset]).toEqual(['live', undefined, 15]);
  });

  it('lastOffset is -1 until the first snapshot, and a snapshot without an offset never resumes', async () => {
    const { client, ws } = opened();
    const items = client.live('todo-item');
    expect(items.lastOffset).toBe(-1);
    ws.replySubscribe(ws.lastRequest(), 'todo-item|', { rows: [item(1, 'a')] });
    await items.ready;
    expect(items.lastOffset).toBe(-1);
    ws.drop();
    const ws2 = nextAttempt();
    ws2.open();
    expect(ws2.lastRequest().args).toEqual({ snapshot: true, channel: 'live_0' });
  });
});

describe('channels', () => {
  it('deliver data, including messages that beat the reply, and resubscribe after a reconnect', async () => {
    const { client, ws } = opened();
    const got: unknown[] = [];
    const chat = client.channel('chat', 'room.lobby', (data) => got.push(data));
    const subscribe = ws.lastRequest();
    expect(subscribe).toMatchObject({ route: 'chat', verb: 'subscribe', args: { channel: 'channel_0', name: 'room.lobby' } });
    ws.receive({ channel: 'room.lobby', data: { msg: 'early' } });
    ws.replySubscribe(subscribe, 'room.lobby', 'subscribed');
    await chat.ready;
    ws.receive({ channel: 'room.lobby', data: 'plain string' });
    ws.receive({ channel: 'room.other', data: 'not ours' });
    expect(got).toEqual([{ msg: 'early' }, 'plain string']);

    ws.drop(4008);
    const ws2 = nextAttempt();
    ws2.open();
    const again = ws2.lastRequest();
    expect(again.args).toEqual(subscribe.args);
    ws2.replySubscribe(again, 'room.lobby', 'subscribed');
    await flush();
    ws2.receive({ channel: 'room.lobby', data: 'after' });
    expect(got).toEqual([{ msg: 'early' }, 'plain string', 'after']);

    const closing = chat.close();
    const unsubscribe = ws2.lastRequest();
    expect(unsubscribe).toMatchObject({ verb: 'unsubscribe', args: { channel: 'channel_0', name: 'room.lobby' } });
    ws2.reply(unsubscribe, 'unsubscribed');
    await closing;
    ws2.receive({ channel: 'room.lobby', data: 'too late' });
    expect(got).toHaveLength(3);
  });

  it('omit name for a route with one fixed channel, and report a refused subscribe through ready', async () => {
    const { client, ws } = opened();
    client.channel('chat', undefined, () => {});
    expect(ws.lastRequest().args).toEqual({ channel: 'channel_0' });
    const refused = client.channel('chat', 'secret', () => {});
    ws.replyError(ws.lastRequest(), { code: 'permission_denied', message: 'route `chat` does not offer channel `secret`' });
    expect((await rejection(refused.ready)).code).toBe('permission_denied');
  });
});

describe('presence', () => {
  const ROOM = 'presence:todo-item:7';
  const member = (id: string, state: Record<string, unknown> = {}) => ({ id, info: {}, state });
  const list = (...members: unknown[]) => ({ room: ROOM, members, count: members.length, large: false, next: null });

  it('joins with the members, follows their events, sets state, and shows what changed while away as events', async () => {
    const { client, ws } = opened();
    const room = client.presence('todo-item', 7, { state: { viewing: true } });
    const seen: string[] = [];
    room.on('joined', (m) => seen.push(`joined ${m.id}`));
    room.on('updated', (m) => seen.push(`updated ${m.id} ${JSON.stringify(m.state)}`));
    room.on('left', (m) => seen.push(`left ${m.id}`));
    const join = ws.lastRequest();
    expect(join).toMatchObject({ route: 'todo-item', verb: 'join_presence', args: { id: 7, channel: 'presence_0', state: { viewing: true } } });
    // An event that beats the reply is applied after the list.
    ws.receive({ channel: ROOM, action: 'member_joined', data: member('carol') });
    ws.replySubscribe(join, ROOM, list(member('alice', { viewing: true }), member('bob')));
    await room.ready;
    expect([...room.members.keys()]).toEqual(['alice', 'bob', 'carol']);
    expect(room.count).toBe(3);
    ws.receive({ channel: ROOM, action: 'member_updated', data: member('bob', { editing: 7 }) });
    ws.receive({ channel: ROOM, action: 'member_left', data: { id: 'carol' } });
    expect(room.members.get('bob')?.state).toEqual({ editing: 7 });
    expect(room.count).toBe(2);
    expect(seen).toEqual(['joined alice', 'joined bob', 'joined carol', 'updated bob {"editing":7}', 'left carol']);

    const set = room.set({ editing: 3 });
    expect(ws.lastRequest()).toMatchObject({ verb: 'set_presence', args: { id: 7, state: { editing: 3 } } });
    ws.reply(ws.lastRequest(), 'set');
    await set;

    // Away and back: the fresh list replaces the old, and the difference shows as events; the join carries the
    // state last set.
    seen.length = 0;
    ws.drop(1006);
    const ws2 = nextAttempt();
    ws2.open();
    const again = ws2.lastRequest();
    expect(again.args).toEqual({ id: 7, channel: 'presence_0', state: { editing: 3 } });
    ws2.replySubscribe(again, ROOM, list(member('alice', { editing: 3 }), member('dan')));
    await flush();
    expect(seen).toEqual(['left bob', 'updated alice {"editing":3}', 'joined dan']);

    const closing = room.close();
    expect(ws2.lastRequest()).toMatchObject({ verb: 'leave_presence', args: { id: 7, channel: 'presence_0' } });
    ws2.reply(ws2.lastRequest(), 'left');
    await closing;
    ws2.receive({ channel: ROOM, action: 'member_left', data: { id: 'dan' } });
    expect(room.members.has('dan')).toBe(true);
  });

  it('takes a large room\'s batches, keeps its count, and names channel rooms by name', async () => {
    const { client, ws } = opened();
    const room = client.presence('chat', 'room.lobby');
    const join = ws.lastRequest();
    expect(join.args).toEqual({ name: 'room.lobby', channel: 'presence_0' });
    const lobby = 'presence:chat:room.lobby';
    ws.replySubscribe(join, lobby, { room: lobby, members: [member('a'), member('b')], count: 150, large: true, next: 'b' });
    await room.ready;
    expect([room.large, room.partial, room.count, room.members.size]).toEqual([true, true, 150, 2]);
    ws.receive({ channel: lobby, action: 'presence_batch', data: { count: 151, joined: [member('c')], updated: [member('a', { x: 1 })], left: ['b'] } });
    expect([...room.members.keys()]).toEqual(['a', 'c']);
    expect([room.count, room.members.get('a')?.state]).toEqual([151, { x: 1 }]);
    ws.receive({ channel: lobby, action: 'presence_batch', data: { count: 400, truncated: true } });
    expect(room.count).toBe(400);

    const page = room.page('c', 2);
    expect(ws.lastRequest()).toMatchObject({ verb: 'get_presence', args: { name: 'room.lobby', after: 'c', limit: 2 } });
    ws.reply(ws.lastRequest(), { room: lobby, members: [member('d'), member('e')], count: 400, large: true, next: 'e' });
    expect(await page).toEqual({ members: [member('d'), member('e')], count: 400, next: 'e' });

    const refused = client.presence('todo-item', 99);
    ws.replyError(ws.lastRequest(), { code: 'not_found', message: 'no todo_item with id 99' });
    expect((await rejection(refused.ready)).code).toBe('not_found');
  });
});

describe('signing in', () => {
  const ALICE = { id: 'alice', roles: ['staff'], info: { name: 'Alice' } };

  it('sends the token before any call or subscription, on every connection, and exposes the user', async () => {
    const client = setup({ token: 'T1' });
    const pending = client.call('notes', 'get_list');
    const live = client.live('notes');
    let ws = FakeSocket.last;
    ws.open();
    await flush();
    const routes = ws.frames().map((f) => `${f.route}.${f.verb}`);
    expect(routes[0]).toBe('drakon.auth');
    expect(ws.frames()[0].args).toEqual({ token: 'T1' });
    expect(routes.slice(1).sort()).toEqual(['notes.get_list', 'notes.subscribe']);
    ws.reply(ws.frames()[0] as any, { user: ALICE, expires: 9 });
    await flush();
    expect(client.user).toEqual(ALICE);
    ws.reply(ws.frames().find((f) => f.verb === 'get_list') as any, []);
    await expect(pending).resolves.toEqual([]);

    ws.drop();
    ws = nextAttempt();
    ws.open();
    await flush();
    expect(ws.frames()[0]).toMatchObject({ route: 'drakon', verb: 'auth', args: { token: 'T1' } });
    expect(ws.frames()[1]).toMatchObject({ route: 'notes', verb: 'subscribe' });
    void live.close();
  });

  it('waits for getToken, asks it again when the server says the token expires, and reports refusals', async () => {
    let n = 0;
    const getToken = vi.fn(async () => `T${++n}`);
    const client = setup({ getToken });
    const users: unknown[] = [];
    client.on('user', (user, error) => users.push(user ?? error?.code));
    const ws = FakeSocket.last;
    ws.open();
    const early = client.call('notes', 'get_list');
    await flush();
    expect(ws.frames().map((f) => f.verb)).toEqual(['auth', 'get_list']);
    ws.reply(ws.frames()[0] as any, { user: ALICE, expires: 9 });

    ws.receive({ auth: 'expiring', expires: 9 });
    await flush();
    expect(getToken).toHaveBeenCalledTimes(2);
    const refresh = ws.lastRequest();
    expect(refresh).toMatchObject({ route: 'drakon', verb: 'auth', args: { token: 'T2' } });
    ws.replyError(refresh, { code: 'token_expired', message: 'the token has expired; get a fresh one' });
    await flush();
    expect(users).toEqual([ALICE, 'token_expired']);
    expect(client.user).toBeUndefined();
    ws.reply(ws.frames()[1] as any, []);
    await expect(early).resolves.toEqual([]);
  });

  it('a failing getToken leaves the connection anonymous and says why', async () => {
    const client = setup({ getToken: () => Promise.reject(new Error('logged out')) });
    const errors: string[] = [];
    client.on('user', (_user, error) => errors.push(error?.code ?? ''));
    const ws = FakeSocket.last;
    ws.open();
    const call = client.call('notes', 'get_list');
    await flush();
    expect(errors).toEqual(['token_unavailable']);
    expect(ws.frames().map((f) => f.verb)).toEqual(['get_list']);
    ws.reply(ws.lastRequest(), []);
    await expect(call).resolves.toEqual([]);
  });

  it('takes the user a cookie signed the connection in as, and drops it when a later connection is anonymous', async () => {
    const client = setup();
    const users: unknown[] = [];
    client.on('user', (user) => users.push(user?.id));
    let ws = FakeSocket.last;
    ws.open();
    ws.receive({ auth: 'signed_in', user: ALICE, expires: null });
    await flush();
    expect(client.user).toEqual(ALICE);
    expect(ws.frames()).toEqual([]);

    // The same user again on the next connection: no event.
    ws.drop();
    ws = nextAttempt();
    ws.open();
    ws.receive({ auth: 'signed_in', user: ALICE, expires: null });
    await flush();
    expect(users).toEqual(['alice']);

    // Logged out meanwhile: the next connection's first frame is anything else.
    ws.drop();
    ws = nextAttempt();
    ws.open();
    ws.receive({ heartbeat: 1 });
    await flush();
    expect(client.user).toBeUndefined();
    expect(users).toEqual(['alice', undefined]);
  });
});

describe('without WebSockets', () => {
  it('talks to the SockJS endpoint of the same server over xhr-polling', async () => {
    const sent: unknown[] = [];
    const receives: Array<(body: string) => void> = [];
    const urls: string[] = [];
    vi.stubGlobal('fetch', (url: string, init: { body?: string }) => {
      urls.push(url);
      if (url.endsWith('/xhr_send')) {
        sent.push(...JSON.parse(init.body ?? '[]').map((m: string) => JSON.parse(m)));
        return Promise.resolve(new Response(null, { status: 204 }));
      }
      return new Promise((resolve) => receives.push((body) => resolve(new Response(body, { status: 200 }))));
    });
    try {
      const client = connect('ws://drakon.test/data/websocket');
      expect(client.transport).toBe('sockjs-polling');
      await flush();
      expect(urls[0]).toMatch(/^http:\/\/drakon\.test\/data\/\d+\/[0-9a-f]{24}\/xhr$/);
      receives.shift()?.('o\n');
      await flush();
      expect(client.state).toBe('open');
      const lists = client.call('todo-list', 'get_list');
      await flush();
      expect(sent).toMatchObject([{ route: 'todo-list', verb: 'get_list', callbackname: 'cb_0' }]);
      const reply = JSON.stringify({ data: [{ id: 1 }], context: { client_callback_name: 'cb_0', verb: 'get_list', state: 'success' } });
      receives.shift()?.(`a${JSON.stringify([reply])}\n`);
      await expect(lists).resolves.toEqual([{ id: 1 }]);
      // The server closes the session: the client connects again.
      await flush();
      receives.shift()?.('c[3000,"Go away!"]\n');
      await flush();
      expect(client.state).toBe('reconnecting');
      client.close();
    } finally {
      vi.unstubAllGlobals();
    }
  });
});
