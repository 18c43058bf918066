import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Duplex, PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { createParkedChunks, type ParkedChunks } from '../parked-chunks.js';
import type { SendGate } from '../send-budget.js';
import { SMALL_CHUNK } from '../ssh2-internals.js';
import { bridge, channelEnd, type BridgeEnd, type BridgeStats, type SshChannelLike } from './bridge.js';
import { holdToWindow } from './standard-window.js';

/** A fake channel: `remote` is what the peer sees; eof() ends remote's readable side. */
function fakeChannel() {
  const toLocal = new PassThrough();
  const toRemote = new PassThrough();
  let eofSent = false;
  let closed = false;
  const local = Duplex.from({ readable: toLocal, writable: toRemote });
  const end: BridgeEnd = {
    stream: local,
    shutdownWrite(done) {
      local.write(Buffer.alloc(0), () => {
        eofSent = true;
        toRemote.end();
        done();
      });
    },
    close() {
      closed = true;
    },
  };
  return { end, peerWrite: (s: string) => toLocal.write(s), peerEof: () => toLocal.end(), peerRead: toRemote, state: () => ({ eofSent, closed }) };
}

function collect(s: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('end', () => resolve(out));
  });
}

interface ChannelSide {
  id: number;
  window: number;
  packetSize: number;
  state: string;
}

/**
 * A real ssh2 Channel (server side) whose protocol records what it would send: `sent` grows by
 * what the peer's window allowed; `grant(n)` is the peer's CHANNEL_WINDOW_ADJUST, through the
 * connection's handler table, which does what ssh2's own handler (lib/server.js) does.
 */
function ssh2Channel(window: number, copies?: Buffer[]) {
  type Ch = SshChannelLike & { outgoing: ChannelSide; _waitWindow: boolean; _chunk?: Buffer; _chunkcb?: () => void; _write(c: Buffer, e: null, cb: () => void): void };
  const { Channel } = createRequire(import.meta.url)('ssh2/lib/Channel.js') as { Channel: new (client: unknown, info: unknown, opts: unknown) => Ch };
  let sent = 0;
  const box: { ch?: Ch } = {};
  const protocol = {
    // ssh2 copies the data into a packet (Protocol#channelData): so does this, when asked.
    channelData: (_id: number, data: Buffer) => {
      sent += data.length;
      copies?.push(Buffer.from(data));
    },
    channelEOF: () => {},
    channelClose: () => {},
    // The grants of a hooked window (holdToWindow) go nowhere: this peer sends only what a test pushes.
    channelWindowAdjust: () => {},
    _handlers: {
      CHANNEL_CLOSE: () => {},
      CHANNEL_WINDOW_ADJUST: (_p: unknown, _recipient: number, n: number) => {
        const c = box.ch!;
        c.outgoing.window += n;
        if (!c._waitWindow) return;
        c._waitWindow = false;
        if (c._chunk) c._write(c._chunk, null, c._chunkcb!);
        else c._chunkcb?.();
      },
    },
  };
  const conn = { _protocol: protocol, _chanMgr: { get: () => box.ch, remove: () => {} } };
  const ch = (box.ch = new Channel(conn, { type: 'direct-tcpip', incoming: { id: 0, window: 2 << 20, packetSize: 32768, state: 'open' }, outgoing: { id: 1, window, packetSize: 32768, state: 'open' } }, { server: true }));
  return {
    ch,
    sent: () => sent,
    grant: (n: number) => protocol._handlers.CHANNEL_WINDOW_ADJUST(undefined, 0, n),
  };
}

/** A pool of parked chunks that counts the copies it makes of chunks under SMALL_CHUNK. */
function countingSmallCopies(): { parked: ParkedChunks; small: () => number } {
  const pool = createParkedChunks(8);
  let small = 0;
  const parked = {
    hold(c: Buffer) {
      const h = pool.hold(c);
      if (h.buffer !== c.buffer && c.length < SMALL_CHUNK) small++;
      return h;
    },
    written: (c: Buffer) => pool.written(c),
    free: 0,
    allocated: 0,
    reused: 0,
  };
  return { parked, small: () => small };
}

/**
 * Pushes packets of 1 to 999 bytes into Y's channel, as ssh2 hands them on (views of 64 KiB
 * reads), while X grants no window: all but the first wait. Then zeroes the reads (a view left
 * waiting would now send zeros), lets X take everything, and returns how many of the packets the
 * bridge copied while they were pushed (the first, put back for X's window, is one), how many were
 * pushed, and whether every byte reached X once, in order.
 */
async function smallPacketsThroughBridge(hooked: boolean): Promise<{ copied: number; packets: number; exact: boolean }> {
  const y = ssh2Channel(2 << 20);
  if (hooked) holdToWindow(y.ch);
  const delivered: Buffer[] = [];
  const x = ssh2Channel(0, delivered);
  const { parked, small } = countingSmallCopies();
  bridge(channelEnd(y.ch), channelEnd(x.ch), () => {}, { parked });
  await new Promise((r) => setImmediate(r));
  const reads = [randomBytes(64 * 1024), randomBytes(64 * 1024), randomBytes(64 * 1024)];
  const sent: Buffer[] = [];
  let packets = 0;
  for (const read of reads) {
    let at = 0;
    for (let n = 1 + (packets % 999); at + n <= read.length; n = 1 + ((packets * 131) % 999)) {
      sent.push(Buffer.from(read.subarray(at, at + n)));
      y.ch.push(read.subarray(at, at + n));
      at += n;
      packets++;
    }
  }
  const copied = small();
  assert.equal(y.ch.isPaused(), true, 'X grants no window: Y waits');
  for (const read of reads) read.fill(0);
  const total = Buffer.concat(sent);
  for (let i = 0; i < 200 && x.sent() < total.length; i++) {
    x.grant(16 * 1024);
    await new Promise((r) => setImmediate(r));
  }
  return { copied, packets, exact: Buffer.concat(delivered).equals(total) };
}

describe('bridge', () => {
  it("writes into an ssh2 channel only what its peer's window takes: the rest waits in the source, and flows as the window grows", async () => {
    const y = fakeChannel();
    const x = ssh2Channel(64 * 1024 + 1000);
    bridge(y.end, channelEnd(x.ch), () => {});
    const chunk = Buffer.alloc(32 * 1024, 1);
    for (let i = 0; i < 64; i++) y.peerWrite(chunk as unknown as string); // 2 MiB
    await new Promise((r) => setImmediate(r));
    assert.equal(x.sent(), 64 * 1024 + 1000, 'what the window allowed was sent');
    assert.equal(x.ch.writableLength, 0, 'nothing waits in the channel for the window');
    assert.equal(y.end.stream.isPaused(), true, 'the source is paused');
    // The peer opens its window: the rest flows through, never more than the window at a time.
    for (let i = 0; i < 100 && x.sent() < 2 << 20; i++) {
      const before = x.sent();
      x.grant(100_000);
      await new Promise((r) => setImmediate(r));
      assert.equal(x.ch.writableLength, 0);
      assert.ok(x.sent() - before <= 100_000);
    }
    assert.equal(x.sent(), 2 << 20);
  });

  it('delivers a reply sent after the other side EOF, then closes both', async () => {
    const y = fakeChannel();
    const x = fakeChannel();
    const closed = new Promise<BridgeStats>((resolve) => bridge(y.end, x.end, resolve));
    const atX = collect(x.peerRead);
    const atY = collect(y.peerRead);
    y.peerWrite('request');
    y.peerEof();
    assert.equal(await atX, 'request', 'X saw the request and EOF');
    assert.equal(x.state().closed, false, 'X still open after Y EOF');
    x.peerWrite('reply after eof');
    x.peerEof();
    assert.equal(await atY, 'reply after eof');
    const stats = await closed;
    assert.deepEqual(stats, { aToB: 7, bToA: 15, end: 'eof' });
    assert.equal(y.state().closed && x.state().closed, true);
  });

  it('tears both sides down when one side errors', async () => {
    const y = fakeChannel();
    const x = fakeChannel();
    const closed = new Promise<BridgeStats>((resolve) => bridge(y.end, x.end, resolve));
    y.end.stream.destroy(new Error('boom'));
    assert.equal((await closed).end, 'error');
    assert.equal(x.state().closed, true);
  });

  it('stops reading the source while the destination peer is over its send bound, and resumes when it is under', async () => {
    const y = fakeChannel();
    const x = fakeChannel();
    // X's peer goes over its bound with the first chunk, until `open()`.
    let over = false;
    let waiter: (() => void) | undefined;
    const gate: SendGate = {
      update: () => over,
      whenOpen: (cb) => (over ? (waiter = cb) : cb()),
      buffered: 0,
    };
    x.end.gate = gate;
    bridge(y.end, x.end, () => {});
    const atX: string[] = [];
    x.peerRead.on('data', (d: Buffer) => atX.push(d.toString()));
    x.peerRead.once('data', () => (over = true));
    y.peerWrite('first');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(atX, ['first'], 'the chunk that crossed the bound is delivered');
    y.peerWrite('second');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(atX, ['first'], 'nothing more is fed to X while it is over its bound');
    assert.equal(y.end.stream.isPaused(), true, 'the source is paused while X is over its bound');
    assert.equal(y.end.stream.readableLength, 'second'.length, 'the chunk that came while X was over waits in the source');
    over = false;
    waiter?.();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(atX, ['first', 'second']);
    assert.equal(y.end.stream.isPaused(), false);
  });

  it('many channels feeding one peer stop at its bound plus one chunk (a key exchange holding their packets never reaches the read pause), and deliver everything once it opens', async () => {
    const LIMIT = 256 * 1024;
    const CHUNK = 32 * 1024;
    const CHANNELS = 64;
    // What the peer's connection holds (a key exchange under way: nothing leaves until it ends).
    let queued = 0;
    let waiters: (() => void)[] = [];
    const gate: SendGate = {
      update: () => queued >= LIMIT,
      whenOpen: (cb) => (queued >= LIMIT ? waiters.push(cb) : cb()),
      get buffered() {
        return queued;
      },
    };
    let delivered = 0;
    const ys: ReturnType<typeof fakeChannel>[] = [];
    for (let i = 0; i < CHANNELS; i++) {
      const y = fakeChannel();
      const x = fakeChannel();
      const write = x.end.stream.write.bind(x.end.stream) as (c: Buffer) => boolean;
      x.end.stream.write = ((c: Buffer) => {
        queued += c.length;
        return write(c);
      }) as typeof x.end.stream.write;
      x.end.gate = gate;
      x.peerRead.on('data', (d: Buffer) => (delivered += d.length));
      bridge(y.end, x.end, () => {});
      ys.push(y);
    }
    for (const y of ys) y.peerWrite(Buffer.alloc(CHUNK, 1) as unknown as string);
    await new Promise((r) => setImmediate(r));
    assert.ok(queued <= LIMIT + CHUNK, `${queued} bytes queued for the peer over a bound of ${LIMIT} (twice it is the read pause)`);
    assert.ok(queued < 2 * LIMIT);
    // The key exchange ends and the peer takes what was queued, again and again: all of it arrives.
    for (let round = 0; round < CHANNELS + 1 && delivered < CHANNELS * CHUNK; round++) {
      queued = 0;
      const open = waiters;
      waiters = [];
      for (const w of open) w();
      await new Promise((r) => setImmediate(r));
      assert.ok(queued <= LIMIT + CHUNK, `${queued} bytes queued in round ${round}`);
    }
    assert.equal(delivered, CHANNELS * CHUNK);
  });

  it('copies the data that waits into pooled memory, uses it again once written on, and delivers every byte in order', async () => {
    // Y's channel receives packets as ssh2 hands them on: views of 64 KiB reads, two 32 KiB
    // packets each. X's window takes 40 KiB at a time, so most of it waits in Y's channel.
    const y = ssh2Channel(2 << 20);
    const delivered: Buffer[] = [];
    const x = ssh2Channel(40 * 1024, delivered);
    const parked = createParkedChunks(8);
    bridge(channelEnd(y.ch), channelEnd(x.ch), () => {}, { parked });
    await new Promise((r) => setImmediate(r));
    const sent: Buffer[] = [];
    for (let round = 0; round < 16; round++) {
      const reads = [randomBytes(64 * 1024), randomBytes(64 * 1024)];
      for (const read of reads) {
        sent.push(Buffer.from(read));
        y.ch.push(read.subarray(0, 32 * 1024));
        y.ch.push(read.subarray(32 * 1024));
      }
      await new Promise((r) => setImmediate(r));
      assert.equal(y.ch.isPaused(), true, "X's window ran out: Y's channel is paused");
      // What waits is a copy: the reads may change (or be freed) and what X receives does not.
      for (const read of reads) read.fill(0);
      for (let i = 0; i < 20 && x.sent() < (round + 1) * 128 * 1024; i++) {
        x.grant(40 * 1024);
        await new Promise((r) => setImmediate(r));
      }
    }
    assert.equal(x.sent(), 2 << 20);
    assert.ok(Buffer.concat(delivered).equals(Buffer.concat(sent)), 'every byte arrived, in order, unchanged');
    assert.ok(parked.reused > 0, `the pool's memory was used again (${parked.reused} times)`);
    assert.ok(parked.allocated <= 8, `at most one window's worth allocated (${parked.allocated})`);
  });

  it("copies a waiting chunk once, however little window the other peer grants at a time", async () => {
    // A 20 KiB chunk (copied into memory of its own size) waits for X, who grants 256 bytes at
    // a time: each grant takes a little of it and puts the rest back. Copied again at each put
    // back, a peer's tiny grants cost the relay a copy of the whole rest each (quadratic).
    const y = ssh2Channel(2 << 20);
    const delivered: Buffer[] = [];
    const x = ssh2Channel(0, delivered);
    const pool = createParkedChunks(8);
    let copied = 0;
    const counting = {
      hold(c: Buffer) {
        const h = pool.hold(c);
        if (h.buffer !== c.buffer) copied += c.length;
        return h;
      },
      written: (c: Buffer) => pool.written(c),
      free: 0,
      allocated: 0,
      reused: 0,
    };
    bridge(channelEnd(y.ch), channelEnd(x.ch), () => {}, { parked: counting });
    await new Promise((r) => setImmediate(r));
    const read = randomBytes(64 * 1024);
    const sent = Buffer.from(read.subarray(0, 20 * 1024));
    y.ch.push(read.subarray(0, 20 * 1024));
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 100 && x.sent() < sent.length; i++) {
      x.grant(256);
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(Buffer.concat(delivered).equals(sent), 'every byte arrived, in order');
    assert.ok(copied <= sent.length, `copied once: ${copied} bytes for ${sent.length}`);
  });

  it("leaves small packets that wait to a hooked channel's push, which joins them (copied once, not twice), and delivers every byte in order", async () => {
    const r = await smallPacketsThroughBridge(true);
    assert.ok(r.packets > 300);
    assert.ok(r.copied <= 1, `the bridge copied ${r.copied} of ${r.packets} small packets that waited`);
    assert.ok(r.exact, 'every byte arrived, in order, unchanged after the reads were zeroed');
  });

  it("copies small packets that wait in a channel whose push does not join them (no hook), so no view of ssh2's reads waits", async () => {
    const r = await smallPacketsThroughBridge(false);
    assert.equal(r.copied, r.packets, 'each packet that waited is copied');
    assert.ok(r.exact, 'every byte arrived, in order, unchanged after the reads were zeroed');
  });
});
