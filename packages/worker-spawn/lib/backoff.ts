// CrashBackoff: how long the replacements of workers lost in a crash loop
// wait. Only those wait; any other replacement starts at once.

export class CrashBackoff {
  readonly #initial: number;
  readonly #max: number;
  /** Consecutive workers lost in a crash loop; a completed task, or a worker that served for a while, resets it. */
  #streak = 0;
  #until = 0;
  /** Replacements that wait for #until: one per worker lost in a crash loop since it last passed. */
  #heldBack = 0;
  #timer: NodeJS.Timeout | null = null;

  /** `initial` ms after the first loss, doubling per consecutive loss up to `max` ms. */
  constructor(initial: number, max: number) {
    this.#initial = initial;
    this.#max = max;
  }

  /** Count one more worker lost in a crash loop, whose replacement waits; returns the delay it sets, in ms. */
  crashed(): number {
    this.#streak++;
    this.#heldBack++;
    const delay = Math.min(this.#initial * 2 ** Math.min(this.#streak - 1, 30), this.#max);
    this.#until = Date.now() + delay;
    return delay;
  }

  /** A task completed, or a worker served for a while: whatever was failing works again. */
  reset(): void {
    this.#streak = 0;
  }

  /** How many of `missing` replacements must wait now (none once the delay has passed). */
  held(missing: number): number {
    if (this.#until - Date.now() <= 0) this.#heldBack = 0;
    return Math.min(missing, this.#heldBack);
  }

  /**
   * Call `retry` from the event loop once the delay has passed (at the next
   * turn if it has): never from the caller's stack, where with a zero
   * backoff a retry that fails again would recurse until the stack
   * overflows. One retry is pending at a time.
   */
  retryLater(retry: () => void): void {
    this.#timer ??= setTimeout(
      () => {
        this.#timer = null;
        retry();
      },
      Math.max(0, this.#until - Date.now()),
    );
  }

  /** Forget a pending retry (the pool is stopping). */
  cancel(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
