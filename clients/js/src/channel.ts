// A plain pub/sub channel subscription: hands each message's data to a handler, and subscribes again after every
// reconnect. Messages sent while the connection was down are not replayed; plain channels carry no offsets.

import { CLIENT_CODES, DrakonError } from './errors';
import { startOn, type Resubscribable, type SubscriptionHost } from './host';
import type { Publication, Reply } from './protocol';
import type { Subscriber, Ticket } from './router';
import type { ChannelSubscription } from './types';

export class PlainChannel implements ChannelSubscription, Subscriber, Resubscribable {
  readonly ready: Promise<void>;
  private readonly args: Record<string, unknown>;
  private attempt = 0;
  private subscribedOn: number | undefined;
  private closed = false;
  private settled = false;
  private resolveReady!: () => void;
  private rejectReady!: (err: DrakonError) => void;

  constructor(
    private readonly host: SubscriptionHost,
    private readonly route: string,
    name: string | undefined,
    private readonly handler: (data: unknown) => void,
    local: string,
  ) {
    this.args = name === undefined ? { channel: local } : { channel: local, name };
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const subscribed = this.subscribedOn === this.host.generation && this.host.isOpen();
    this.stop();
    this.host.router.remove(this);
    this.host.forget(this);
    if (!subscribed) return Promise.resolve();
    return this.host.requestReply(this.route, 'unsubscribe', this.args, { queue: false }).then(
      () => undefined,
      () => undefined,
    );
  }

  connected(): void {
    if (this.closed) return;
    const attempt = ++this.attempt;
    this.subscribedOn = this.host.generation;
    startOn(
      this.host,
      this.route,
      'subscribe',
      this.args,
      () => attempt === this.attempt,
      (ticket, reply) => this.subscribed(ticket, reply),
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
    this.subscribedOn = undefined;
  }

  shutdown(): void {
    if (!this.closed) this.stop();
  }

  deliver(publication: Publication): void {
    if (this.closed) return;
    try {
      this.handler(publication.data);
    } catch (err) {
      // A throwing handler must not stop delivery to the others; the host still reports it as uncaught.
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  private subscribed(ticket: Ticket, reply: Reply): void {
    const buffered = this.host.router.finish(ticket, this, reply.channel_data?.remote_channels ?? []);
    if (!this.settled) {
      this.settled = true;
      this.resolveReady();
    }
    for (const publication of buffered) this.deliver(publication);
  }

  private stop(): void {
    this.closed = true;
    this.attempt++;
    this.subscribedOn = undefined;
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(new DrakonError(CLIENT_CODES.closed, 'the channel was closed before it was subscribed'));
    }
  }
}
