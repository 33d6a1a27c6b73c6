// The contract between the client and its long-lived subscriptions (live collections and plain channels).

import type { CallOptions } from './calls';
import type { Reply } from './protocol';
import type { ChannelRouter } from './router';

/** What a subscription needs from the client. */
export interface SubscriptionHost {
  readonly router: ChannelRouter;
  /** Counts connections; a subscription remembers on which one it subscribed. */
  readonly generation: number;
  isOpen(): boolean;
  requestReply(route: string, verb: string, args: Record<string, unknown>, options: CallOptions): Promise<Reply>;
  /** The subscription closed itself; stop telling it about connections. */
  forget(subscription: Resubscribable): void;
}

/** A subscription the client tells about its connection. */
export interface Resubscribable {
  /** A connection opened: subscribe (again). */
  connected(): void;
  /** The connection was lost; the server forgot the subscription. */
  disconnected(): void;
  /** The client closed. */
  shutdown(): void;
}
