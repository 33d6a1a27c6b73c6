// What a plain channel and a presence room share: a membership the server forgets with the connection, started
// again on every connection (`subscribe`, `join_presence`), left on `close()` (`unsubscribe`, `leave_presence`),
// with a `ready` promise that settles on the first start. Live collections keep their own lifecycle, since a
// resume differs from a first subscribe.

import { CLIENT_CODES, DrakonError } from './errors';
import { startOn, type Resubscribable, type SubscriptionHost } from './host';
import type { Publication, Reply } from './protocol';
import type { Subscriber, Ticket } from './router';

/** A request of the server's: its verb and arguments. */
export interface Ask {
  verb: string;
  args: Record<string, unknown>;
}

export abstract class Held implements Subscriber, Resubscribable {
  readonly ready: Promise<void>;
  protected closed = false;
  private attempt = 0;
  /** The connection it was last started on. */
  private heldOn: number | undefined;
  private settled = false;
  private resolveReady!: () => void;
  private rejectReady!: (err: DrakonError) => void;

  constructor(
    protected readonly host: SubscriptionHost,
    protected readonly route: string,
    /** Why `ready` rejects when closed before it started, e.g. "the channel was closed before it was subscribed". */
    private readonly closedEarly: string,
  ) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
  }

  /** The request that starts it on a connection. */
  protected abstract start(): Ask;
  /** The request that ends it. */
  protected abstract end(): Ask;
  /** The start succeeded: take the reply, then the publications that beat it (finish `ticket` with the router). */
  protected abstract started(ticket: Ticket, reply: Reply): void;
  abstract deliver(publication: Publication): void;
  /** Called once, when it closes, before `ready` rejects (if it still can). */
  protected stopped(): void {}

  /** Whether it is started on the connection that is open now. */
  protected isHeld(): boolean {
    return this.heldOn === this.host.generation && this.host.isOpen();
  }

  /** Resolves `ready`, the first time. */
  protected settle(): void {
    if (!this.settled) {
      this.settled = true;
      this.resolveReady();
    }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const held = this.isHeld();
    this.stop();
    this.host.router.remove(this);
    this.host.forget(this);
    if (!held) return Promise.resolve();
    const { verb, args } = this.end();
    return this.host.requestReply(this.route, verb, args, { queue: false }).then(
      () => undefined,
      () => undefined,
    );
  }

  connected(): void {
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
      },
    );
  }

  disconnected(): void {
    this.attempt++;
    this.heldOn = undefined;
  }

  shutdown(): void {
    if (!this.closed) this.stop();
  }

  private stop(): void {
    this.closed = true;
    this.attempt++;
    this.heldOn = undefined;
    this.stopped();
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(new DrakonError(CLIENT_CODES.closed, this.closedEarly));
    }
  }
}
