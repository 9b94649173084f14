import { describe, expect, it } from 'vitest';
import { FrameDecoder, FrameFlags, FrameType, HEADER_SIZE, encodeFrame } from '../lib/index.js';
import { decodeErrorBody, encodeErrorBody } from '../lib/protocol.js';

type Event = [string, number, number, Buffer | number | string];

function collect(maxFrame: number): { decoder: FrameDecoder; events: Event[] } {
  const events: Event[] = [];
  const decoder = new FrameDecoder(maxFrame, {
    frame: (type, id, payload) => events.push(['frame', type, id, Buffer.from(payload)]),
    oversize: (type, id, length) => events.push(['oversize', type, id, length]),
    corrupt: (err) => events.push(['corrupt', 0, 0, err.message]),
  });
  return { decoder, events };
}

const wire = (...frames: Buffer[][]): Buffer => Buffer.concat(frames.flat());

describe('frame codec', () => {
  it('writes the header of PROTOCOL.md: version, type, flags, id, length, big-endian', () => {
    const [frame] = encodeFrame(FrameType.REQUEST, 0x01020304, Buffer.from('hi'));
    expect([...frame!]).toEqual([1, 1, 0, 0, 1, 2, 3, 4, 0, 0, 0, 2, 0x68, 0x69]);
    expect(HEADER_SIZE).toBe(12);
  });

  it('carries flags in bytes 2-3 (PARTS on a REQUEST), and gives them to the decoder\'s sink', () => {
    const [frame] = encodeFrame(FrameType.REQUEST, 7, Buffer.from('x'), FrameFlags.PARTS);
    expect([...frame!.subarray(0, 4)]).toEqual([1, 1, 0, 1]);
    const [high] = encodeFrame(FrameType.PART, 7, Buffer.alloc(0), 0xabcd);
    expect([...high!.subarray(1, 4)]).toEqual([5, 0xab, 0xcd]);
    const flags: number[] = [];
    const decoder = new FrameDecoder(1024, { frame: (_t, _i, _p, f) => void flags.push(f), oversize: () => {}, corrupt: () => {} });
    decoder.push(wire([frame!], [high!], encodeFrame(FrameType.RESPONSE, 8, Buffer.from('y'))));
    expect(flags).toEqual([1, 0xabcd, 0]);
    for (const bad of [-1, 0x10000, 1.5]) expect(() => encodeFrame(FrameType.REQUEST, 1, Buffer.alloc(0), bad)).toThrow(RangeError);
  });

  it('sends a large payload as a separate buffer rather than copying it', () => {
    const payload = Buffer.alloc(1024 * 1024, 7);
    const parts = encodeFrame(FrameType.RESPONSE, 9, payload);
    expect(parts).toHaveLength(2);
    expect(parts[1]).toBe(payload);
    expect(parts[0]!.readUInt32BE(8)).toBe(payload.length);
  });

  it('decodes the same frames however the stream is split, down to one byte at a time', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const stream = wire(
      encodeFrame(FrameType.RESPONSE, 1, all),
      encodeFrame(FrameType.RESPONSE, 2, Buffer.alloc(0)),
      encodeFrame(FrameType.ERROR, 3, Buffer.from('{"code":"X","message":"m"}')),
    );
    const expected = collect(1024);
    expected.decoder.push(stream);
    expect(expected.events.map((e) => e.slice(0, 3))).toEqual([
      ['frame', 2, 1],
      ['frame', 2, 2],
      ['frame', 3, 3],
    ]);
    expect(expected.events[0]![3]).toEqual(all);
    for (const step of [1, 2, 5, 11, 12, 13, 100]) {
      const { decoder, events } = collect(1024);
      for (let i = 0; i < stream.length; i += step) decoder.push(stream.subarray(i, i + step));
      expect(events).toEqual(expected.events);
    }
  });

  it('pushBorrowed: fed through one reused buffer, split anywhere, it delivers payloads of their own that later chunks do not overwrite', () => {
    const stream = wire(
      encodeFrame(FrameType.RESPONSE, 1, Buffer.from('first answer')),
      encodeFrame(FrameType.RESPONSE, 2, Buffer.alloc(0)),
      encodeFrame(FrameType.RESPONSE, 3, Buffer.alloc(3000, 0x33)),
      encodeFrame(FrameType.ERROR, 4, Buffer.from('{"code":"X","message":"m"}')),
    );
    for (const step of [1, 5, 12, 13, 40, 1000, stream.length]) {
      const payloads: Buffer[] = [];
      const decoder = new FrameDecoder(4096, {
        frame: (_type, _id, payload) => payloads.push(payload), // kept as given, not copied
        oversize: () => {},
        corrupt: (err) => {
          throw err;
        },
      });
      const reused = Buffer.alloc(step);
      for (let i = 0; i < stream.length; i += step) {
        const n = stream.copy(reused, 0, i, i + step);
        decoder.pushBorrowed(reused, n);
        reused.fill(0xee); // what the next read does to it
      }
      expect(payloads.map((p) => p.toString('latin1'))).toEqual([
        'first answer',
        '',
        '3'.repeat(3000),
        '{"code":"X","message":"m"}',
      ]);
    }
  });

  it('skips an oversize frame without buffering it and stays in sync for the next', () => {
    const stream = wire(
      encodeFrame(FrameType.REQUEST, 1, Buffer.alloc(5000, 1)),
      encodeFrame(FrameType.REQUEST, 2, Buffer.from('after')),
    );
    for (const step of [1, 7, 4096, stream.length]) {
      const { decoder, events } = collect(4096);
      for (let i = 0; i < stream.length; i += step) decoder.push(stream.subarray(i, i + step));
      expect(events).toEqual([
        ['oversize', 1, 1, 5000],
        ['frame', 1, 2, Buffer.from('after')],
      ]);
    }
  });

  it('accepts a payload of exactly the maximum', () => {
    const { decoder, events } = collect(4096);
    decoder.push(wire(encodeFrame(FrameType.REQUEST, 1, Buffer.alloc(4096, 2))));
    expect(events[0]![0]).toBe('frame');
    expect((events[0]![3] as Buffer).length).toBe(4096);
  });

  it('reports a stream that is not this protocol once and then ignores it', () => {
    const { decoder, events } = collect(4096);
    const bad = Buffer.from('GET / HTTP/1.1\r\n\r\n');
    decoder.push(bad);
    decoder.push(wire(encodeFrame(FrameType.REQUEST, 1, Buffer.from('x'))));
    expect(events).toEqual([['corrupt', 0, 0, expect.stringContaining('protocol version 71')]]);
  });

  it('round-trips error bodies and tolerates ones that are not JSON', () => {
    expect(decodeErrorBody(encodeErrorBody('HANDLER_ERROR', 'boom', 4096))).toEqual({ code: 'HANDLER_ERROR', message: 'boom' });
    expect(decodeErrorBody(Buffer.from('plain text'))).toEqual({ code: 'HANDLER_ERROR', message: 'plain text' });
    expect(encodeErrorBody('X', 'm'.repeat(10_000), 1024).length).toBeLessThanOrEqual(1024);
  });

  it('cuts the message, never the JSON, to fit an error body in the frame limit, even when JSON escapes it to 6 bytes a character', () => {
    for (const message of ['m'.repeat(10_000), '\u0001'.repeat(1000), '\u{1F600}'.repeat(1000)]) {
      const body = encodeErrorBody('HANDLER_ERROR', message, 1024);
      expect(body.length).toBeLessThanOrEqual(1024);
      const decoded = JSON.parse(body.toString()) as { code: string; message: string };
      expect(decoded.code).toBe('HANDLER_ERROR');
      expect(decoded.message).toMatch(/\.\.\. \(cut to fit the maximum frame size\)$/);
      expect(message.startsWith(decoded.message.replace(/\.\.\. \(cut to fit the maximum frame size\)$/, ''))).toBe(true);
    }
    // One that fits is left alone.
    expect(JSON.parse(encodeErrorBody('X', 'short', 1024).toString())).toEqual({ code: 'X', message: 'short' });
  });

  it('refuses bad arguments with errors naming them', () => {
    const sink = { frame: () => {}, oversize: () => {}, corrupt: () => {} };
    const cases: Array<[() => unknown, string, string]> = [
      [() => encodeFrame(256, 1, Buffer.alloc(0)), 'RangeError', '"type"'],
      [() => encodeFrame(1, -1, Buffer.alloc(0)), 'RangeError', '"id"'],
      [() => encodeFrame(1, 2 ** 32, Buffer.alloc(0)), 'RangeError', '"id"'],
      [() => encodeFrame('1' as never, 1, Buffer.alloc(0)), 'TypeError', '"type"'],
      [() => encodeFrame(1, 1, 'text' as never), 'TypeError', '"payload"'],
      [() => new FrameDecoder(-1, sink), 'RangeError', '"maxFrame"'],
      [() => new FrameDecoder(1024, null as never), 'TypeError', '"sink"'],
      [() => new FrameDecoder(1024, { ...sink, corrupt: undefined } as never), 'TypeError', '"sink.corrupt"'],
      [() => new FrameDecoder(1024, sink).push('bytes' as never), 'TypeError', '"chunk"'],
    ];
    for (const [fn, name, arg] of cases) {
      expect(fn).toThrow(expect.objectContaining({ name, message: expect.stringContaining(arg) }));
    }
    // A payload whose buffer was transferred away (structuredClone, postMessage).
    const buffer = new ArrayBuffer(4);
    const view = new Uint8Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    expect(() => encodeFrame(1, 1, view)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('"payload"') }),
    );
    expect(encodeFrame(1, 1, new Uint8Array(0))[0]!.length).toBe(HEADER_SIZE); // empty, not detached: fine
    // A limit of 0 is legal: every non-empty payload is oversize, and skipped.
    const { decoder, events } = collect(0);
    decoder.push(wire(encodeFrame(FrameType.REQUEST, 1, Buffer.from('x')), encodeFrame(FrameType.REQUEST, 2, Buffer.alloc(0))));
    expect(events).toEqual([
      ['oversize', 1, 1, 1],
      ['frame', 1, 2, Buffer.alloc(0)],
    ]);
  });
});
