// A live collection: subscribes with a snapshot, applies events through the pure mirror functions, and after every
// reconnect resumes from the last offset it applied (`since`), replaying what it missed; when the server can no
// longer replay, or the resume fails, it replaces its mirror with a fresh snapshot.

import { Emitter } from './emitter';
import { CLIENT_CODES, DrakonError, isObject } from './errors';
import { startOn, type Resubscribable, type SubscriptionHost } from './host';
import { applyEvent, fromSnapshot, parseOrder, resumeMirror, type MirrorState, type OrderKey } from './mirror';
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
  /** The subscribe arguments without `snapshot` or `since`. */
  private readonly subscribeArgs: Record<string, unknown>;
  /** A snapshot was applied, so the mirror is a true picture as of its offset and can resume from there. */
  private hasMirror = false;
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
    this.subscribeArgs = { ...filter, ...(order === undefined ? {} : { _order: order }), channel: local };
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

  get lastOffset(): number {
    return this.mirror.offset;
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
    // Offsets are non-negative integers; a mirror without one (a server that sent none) cannot resume.
    const resumable = this.hasMirror && Number.isSafeInteger(this.mirror.offset) && this.mirror.offset >= 0;
    this.subscribe(resumable ? this.mirror.offset : undefined);
  }

  /** Sends `subscribe`: resuming after `since` when given, else for a snapshot. */
  private subscribe(since: number | undefined): void {
    const attempt = ++this.attempt;
    this.subscribedOn = this.host.generation;
    const args = { ...this.subscribeArgs, ...(since === undefined ? { snapshot: true } : { since }) };
    startOn(
      this.host,
      this.route,
      'subscribe',
      args,
      () => attempt === this.attempt,
      (ticket, reply) => (since === undefined ? this.subscribed(ticket, reply) : this.resumed(ticket, reply)),
      (err) => {
        // A failed resume is not fatal while the connection holds: a fresh snapshot replaces the mirror instead.
        if (since !== undefined && !isConnectionLoss(err)) this.subscribe(undefined);
        else this.failed(err);
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
    this.reload(fromSnapshot(data.rows as T[], offset, this.keys), buffered);
  }

  /** The reply to a subscribe with `since`: replay the missed events, or take the reload snapshot. */
  private resumed(ticket: Ticket, reply: Reply): void {
    const router = this.host.router;
    const outcome = resumeMirror(this.mirror, reply.data, this.keys);
    if (outcome.kind === 'unusable') {
      // The server holds the subscription now; subscribing again on the same local channel is idempotent there.
      router.abandon(ticket);
      this.subscribe(undefined);
      return;
    }
    const buffered = router.finish(ticket, this, reply.channel_data?.remote_channels ?? []);
    if (outcome.kind === 'reload') {
      this.reload(outcome.state, buffered);
      return;
    }
    for (const step of outcome.steps) {
      if (this.currentStatus === 'closed') return;
      this.mirror = step.state;
      this.byId = undefined;
      this.events.emit('change', this.mirror.rows, step.change);
    }
    if (this.currentStatus === 'closed') return;
    // Current to the reply's offset: publications at or below it were in the replay or did not concern the filter.
    this.mirror = outcome.state;
    this.currentError = undefined;
    this.setStatus('live');
    for (const publication of buffered) this.deliver(publication);
  }

  /** Replaces the mirror with a snapshot, then applies the publications that arrived with or after it. */
  private reload(state: MirrorState<T>, buffered: readonly Publication[]): void {
    this.mirror = state;
    this.hasMirror = true;
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
    if (isConnectionLoss(err)) return;
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

/** The call failed because the connection went away (or the client closed), not because the server refused it. */
function isConnectionLoss(err: DrakonError): boolean {
  return err.code === CLIENT_CODES.disconnected || err.code === CLIENT_CODES.closed;
}
