// The client: one connection, the calls made over it, and the subscriptions it keeps alive across reconnects.

import { Calls } from './calls';
import { PlainChannel } from './channel';
import { Connection, resolveUrl, type SocketConstructor } from './connection';
import { Emitter } from './emitter';
import type { CallOptions } from './calls';
import type { Resubscribable, SubscriptionHost } from './host';
import { DEFAULTS } from './limits';
import { Live } from './live';
import { HEARTBEAT, parseIncoming, type Reply } from './protocol';
import { Presence } from './presence';
import { ChannelRouter } from './router';
import { CLIENT_CODES, DrakonError } from './errors';
import type {
  ChannelSubscription,
  Client,
  ConnectionState,
  ConnectOptions,
  LiveCollection,
  PresenceRoom,
  Row,
  User,
} from './types';

/** The server's own route, whose `auth` verb signs a connection in. */
const SERVER_ROUTE = 'drakon';

export class DrakonClient implements Client, SubscriptionHost {
  readonly router = new ChannelRouter();
  private connections = 0;
  private liveCount = 0;
  private channelCount = 0;
  private presenceCount = 0;
  private readonly connection: Connection;
  private readonly calls: Calls;
  private readonly subscriptions = new Set<Resubscribable>();
  private readonly events = new Emitter<{
    state: [state: ConnectionState];
    user: [user: User | undefined, error?: DrakonError];
  }>();
  private readonly queueWhileDisconnected: boolean;
  private readonly getToken: (() => string | Promise<string>) | undefined;
  /** True from a connection's opening until its token is sent: calls wait meanwhile, so none goes out anonymous. */
  private signingIn = false;
  private currentUser: User | undefined;
  /**
   * True from a connection's opening until its first frame: a connection the upgrade signed in (a session cookie,
   * the app's own login, `?token=`) hears `signed_in` before anything else, so any other first frame means anonymous.
   */
  private firstFrame = false;

  constructor(url: string | readonly string[], options: ConnectOptions = {}) {
    const urls = (typeof url === 'string' ? [url] : [...url]).map(resolveUrl);
    if (urls.length === 0) throw new TypeError('connect needs at least one URL');
    const own = (globalThis as { WebSocket?: unknown }).WebSocket as SocketConstructor | undefined;
    const WebSocket = (options.WebSocket ?? own) as SocketConstructor | undefined;
    if (typeof WebSocket !== 'function' && typeof globalThis.fetch !== 'function') {
      throw new TypeError('no WebSocket implementation here: pass one as options.WebSocket (in Node, the ws package)');
    }
    this.queueWhileDisconnected = options.queueWhileDisconnected ?? DEFAULTS.queueWhileDisconnected;
    const token = options.token;
    this.getToken = options.getToken ?? (token === undefined ? undefined : () => token);
    this.calls = new Calls(
      { isOpen: () => this.connection.isOpen() && !this.signingIn, send: (text) => this.connection.send(text) },
      options.callTimeoutMs ?? DEFAULTS.callTimeoutMs,
    );
    this.connection = new Connection(
      {
        urls,
        reconnect: options.reconnect ?? DEFAULTS.reconnect,
        minDelayMs: options.minDelayMs ?? DEFAULTS.minDelayMs,
        maxDelayMs: options.maxDelayMs ?? DEFAULTS.maxDelayMs,
        WebSocket: typeof WebSocket === 'function' ? WebSocket : undefined,
        // A WebSocket passed in is used as is; the runtime's own may be blocked on the way, and then SockJS helps.
        fallback: options.WebSocket === undefined,
      },
      {
        opened: () => this.opened(),
        message: (text) => this.message(text),
        lost: () => this.lost(),
        state: (state) => this.stateChanged(state),
      },
    );
    this.connection.start();
  }

  get state(): ConnectionState {
    return this.connection.state;
  }

  get transport(): 'websocket' | 'sockjs-polling' {
    return this.connection.transport;
  }

  get generation(): number {
    return this.connections;
  }

  get user(): User | undefined {
    return this.currentUser;
  }

  on(event: 'state', fn: (state: ConnectionState) => void): () => void;
  on(event: 'user', fn: (user: User | undefined, error?: DrakonError) => void): () => void;
  on(event: 'state' | 'user', fn: (...args: any[]) => void): () => void {
    return this.events.on(event, fn);
  }

  call<T = unknown>(route: string, verb: string, args?: Record<string, unknown>): Promise<T> {
    return this.request(route, verb, args).then((reply) => reply.data as T);
  }

  request(
    route: string,
    verb: string,
    args?: Record<string, unknown>,
  ): Promise<{ data: unknown; context: Record<string, unknown> }> {
    return this.calls
      .request(route, verb, args ?? {}, { queue: this.queueWhileDisconnected })
      .then((reply) => ({ data: reply.data, context: reply.context }));
  }

  live<T extends Row = Row>(
    route: string,
    filter?: Record<string, unknown>,
    options?: { order?: string | string[] },
  ): LiveCollection<T> {
    const live = new Live<T>(this, route, filter ?? {}, options?.order, `live_${this.liveCount++}`);
    this.adopt(live);
    return live;
  }

  channel(route: string, name: string | undefined, handler: (data: unknown) => void): ChannelSubscription {
    const channel = new PlainChannel(this, route, name, handler, `channel_${this.channelCount++}`);
    this.adopt(channel);
    return channel;
  }

  presence(route: string, idOrName: number | string, options?: { state?: Record<string, unknown> }): PresenceRoom {
    const room = new Presence(this, route, idOrName, `presence_${this.presenceCount++}`, options?.state);
    this.adopt(room);
    return room;
  }

  close(): void {
    this.connection.close();
  }

  // SubscriptionHost

  isOpen(): boolean {
    return this.connection.isOpen() && !this.signingIn;
  }

  requestReply(route: string, verb: string, args: Record<string, unknown>, options: CallOptions): Promise<Reply> {
    return this.calls.request(route, verb, args, options);
  }

  forget(subscription: Resubscribable): void {
    this.subscriptions.delete(subscription);
  }

  private adopt(subscription: Resubscribable): void {
    if (this.connection.state === 'closed') {
      subscription.shutdown();
      return;
    }
    this.subscriptions.add(subscription);
    if (this.isOpen()) subscription.connected();
  }

  private opened(): void {
    this.connections++;
    this.firstFrame = true;
    if (this.getToken === undefined) {
      this.ready();
      return;
    }
    // The token goes first: the server takes a connection's requests in order, so every call and subscription after
    // it is made as the user.
    const generation = this.connections;
    this.signingIn = true;
    this.fetchToken().then((token) => {
      if (generation !== this.connections || !this.connection.isOpen()) return;
      this.signingIn = false;
      if (token !== undefined) this.sendToken(token);
      this.ready();
    });
  }

  /** The connection is open and signed in, if it signs in at all: resubscribe and send what waited. */
  private ready(): void {
    for (const subscription of [...this.subscriptions]) subscription.connected();
    this.calls.flush();
  }

  private fetchToken(): Promise<string | undefined> {
    return Promise.resolve()
      .then(() => this.getToken?.())
      .catch((err: unknown) => {
        this.events.emit('user', undefined, new DrakonError(CLIENT_CODES.tokenUnavailable, `getToken failed: ${String(err)}`));
        return undefined;
      });
  }

  private sendToken(token: string): void {
    this.calls.request(SERVER_ROUTE, 'auth', { token }, { queue: false }).then(
      (reply) => {
        const user = (reply.data as { user?: User } | undefined)?.user;
        this.currentUser = user;
        this.events.emit('user', user);
      },
      (err: DrakonError) => {
        this.currentUser = undefined;
        this.events.emit('user', undefined, err);
      },
    );
  }

  private message(text: string): void {
    const incoming = parseIncoming(text);
    if (this.firstFrame) {
      this.firstFrame = false;
      // Signed in by the upgrade before, not now (logged out, the cookie expired): anonymous again.
      if (incoming.kind !== 'signed-in' && this.getToken === undefined && this.currentUser !== undefined) {
        this.currentUser = undefined;
        this.events.emit('user', undefined);
      }
    }
    switch (incoming.kind) {
      case 'signed-in':
        if (this.currentUser?.id !== incoming.user.id) {
          this.currentUser = incoming.user;
          this.events.emit('user', incoming.user);
        }
        break;
      case 'heartbeat':
        this.connection.send(HEARTBEAT);
        break;
      case 'reply':
        this.calls.handleReply(incoming.reply);
        break;
      case 'publication':
        this.router.dispatch(incoming.publication);
        break;
      case 'token-expiring': {
        const generation = this.connections;
        void this.fetchToken().then((token) => {
          if (token !== undefined && generation === this.connections && this.connection.isOpen()) this.sendToken(token);
        });
        break;
      }
      case 'unknown':
        break;
    }
  }

  private lost(): void {
    this.calls.disconnected();
    this.router.reset();
    for (const subscription of [...this.subscriptions]) subscription.disconnected();
  }

  private stateChanged(state: ConnectionState): void {
    if (state === 'closed') {
      this.calls.close();
      this.router.reset();
      for (const subscription of [...this.subscriptions]) subscription.shutdown();
      this.subscriptions.clear();
    }
    this.events.emit('state', state);
  }
}
