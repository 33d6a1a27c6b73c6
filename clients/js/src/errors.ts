// The one error type the client rejects with, and how error replies become one.

/**
 * An error from drakon. `code` is either the server's stable error code (`not_found`, `validation_failed`,
 * `permission_denied`, …; see the protocol doc) or one of the client's own:
 *
 * - `timeout`: no reply within `callTimeoutMs`.
 * - `unavailable`: the socket was not open and `queueWhileDisconnected` is `false`.
 * - `disconnected`: the call was sent, then the connection was lost before its reply; it may or may not have run.
 * - `closed`: the client (or the live collection) was closed.
 * - `login_required`: the server answered `state: "login_required"`.
 * - `bad_reply`: the server's reply did not have the expected shape.
 * - `token_unavailable`: `getToken` threw or rejected (reported through the client's `user` event).
 *
 * `fields` holds per-field messages, `{field: [message, …]}`, for `validation_failed` and similar errors.
 *
 * @example
 * try {
 *   await client.call('todo-item', 'create', { text: '' });
 * } catch (e) {
 *   if (e instanceof drakon.DrakonError && e.code === 'validation_failed') showFieldErrors(e.fields);
 * }
 */
export class DrakonError extends Error {
  readonly code: string;
  readonly fields?: Record<string, string[]>;

  constructor(code: string, message: string, fields?: Record<string, string[]>) {
    super(message);
    this.name = 'DrakonError';
    this.code = code;
    if (fields !== undefined) this.fields = fields;
  }
}

/** Client-side error codes (server codes come from the reply). */
export const CLIENT_CODES = {
  timeout: 'timeout',
  unavailable: 'unavailable',
  disconnected: 'disconnected',
  closed: 'closed',
  loginRequired: 'login_required',
  badReply: 'bad_reply',
  tokenUnavailable: 'token_unavailable',
} as const;

/** Builds the error for a reply whose `context.state` is not `success`. */
export function errorFromReply(state: unknown, data: unknown): DrakonError {
  if (state === 'login_required') {
    return new DrakonError(CLIENT_CODES.loginRequired, 'this call needs a logged-in connection');
  }
  if (isObject(data) && typeof data.code === 'string') {
    const message = typeof data.message === 'string' ? data.message : data.code;
    return new DrakonError(data.code, message, fieldMessages(data.fields));
  }
  return new DrakonError(CLIENT_CODES.badReply, `error reply without a code (state ${JSON.stringify(state)})`);
}

function fieldMessages(fields: unknown): Record<string, string[]> | undefined {
  if (!isObject(fields)) return undefined;
  const out: Record<string, string[]> = {};
  for (const [name, messages] of Object.entries(fields)) {
    out[name] = Array.isArray(messages) ? messages.map(String) : [String(messages)];
  }
  return out;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
