// The contract between the client and its long-lived subscriptions (live collections and plain channels).

import type { CallOptions } from './calls';
import type { DrakonError } from './errors';
import type { Reply } from './protocol';
import type { ChannelRouter, Ticket } from './router';

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

/**
 * Sends a request that starts a subscription (`subscribe`, `join_presence`), whose publications may come before its
 * reply: the router keeps them meanwhile. `current()` says whether the caller still wants the answer (nothing
 * reconnected or closed since); `succeeded` gets the ticket to finish with the reply, `failed` the error. An answer
 * nobody wants any more gives the ticket up.
 */
export function startOn(
  host: SubscriptionHost,
  route: string,
  verb: string,
  args: Record<string, unknown>,
  current: () => boolean,
  succeeded: (ticket: Ticket, reply: Reply) => void,
  failed: (err: DrakonError) => void,
): void {
  const router = host.router;
  const ticket = router.begin();
  host.requestReply(route, verb, args, { queue: false }).then(
    (reply) => {
      if (current()) succeeded(ticket, reply);
      else router.abandon(ticket);
    },
    (err: DrakonError) => {
      router.abandon(ticket);
      if (current()) failed(err);
    },
  );
}
