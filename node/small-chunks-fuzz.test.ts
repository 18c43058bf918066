/**
 * Random pushes through pushJoined (node/ssh2-internals/small-chunks.ts), many under 1 KiB, against
 * random readers: flowing 'data' with pause/resume and unshift of what it did not take (as the
 * bridge does), read(n) with unshift, and 'readable' listeners reading with and without n. Every
 * byte must come out once and in order, readableLength must match what waits after every step,
 * and no chunk a reader was handed may change afterwards (joined chunks grow in place).
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { pushJoined } from './ssh2-internals.js';

type Mode = 'data' | 'read' | 'readable';

/** xorshift32: the same run for the same seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function run(mode: Mode, seed: number): Promise<void> {
  const R = rng(seed);
  const int = (n: number) => Math.floor(R() * n);
  const r = new Readable({ read() {}, highWaterMark: [16, 1024, 64 * 1024, 2 * 1024 * 1024][int(4)] });
  const push = r.push;
  let seq = 0;
  const sent: Buffer[] = [];
  const out: Buffer[] = [];
  const handed: [Buffer, Buffer][] = [];
  let draining = false;
  const take = (c: Buffer) => void handed.push([c, Buffer.from(c)]);
  const unshiftRest = (c: Buffer) => {
    const k = 1 + int(c.length - 1);
    out.push(c.subarray(0, k));
    r.unshift(c.subarray(k));
  };
  if (mode === 'data') {
    r.on('data', (c: Buffer) => {
      take(c);
      const x = draining ? 1 : R();
      if (x < 0.2 && c.length > 1) {
        r.pause();
        unshiftRest(c);
      } else if (x < 0.25) {
        r.pause();
        r.unshift(c);
      } else {
        out.push(c);
        if (!draining && R() < 0.2) r.pause();
      }
    });
  } else if (mode === 'readable') {
    r.on('readable', () => {
      let c: Buffer | null;
      while ((c = r.read(draining || R() < 0.5 ? undefined : 1 + int(3000)) as Buffer | null) !== null) {
        take(c);
        out.push(c);
      }
    });
  }
  const waiting = () => sent.reduce((n, b) => n + b.length, 0) - out.reduce((n, b) => n + b.length, 0);
  for (let step = 0; step < 300; step++) {
    const x = R();
    if (x < 0.6) {
      const n = R() < 0.7 ? 1 + int(40) : R() < 0.7 ? 1 + int(2000) : 1 + int(40_000);
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = (seq++ * 131 + 7) & 0xff;
      sent.push(Buffer.from(b));
      pushJoined(r, b, (c) => push.call(r, c));
    } else if (x < 0.7 && mode === 'data') r.pause();
    else if (x < 0.8 && mode === 'data') r.resume();
    else if (x < 0.9 && mode === 'read') {
      const c = r.read(R() < 0.3 ? undefined : 1 + int(5000)) as Buffer | null;
      if (c) {
        take(c);
        if (R() < 0.3 && c.length > 1) unshiftRest(c);
        else out.push(c);
      }
    } else await turn();
    assert.equal(r.readableLength, waiting(), `seed ${seed} step ${step}: readableLength`);
  }
  draining = true;
  const ended = new Promise<void>((resolve) => r.once('end', resolve));
  push.call(r, null);
  if (mode === 'data') r.resume();
  if (mode === 'read') {
    let c: Buffer | null;
    while ((c = r.read() as Buffer | null) !== null) {
      take(c);
      out.push(c);
    }
  }
  await ended;
  assert.ok(Buffer.concat(out).equals(Buffer.concat(sent)), `seed ${seed}: every byte once, in order`);
  for (const [c, copy] of handed) assert.ok(c.equals(copy), `seed ${seed}: a chunk handed to the reader changed`);
}

describe('pushJoined under random readers (fuzz)', () => {
  for (const mode of ['data', 'read', 'readable'] as const) {
    it(`${mode}: bytes in order, lengths exact, handed chunks unchanged`, async () => {
      for (let seed = 1; seed <= 150; seed++) await run(mode, seed);
    });
  }
});
