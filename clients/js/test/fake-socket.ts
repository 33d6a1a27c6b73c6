// A test double of the browser WebSocket API, just the part the client uses: the client under test drives it through
// send/close and the on* handlers, the test through open/receive/drop. Real-server tests live in the server's suite.

export class FakeSocket {
  static instances: FakeSocket[] = [];

  readonly url: string;
  readonly sent: string[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  constructor(url: string) {
    this.url = url;
    FakeSocket.instances.push(this);
  }

  static reset(): void {
    FakeSocket.instances = [];
  }

  /** The most recently created socket. */
  static get last(): FakeSocket {
    const socket = FakeSocket.instances[FakeSocket.instances.length - 1];
    if (socket === undefined) throw new Error('no socket was created');
    return socket;
  }

  send(data: string): void {
    if (this.closedWith !== undefined) throw new Error('send on a closed socket');
    this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
  }

  // Driven by the test.

  open(): void {
    this.onopen?.({});
  }

  receive(frame: unknown): void {
    this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
  }

  drop(code = 1006, reason = ''): void {
    this.onerror?.({});
    this.onclose?.({ code, reason });
  }

  /** The parsed frames the client sent, heartbeats included. */
  frames(): Record<string, any>[] {
    return this.sent.map((text) => JSON.parse(text));
  }

  /** The last request frame the client sent. */
  lastRequest(): { route: string; verb: string; args: Record<string, any>; callbackname: string } {
    const requests = this.frames().filter((f) => 'route' in f);
    const last = requests[requests.length - 1];
    if (last === undefined) throw new Error('no request was sent');
    return last as any;
  }

  /** Replies to a request frame with success. */
  reply(request: { verb: string; callbackname: string }, data: unknown, extra: Record<string, unknown> = {}): void {
    this.receive({
      data,
      context: { client_callback_name: request.callbackname, verb: request.verb, state: 'success' },
      ...extra,
    });
  }

  /** Replies to a subscribe frame with its snapshot, as the server does. */
  replySubscribe(request: { verb: string; callbackname: string; args: Record<string, any> }, remote: string, data: unknown): void {
    this.reply(request, data, {
      channel_data: { local_channel: request.args.channel, remote_channels: [remote], action: 'subscribe' },
    });
  }

  /** Replies to a request frame with an error. */
  replyError(request: { verb: string; callbackname: string }, body: Record<string, unknown>): void {
    this.receive({
      data: body,
      context: { client_callback_name: request.callbackname, verb: request.verb, state: 'error' },
    });
  }
}
