// The public entry point: `connect`, `DrakonError` and the types. The browser build exposes the same two values as
// the global `drakon`.

import { DrakonClient } from './client';
import type { Client, ConnectOptions } from './types';

export { DrakonError } from './errors';
export type {
  ChannelSubscription,
  Client,
  ConnectionState,
  ConnectOptions,
  LiveChange,
  LiveCollection,
  LiveStatus,
  Member,
  PresenceRoom,
  Row,
  User,
} from './types';

/**
 * Opens a client on a drakon server's WebSocket endpoint and keeps it connected. Given a list of URLs, each
 * (re)connect attempt takes the next one in turn. In a browser a path (`/data/websocket`) and `http(s)://` URLs are
 * accepted and turned into `ws(s)://`.
 *
 * @example
 * const client = drakon.connect('/data/websocket');
 * const items = client.live('todo-item', { list_id: 1 }, { order: 'text' });
 * items.on('change', (rows) => render(rows));
 * await client.call('todo-item', 'create', { text: 'milk', todo_list: 1 });
 */
export function connect(url: string | string[], options?: ConnectOptions): Client {
  return new DrakonClient(url, options);
}
