// A minimal typed event emitter: listeners are removed through the function `on` returns.

type Listener<Args extends unknown[]> = (...args: Args) => void;

export class Emitter<Events extends { [event: string]: unknown[] }> {
  private readonly listeners: { [E in keyof Events]?: Set<Listener<Events[E]>> } = {};

  on<E extends keyof Events>(event: E, fn: Listener<Events[E]>): () => void {
    let set = this.listeners[event];
    if (set === undefined) {
      set = new Set();
      this.listeners[event] = set;
    }
    // Wrapping makes each registration distinct, so the same function added twice is also removed once per off().
    const entry: Listener<Events[E]> = (...args) => fn(...args);
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  /**
   * Calls every listener of `event`. A throwing listener must not leave the client half-way through a state change,
   * so its error is rethrown on a fresh microtask, where the host reports it as uncaught.
   */
  emit<E extends keyof Events>(event: E, ...args: Events[E]): void {
    const set = this.listeners[event];
    if (set === undefined) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  clear(): void {
    for (const key of Object.keys(this.listeners) as (keyof Events)[]) delete this.listeners[key];
  }
}
