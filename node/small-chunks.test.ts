import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { JOINED_MAX, joinsSmallChunks, joinsSmallChunksOf, pushJoined, waitingChunks } from './ssh2-internals.js';

/** A Readable whose pushes go through pushJoined, as a hooked channel's do. */
function joined(): { r: Readable; push(b: Buffer): boolean } {
  const r = new Readable({ read() {}, highWaterMark: 2 * 1024 * 1024 });
  const push = r.push;
  return { r, push: (b) => pushJoined(r, b, (c) => push.call(r, c)) };
}

const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

describe('pushJoined (node/ssh2-internals/small-chunks.ts)', () => {
  it('joins small chunks that wait in a paused stream (one Buffer per 32 KiB), and reads them back unchanged', () => {
    const { r, push } = joined();
    r.on('data', () => {});
    r.pause();
    const sent: Buffer[] = [];
    for (let i = 0; i < 100_000; i++) {
      const b = bytes(1 + (i % 3), i);
      sent.push(b);
      assert.equal(push(b), true);
    }
    const total = Buffer.concat(sent);
    assert.equal(r.readableLength, total.length);
    assert.ok(waitingChunks(r) <= Math.ceil(total.length / JOINED_MAX) + 8, `${waitingChunks(r)} chunks for ${total.length} bytes`);
    r.removeAllListeners('data');
    const got = r.read() as Buffer;
    assert.ok(got.equals(total));
  });

  it('keeps large chunks as they are, joins what follows a small one, and never changes bytes a reader was handed', () => {
    const { r, push } = joined();
    const parts = [bytes(5, 2), bytes(2000, 3), bytes(JOINED_MAX, 1), bytes(1, 4), bytes(700, 5)];
    for (const p of parts) push(p);
    assert.equal(waitingChunks(r), 3, 'the small one and the 2000 after it; the 32 KiB one; the two after it');
    const first = r.read(JOINED_MAX + 2005) as Buffer;
    // What waits now is a view of the last joined chunk's memory (read(n) sliced it): more joins on
    // past its end, and the slice handed out keeps its bytes.
    const handed = r.read(300) as Buffer;
    const copy = Buffer.from(handed);
    const late = [bytes(3, 6), bytes(9, 7)];
    for (const p of late) push(p);
    assert.equal(waitingChunks(r), 1);
    const rest = r.read() as Buffer;
    assert.ok(handed.equals(copy), 'a chunk handed out earlier is unchanged');
    assert.ok(Buffer.concat([first, handed, rest]).equals(Buffer.concat([...parts, ...late])), 'every byte once, in order');
  });

  it('pushes as is what is delivered at once (flowing, nothing waiting)', () => {
    const { r, push } = joined();
    const got: Buffer[] = [];
    r.on('data', (b: Buffer) => got.push(b));
    const b = bytes(1, 9);
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        push(b);
        assert.equal(got.at(-1), b);
        assert.equal(waitingChunks(r), 0);
        resolve();
      }),
    );
  });

  it('copies a small chunk that waits exactly when it says so (joinsSmallChunksOf, which lets the bridge leave the copy to it)', () => {
    const { r, push } = joined();
    r.pause();
    assert.equal(joinsSmallChunksOf(r), true, "the running Node's buffer has a shape pushJoined knows");
    assert.equal(joinsSmallChunks(r), false, 'but its push is not a hooked channel window');
    const view = bytes(10, 1);
    push(view);
    const waiting = r.read() as Buffer;
    assert.ok(waiting.equals(view));
    assert.notEqual(waiting.buffer, view.buffer, 'what waited is a copy');
    const odd = new Readable({ read() {} });
    odd.pause();
    (odd as unknown as { _readableState: { buffer: unknown } })._readableState.buffer = new Map();
    assert.equal(joinsSmallChunksOf(odd), false, 'a buffer of another shape');
    let pushed: Buffer | undefined;
    pushJoined(odd, view, (c) => ((pushed = c), true));
    assert.equal(pushed, view, 'then the chunk is pushed as it is (and the bridge copies it)');
  });

  it('joins nothing into a destroyed stream: what is pushed is dropped and answered false, as push does', () => {
    const { r, push } = joined();
    r.on('error', () => {});
    r.pause();
    push(bytes(10, 1));
    r.destroy();
    const answers = Array.from({ length: 100 }, (_, i) => push(bytes(10, i)));
    assert.equal(r.readableLength, 10, 'nothing more waits');
    assert.deepEqual(answers, answers.map(() => false));
  });
});
