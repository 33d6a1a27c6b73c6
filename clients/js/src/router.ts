// Routes publications to the subscriptions of one connection, and holds back those that arrive before the reply
// to the subscribe that asked for them.
//
// The server registers a subscription before it answers, so events for it may reach the client first, when the
// client does not yet know which server channel the subscription maps to. While any subscribe is in flight, every
// publication is therefore also kept in a log; when a subscribe's reply names its server channels, the subscriber
// gets the logged publications of those channels that arrived after its request was sent. Several local
// subscriptions may share one server channel (same route and filter): each gets every publication.

import type { Publication } from './protocol';

/** Receives the publications of the server channels it subscribed to. */
export interface Subscriber {
  deliver(publication: Publication): void;
}

/** A subscribe in flight: where the log stood when it was sent. */
export interface Ticket {
  readonly mark: number;
}

export class ChannelRouter {
  private readonly byRemote = new Map<string, Set<Subscriber>>();
  private readonly open = new Set<Ticket>();
  private log: Publication[] = [];
  /** The sequence number of `log[0]`; sequence numbers keep counting across trims. */
  private logStart = 0;

  /** Call right before sending a subscribe: publications from now on are kept until {@link finish} or {@link abandon}. */
  begin(): Ticket {
    const ticket = { mark: this.logStart + this.log.length };
    this.open.add(ticket);
    return ticket;
  }

  /**
   * The subscribe succeeded: `subscriber` now receives the publications of `remotes`. Returns those of them that
   * arrived since the request was sent, in order, for the subscriber to apply after its snapshot. Returns nothing
   * for a ticket from before the last {@link reset}.
   */
  finish(ticket: Ticket, subscriber: Subscriber, remotes: readonly string[]): Publication[] {
    if (!this.open.delete(ticket)) return [];
    for (const remote of remotes) {
      let set = this.byRemote.get(remote);
      if (set === undefined) {
        set = new Set();
        this.byRemote.set(remote, set);
      }
      set.add(subscriber);
    }
    const wanted = new Set(remotes);
    const buffered = this.log.slice(Math.max(ticket.mark - this.logStart, 0)).filter((p) => wanted.has(p.channel));
    this.trim();
    return buffered;
  }

  /** The subscribe failed, timed out or is no longer wanted. */
  abandon(ticket: Ticket): void {
    if (this.open.delete(ticket)) this.trim();
  }

  /** Stops delivering to `subscriber`. */
  remove(subscriber: Subscriber): void {
    for (const [remote, set] of this.byRemote) {
      if (set.delete(subscriber) && set.size === 0) this.byRemote.delete(remote);
    }
  }

  /** Delivers one publication to its subscribers, and logs it while a subscribe is in flight. */
  dispatch(publication: Publication): void {
    if (this.open.size > 0) this.log.push(publication);
    const set = this.byRemote.get(publication.channel);
    if (set === undefined) return;
    for (const subscriber of [...set]) subscriber.deliver(publication);
  }

  /** The connection is gone, and with it every server-side subscription: forget them all. */
  reset(): void {
    this.byRemote.clear();
    this.open.clear();
    this.trim();
  }

  /** How many publications are held back (for tests). */
  get buffered(): number {
    return this.log.length;
  }

  /** Drops the part of the log that no open ticket can still ask for. */
  private trim(): void {
    let keepFrom = this.logStart + this.log.length;
    for (const ticket of this.open) keepFrom = Math.min(keepFrom, ticket.mark);
    const drop = keepFrom - this.logStart;
    if (drop > 0) {
      this.log = this.log.slice(drop);
      this.logStart = keepFrom;
    }
  }
}
