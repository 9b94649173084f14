// internal/queue.ts against a plain array doing the same operations.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';

// A gc() without --expose-gc on the command line: the flag, then a fresh context that sees it.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
import { Queue } from '../queue.js';

describe('Queue', () => {
  it('is first in, first out, across growth, wrap-around and shrinking', () => {
    const q = new Queue<number>();
    const model: number[] = [];
    let next = 0;
    // Deterministic mix of pushes and shifts: the ring wraps at every size
    // it passes through, grows to 4096 and shrinks back.
    for (let round = 0; round < 40; round++) {
      const pushes = round < 20 ? 200 + round * 13 : 7;
      const shifts = round < 20 ? 150 + round * 5 : 300;
      for (let i = 0; i < pushes; i++) {
        q.push(next);
        model.push(next++);
      }
      for (let i = 0; i < shifts; i++) expect(q.shift()).toBe(model.shift());
      expect(q.length).toBe(model.length);
      expect(q.peek()).toBe(model[0]);
    }
    expect(q.length).toBe(0);
    expect(q.shift()).toBeUndefined();
    expect(q.peek()).toBeUndefined();
  });

  it('remove() takes out the first occurrence anywhere, keeping the order of the rest', () => {
    const q = new Queue<string>();
    for (const s of ['a', 'b', 'c', 'd']) q.push(s);
    q.shift();
    for (const s of ['e', 'f']) q.push(s); // wraps past where 'a' was
    expect(q.remove('d')).toBe(true);
    expect(q.remove('x')).toBe(false);
    expect(q.remove('b')).toBe(true);
    expect(q.length).toBe(3);
    expect(q.drain()).toEqual(['c', 'e', 'f']);
    // A ring that has wrapped: 16 slots, head near the end.
    const r = new Queue<number>();
    for (let i = 0; i < 14; i++) r.push(i);
    for (let i = 0; i < 12; i++) r.shift();
    for (let i = 14; i < 24; i++) r.push(i);
    expect(r.remove(13)).toBe(true);
    expect(r.remove(20)).toBe(true);
    expect(r.drain()).toEqual([12, 14, 15, 16, 17, 18, 19, 21, 22, 23]);
  });

  it('drain() hands back everything oldest first and leaves the queue empty and usable', () => {
    const q = new Queue<number>();
    for (let i = 0; i < 100; i++) q.push(i);
    for (let i = 0; i < 30; i++) q.shift();
    expect(q.drain()).toEqual(Array.from({ length: 70 }, (_, i) => i + 30));
    expect(q.length).toBe(0);
    expect(q.drain()).toEqual([]);
    q.push(7);
    expect(q.shift()).toBe(7);
  });

  it('keeps no reference to an item once shifted or removed', async () => {
    const q = new Queue<object>();
    let shifted: object | null = {};
    let removed: object | null = {};
    const refs = [new WeakRef(shifted), new WeakRef(removed)];
    q.push(shifted);
    q.push({});
    q.push(removed);
    q.push({});
    q.shift();
    q.remove(removed);
    shifted = removed = null;
    // A WeakRef's target lives at least until the job that made it ends.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    expect(refs.map((r) => r.deref())).toEqual([undefined, undefined]);
    expect(q.length).toBe(2);
  });
});
