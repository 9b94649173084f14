// A first-in, first-out queue for every package (copied into each by
// scripts/sync-internal.mjs; see native-loader.ts).
//
// A ring buffer: push and shift are O(1) (amortised over the doublings and
// halvings of its array), where Array#shift moves every element. It shrinks
// again once mostly empty, so a burst does not pin its memory for the life
// of the queue. The capacity is a power of two, so an index wraps with a mask.

const MIN_CAPACITY = 16;

export class Queue<T> {
  #items: (T | undefined)[] = new Array<T | undefined>(MIN_CAPACITY);
  #head = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#resize(this.#items.length * 2);
    this.#items[(this.#head + this.#length) & (this.#items.length - 1)] = item;
    this.#length++;
  }

  /** The oldest item, left in the queue; undefined when empty. */
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  /** Take out the oldest item; undefined when empty. */
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined; // no reference kept to what left
    this.#head = (this.#head + 1) & (this.#items.length - 1);
    this.#length--;
    if (this.#items.length > MIN_CAPACITY && this.#length <= this.#items.length / 4) this.#resize(this.#items.length / 2);
    return item;
  }

  /** Take out the first occurrence of `item` wherever it is (O(n): for the rare cancellation). Whether it was there. */
  remove(item: T): boolean {
    const mask = this.#items.length - 1;
    let i = 0;
    while (i < this.#length && this.#items[(this.#head + i) & mask] !== item) i++;
    if (i === this.#length) return false;
    // Close the gap: the items after it move up one.
    for (; i < this.#length - 1; i++) this.#items[(this.#head + i) & mask] = this.#items[(this.#head + i + 1) & mask];
    this.#items[(this.#head + this.#length - 1) & mask] = undefined;
    this.#length--;
    return true;
  }

  /** Take out every item, oldest first. */
  drain(): T[] {
    const out = new Array<T>(this.#length);
    const mask = this.#items.length - 1;
    for (let i = 0; i < out.length; i++) out[i] = this.#items[(this.#head + i) & mask] as T;
    this.#items = new Array<T | undefined>(MIN_CAPACITY);
    this.#head = 0;
    this.#length = 0;
    return out;
  }

  #resize(capacity: number): void {
    const items = new Array<T | undefined>(capacity);
    const mask = this.#items.length - 1;
    for (let i = 0; i < this.#length; i++) items[i] = this.#items[(this.#head + i) & mask];
    this.#items = items;
    this.#head = 0;
  }
}
