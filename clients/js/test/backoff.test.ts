import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelay } from '../src/backoff';

describe('backoffDelay', () => {
  // (attempt, min, max, random) → delay; the cap is min(max, min * 2^attempt) and the delay random * cap.
  const table: [number, number, number, number, number][] = [
    [0, 250, 10_000, 0, 0],
    [0, 250, 10_000, 0.5, 125],
    [0, 250, 10_000, 0.999999, 249],
    [1, 250, 10_000, 0.999999, 499],
    [3, 250, 10_000, 0.5, 1000],
    [5, 250, 10_000, 0.999999, 7999],
    [6, 250, 10_000, 0.999999, 9999],
    [60, 250, 10_000, 0.999999, 9999],
    [10_000, 250, 10_000, 0.5, 5000],
    [2, 100, 300, 0.5, 150],
    [0, 0, 10_000, 0.9, 0],
  ];
  it.each(table)('attempt %i, min %i, max %i, random %f → %i ms', (attempt, min, max, random, expected) => {
    expect(backoffDelay(attempt, min, max, () => random)).toBe(expected);
  });

  it('stays within [0, cap) for every random value', () => {
    for (let attempt = 0; attempt < 40; attempt++) {
      const cap = Math.min(10_000, 250 * 2 ** attempt);
      for (const r of [0, 0.1, 0.5, 0.9, 0.999999999]) {
        const delay = backoffDelay(attempt, 250, 10_000, () => r);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(cap);
        expect(Number.isInteger(delay)).toBe(true);
      }
    }
  });
});

describe('Backoff', () => {
  it('doubles the cap per failure up to the maximum, and starts over after reset', () => {
    const backoff = new Backoff(250, 2_000, () => 0.999999);
    expect([backoff.next(), backoff.next(), backoff.next(), backoff.next(), backoff.next()]).toEqual([249, 499, 999, 1999, 1999]);
    backoff.reset();
    expect(backoff.next()).toBe(249);
  });
});
