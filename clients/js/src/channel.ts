// A plain pub/sub channel subscription: hands each message's data to a handler, and subscribes again after every
// reconnect. Messages sent while the connection was down are not replayed; plain channels carry no offsets.

import { Held, type Ask } from './held';
import type { SubscriptionHost } from './host';
import type { Publication, Reply } from './protocol';
import type { Ticket } from './router';
import type { ChannelSubscription } from './types';

export class PlainChannel extends Held implements ChannelSubscription {
  private readonly args: Record<string, unknown>;

  constructor(
    host: SubscriptionHost,
    route: string,
    name: string | undefined,
    private readonly handler: (data: unknown) => void,
    local: string,
  ) {
    super(host, route, 'the channel was closed before it was subscribed');
    this.args = name === undefined ? { channel: local } : { channel: local, name };
  }

  protected start(): Ask {
    return { verb: 'subscribe', args: this.args };
  }

  protected end(): Ask {
    return { verb: 'unsubscribe', args: this.args };
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

  protected started(ticket: Ticket, reply: Reply): void {
    const buffered = this.host.router.finish(ticket, this, reply.channel_data?.remote_channels ?? []);
    this.settle();
    for (const publication of buffered) this.deliver(publication);
  }
}
