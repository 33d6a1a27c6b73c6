// The live mirror as pure functions: ordering rows like the server's SQL does, and applying one event to a mirror.
// live.ts does the I/O and calls these; the tests drive them with tables of event sequences.

import { isObject } from './errors';
import type { LiveChange, Row } from './types';

/** One sort key: a field, ascending or descending. */
export interface OrderKey {
  field: string;
  descending: boolean;
}

/** A mirror: its rows, sorted, and the offset of the last change it reflects. */
export interface MirrorState<T extends Row> {
  readonly rows: readonly T[];
  readonly offset: number;
}

/** A model event as the mirror needs it. */
export interface MirrorEvent {
  action: string;
  data: unknown;
  offset?: number;
}

/**
 * The sort keys for an `_order` option (`"field"`, `"-field"` or a list), with `id` ascending appended as the
 * tiebreak unless the list names `id` already, as the server does.
 */
export function parseOrder(order?: string | readonly string[]): OrderKey[] {
  const names = order === undefined ? [] : typeof order === 'string' ? [order] : [...order];
  const keys = names.map((name) =>
    name.startsWith('-') ? { field: name.slice(1), descending: true } : { field: name, descending: false },
  );
  if (!keys.some((k) => k.field === 'id')) keys.push({ field: 'id', descending: false });
  return keys;
}

/**
 * Compares two field values the way the server's SQL orders them: null (or absent) first, then numbers and bools
 * (false = 0 < true = 1) numerically, then strings by code point (the UTF-8 byte order SQLite and Rust use), then
 * anything else (json fields) by its JSON text. Returns -1, 0 or 1.
 */
export function compareValues(a: unknown, b: unknown): number {
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
      return compareStrings(a as string, b as string);
    default:
      return compareStrings(JSON.stringify(a) ?? '', JSON.stringify(b) ?? '');
  }
}

function rank(value: unknown): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number' || typeof value === 'boolean') return 1;
  if (typeof value === 'string') return 2;
  return 3;
}

/**
 * Code point order. UTF-16 code units sort like code points except that surrogates (0xD800–0xDFFF, which encode
 * code points above 0xFFFF) must sort after 0xE000–0xFFFF; remapping the first differing unit fixes that.
 */
export function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) < codePointRank(y) ? -1 : 1;
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

function codePointRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}

/** Compares two rows by `keys` (from {@link parseOrder}, which ends with the id tiebreak). */
export function compareRows(a: Row, b: Row, keys: readonly OrderKey[]): number {
  for (const key of keys) {
    const c = compareValues(a[key.field], b[key.field]);
    if (c !== 0) return key.descending ? -c : c;
  }
  return 0;
}

/** A sorted copy of `rows`. */
export function sortRows<T extends Row>(rows: readonly T[], keys: readonly OrderKey[]): T[] {
  return [...rows].sort((a, b) => compareRows(a, b, keys));
}

/** A mirror made from a snapshot: `rows` sorted, at the snapshot's `offset`. */
export function fromSnapshot<T extends Row>(rows: readonly T[], offset: number, keys: readonly OrderKey[]): MirrorState<T> {
  return { rows: sortRows(rows, keys), offset };
}

/** The result of applying an event that changed the mirror. */
export interface Applied<T extends Row> {
  state: MirrorState<T>;
  change: LiveChange<T>;
}

/**
 * Applies one event to a mirror. Returns `undefined` when the event changes nothing: its offset is at or below the
 * mirror's (the snapshot or an earlier event already holds it), it updates or deletes a row the mirror lacks, or it
 * is malformed.
 *
 * - `created`: inserts the row, or replaces the row with the same id.
 * - `updated`: merges the sent fields (only changed ones are sent) into the existing row.
 * - `deleted`: removes the row.
 *
 * The row lands at its sorted position; untouched rows keep their identity, the rows array is always new.
 */
export function applyEvent<T extends Row>(
  state: MirrorState<T>,
  event: MirrorEvent,
  keys: readonly OrderKey[],
): Applied<T> | undefined {
  if (event.offset !== undefined && event.offset <= state.offset) return undefined;
  const data = event.data;
  if (!isObject(data) || typeof data.id !== 'number') return undefined;
  const id = data.id;
  const offset = event.offset ?? state.offset;
  const at = state.rows.findIndex((row) => row.id === id);
  switch (event.action) {
    case 'created': {
      const row = { ...data } as T;
      return { state: { rows: insertSorted(without(state.rows, at), row, keys), offset }, change: { action: 'created', id, row } };
    }
    case 'updated': {
      if (at < 0) return undefined;
      const row = { ...state.rows[at], ...data } as T;
      return { state: { rows: insertSorted(without(state.rows, at), row, keys), offset }, change: { action: 'updated', id, row } };
    }
    case 'deleted': {
      if (at < 0) return undefined;
      const row = state.rows[at];
      return { state: { rows: without(state.rows, at), offset }, change: { action: 'deleted', id, row } };
    }
    default:
      return undefined;
  }
}

function without<T>(rows: readonly T[], at: number): T[] {
  if (at < 0) return [...rows];
  return [...rows.slice(0, at), ...rows.slice(at + 1)];
}

/** Inserts into sorted `rows` (mutating that fresh copy) after every row that sorts at or before `row`. */
function insertSorted<T extends Row>(rows: T[], row: T, keys: readonly OrderKey[]): T[] {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareRows(rows[mid], row, keys) <= 0) lo = mid + 1;
    else hi = mid;
  }
  rows.splice(lo, 0, row);
  return rows;
}

/**
 * What a mirror makes of the reply to a `subscribe` with `since` (the offset it last applied):
 *
 * - `replay`: `data` is `{events, offset}`. `steps` are the events that changed the mirror, applied in order, each
 *   with the mirror after it; `state` is the mirror after all of them, current to the reply's `offset` (so later
 *   publications at or below it are skipped).
 * - `reload`: `data` is `{reload: true, rows, offset}`, a fresh snapshot because the change log no longer reaches
 *   back to `since`; `state` replaces the mirror.
 * - `unusable`: the reply cannot be trusted to continue this mirror (malformed, or the server's log ends before
 *   `since`, as when its database was replaced); the caller falls back to a fresh snapshot.
 */
export type Resumed<T extends Row> =
  | { kind: 'replay'; steps: Applied<T>[]; state: MirrorState<T> }
  | { kind: 'reload'; state: MirrorState<T> }
  | { kind: 'unusable'; reason: string };

/** Applies the reply to a `subscribe` with `since` to `state`, whose offset is `since`; see {@link Resumed}. */
export function resumeMirror<T extends Row>(
  state: MirrorState<T>,
  data: unknown,
  keys: readonly OrderKey[],
): Resumed<T> {
  if (!isObject(data) || typeof data.offset !== 'number') {
    return { kind: 'unusable', reason: 'the resume reply has no offset' };
  }
  const offset = data.offset;
  if (data.reload === true) {
    if (!Array.isArray(data.rows)) return { kind: 'unusable', reason: 'the reload reply has no rows' };
    return { kind: 'reload', state: fromSnapshot(data.rows as T[], offset, keys) };
  }
  if (!Array.isArray(data.events)) return { kind: 'unusable', reason: 'the resume reply has neither events nor a reload' };
  if (offset < state.offset) {
    return { kind: 'unusable', reason: `the server's change log ends at ${offset}, before ${state.offset} which this mirror applied` };
  }
  const steps: Applied<T>[] = [];
  let current = state;
  for (const raw of data.events) {
    if (!isObject(raw) || typeof raw.action !== 'string') continue;
    const event: MirrorEvent = { action: raw.action, data: raw.data };
    if (typeof raw.offset === 'number') event.offset = raw.offset;
    const applied = applyEvent(current, event, keys);
    if (applied === undefined) continue;
    steps.push(applied);
    current = applied.state;
  }
  return { kind: 'replay', steps, state: { rows: current.rows, offset: Math.max(current.offset, offset) } };
}
