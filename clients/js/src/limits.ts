// Every default and bound of the client in one place, each with the reason for its size.

/** Defaults of `ConnectOptions`. */
export const DEFAULTS = {
  reconnect: true,
  /** Short enough that a server restart is barely noticed, long enough to spread a crowd of reconnecting clients. */
  minDelayMs: 250,
  /** Caps the wait for a server that stays down at a delay a person still tolerates. */
  maxDelayMs: 10_000,
  /** A reply slower than this means a stuck connection or server, and the UI should be told. */
  callTimeoutMs: 15_000,
  queueWhileDisconnected: true,
} as const;

/**
 * A connection that stayed open this long counts as healthy: the next loss starts the backoff from the beginning.
 * Shorter-lived connections keep growing the delay, so a server that accepts and then drops at once is not hammered.
 */
export const STABLE_CONNECTION_MS = 5_000;

/** An attempt not open after this long is abandoned and the next one scheduled; browsers may otherwise wait minutes. */
export const CONNECT_TIMEOUT_MS = 10_000;

/** Backoff exponents stop growing here; 2^30 times any sane minimum is far past any maximum. */
export const MAX_BACKOFF_EXPONENT = 30;

/**
 * WebSocket attempts in a row that never open (a proxy that refuses upgrades) before the client moves to SockJS's
 * xhr-polling over the same sessions. Two, so that one server restart does not move it.
 */
export const WEBSOCKET_FAILURES_BEFORE_FALLBACK = 2;
