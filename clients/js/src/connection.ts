// The socket's lifecycle: opening, the connect timeout, losing it, and reconnecting with backoff through the list of
// URLs. It knows nothing of calls or subscriptions; the client reacts to its hooks.
//
// Every close, whatever its code (1001 server shutdown, 4000 idle, 4008 slow consumer, 1006 network), leads to a
// reconnect unless the client was closed or `reconnect` is off.

import { Backoff } from './backoff';
import { CONNECT_TIMEOUT_MS, STABLE_CONNECTION_MS, WEBSOCKET_FAILURES_BEFORE_FALLBACK } from './limits';
import { SockJsPolling } from './sockjs';
import type { ConnectionState } from './types';

/** The part of the browser WebSocket API the client uses; the `ws` package's WebSocket fits too. */
export interface SocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type SocketConstructor = new (url: string) => SocketLike;

/** What the connection tells its owner. */
export interface ConnectionHooks {
  /** The socket opened; sending works from now on. Runs before the `open` state is announced. */
  opened(): void;
  /** A text frame arrived. */
  message(text: string): void;
  /** An open socket was lost (not called for attempts that never opened, nor on close()). */
  lost(): void;
  /** The state changed; runs after `opened`/`lost`. */
  state(state: ConnectionState): void;
}

export interface ConnectionSettings {
  urls: readonly string[];
  reconnect: boolean;
  minDelayMs: number;
  maxDelayMs: number;
  /** `undefined`: none in this runtime, so every attempt goes over SockJS. */
  WebSocket: SocketConstructor | undefined;
  /** Whether to move to SockJS after WebSocket attempts that never open (the runtime's own WebSocket only). */
  fallback: boolean;
  random?: () => number;
}

export class Connection {
  private current: ConnectionState = 'connecting';
  private socket: SocketLike | undefined;
  private openedAt: number | undefined;
  private urlIndex = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly backoff: Backoff;
  /** WebSocket attempts in a row that never opened. */
  private unopened = 0;
  /** Attempts go over SockJS from now on. */
  private polling: boolean;

  constructor(
    private readonly settings: ConnectionSettings,
    private readonly hooks: ConnectionHooks,
  ) {
    this.backoff = new Backoff(settings.minDelayMs, settings.maxDelayMs, settings.random);
    this.polling = settings.WebSocket === undefined;
  }

  /** Whether the connection has moved to SockJS (no WebSocket here, or none could be opened). */
  get transport(): 'websocket' | 'sockjs-polling' {
    return this.polling ? 'sockjs-polling' : 'websocket';
  }

  get state(): ConnectionState {
    return this.current;
  }

  isOpen(): boolean {
    return this.current === 'open';
  }

  /** Makes the first attempt. */
  start(): void {
    this.attempt();
  }

  send(text: string): void {
    // A socket that is closing may throw; its close event follows and rejects the call as disconnected.
    try {
      this.socket?.send(text);
    } catch {
      /* reported by the close event */
    }
  }

  /** Closes for good. */
  close(): void {
    if (this.current === 'closed') return;
    this.clearTimers();
    this.discard(1000, 'client closed');
    this.setState('closed');
  }

  private attempt(): void {
    this.retryTimer = undefined;
    const url = this.settings.urls[this.urlIndex % this.settings.urls.length];
    this.urlIndex = (this.urlIndex + 1) % this.settings.urls.length;
    let socket: SocketLike;
    try {
      const Socket = this.polling || this.settings.WebSocket === undefined ? SockJsPolling : this.settings.WebSocket;
      socket = new Socket(url);
    } catch {
      this.unopenedAttempt();
      this.failed();
      return;
    }
    this.socket = socket;
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      if (this.socket === socket && this.openedAt === undefined) {
        this.discard(1000, 'connect timeout');
        this.unopenedAttempt();
        this.failed();
      }
    }, CONNECT_TIMEOUT_MS);
    socket.onopen = () => {
      if (this.socket !== socket) return;
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
      this.openedAt = Date.now();
      this.unopened = 0;
      this.current = 'open';
      this.hooks.opened();
      this.hooks.state('open');
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      const text = asText(event.data);
      if (text !== undefined) this.hooks.message(text);
    };
    const gone = () => {
      if (this.socket !== socket) return;
      const wasOpen = this.openedAt !== undefined;
      if (wasOpen && Date.now() - (this.openedAt as number) >= STABLE_CONNECTION_MS) this.backoff.reset();
      // Closing is a no-op after a close event, and after a bare error it makes sure the socket is released.
      this.discard(1000, 'socket lost');
      if (wasOpen) this.hooks.lost();
      else this.unopenedAttempt();
      this.failed();
    };
    socket.onclose = gone;
    // Browsers and `ws` follow an error with a close event, but Node's built-in WebSocket may not after a failed
    // handshake, so an error counts as the end of the socket too; the close event that may follow is ignored.
    socket.onerror = gone;
  }

  /** A WebSocket attempt that never opened: after a few in a row, the next attempts go over SockJS. */
  private unopenedAttempt(): void {
    if (this.polling) return;
    this.unopened++;
    if (this.settings.fallback && this.unopened >= WEBSOCKET_FAILURES_BEFORE_FALLBACK) this.polling = true;
  }

  /** After a lost socket or a failed attempt: schedule the next attempt, or stop. */
  private failed(): void {
    if (this.current === 'closed') return;
    if (!this.settings.reconnect) {
      this.setState('closed');
      return;
    }
    this.setState('reconnecting');
    this.retryTimer = setTimeout(() => this.attempt(), this.backoff.next());
  }

  /** Forgets the current socket, closing it if asked; its late events are ignored. */
  private discard(code?: number, reason?: string): void {
    const socket = this.socket;
    this.socket = undefined;
    this.openedAt = undefined;
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    if (socket === undefined) return;
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
    if (code !== undefined) {
      try {
        socket.close(code, reason);
      } catch {
        /* already closing */
      }
    }
  }

  private clearTimers(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
  }

  private setState(state: ConnectionState): void {
    if (this.current === state) return;
    this.current = state;
    this.hooks.state(state);
  }
}

/** Text frames arrive as strings in browsers and in `ws`; tolerate buffers from other implementations. */
function asText(data: unknown): string | undefined {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    return new TextDecoder().decode(data as ArrayBuffer | ArrayBufferView);
  }
  return undefined;
}

/**
 * Turns what `connect` was given into a WebSocket URL: `ws(s)://` as is, `http(s)://` mapped to `ws(s)://`, and in
 * a browser a path such as `/data/websocket` resolved against the page.
 */
export function resolveUrl(url: string): string {
  if (/^wss?:\/\//i.test(url)) return url;
  if (/^https?:\/\//i.test(url)) return url.replace(/^http/i, 'ws');
  const location = (globalThis as { location?: { href?: string } }).location;
  if (location?.href !== undefined) {
    const resolved = new URL(url, location.href).href;
    return resolved.replace(/^http/i, 'ws');
  }
  return url;
}
