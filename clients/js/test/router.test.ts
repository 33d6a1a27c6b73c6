import { describe, expect, it } from 'vitest';
import type { Publication } from '../src/protocol';
import { ChannelRouter, type Subscriber } from '../src/router';

function recorder(): Subscriber & { got: unknown[] } {
  const got: unknown[] = [];
  return { got, deliver: (p: Publication) => got.push(p.data) };
}

const pub = (channel: string, data: unknown): Publication => ({ channel, action: 'created', data, offset: 1 });

describe('ChannelRouter', () => {
  it('hands publications that beat the reply to the subscriber, only those of its channels, in order', () => {
    const router = new ChannelRouter();
    router.dispatch(pub('a|', 'before the request'));
    const ticket = router.begin();
    router.dispatch(pub('a|', 1));
    router.dispatch(pub('b|', 'other channel'));
    router.dispatch(pub('a|', 2));
    const sub = recorder();
    expect(router.finish(ticket, sub, ['a|']).map((p) => p.data)).toEqual([1, 2]);
    expect(router.buffered).toBe(0);
    router.dispatch(pub('a|', 3));
    router.dispatch(pub('b|', 'other channel'));
    expect(sub.got).toEqual([3]);
  });

  it('keeps the log while any subscribe is in flight, for each from its own mark', () => {
    const router = new ChannelRouter();
    const first = router.begin();
    router.dispatch(pub('a|', 1));
    const second = router.begin();
    router.dispatch(pub('a|', 2));
    const one = recorder();
    expect(router.finish(first, one, ['a|']).map((p) => p.data)).toEqual([1, 2]);
    router.dispatch(pub('a|', 3)); // delivered to `one` and logged for `second`
    const two = recorder();
    expect(router.finish(second, two, ['a|']).map((p) => p.data)).toEqual([2, 3]);
    expect(one.got).toEqual([3]);
    expect(router.buffered).toBe(0);
  });

  it('delivers to every subscriber sharing a server channel until removed', () => {
    const router = new ChannelRouter();
    const a = recorder();
    const b = recorder();
    router.finish(router.begin(), a, ['todo|x:1']);
    router.finish(router.begin(), b, ['todo|x:1']);
    router.dispatch(pub('todo|x:1', 1));
    router.remove(a);
    router.dispatch(pub('todo|x:1', 2));
    expect([a.got, b.got]).toEqual([[1], [1, 2]]);
  });

  it('abandon and reset drop the log; tickets from before a reset register nothing', () => {
    const router = new ChannelRouter();
    const failed = router.begin();
    router.dispatch(pub('a|', 1));
    router.abandon(failed);
    expect(router.buffered).toBe(0);

    const sub = recorder();
    router.finish(router.begin(), sub, ['a|']);
    const stale = router.begin();
    router.dispatch(pub('a|', 2));
    router.reset();
    expect(router.buffered).toBe(0);
    router.dispatch(pub('a|', 3));
    expect(router.finish(stale, sub, ['a|'])).toEqual([]);
    router.dispatch(pub('a|', 4));
    expect(sub.got).toEqual([2]);
  });
});
