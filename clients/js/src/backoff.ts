// Reconnect delays: exponential backoff with full jitter.

import { MAX_BACKOFF_EXPONENT } from './limits';

/**
 * The delay before reconnect attempt `attempt` (0 for the first): uniformly random in
 * `[0, min(maxDelayMs, minDelayMs * 2^attempt))`. Full jitter spreads clients that lost the same server so they do
 * not all come back in the same instant.
 */
export function backoffDelay(
  attempt: number,
  minDelayMs: number,
  maxDelayMs: number,
  random: () => number = Math.random,
): number {
  const cap = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(Math.max(attempt, 0), MAX_BACKOFF_EXPONENT));
  return Math.floor(random() * Math.max(cap, 0));
}

/** Counts failed attempts and hands out their delays. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly minDelayMs: number,
    private readonly maxDelayMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; each call counts one more failure. */
  next(): number {
    return backoffDelay(this.attempt++, this.minDelayMs, this.maxDelayMs, this.random);
  }

  /** Starts over after a connection that proved healthy. */
  reset(): void {
    this.attempt = 0;
  }
}
