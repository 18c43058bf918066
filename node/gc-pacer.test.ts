import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createGcPacer, minorCollector } from './gc-pacer.js';
import { parseConfig } from './config.js';

describe('gc pacer', () => {
  it('collects once per bytesPerCollection read, and counts', () => {
    let calls = 0;
    const pacer = createGcPacer(1000, () => calls++);
    pacer.read(400);
    pacer.read(400);
    assert.equal(calls, 0);
    pacer.read(300);
    assert.equal(calls, 1);
    pacer.read(999);
    assert.equal(calls, 1, 'the count starts again after a collection');
    pacer.read(1);
    assert.equal(calls, 2);
    assert.equal(pacer.collections, 2);
  });

  it('0 never collects', () => {
    let calls = 0;
    const pacer = createGcPacer(0, () => calls++);
    for (let i = 0; i < 100; i++) pacer.read(1 << 20);
    assert.equal(calls, 0);
    assert.equal(pacer.collections, 0);
  });

  it('the collector frees unreachable packet-sized Buffers, without --expose-gc, and does not leave gc exposed', async () => {
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'run without --expose-gc');
    const collect = minorCollector();
    collect();
    const held = () => process.memoryUsage().arrayBuffers;
    const before = held();
    // 16 MiB of 32 KiB Buffers, each with its own backing store as ssh2's packets, dropped at once.
    (() => {
      for (let i = 0; i < 512; i++) Buffer.allocUnsafeSlow(32 * 1024).fill(1);
    })();
    assert.ok(held() - before >= 15 * 1024 * 1024, `${held() - before} bytes held`);
    collect();
    // Backing stores are freed by a sweeper task after the collection: give it a moment.
    for (let i = 0; i < 100 && held() - before > 1024 * 1024; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(held() - before <= 1024 * 1024, `${held() - before} bytes still held after the collection`);
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
  });

  it('--gc-every: 1 MiB by default, 0 turns it off, sizes like the other bounds', () => {
    const run = (args: string[]) => {
      const r = parseConfig(['--control-url', 'https://c:8443', '--listen', '127.0.0.1:2222', ...args], {});
      assert.equal(r.kind, 'run');
      return r.kind === 'run' ? r.config.gcEveryBytes : NaN;
    };
    assert.equal(run([]), 1024 * 1024);
    assert.equal(run(['--gc-every', '0']), 0);
    assert.equal(run(['--gc-every', '4MiB']), 4 * 1024 * 1024);
    assert.throws(() => run(['--gc-every', 'lots']));
  });
});
