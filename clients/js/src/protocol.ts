// The native protocol's frames as the client sees them: encoding requests, classifying what the server sends.
// No I/O here; the shapes follow crates/drakon-protocol.

import { isObject } from './errors';

/** The app heartbeat; the client echoes it byte for byte. */
export const HEARTBEAT = '{"heartbeat":"1"}';

/** The `context` of a reply. */
export interface ReplyContext {
  client_callback_name?: string | null;
  verb?: string;
  state: string;
  client_context?: Record<string, unknown>;
  page?: number;
  [key: string]: unknown;
}

/** The `channel_data` of a subscribe or unsubscribe reply. */
export interface ChannelData {
  local_channel: string;
  remote_channels: string[];
  action: string;
}

/** A reply to a request. */
export interface Reply {
  data: unknown;
  context: ReplyContext;
  channel_data?: ChannelData;
}

/** A model event (with `action` and `offset`) or a plain channel message (`channel` and `data` only). */
export interface Publication {
  channel: string;
  action?: string;
  data: unknown;
  offset?: number;
}

export type Incoming =
  | { kind: 'heartbeat' }
  | { kind: 'reply'; reply: Reply }
  | { kind: 'publication'; publication: Publication }
  | { kind: 'token-expiring'; expires: number }
  | { kind: 'signed-in'; user: { id: string; roles: string[]; info: unknown } }
  | { kind: 'unknown' };

/** Encodes a request frame. */
export function encodeRequest(route: string, verb: string, args: Record<string, unknown>, callbackname: string): string {
  return JSON.stringify({ route, verb, args, callbackname });
}

/** Classifies one text frame from the server; anything unexpected is `unknown` and ignored by the caller. */
export function parseIncoming(text: string): Incoming {
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return { kind: 'unknown' };
  }
  if (!isObject(frame)) return { kind: 'unknown' };
  if ('heartbeat' in frame && !('context' in frame) && !('channel' in frame)) return { kind: 'heartbeat' };
  if (frame.auth === 'expiring' && typeof frame.expires === 'number') return { kind: 'token-expiring', expires: frame.expires };
  if (frame.auth === 'signed_in' && isObject(frame.user) && typeof frame.user.id === 'string') {
    const roles = Array.isArray(frame.user.roles) ? frame.user.roles.map(String) : [];
    return { kind: 'signed-in', user: { id: frame.user.id, roles, info: frame.user.info ?? null } };
  }
  if (isObject(frame.context) && typeof frame.context.state === 'string') {
    const reply: Reply = { data: frame.data, context: frame.context as ReplyContext };
    const cd = frame.channel_data;
    if (isObject(cd) && Array.isArray(cd.remote_channels)) {
      reply.channel_data = {
        local_channel: String(cd.local_channel),
        remote_channels: cd.remote_channels.map(String),
        action: String(cd.action),
      };
    }
    return { kind: 'reply', reply };
  }
  if (typeof frame.channel === 'string') {
    const publication: Publication = { channel: frame.channel, data: frame.data };
    if (typeof frame.action === 'string') publication.action = frame.action;
    if (typeof frame.offset === 'number') publication.offset = frame.offset;
    return { kind: 'publication', publication };
  }
  return { kind: 'unknown' };
}
