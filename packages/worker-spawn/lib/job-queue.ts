// The tasks a WorkerPool holds: one Job each, and the FIFO of those waiting
// for a free worker.

export interface Job {
  payload: Uint8Array;
  resolve: (value: Buffer) => void;
  reject: (err: Error) => void;
  settled: boolean;
  allocateTimer: NodeJS.Timeout | null;
}

/** FIFO of jobs; settled jobs (allocate timeouts) are skipped when taken. */
export class JobQueue {
  #items: (Job | undefined)[] = [];
  #head = 0;
  #live = 0;
  get length(): number {
    return this.#live;
  }
  push(job: Job): void {
    this.#items.push(job);
    this.#live++;
  }
  /** A queued job settled elsewhere (timed out) no longer counts. */
  forget(): void {
    this.#live--;
  }
  shift(): Job | undefined {
    while (this.#head < this.#items.length) {
      const job = this.#items[this.#head];
      this.#items[this.#head++] = undefined;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      if (job && !job.settled) {
        this.#live--;
        return job;
      }
    }
    return undefined;
  }
  drain(): Job[] {
    const out: Job[] = [];
    for (let job = this.shift(); job; job = this.shift()) out.push(job);
    return out;
  }
}
