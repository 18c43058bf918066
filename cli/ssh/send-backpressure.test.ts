import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { holdWritesWhileSocketFull } from './send-backpressure.js';

const KiB = 1024;
const tick = () => new Promise((r) => setImmediate(r));

/** A socket stand-in whose writes complete only once release() was called (the peer reads from then on). */
function slowSocket(): { sock: Writable; release: () => void } {
  let pending: (() => void) | undefined;
  let reading = false;
  const sock = new Writable({
    highWaterMark: 16 * KiB,
    write(_chunk, _enc, cb) {
      if (reading) cb();
      else pending = cb;
    },
  });
  return {
    sock,
    release: () => {
      reading = true;
      pending?.();
    },
  };
}

/** A channel stand-in that writes each chunk to `sock` at once and calls back, as ssh2's Channel#_write does when the window allows. */
function channelOver(sock: Writable): Writable {
  return new Writable({
    highWaterMark: 2 * 1024 * KiB,
    write(chunk: Buffer, _enc, cb) {
      sock.write(chunk);
      cb();
    },
  });
}

describe('holdWritesWhileSocketFull', () => {
  it("holds a channel write's callback while the socket holds more than the limit, and lets it go on 'drain'", async () => {
    const { sock, release } = slowSocket();
    const channel = channelOver(sock);
    holdWritesWhileSocketFull(channel, sock, 64 * KiB);
    const done: number[] = [];
    channel.write(Buffer.alloc(64 * KiB), () => done.push(1));
    await tick();
    assert.deepEqual(done, [1], 'at the limit: called back');
    channel.write(Buffer.alloc(32 * KiB), () => done.push(2));
    channel.write(Buffer.alloc(32 * KiB), () => done.push(3));
    await tick();
    assert.deepEqual(done, [1], 'above the limit: held');
    assert.equal(sock.writableLength, 96 * KiB, 'the next chunk waits in the channel, not in the socket');
    release(); // the socket drains
    await tick();
    await tick();
    assert.deepEqual(done, [1, 2, 3]);
  });

  it('calls back at once while the socket keeps up, and refuses a limit below its high-water mark', async () => {
    const sock = new Writable({ write: (_c, _e, cb) => cb() });
    const channel = channelOver(sock);
    holdWritesWhileSocketFull(channel, sock, 64 * KiB);
    let n = 0;
    for (let i = 0; i < 64; i++) channel.write(Buffer.alloc(32 * KiB), () => n++);
    await tick();
    assert.equal(n, 64);
    assert.throws(() => holdWritesWhileSocketFull(channelOver(sock), sock, 1 * KiB), RangeError);
  });

  it('many channels of one connection wait on its socket with one listener, and all go on at drain or close', async () => {
    for (const end of ['drain', 'close'] as const) {
      const { sock, release } = slowSocket();
      const warnings: Error[] = [];
      const onWarning = (w: Error) => warnings.push(w);
      process.on('warning', onWarning);
      const done: number[] = [];
      for (let i = 0; i < 50; i++) {
        const channel = channelOver(sock);
        holdWritesWhileSocketFull(channel, sock, 64 * KiB);
        channel.write(Buffer.alloc(80 * KiB), () => done.push(i));
      }
      await tick();
      assert.equal(done.length, 0, 'all held');
      assert.equal(sock.listenerCount('drain'), 1);
      if (end === 'drain') release();
      else sock.destroy();
      await tick();
      await tick();
      assert.equal(done.length, 50, `all released at ${end}`);
      assert.equal(sock.listenerCount('drain'), 0);
      process.off('warning', onWarning);
      assert.deepEqual(warnings, []);
    }
  });
});
