// Presence in a room (an object of a model route, or a channel of a channel route): who else is there, each user
// once, with the state they set. Joins again after every reconnect, with the state this client last set, and
// reports the difference between what it showed and the fresh member list as ordinary joins, leaves and updates.

import { CLIENT_CODES, DrakonError } from './errors';
import { Emitter } from './emitter';
import { Held, type Ask } from './held';
import type { SubscriptionHost } from './host';
import type { Publication, Reply } from './protocol';
import type { Ticket } from './router';
import type { Member, PresenceRoom } from './types';

interface MemberList {
  members?: unknown;
  count?: unknown;
  large?: unknown;
  next?: unknown;
}

function toMember(value: unknown): Member | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { id, info, state } = value as Record<string, unknown>;
  if (typeof id !== 'string') return undefined;
  const object = (v: unknown) => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {});
  return { id, info: object(info), state: object(state) };
}

/** `value` if it is an array, else none. */
function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function sameMember(a: Member, b: Member): boolean {
  return JSON.stringify([a.info, a.state]) === JSON.stringify([b.info, b.state]);
}

export class Presence extends Held implements PresenceRoom {
  private current = new Map<string, Member>();
  private total = 0;
  private isLarge = false;
  private hasMore = false;
  private readonly events = new Emitter<{
    change: [members: ReadonlyMap<string, Member>];
    joined: [member: Member];
    updated: [member: Member];
    left: [member: Member];
  }>();
  private readonly target: Record<string, unknown>;
  private state: Record<string, unknown> | undefined;

  constructor(
    host: SubscriptionHost,
    route: string,
    idOrName: number | string,
    private readonly local: string,
    state: Record<string, unknown> | undefined,
  ) {
    super(host, route, 'the presence was closed before it joined');
    this.target = typeof idOrName === 'number' ? { id: idOrName } : { name: idOrName };
    this.state = state;
  }

  get members(): ReadonlyMap<string, Member> {
    return this.current;
  }

  get count(): number {
    return this.total;
  }

  get large(): boolean {
    return this.isLarge;
  }

  get partial(): boolean {
    return this.hasMore;
  }

  on(event: 'change', fn: (members: ReadonlyMap<string, Member>) => void): () => void;
  on(event: 'joined' | 'updated' | 'left', fn: (member: Member) => void): () => void;
  on(event: 'change' | 'joined' | 'updated' | 'left', fn: (arg: any) => void): () => void {
    return this.events.on(event, fn);
  }

  set(state: Record<string, unknown>): Promise<void> {
    if (this.closed) return Promise.reject(new DrakonError(CLIENT_CODES.closed, 'this presence was closed'));
    this.state = state;
    // Not joined on this connection yet: the (re)join carries the state.
    if (!this.isHeld()) return Promise.resolve();
    return this.host
      .requestReply(this.route, 'set_presence', { ...this.target, state }, { queue: false })
      .then(() => undefined);
  }

  page(after?: string, limit?: number): Promise<{ members: Member[]; count: number; next: string | null }> {
    const args: Record<string, unknown> = { ...this.target };
    if (after !== undefined) args.after = after;
    if (limit !== undefined) args.limit = limit;
    return this.host.requestReply(this.route, 'get_presence', args, { queue: true }).then((reply) => {
      const data = (reply.data ?? {}) as MemberList;
      const members = list(data.members).map(toMember).filter((m) => m !== undefined);
      return { members, count: Number(data.count ?? members.length), next: typeof data.next === 'string' ? data.next : null };
    });
  }

  protected start(): Ask {
    const args: Record<string, unknown> = { ...this.target, channel: this.local };
    if (this.state !== undefined) args.state = this.state;
    return { verb: 'join_presence', args };
  }

  protected end(): Ask {
    return { verb: 'leave_presence', args: { ...this.target, channel: this.local } };
  }

  // Subscriber

  deliver(publication: Publication): void {
    if (this.closed) return;
    const data = publication.data as Record<string, unknown> | null;
    switch (publication.action) {
      case 'member_joined':
      case 'member_updated': {
        const member = toMember(data);
        if (member !== undefined) this.put(member);
        break;
      }
      case 'member_left': {
        if (typeof data?.id === 'string') this.drop(data.id);
        break;
      }
      case 'presence_batch': {
        if (data === null) return;
        for (const value of [...list(data.joined), ...list(data.updated)]) {
          const member = toMember(value);
          if (member !== undefined) this.put(member, false);
        }
        for (const id of list(data.left)) {
          if (typeof id === 'string') this.drop(id, false);
        }
        if (typeof data.count === 'number') this.total = data.count;
        // Too many changes to list: the count is right, the names are those seen so far.
        if (data.truncated === true) this.hasMore = true;
        this.isLarge = true;
        this.events.emit('change', this.current);
        return;
      }
      default:
        return;
    }
    this.events.emit('change', this.current);
  }

  protected started(ticket: Ticket, reply: Reply): void {
    const buffered = this.host.router.finish(ticket, this, reply.channel_data?.remote_channels ?? []);
    const data = (reply.data ?? {}) as MemberList;
    const fresh = new Map<string, Member>();
    for (const value of list(data.members)) {
      const member = toMember(value);
      if (member !== undefined) fresh.set(member.id, member);
    }
    // What changed while this client was away shows as ordinary events.
    const before = this.current;
    this.current = fresh;
    this.total = typeof data.count === 'number' ? data.count : fresh.size;
    this.isLarge = data.large === true;
    this.hasMore = typeof data.next === 'string';
    for (const [id, member] of before) if (!fresh.has(id)) this.events.emit('left', member);
    for (const [id, member] of fresh) {
      const was = before.get(id);
      if (was === undefined) this.events.emit('joined', member);
      else if (!sameMember(was, member)) this.events.emit('updated', member);
    }
    this.settle();
    this.events.emit('change', this.current);
    for (const publication of buffered) this.deliver(publication);
  }

  private put(member: Member, count = true): void {
    const was = this.current.get(member.id);
    if (was !== undefined && sameMember(was, member)) return;
    this.current = new Map(this.current).set(member.id, member);
    if (was === undefined) {
      if (count) this.total++;
      this.events.emit('joined', member);
    } else {
      this.events.emit('updated', member);
    }
  }

  private drop(id: string, count = true): void {
    const was = this.current.get(id);
    if (was === undefined) return;
    this.current = new Map(this.current);
    this.current.delete(id);
    if (count) this.total = Math.max(0, this.total - 1);
    this.events.emit('left', was);
  }

  protected override stopped(): void {
    this.events.clear();
  }
}
