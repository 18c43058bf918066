import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { createParkedChunks, PARKED_CHUNK_BYTES, PARKED_CHUNK_MIN, parkWhileWaiting } from './parked-chunks.js';

const bytes = (n: number, fill: number) => Buffer.alloc(n, fill);

describe('parked chunks', () => {
  it('copies a chunk into pooled memory and hands that memory out again once the copy was written to its end', () => {
    const pool = createParkedChunks(4);
    const chunk = bytes(PARKED_CHUNK_BYTES, 7);
    const copy = pool.hold(chunk);
    assert.notEqual(copy.buffer, chunk.buffer, 'a copy, not a view of the original');
    assert.ok(copy.equals(chunk));
    assert.equal(pool.hold(copy), copy, 'a copy of its own is not copied again');
    pool.written(copy);
    assert.equal(pool.free, 1);
    const next = pool.hold(bytes(PARKED_CHUNK_MIN, 9));
    assert.equal(next.buffer, copy.buffer, 'the same memory, used again');
    assert.equal(pool.reused, 1);
    assert.equal(pool.allocated, 1);
  });

  it('takes the memory back only when the last part of a split copy is written', () => {
    const pool = createParkedChunks(4);
    const copy = pool.hold(bytes(30 * 1024, 1));
    pool.written(copy.subarray(0, 10 * 1024));
    assert.equal(pool.free, 0, 'the rest of the copy is still to be read');
    pool.written(copy.subarray(10 * 1024));
    assert.equal(pool.free, 1);
    pool.written(copy.subarray(10 * 1024));
    assert.equal(pool.free, 1, 'given back once');
  });

  it('copies smaller and larger chunks into memory of their own size, outside the pool', () => {
    const pool = createParkedChunks(4);
    for (const n of [1, PARKED_CHUNK_MIN - 1, PARKED_CHUNK_BYTES + 1]) {
      const chunk = bytes(n, 3);
      const copy = pool.hold(chunk);
      assert.notEqual(copy.buffer, chunk.buffer);
      assert.ok(copy.equals(chunk));
      pool.written(copy);
    }
    assert.equal(pool.allocated, 0);
    assert.equal(pool.free, 0);
  });

  it('does not copy again what it copied, whatever its size: a remainder put back stays in the same memory', () => {
    const pool = createParkedChunks(4);
    for (const n of [5 * 1024, PARKED_CHUNK_MIN - 1, PARKED_CHUNK_BYTES, PARKED_CHUNK_BYTES + 1, 64 * 1024]) {
      const copy = pool.hold(bytes(n, 5));
      const rest = copy.subarray(1000);
      assert.equal(pool.hold(rest).buffer, copy.buffer, `a remainder of a ${n}-byte copy is not copied again`);
    }
  });

  it('keeps at most maxFree buffers', () => {
    const pool = createParkedChunks(2);
    const copies = [1, 2, 3].map(() => pool.hold(bytes(PARKED_CHUNK_BYTES, 1)));
    for (const c of copies) pool.written(c);
    assert.equal(pool.allocated, 3);
    assert.equal(pool.free, 2);
  });

  it('ignores memory it did not hand out', () => {
    const pool = createParkedChunks(2);
    pool.written(bytes(PARKED_CHUNK_BYTES, 1));
    assert.equal(pool.free, 0);
  });

  it("copies what is pushed into a stream while it waits (paused, or data ahead of it), not what flows on at once, until stopped", () => {
    const pool = createParkedChunks(4);
    const s = new PassThrough();
    const seen: Buffer[] = [];
    s.on('data', (d: Buffer) => seen.push(d));
    const stop = parkWhileWaiting(s, pool);
    const flowing = bytes(PARKED_CHUNK_BYTES, 1);
    s.push(flowing);
    assert.equal(seen[0], flowing, 'a flowing stream hands the chunk on as it is');
    s.pause();
    const waiting = bytes(PARKED_CHUNK_BYTES, 2);
    s.push(waiting);
    const held = s.read() as Buffer;
    assert.notEqual(held.buffer, waiting.buffer, 'a paused stream holds a copy');
    assert.ok(held.equals(waiting));
    stop();
    const after = bytes(PARKED_CHUNK_BYTES, 3);
    s.push(after);
    assert.equal(s.read(), after, 'stopped: nothing is copied');
  });
});
