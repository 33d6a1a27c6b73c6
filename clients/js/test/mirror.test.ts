import { describe, expect, it } from 'vitest';
import {
  applyEvent,
  compareStrings,
  compareValues,
  fromSnapshot,
  parseOrder,
  resumeMirror,
  sortRows,
  type MirrorEvent,
  type MirrorState,
} from '../src/mirror';
import type { Row } from '../src/types';

describe('parseOrder', () => {
  const table: [string | string[] | undefined, string[]][] = [
    [undefined, ['+id']],
    ['text', ['+text', '+id']],
    ['-text', ['-text', '+id']],
    [['done', '-text'], ['+done', '-text', '+id']],
    ['-id', ['-id']],
    [['text', 'id'], ['+text', '+id']],
    [[], ['+id']],
  ];
  it.each(table)('%j → %j', (order, expected) => {
    expect(parseOrder(order).map((k) => (k.descending ? '-' : '+') + k.field)).toEqual(expected);
  });
});

describe('compareValues orders like SQL', () => {
  // Each row: a < b.
  const ascending: [unknown, unknown][] = [
    [null, 0],
    [undefined, false],
    [null, ''],
    [null, { a: 1 }],
    [false, true],
    [true, 2],
    [-1, 0],
    [2, 10],
    [1.5, 2],
    [10, 'a'],
    ['', 'a'],
    ['B', 'a'],
    ['a', 'ab'],
    ['Z', 'é'],
    ['2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z'],
    ['\uffff', '😀'], // code point order, not UTF-16 code unit order
    ['a', [1]],
    [{ a: 1 }, { a: 2 }],
  ];
  it.each(ascending)('%j < %j', (a, b) => {
    expect(compareValues(a, b)).toBe(-1);
    expect(compareValues(b, a)).toBe(1);
  });

  const equal: [unknown, unknown][] = [
    [null, undefined],
    [1, 1],
    [false, 0],
    ['x', 'x'],
    [{ a: [1] }, { a: [1] }],
  ];
  it.each(equal)('%j = %j', (a, b) => {
    expect(compareValues(a, b)).toBe(0);
  });

  it('compareStrings agrees with UTF-8 byte order', () => {
    const strings = ['', 'a', 'b', 'ab', '\u00e9', '\u20ac', '\ud7ff', '\ue000', '\uffff', '😀', '😁', 'a😀', 'a\uffff'];
    const bytes = (s: string) => [...new TextEncoder().encode(s)];
    const byteOrder = (a: string, b: string) => {
      const x = bytes(a);
      const y = bytes(b);
      for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
      return Math.sign(x.length - y.length);
    };
    for (const a of strings) for (const b of strings) expect(compareStrings(a, b), `${a} vs ${b}`).toBe(byteOrder(a, b));
  });
});

describe('sortRows', () => {
  const rows: Row[] = [
    { id: 4, text: 'b', done: true, due: null },
    { id: 1, text: 'b', done: false, due: '2024-02-01' },
    { id: 3, text: 'a', done: false, due: null },
    { id: 2, text: null, done: true, due: '2024-01-01' },
  ];
  const table: [string | string[] | undefined, number[]][] = [
    [undefined, [1, 2, 3, 4]],
    ['text', [2, 3, 1, 4]], // null first, ties broken by id
    ['-text', [1, 4, 3, 2]], // descending puts null last; the id tiebreak stays ascending
    [['done', '-id'], [3, 1, 4, 2]],
    ['due', [3, 4, 2, 1]],
    ['-due', [1, 2, 3, 4]],
    ['-id', [4, 3, 2, 1]],
  ];
  it.each(table)('order %j → ids %j', (order, ids) => {
    expect(sortRows(rows, parseOrder(order)).map((r) => r.id)).toEqual(ids);
  });
  it('does not mutate its input', () => {
    const copy = [...rows];
    sortRows(rows, parseOrder('text'));
    expect(rows).toEqual(copy);
  });
});

/** One event sequence: a snapshot, events applied in order, and the mirror and changes expected. */
interface Case {
  name: string;
  order?: string | string[];
  snapshot: Row[];
  offset: number;
  events: MirrorEvent[];
  rows: Row[];
  changes: string[];
}

const item = (id: number, text: string, done = false): Row => ({ id, _type: 'todo_item', text, done });
const created = (offset: number, row: Row): MirrorEvent => ({ action: 'created', data: row, offset });
const updated = (offset: number, data: Record<string, unknown>): MirrorEvent => ({
  action: 'updated',
  data: { _type: 'todo_item', ...data },
  offset,
});
const deleted = (offset: number, id: number): MirrorEvent => ({ action: 'deleted', data: { id, _type: 'todo_item' }, offset });

const cases: Case[] = [
  {
    name: 'created, updated and deleted apply in order',
    snapshot: [item(1, 'milk')],
    offset: 5,
    events: [created(6, item(2, 'eggs')), updated(7, { id: 1, done: true }), deleted(8, 2)],
    rows: [item(1, 'milk', true)],
    changes: ['created 2', 'updated 1', 'deleted 2'],
  },
  {
    name: 'events at or below the snapshot offset are already in it',
    snapshot: [item(1, 'milk', true), item(2, 'eggs')],
    offset: 7,
    events: [created(6, item(2, 'eggs')), updated(7, { id: 1, done: true }), updated(8, { id: 2, text: 'bread' })],
    rows: [item(1, 'milk', true), item(2, 'bread')],
    changes: ['updated 2'],
  },
  {
    name: 'a replayed event is skipped once a later one was applied',
    snapshot: [],
    offset: 0,
    events: [created(1, item(1, 'a')), created(2, item(2, 'b')), created(2, item(2, 'b')), deleted(1, 1)],
    rows: [item(1, 'a'), item(2, 'b')],
    changes: ['created 1', 'created 2'],
  },
  {
    name: 'buffered before the reply: older events skipped, newer applied',
    snapshot: [item(1, 'a'), item(2, 'b')],
    offset: 10,
    // These arrived before the subscribe reply; 9 and 10 are reflected by the snapshot.
    events: [created(9, item(2, 'b')), updated(10, { id: 1, text: 'a' }), updated(11, { id: 2, text: 'c' }), created(12, item(3, 'd'))],
    rows: [item(1, 'a'), item(2, 'c'), item(3, 'd')],
    changes: ['updated 2', 'created 3'],
  },
  {
    name: 'created for a present id replaces the row',
    snapshot: [item(1, 'a', true)],
    offset: 0,
    events: [created(1, { id: 1, text: 'fresh' })],
    rows: [{ id: 1, text: 'fresh' }],
    changes: ['created 1'],
  },
  {
    name: 'updated and deleted for an absent row are ignored',
    snapshot: [item(1, 'a')],
    offset: 0,
    events: [updated(1, { id: 9, text: 'x' }), deleted(2, 9)],
    rows: [item(1, 'a')],
    changes: [],
  },
  {
    name: 'a row entering the filter arrives as created, one leaving as deleted',
    snapshot: [item(1, 'a'), item(2, 'b')],
    offset: 3,
    events: [created(4, item(7, 'moved in')), deleted(5, 1)],
    rows: [item(2, 'b'), item(7, 'moved in')],
    changes: ['created 7', 'deleted 1'],
  },
  {
    name: 'an update moves the row to its new sorted place',
    order: 'text',
    snapshot: [item(1, 'b'), item(2, 'c'), item(3, 'd')],
    offset: 0,
    events: [updated(1, { id: 3, text: 'a' }), updated(2, { id: 1, text: 'z' })],
    rows: [item(3, 'a'), item(2, 'c'), item(1, 'z')],
    changes: ['updated 3', 'updated 1'],
  },
  {
    name: 'inserts keep ties in id order and nulls first',
    order: 'text',
    snapshot: [item(5, 'b'), item(2, 'b')],
    offset: 0,
    events: [created(1, item(3, 'b')), created(2, item(9, 'a')), created(3, { id: 8, text: null }), created(4, item(1, 'b'))],
    rows: [{ id: 8, text: null }, item(9, 'a'), item(1, 'b'), item(2, 'b'), item(3, 'b'), item(5, 'b')],
    changes: ['created 3', 'created 9', 'created 8', 'created 1'],
  },
  {
    name: 'descending order with a bool key',
    order: ['-done', '-id'],
    snapshot: [item(1, 'a'), item(2, 'b', true)],
    offset: 0,
    events: [created(1, item(3, 'c')), updated(2, { id: 1, done: true })],
    rows: [item(2, 'b', true), item(1, 'a', true), item(3, 'c')],
    changes: ['created 3', 'updated 1'],
  },
  {
    name: 'single-object form: at most one row',
    snapshot: [item(5, 'only')],
    offset: 2,
    events: [updated(3, { id: 5, done: true }), deleted(4, 5), created(5, item(5, 'back'))],
    rows: [item(5, 'back')],
    changes: ['updated 5', 'deleted 5', 'created 5'],
  },
  {
    name: 'events without an offset always apply; malformed ones never',
    snapshot: [],
    offset: 4,
    events: [
      { action: 'created', data: item(1, 'a') },
      { action: 'created', data: { text: 'no id' }, offset: 5 },
      { action: 'renamed', data: item(2, 'b'), offset: 6 },
      { action: 'created', data: 'not an object', offset: 7 },
    ],
    rows: [item(1, 'a')],
    changes: ['created 1'],
  },
];

function check(c: Case): void {
  const keys = parseOrder(c.order);
  let state: MirrorState<Row> = fromSnapshot(c.snapshot, c.offset, keys);
  const changes: string[] = [];
  for (const event of c.events) {
    const before = state.rows;
    const applied = applyEvent(state, event, keys);
    if (applied === undefined) continue;
    expect(applied.state.rows).not.toBe(before);
    changes.push(`${applied.change.action} ${applied.change.id}`);
    state = applied.state;
  }
  expect(state.rows).toEqual(c.rows);
  expect(changes).toEqual(c.changes);
}

describe('applyEvent', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_, c) => check(c));

  it('keeps untouched rows by identity and gives the changed row', () => {
    const keys = parseOrder(undefined);
    const state = fromSnapshot([item(1, 'a'), item(2, 'b')], 0, keys);
    const applied = applyEvent(state, updated(1, { id: 2, done: true }), keys)!;
    expect(applied.state.rows[0]).toBe(state.rows[0]);
    expect(applied.change.row).toEqual(item(2, 'b', true));
    expect(state.rows[1]).toEqual(item(2, 'b')); // the old mirror is untouched
    const gone = applyEvent(applied.state, deleted(2, 1), keys)!;
    expect(gone.change).toEqual({ action: 'deleted', id: 1, row: item(1, 'a') });
  });

  it('a reload replaces the mirror, and its offset governs what follows', () => {
    const keys = parseOrder('text');
    let state = fromSnapshot([item(1, 'a'), item(2, 'b')], 3, keys);
    state = applyEvent(state, created(4, item(3, 'c')), keys)!.state;
    // Reconnect: rows 1 and 3 changed or went while away; the fresh snapshot is the truth.
    state = fromSnapshot([item(3, 'c', true), item(4, 'aa')], 9, keys);
    expect(state.rows.map((r) => r.id)).toEqual([4, 3]);
    expect(applyEvent(state, deleted(9, 4), keys)).toBeUndefined();
    expect(applyEvent(state, deleted(10, 4), keys)!.state.rows.map((r) => r.id)).toEqual([3]);
  });
});

/**
 * One resume: a mirror at offset `since`, the reply to `subscribe` with `since`, and what the mirror becomes. `live`
 * are publications arriving after the reply; `rows` and `changes` cover them too.
 */
interface ResumeCase {
  name: string;
  order?: string;
  mirror: Row[];
  since: number;
  reply: unknown;
  kind: 'replay' | 'reload' | 'unusable';
  live?: MirrorEvent[];
  rows?: Row[];
  offset?: number;
  changes?: string[];
}

const wire = (e: MirrorEvent) => ({ channel: 'todo-item|todo_list__id:1', ...e });

const resumeCases: ResumeCase[] = [
  {
    name: 'events: a row enters, one leaves, one merges, in order; the mirror is current to the reply offset',
    order: 'text',
    mirror: [item(1, 'a'), item(2, 'b'), item(3, 'c')],
    since: 10,
    reply: {
      events: [created(11, item(7, 'moved in')), deleted(12, 2), updated(14, { id: 3, text: '0 first', done: true })],
      offset: 20,
    },
    kind: 'replay',
    rows: [item(3, '0 first', true), item(1, 'a'), item(7, 'moved in')],
    offset: 20,
    changes: ['created 7', 'deleted 2', 'updated 3'],
  },
  {
    name: 'events: a re-stated row replaces the mirror\'s, a deleted absent row is a no-op',
    mirror: [item(1, 'a')],
    since: 4,
    reply: { events: [created(5, item(1, 'a', true)), deleted(6, 9)], offset: 6 },
    kind: 'replay',
    rows: [item(1, 'a', true)],
    offset: 6,
    changes: ['created 1'],
  },
  {
    name: 'no events: the offset still moves up to the reply\'s',
    mirror: [item(1, 'a')],
    since: 4,
    reply: { events: [], offset: 9 },
    kind: 'replay',
    rows: [item(1, 'a')],
    offset: 9,
    changes: [],
  },
  {
    name: 'duplicates: replayed events at or below since, and repeats, are skipped',
    mirror: [item(1, 'a')],
    since: 5,
    reply: {
      events: [created(4, item(2, 'old')), updated(5, { id: 1, text: 'old' }), created(6, item(3, 'c')), created(6, item(3, 'c'))],
      offset: 6,
    },
    kind: 'replay',
    rows: [item(1, 'a'), item(3, 'c')],
    offset: 6,
    changes: ['created 3'],
  },
  {
    name: 'duplicates: live publications the replay covered are skipped, later ones apply',
    mirror: [item(1, 'a')],
    since: 5,
    reply: { events: [updated(6, { id: 1, done: true })], offset: 8 },
    kind: 'replay',
    // 6 was replayed; 7 and 8 did not concern the filter but are covered by the reply's offset.
    live: [updated(6, { id: 1, done: true }), created(7, item(2, 'b')), deleted(8, 1), created(9, item(4, 'd'))],
    rows: [item(1, 'a', true), item(4, 'd')],
    offset: 9,
    changes: ['updated 1', 'created 4'],
  },
  {
    name: 'reload: the log no longer reaches back; the snapshot replaces the mirror',
    order: '-id',
    mirror: [item(1, 'a'), item(2, 'b')],
    since: 3,
    reply: { reload: true, rows: [item(2, 'b', true), item(5, 'e')], offset: 40 },
    kind: 'reload',
    live: [deleted(40, 5), created(41, item(6, 'f'))],
    rows: [item(6, 'f'), item(5, 'e'), item(2, 'b', true)],
    offset: 41,
    changes: ['created 6'],
  },
  {
    name: 'reload: a snapshot behind the mirror (a replaced database) is still the truth',
    mirror: [item(1, 'a')],
    since: 30,
    reply: { reload: true, rows: [], offset: 2 },
    kind: 'reload',
    live: [created(3, item(1, 'new'))],
    rows: [item(1, 'new')],
    offset: 3,
    changes: ['created 1'],
  },
  { name: 'unusable: the log ends before since', mirror: [], since: 30, reply: { events: [], offset: 2 }, kind: 'unusable' },
  { name: 'unusable: no offset', mirror: [], since: 3, reply: { events: [] }, kind: 'unusable' },
  { name: 'unusable: neither events nor reload', mirror: [], since: 3, reply: { rows: [], offset: 3 }, kind: 'unusable' },
  { name: 'unusable: reload without rows', mirror: [], since: 3, reply: { reload: true, offset: 3 }, kind: 'unusable' },
  { name: 'unusable: not an object', mirror: [], since: 3, reply: [], kind: 'unusable' },
];

describe('resumeMirror', () => {
  it.each(resumeCases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    const keys = parseOrder(c.order);
    const before = fromSnapshot(c.mirror, c.since, keys);
    const reply = { ...(c.reply as object) };
    if ('events' in reply && Array.isArray(reply.events)) reply.events = reply.events.map(wire);
    const outcome = resumeMirror(before, Array.isArray(c.reply) ? c.reply : reply, keys);
    expect(outcome.kind).toBe(c.kind);
    if (outcome.kind === 'unusable') return;
    const changes: string[] = [];
    if (outcome.kind === 'replay') {
      // Each step is the mirror after one applied event, in order, ending where the final state starts.
      for (const step of outcome.steps) changes.push(`${step.change.action} ${step.change.id}`);
      if (outcome.steps.length > 0) expect(outcome.state.rows).toBe(outcome.steps[outcome.steps.length - 1].state.rows);
    }
    let state = outcome.state;
    for (const event of c.live ?? []) {
      const applied = applyEvent(state, event, keys);
      if (applied === undefined) continue;
      changes.push(`${applied.change.action} ${applied.change.id}`);
      state = applied.state;
    }
    expect(state.rows).toEqual(c.rows);
    expect(state.offset).toBe(c.offset);
    expect(changes).toEqual(c.changes);
    expect(before.rows).toEqual(sortRows(c.mirror, keys)); // the old mirror is untouched
  });
});
