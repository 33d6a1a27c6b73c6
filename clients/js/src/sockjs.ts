// A socket over SockJS's xhr-polling transport, for where a WebSocket cannot be opened (no WebSocket in the
// runtime, or a proxy that refuses upgrades). It looks like a WebSocket to the connection: `onopen`, `onmessage` with
// each native frame, `onclose`, `send`, `close`. Under it: `POST <base>/<server>/<session>/xhr` receives (`o`, `a[...]`,
// `h`, `c[code,reason]`), `POST .../xhr_send` sends a JSON array of frames. The server keeps the session (its
// subscriptions, its queue of events) between requests, so nothing published in between is lost.

import type { SocketLike } from './connection';

/** The SockJS base URL that serves the same sessions as a native WebSocket URL: `ws://h/data/websocket` → `http://h/data`. */
export function sockJsBase(wsUrl: string): string {
  return wsUrl.replace(/^ws/i, 'http').replace(/\/websocket\/?(\?.*)?$/, '');
}

function randomId(): string {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class SockJsPolling implements SocketLike {
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  private readonly session: string;
  private ended = false;
  private outgoing: string[] = [];
  private sending = false;

  constructor(url: string) {
    this.session = `${sockJsBase(url)}/${Math.floor(Math.random() * 1000)}/${randomId()}`;
    // The connection sets its handlers right after construction: start on the next turn.
    queueMicrotask(() => void this.receive());
  }

  send(text: string): void {
    if (this.ended) throw new Error('the SockJS session is closed');
    this.outgoing.push(text);
    void this.flush();
  }

  close(code = 1000, reason = 'client closed'): void {
    this.end(code, reason);
  }

  private async receive(): Promise<void> {
    while (!this.ended) {
      let text: string;
      try {
        const response = await fetch(`${this.session}/xhr`, { method: 'POST', credentials: 'include' });
        if (!response.ok) return this.end(1006, `SockJS answered HTTP ${response.status}`);
        text = await response.text();
      } catch (err) {
        return this.end(1006, `SockJS request failed: ${String(err)}`);
      }
      for (const line of text.split('\n')) {
        if (this.ended) return;
        this.frame(line);
      }
    }
  }

  private frame(line: string): void {
    const kind = line.charAt(0);
    if (kind === 'o') {
      this.onopen?.({});
    } else if (kind === 'a') {
      let messages: unknown;
      try {
        messages = JSON.parse(line.slice(1));
      } catch {
        return this.end(1006, 'a SockJS frame that is not JSON');
      }
      for (const message of Array.isArray(messages) ? messages : []) {
        if (this.ended) return;
        this.onmessage?.({ data: typeof message === 'string' ? message : JSON.stringify(message) });
      }
    } else if (kind === 'c') {
      let code = 1006;
      let reason = 'closed by the server';
      try {
        const parsed = JSON.parse(line.slice(1)) as [number, string];
        [code, reason] = parsed;
      } catch {
        /* keep the defaults */
      }
      this.end(code, reason);
    }
    // `h` (heartbeat) and blank lines need nothing.
  }

  /** Sends what waits, one request at a time, in order. */
  private async flush(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.outgoing.length > 0 && !this.ended) {
        const batch = this.outgoing;
        this.outgoing = [];
        const response = await fetch(`${this.session}/xhr_send`, {
          method: 'POST',
          credentials: 'include',
          headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
          body: JSON.stringify(batch),
        });
        if (!response.ok) return this.end(1006, `SockJS refused a message: HTTP ${response.status}`);
      }
    } catch (err) {
      this.end(1006, `SockJS send failed: ${String(err)}`);
    } finally {
      this.sending = false;
    }
  }

  private end(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.onclose?.({ code, reason });
  }
}
