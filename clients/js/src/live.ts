// A live collection: subscribes with a snapshot, applies events through the pure mirror functions, and after every
// reconnect replaces its mirror with a fresh snapshot.

import { Emitter } from './emitter';
import { CLIENT_CODES, DrakonError, isObject } from './errors';
import type { Resubscribable, SubscriptionHost } from './host';
import { applyEvent, fromSnapshot, parseOrder, type MirrorState, type OrderKey } from './mirror';
import type { Publication, Reply } from './protocol';
import type { Subscriber, Ticket } from './router';
import type { LiveChange, LiveCollection, LiveStatus, Row } from './types';

/** A snapshot offset below every real one, so a mirror without a snapshot offset applies every event. */
const NO_OFFSET = -1;

type LiveEvents<T> = {
  change: [items: readonly T[], change: LiveChange<T>];
  status: [status: LiveStatus];
};

export class Live<T extends Row> implements LiveCollection<T>, Subscriber, Resubscribable {
  readonly ready: Promise<void>;
  private mirror: MirrorState<T> = { rows: [], offset: NO_OFFSET };
  private currentStatus: LiveStatus = 'loading';
  private currentError: DrakonError | undefined;
  private byId: Map<number, T> | undefined;
  private readonly events = new Emitter<LiveEvents<T>>();
  private readonly keys: OrderKey[];
  private readonly subscribeArgs: Record<string, unknown>;
  /** Bumped whenever an in-flight subscribe stops mattering (disconnect, close), so its late outcome is ignored. */
  private attempt = 0;
  /** The connection generation this collection subscribed on, while that subscription may be in force. */
  private subscribedOn: number | undefined;
  private settled = false;
  private resolveReady!: () => void;
  private rejectReady!: (err: DrakonError) => void;

  constructor(
    private readonly host: SubscriptionHost,
    private readonly route: string,
    private readonly filter: Record<string, unknown>,
    order: string | string[] | undefined,
    private readonly local: string,
  ) {
    this.keys = parseOrder(order);
    this.subscribeArgs = { ...filter, ...(order === undefined ? {} : { _order: order }), snapshot: true, channel: local };
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // Callers that never await `ready` must not get an unhandled rejection; those that do still see it.
    this.ready.catch(() => {});
  }

  get items(): readonly T[] {
    return this.mirror.rows;
  }

  get status(): LiveStatus {
    return this.currentStatus;
  }

  get error(): DrakonError | undefined {
    return this.currentError;
  }

  get(id: number): T | undefined {
    if (this.byId === undefined) this.byId = new Map(this.mirror.rows.map((row) => [row.id, row]));
    return this.byId.get(id);
  }

  on(event: 'change', fn: (items: readonly T[], change: LiveChange<T>) => void): () => void;
  on(event: 'status', fn: (status: LiveStatus) => void): () => void;
  on(event: 'change' | 'status', fn: (...args: never[]) => void): () => void {
    return this.events.on(event, fn as never);
  }

  close(): Promise<void> {
    if (this.currentStatus === 'closed') return Promise.resolve();
    const subscribed = this.subscribedOn === this.host.generation && this.host.isOpen();
    this.stop();
    this.host.router.remove(this);
    this.host.forget(this);
    if (!subscribed) return Promise.resolve();
    // Sent even while the subscribe is in flight: the server handles a connection's requests in order.
    const args = { ...this.filter, channel: this.local };
    return this.host.requestReply(this.route, 'unsubscribe', args, { queue: false }).then(
      () => undefined,
      () => undefined,
    );
  }

  connected(): void {
    if (this.currentStatus === 'closed') return;
    const attempt = ++this.attempt;
    this.subscribedOn = this.host.generation;
    const router = this.host.router;
    const ticket = router.begin();
    this.host.requestReply(this.route, 'subscribe', this.subscribeArgs, { queue: false }).then(
      (reply) => {
        if (attempt === this.attempt) this.subscribed(ticket, reply);
        else router.abandon(ticket);
      },
      (err: DrakonError) => {
        router.abandon(ticket);
        if (attempt === this.attempt) this.failed(err);
      },
    );
  }

  disconnected(): void {
    if (this.currentStatus === 'closed') return;
    this.attempt++;
    this.subscribedOn = undefined;
    this.setStatus('reconnecting');
  }

  shutdown(): void {
    if (this.currentStatus !== 'closed') this.stop();
  }

  deliver(publication: Publication): void {
    if (this.currentStatus === 'closed') return;
    const event = { action: publication.action ?? '', data: publication.data, offset: publication.offset };
    const applied = applyEvent(this.mirror, event, this.keys);
    if (applied === undefined) return;
    this.mirror = applied.state;
    this.byId = undefined;
    this.events.emit('change', this.mirror.rows, applied.change);
  }

  private subscribed(ticket: Ticket, reply: Reply): void {
    const router = this.host.router;
    const data = reply.data;
    if (!isObject(data) || !Array.isArray(data.rows)) {
      router.abandon(ticket);
      this.failed(new DrakonError(CLIENT_CODES.badReply, 'the subscribe reply has no snapshot; is the server older than the client?'));
      return;
    }
    const buffered = router.finish(ticket, this, reply.channel_data?.remote_channels ?? []);
    const offset = typeof data.offset === 'number' ? data.offset : NO_OFFSET;
    this.mirror = fromSnapshot(data.rows as T[], offset, this.keys);
    this.byId = undefined;
    this.currentError = undefined;
    this.setStatus('live');
    this.events.emit('change', this.mirror.rows, { action: 'reload' });
    for (const publication of buffered) this.deliver(publication);
    if (!this.settled) {
      this.settled = true;
      this.resolveReady();
    }
  }

  private failed(err: DrakonError): void {
    // A lost connection is not the subscription's fault: the reconnect subscribes again.
    if (err.code === CLIENT_CODES.disconnected || err.code === CLIENT_CODES.closed) return;
    this.currentError = err;
    this.setStatus('error');
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(err);
    }
  }

  private stop(): void {
    this.attempt++;
    this.subscribedOn = undefined;
    this.setStatus('closed');
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(new DrakonError(CLIENT_CODES.closed, 'the live collection was closed before its first snapshot'));
    }
    this.events.clear();
  }

  private setStatus(status: LiveStatus): void {
    if (this.currentStatus === status) return;
    this.currentStatus = status;
    this.events.emit('status', status);
  }
}
