// The public shapes of the client. Everything here is type-only; the runtime lives in client.ts, live.ts and
// channel.ts, which implement these interfaces.

import type { DrakonError } from './errors';

/**
 * Where the client's connection stands.
 *
 * - `connecting`: the first attempt is under way; nothing has been open yet.
 * - `open`: the socket is open; calls are sent at once.
 * - `reconnecting`: the socket was lost (or an attempt failed) and another attempt is waiting or under way.
 * - `closed`: {@link Client.close} was called, or the socket was lost with `reconnect: false`. Final.
 */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Options of {@link connect}; every one is optional. */
export interface ConnectOptions {
  /** Reconnect after the socket is lost, whatever its close code. Default `true`. */
  reconnect?: boolean;
  /** The cap of the first backoff delay, doubled on each failed attempt. Default 250 ms. */
  minDelayMs?: number;
  /** The largest cap a backoff delay can reach. Default 10 000 ms. */
  maxDelayMs?: number;
  /** How long a call may wait for its reply, queueing time included; then it rejects with code `timeout`. Default 15 000 ms. */
  callTimeoutMs?: number;
  /**
   * `true` (default): calls made while the socket is not open wait and are sent once it opens (the timeout still
   * runs). `false`: such calls reject at once with code `unavailable`.
   */
  queueWhileDisconnected?: boolean;
  /** The WebSocket constructor to use; in Node pass the `ws` package's export. Default `globalThis.WebSocket`. */
  WebSocket?: any;
  /**
   * A signed token (JWT) naming the user; sent as the first request on every connection (`auth` on route `drakon`),
   * before any call or subscription. For tokens that expire, prefer `getToken`.
   */
  token?: string;
  /**
   * Returns a fresh token; called before each connection's first request and again when the server says the current
   * one is about to expire, so that a long-lived page stays signed in.
   */
  getToken?: () => string | Promise<string>;
}

/** The signed-in user, as the server read them from the token, the session cookie or the app's own login. */
export interface User {
  id: string;
  roles: string[];
  /** Public information from the token's `info` claim. */
  info: unknown;
}

/** A row as the server publishes it: its id, its model name in `_type`, and the route's `publish_fields`. */
export interface Row {
  id: number;
  _type?: string;
  [field: string]: unknown;
}

/** A client: one WebSocket, reconnected as needed, shared by every call, live collection and channel. */
export interface Client {
  /** The connection's current state. */
  readonly state: ConnectionState;
  /**
   * How it connects: `websocket`, or `sockjs-polling` once no WebSocket could be opened (or the runtime has none),
   * over the server's SockJS endpoint and the same sessions.
   */
  readonly transport: 'websocket' | 'sockjs-polling';
  /**
   * The signed-in user, once the server accepted the token or said whom the connection's cookies signed in (a
   * built-in user's session, the app's own login); `undefined` when anonymous.
   */
  readonly user: User | undefined;
  /** Calls `fn` on every state change; returns a function that removes it. */
  on(event: 'state', fn: (state: ConnectionState) => void): () => void;
  /**
   * Calls `fn` when the user changes: the server accepts or refuses a token (`undefined` and the error), or names the
   * user a connection's cookies signed in as; returns a function that removes it.
   */
  on(event: 'user', fn: (user: User | undefined, error?: DrakonError) => void): () => void;
  /** Calls `verb` on `route` and resolves with the reply's `data`; rejects with a {@link DrakonError}. */
  call<T = unknown>(route: string, verb: string, args?: Record<string, unknown>): Promise<T>;
  /** Like {@link Client.call} but resolves with the whole reply, e.g. for `context.client_context.page` of `get_list`. */
  request(
    route: string,
    verb: string,
    args?: Record<string, unknown>,
  ): Promise<{ data: unknown; context: Record<string, unknown> }>;
  /**
   * A live mirror of the rows of `route` that match `filter`, kept current by the server's events; after a
   * reconnect it resumes from the last offset it applied, or reloads from a fresh snapshot. `live(route, { id: 5 })` is the single-object form: a collection of at most one row.
   */
  live<T extends Row = Row>(
    route: string,
    filter?: Record<string, unknown>,
    options?: { order?: string | string[] },
  ): LiveCollection<T>;
  /**
   * Subscribes to a plain pub/sub channel of a channel route and calls `handler` with each message's `data`.
   * `name` may be `undefined` when the route offers exactly one fixed channel. Resubscribes after reconnects.
   */
  channel(route: string, name: string | undefined, handler: (data: unknown) => void): ChannelSubscription;
  /**
   * Joins the presence of an object (`id`, a number, on a model route) or a channel (`name`, a string, on a channel
   * route) whose route has presence, optionally with a starting `state`. Joins again after reconnects, with the
   * state last set.
   */
  presence(route: string, idOrName: number | string, options?: { state?: Record<string, unknown> }): PresenceRoom;
  /** Closes for good: state `closed`, no reconnect, pending calls reject with code `closed`. */
  close(): void;
}

/** A member of a presence room: a user, once however many connections they have open. */
export interface Member {
  id: string;
  /** The user's public info, as far as the route shows it. */
  info: Record<string, unknown>;
  /** The state the member set most recently from a connection still in the room, e.g. `{ editing: 7 }`. */
  state: Record<string, unknown>;
}

/** This client's place in a presence room, and who else is there. */
export interface PresenceRoom {
  /** Resolves once the first join succeeded; rejects with its error (`not_found`, `permission_denied`, …). */
  readonly ready: Promise<void>;
  /** The members by id, this client's user included; a new map after every change. */
  readonly members: ReadonlyMap<string, Member>;
  /** How many members the room has; in a large room more than `members` holds. */
  readonly count: number;
  /** Whether the room is above its route's `large_room` size: it sends batches, and `members` is the first page. */
  readonly large: boolean;
  /** Whether there are members `members` does not hold (a large room): page through them with `page`. */
  readonly partial: boolean;
  /** Calls `fn` with the members after every change. */
  on(event: 'change', fn: (members: ReadonlyMap<string, Member>) => void): () => void;
  /** Calls `fn` when a member joins, changes (state or info) or leaves, as seen by this client. */
  on(event: 'joined' | 'updated' | 'left', fn: (member: Member) => void): () => void;
  /** Sets the state the others see for this connection, e.g. `{ editing: 7 }`; `{}` clears it. */
  set(state: Record<string, unknown>): Promise<void>;
  /** A page of members in id order after `after`. */
  page(after?: string, limit?: number): Promise<{ members: Member[]; count: number; next: string | null }>;
  /** Leaves the room; never rejects. */
  close(): Promise<void>;
}

/** A plain channel subscription. */
export interface ChannelSubscription {
  /**
   * Resolves once the first subscribe succeeded; rejects with its error otherwise (e.g. `permission_denied` for a
   * channel the route does not offer). Optional to await.
   */
  readonly ready: Promise<void>;
  /** Unsubscribes; never rejects. */
  close(): Promise<void>;
}

/**
 * Where a live collection stands.
 *
 * - `loading`: waiting for the first snapshot.
 * - `live`: the mirror is current and follows every event.
 * - `reconnecting`: the connection was lost; `items` keep their last value until the resume (or a fresh snapshot)
 *   catches them up.
 * - `error`: the last subscribe failed; see `error`. The next reconnect tries again.
 * - `closed`: {@link LiveCollection.close} or {@link Client.close} was called. Final.
 */
export type LiveStatus = 'loading' | 'live' | 'reconnecting' | 'error' | 'closed';

/**
 * One change of a live mirror. `reload` means the whole mirror was replaced by a snapshot (the first one, and one
 * after a reconnect the server could not replay); the others, live or replayed after a reconnect, carry the row's `id` and `row`: the row as it now is for `created` and
 * `updated`, as it last was for `deleted`.
 */
export interface LiveChange<T> {
  action: 'created' | 'updated' | 'deleted' | 'reload';
  id?: number;
  row?: T;
}

/** A live, ordered mirror of the rows of a route that match a filter. */
export interface LiveCollection<T extends Row> {
  /** The rows in the requested order (default: by id ascending); a new array after every change. */
  readonly items: readonly T[];
  /** Where the collection stands. */
  readonly status: LiveStatus;
  /** Why the last subscribe failed, while `status` is `error`; cleared by a later successful subscribe. */
  readonly error?: DrakonError;
  /**
   * The model's change-log offset the mirror is current to: the snapshot's, or the highest applied since (or the
   * offset a resume reply said it is current to). Events at or below it are skipped; a reconnect resumes after it.
   * `-1` before the first snapshot.
   */
  readonly lastOffset: number;
  /** Resolves after the first snapshot is applied; rejects if the first subscribe fails or the collection closes first. */
  readonly ready: Promise<void>;
  /** The row with this id, if it is in the mirror. */
  get(id: number): T | undefined;
  /** Calls `fn` once per applied change, with the resulting items; returns a function that removes it. */
  on(event: 'change', fn: (items: readonly T[], change: LiveChange<T>) => void): () => void;
  /** Calls `fn` on every status change; returns a function that removes it. */
  on(event: 'status', fn: (status: LiveStatus) => void): () => void;
  /** Unsubscribes; status becomes `closed`. Never rejects. */
  close(): Promise<void>;
}
