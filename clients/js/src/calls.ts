// Calls and their replies: callback names, timeouts, the queue of calls made while the socket is not open, and
// what happens to pending calls when the connection is lost or closed.
//
// Policy: a call that was sent when the connection drops rejects with `disconnected` (it may or may not have run on
// the server, so only the caller can decide whether to repeat it); a call still queued stays queued and is sent on
// the next connection. Either way `callTimeoutMs` bounds the total wait.

import { CLIENT_CODES, DrakonError, errorFromReply } from './errors';
import { encodeRequest, type Reply } from './protocol';

interface Pending {
  readonly frame: string;
  readonly resolve: (reply: Reply) => void;
  readonly reject: (err: DrakonError) => void;
  readonly timer: ReturnType<typeof setTimeout>;
  /** Order of sending on the current connection; undefined while queued. */
  sent?: number;
}

/** What the call registry needs from the connection. */
export interface Transport {
  isOpen(): boolean;
  send(text: string): void;
}

export interface CallOptions {
  /** Queue when the socket is not open; `false` rejects with `unavailable` instead. */
  queue: boolean;
}

export class Calls {
  private readonly pending = new Map<string, Pending>();
  private nextId = 0;
  private sendCount = 0;
  private closed = false;

  constructor(
    private readonly transport: Transport,
    private readonly timeoutMs: number,
  ) {}

  /** Sends (or queues) a request and resolves with its successful reply; rejects with a {@link DrakonError}. */
  request(route: string, verb: string, args: Record<string, unknown>, options: CallOptions): Promise<Reply> {
    if (this.closed) return Promise.reject(new DrakonError(CLIENT_CODES.closed, 'the client is closed'));
    const open = this.transport.isOpen();
    if (!open && !options.queue) {
      return Promise.reject(new DrakonError(CLIENT_CODES.unavailable, 'not connected; try again once the client is open'));
    }
    const callbackname = `cb_${this.nextId++}`;
    // Encoded now, so that changing `args` after the call does not change a queued request.
    const frame = encodeRequest(route, verb, args, callbackname);
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(callbackname)) {
          reject(new DrakonError(CLIENT_CODES.timeout, `no reply to ${route}.${verb} within ${this.timeoutMs} ms`));
        }
      }, this.timeoutMs);
      const call: Pending = { frame, resolve, reject, timer };
      this.pending.set(callbackname, call);
      if (open) this.send(call);
    });
  }

  /** Settles the call a reply answers; returns false when no pending call matches. */
  handleReply(reply: Reply): boolean {
    const name = reply.context.client_callback_name;
    const key = typeof name === 'string' ? name : this.oldestSent();
    const call = key === undefined ? undefined : this.pending.get(key);
    if (key === undefined || call === undefined || call.sent === undefined) return false;
    this.pending.delete(key);
    clearTimeout(call.timer);
    if (reply.context.state === 'success') call.resolve(reply);
    else call.reject(errorFromReply(reply.context.state, reply.data));
    return true;
  }

  /** The socket opened: sends the queued calls, oldest first. */
  flush(): void {
    for (const call of this.pending.values()) {
      if (call.sent === undefined) this.send(call);
    }
  }

  /** The socket was lost: sent calls reject with `disconnected`, queued calls wait for the next connection. */
  disconnected(): void {
    for (const [key, call] of this.pending) {
      if (call.sent === undefined) continue;
      this.pending.delete(key);
      clearTimeout(call.timer);
      call.reject(new DrakonError(CLIENT_CODES.disconnected, 'the connection was lost before the reply; the call may or may not have run'));
    }
    this.sendCount = 0;
  }

  /** The client closed: every pending call rejects with `closed`, and so will every later one. */
  close(): void {
    this.closed = true;
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.reject(new DrakonError(CLIENT_CODES.closed, 'the client was closed before the reply'));
    }
    this.pending.clear();
  }

  private send(call: Pending): void {
    call.sent = this.sendCount++;
    this.transport.send(call.frame);
  }

  /**
   * The server answers a frame it could not read (e.g. `frame_too_large`) without a callback name. It handles a
   * connection's requests one at a time, in order, so such a reply belongs to the oldest sent call still waiting.
   */
  private oldestSent(): string | undefined {
    let best: [string, number] | undefined;
    for (const [key, call] of this.pending) {
      if (call.sent !== undefined && (best === undefined || call.sent < best[1])) best = [key, call.sent];
    }
    return best?.[0];
  }
}
