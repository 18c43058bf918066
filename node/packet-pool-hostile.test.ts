import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import ssh2, { type Connection, type ServerChannel } from 'ssh2';
import { formatOpenSshPrivateKey } from '../protocol/ssh-key.js';
import { createPacketPool, POOLED_PACKET_BYTES, POOLED_PACKET_MIN, recycleWrites, type PacketPool } from './packet-pool.js';
import { installPooledPadding, nativeCryptoAvailable, socketOf, Ssh2Server, takeInPlacePacketsFrom } from './ssh2-internals.js';
import { batchWrites } from './write-batching.js';

/**
 * recycleWrites (node/packet-pool.ts, which gives a packet back as soon as its socket holds
 * nothing unsent) against a hostile mix of writes on real sockets (TCP on 127.0.0.1, and Unix
 * domain sockets, whose small kernel buffers make most writes wait in libuv): random packet
 * sizes, non-pooled writes with and without callbacks, strings, empty writes, writes from inside
 * write callbacks and 'drain' listeners, cork/uncork by hand and through batchWrites in both wrap
 * orders, a reader that pauses and resumes at random (or trickles), writes while connecting,
 * end(), destroy(), the peer resetting or ending its side mid-burst; then the relay's own
 * arrangement through real ssh2. Two independent checks:
 *
 * - ground truth from libuv: the socket's handle is watched (its `writeBuffer`/`writev` and each
 *   write request's `oncomplete`), and a buffer given back while a write request that reads it is
 *   still in libuv fails the test whatever the timing;
 * - the wire: every buffer given back is overwritten at once (0xa5) and the pool hands out the
 *   last one given back first, so a buffer given back too early, or for the wrong write, shows
 *   as a wrong byte at the receiver, which checks every byte against what was written.
 *
 * A buffer given back while its write still waits in Node (the socket's `writableBuffer`, or
 * the data held while connecting), or twice (two packets sharing one buffer), fails the pool's
 * own bookkeeping.
 */

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** Whether `ab` is in a write `sock` still queues in Node (buffered, or held while connecting). */
function queuedInNode(sock: Socket, ab: ArrayBufferLike): boolean {
  const pendingData = (sock as unknown as { _pendingData?: unknown })._pendingData;
  const held = Array.isArray(pendingData) ? pendingData.map((e: unknown) => (e instanceof Uint8Array ? e : (e as { chunk?: unknown }).chunk)) : [pendingData];
  const buffered = (sock as unknown as { writableBuffer?: Array<{ chunk?: unknown }> }).writableBuffer ?? [];
  return [...buffered.map((e) => e.chunk), ...held].some((c) => c instanceof Uint8Array && c.buffer === ab);
}

/** The write requests libuv holds for a socket now, and the memory they read. */
function watchInFlight(sock: Socket): { holds(ab: ArrayBufferLike): boolean; readonly asyncWrites: number; readonly completions: number } {
  const handle = (sock as unknown as { _handle: Record<string, (...a: unknown[]) => unknown> })._handle;
  const inFlight = new Set<{ req: { async?: boolean }; bufs: ArrayBufferLike[] }>();
  let asyncWrites = 0;
  let completions = 0;
  const watch = (name: string, bufsOf: (args: unknown[]) => ArrayBufferLike[]) => {
    const orig = handle[name]!;
    handle[name] = function (this: unknown, req: unknown, ...args: unknown[]) {
      if (req !== null) {
        const r = req as { async?: boolean; oncomplete: (...a: unknown[]) => unknown };
        r.oncomplete = tracked(r, bufsOf(args), r.oncomplete);
        return orig.call(this, req, ...args);
      }
      // Node 24.22's stream_base_commons passes no request: the native write makes one when the
      // write cannot complete at once and returns it (a number when it did), and Node attaches
      // its `oncomplete` after this returns, so it is caught as it is set.
      const ret = orig.call(this, req, ...args);
      if (typeof ret === 'object' && ret !== null) {
        let oncomplete: ((...a: unknown[]) => unknown) | undefined;
        const wrapped = tracked(ret, bufsOf(args), function (this: unknown, ...a: unknown[]) {
          return oncomplete?.apply(this, a);
        });
        Object.defineProperty(ret, 'oncomplete', { configurable: true, get: () => wrapped, set: (fn: (...a: unknown[]) => unknown) => (oncomplete = fn) });
      }
      return ret;
    };
  };
  /** `req` is in flight until its completion, `oncomplete` (called with the request as `this`), runs. */
  const tracked = (req: { async?: boolean }, bufs: ArrayBufferLike[], oncomplete: (...a: unknown[]) => unknown) => {
    const rec = { req, bufs };
    inFlight.add(rec);
    return function (this: unknown, ...a: unknown[]) {
      inFlight.delete(rec);
      completions++;
      return oncomplete.apply(this, a);
    };
  };
  const buffersIn = (xs: unknown[]) => xs.filter((x): x is Uint8Array => x instanceof Uint8Array).map((x) => x.buffer);
  watch('writeBuffer', (a) => buffersIn([a[0]]));
  watch('writev', (a) => buffersIn(a[0] as unknown[]));
  return {
    holds(ab) {
      for (const rec of inFlight) {
        // Node sets `req.async` right after the native call returns: false is a write the kernel took whole (or one that failed).
        if (rec.req.async !== true) {
          inFlight.delete(rec);
          continue;
        }
        asyncWrites++;
        if (rec.bufs.includes(ab)) return true;
      }
      return false;
    },
    get asyncWrites() {
      return asyncWrites;
    },
    get completions() {
      return completions;
    },
  };
}

interface CheckedPool extends PacketPool {
  problems: string[];
  takes: number;
  gives: number;
  /** Gives that happened inside a `sock.write` call (the early path). */
  givesInWrite: number;
  inWrite: boolean;
  guards: Array<(ab: ArrayBufferLike) => boolean>;
  sockets: Socket[];
}

function checkedPool(maxFree: number): CheckedPool {
  const inner = createPacketPool(maxFree);
  const out = new Set<ArrayBufferLike>();
  const p: CheckedPool = {
    problems: [],
    takes: 0,
    gives: 0,
    givesInWrite: 0,
    inWrite: false,
    guards: [],
    sockets: [],
    take(size) {
      const b = inner.take(size);
      if (b) {
        if (out.has(b.buffer)) p.problems.push('a buffer handed out while already out');
        out.add(b.buffer);
        p.takes++;
      }
      return b;
    },
    owns: (ab) => inner.owns(ab),
    give(ab) {
      if (!out.has(ab)) p.problems.push('a buffer given back that was not out (given back twice)');
      out.delete(ab);
      if (p.guards.some((g) => g(ab))) p.problems.push('a buffer given back while libuv still holds a write request reading it');
      if (p.sockets.some((sock) => queuedInNode(sock, ab))) p.problems.push('a buffer given back while its write still waits in Node');
      new Uint8Array(ab).fill(0xa5);
      p.gives++;
      if (p.inWrite) p.givesInWrite++;
      inner.give(ab);
    },
    get free() {
      return inner.free;
    },
    get allocated() {
      return inner.allocated;
    },
    get reused() {
      return inner.reused;
    },
  };
  return p;
}

/** Counts the pool's gives inside a `sock.write` call (the early path) from now on. */
function markWrites(sock: Socket, pool: CheckedPool): void {
  const wrapped = sock.write;
  sock.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
    pool.inWrite = true;
    try {
      return wrapped.apply(this, args);
    } finally {
      pool.inWrite = false;
    }
  } as Socket['write'];
}

/** Checks every byte that arrives against what was written, in order, without keeping what matched. */
class Verifier {
  private queue: Buffer[] = [];
  private head = 0;
  private off = 0;
  received = 0;
  expected = 0;
  mismatch: string | undefined;
  expect(b: Buffer): void {
    if (b.length === 0) return;
    this.queue.push(b);
    this.expected += b.length;
  }
  feed(d: Buffer): void {
    let o = 0;
    while (o < d.length && !this.mismatch) {
      const h = this.queue[this.head];
      if (!h) {
        this.mismatch = `${d.length - o} bytes more than written, at byte ${this.received}`;
        return;
      }
      const n = Math.min(h.length - this.off, d.length - o);
      const got = d.subarray(o, o + n);
      const want = h.subarray(this.off, this.off + n);
      if (!got.equals(want)) {
        let i = 0;
        while (got[i] === want[i]) i++;
        this.mismatch = `byte ${this.received + i}: got 0x${got[i]!.toString(16)}, written 0x${want[i]!.toString(16)} (chunk ${this.head} of ${h.length} bytes, offset ${this.off + i})`;
        return;
      }
      o += n;
      this.off += n;
      this.received += n;
      if (this.off === h.length) {
        this.queue[this.head++] = undefined as unknown as Buffer;
        this.off = 0;
        if (this.head > 4096) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
      }
    }
  }
}

type Wrap = 'recycle' | 'recycle-then-batch' | 'batch-then-recycle';

interface Scenario {
  seed: number;
  wrap: Wrap;
  /** cork()/uncork() by hand at random. */
  manualCork: boolean;
  /** Bytes to write in all. */
  total: number;
  /** Start writing before the connection is established. */
  whileConnecting?: boolean;
  /** At a random point: the writer ends, the writer is destroyed, the reader is destroyed. Writes go on for a while after. */
  stop?: 'end' | 'destroy' | 'peer-destroy' | 'peer-end' | 'end-flush';
  /** Largest synchronous run of writes. */
  maxRun?: number;
  /** A reader that reads one chunk every few milliseconds, so that the kernel's buffers stay full and most writes wait in libuv. */
  trickle?: boolean;
  /** A Unix domain socket instead of TCP: far smaller kernel buffers, so many more writes wait in libuv. */
  unix?: boolean;
}

/** Waits (at most 20 s) for `cond`. */
async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 2));
}

const SOURCE = Buffer.alloc(128 * 1024);
{
  const r = rng(7);
  for (let i = 0; i < SOURCE.length; i++) SOURCE[i] = r(256);
}

async function run(s: Scenario): Promise<string> {
  const r = rng(s.seed);
  const pool = checkedPool(64);
  const server = createServer();
  const path = join(tmpdir(), `pool-hostile-${process.pid}-${s.seed}.sock`);
  if (s.unix) server.listen(path);
  else server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const a = s.unix ? connect(path) : connect((server.address() as AddressInfo).port, '127.0.0.1');
  a.on('error', () => {});
  const inFlight = watchInFlight(a);
  pool.guards.push((ab) => inFlight.holds(ab));
  pool.sockets.push(a);

  // As in the relay (recycle first, batching wraps it), or the other way round.
  if (s.wrap === 'batch-then-recycle') batchWrites(a);
  recycleWrites(a, pool);
  if (s.wrap === 'recycle-then-batch') batchWrites(a);
  markWrites(a, pool);

  const v = new Verifier();
  let b: Socket | undefined;
  let readerDone = false;
  let pauseTimer: NodeJS.Timeout | undefined;
  try {
    if (!s.whileConnecting) await once(a, 'connect');

    const readerClosed = accepted.then(([sock]) => {
      b = sock;
      b.on('error', () => {});
      b.on('data', (d: Buffer) => v.feed(d));
      // A reader that pauses and resumes at random.
      const toggle = () => {
        if (readerDone || !b) return;
        if (b.isPaused()) {
          b.resume();
          pauseTimer = setTimeout(toggle, r(3));
        } else {
          b.pause();
          pauseTimer = setTimeout(toggle, r(5) === 0 ? 10 + r(40) : r(8));
        }
      };
      const trickle = () => {
        if (readerDone || !b) return;
        b.resume();
        b.once('data', () => {
          if (!readerDone) b!.pause();
        });
        pauseTimer = setTimeout(trickle, 2 + r(6));
      };
      if (s.trickle) {
        b.pause();
        trickle();
      } else toggle();
      return new Promise<void>((resolve) => b!.once('close', () => resolve()));
    });

    let userCallbacks = 0;
    let userCallbacksDone = 0;
    let lastCallbackId = -1;
    const callbackOrder: string[] = [];
    let ownCallbackPooled = 0;
    let trackedPooled = 0;
    let corks = 0;
    let written = 0;
    let stopped = false;
    let afterStop = 0;
    const stopAt = s.stop ? Math.floor(s.total * (0.2 + r(60) / 100)) : Infinity;

    const uncorkAll = () => {
      while (corks > 0) {
        corks--;
        a.uncork();
      }
    };
    let looping = true;
    let reentrant = 0;
    /** A pooled packet, as ssh2 writes it: taken, filled, written with no callback. */
    const writePooled = () => {
      const size = POOLED_PACKET_MIN + 1 + r(POOLED_PACKET_BYTES - POOLED_PACKET_MIN);
      const p = pool.take(size)!;
      const from = (seq * 7919) % (SOURCE.length - size);
      SOURCE.copy(p, 0, from, from + size);
      p.writeUInt32BE(seq, 0);
      p.writeUInt32BE(seq, size - 4);
      seq++;
      record(Buffer.from(p));
      trackedPooled++;
      if (r(20) === 0) a.write(new Uint8Array(p.buffer, p.byteOffset, p.length));
      else a.write(p);
    };
    /** Writes from inside a write callback or a 'drain' listener (as a bridge forwards from an event), while the main loop runs. */
    const writeFromEvent = () => {
      if (!looping || r(4) !== 0) return;
      reentrant++;
      for (let n = 1 + r(6); n > 0; n--) {
        if (r(5) === 0) {
          const from = r(1000);
          const chunk = SOURCE.subarray(from, from + 1 + r(40_000));
          record(chunk);
          a.write(chunk);
        } else writePooled();
      }
    };
    a.on('drain', writeFromEvent);
    const userCallback = () => {
      const id = userCallbacks++;
      return () => {
        userCallbacksDone++;
        if (id <= lastCallbackId) callbackOrder.push(`callback ${id} after ${lastCallbackId}`);
        lastCallbackId = id;
        writeFromEvent();
      };
    };
    const record = (chunk: Buffer) => {
      // After the peer's FIN the writer still sends until it ends its side too (the next tick).
      if (!stopped || (s.stop === 'peer-end' && !a.writableEnded && !a.destroyed)) v.expect(chunk);
      written += chunk.length;
    };

    const maxRun = s.maxRun ?? 64;
    let seq = 0;
    while (written < s.total || (stopped && afterStop < 40)) {
      if (!stopped && written >= stopAt) {
        stopped = true;
        // end() with writes still queued, and nothing written after: all of it must arrive.
        if (s.stop === 'end-flush') {
          a.end();
          break;
        }
        if (s.stop === 'end') a.end();
        else if (s.stop === 'destroy') a.destroy();
        else if (s.stop === 'peer-destroy') b?.destroy();
        // The writer's socket does not allow half-open connections: at the peer's FIN, net replaces its `write` (writeAfterFIN), dropping the wrappers.
        else if (s.stop === 'peer-end') b?.end();
      }
      const runLength = 1 + (r(8) === 0 ? r(maxRun * 4) : r(maxRun));
      for (let k = 0; k < runLength; k++) {
        if (stopped) afterStop++;
        const action = r(100);
        if (action < 62) {
          writePooled();
        } else if (action < 72) {
          const from = r(1000);
          const chunk = Buffer.from(SOURCE.subarray(from, from + 1 + r(40_000)));
          record(chunk);
          a.write(chunk, userCallback());
        } else if (action < 80) {
          const from = r(1000);
          const chunk = SOURCE.subarray(from, from + 1 + r(40_000));
          record(chunk);
          a.write(chunk);
        } else if (action < 83) {
          const str = 'x'.repeat(1 + r(5000));
          record(Buffer.from(str));
          if (r(2)) a.write(str, userCallback());
          else a.write(str);
        } else if (action < 86) {
          a.write(Buffer.alloc(0), r(2) ? userCallback() : undefined);
        } else if (action < 90) {
          // A pooled buffer written with a callback of its own: not recycleWrites' to give back; its owner does.
          const size = POOLED_PACKET_MIN + 1 + r(POOLED_PACKET_BYTES - POOLED_PACKET_MIN);
          const p = pool.take(size)!.fill(seq++ & 0xff);
          record(Buffer.from(p));
          ownCallbackPooled++;
          const cb = userCallback();
          a.write(p, (err) => {
            cb();
            if (!err) pool.give(p.buffer);
          });
        } else if (s.manualCork && action < 95) {
          a.cork();
          corks++;
          const how = r(3);
          const un = () => {
            if (corks > 0) {
              corks--;
              a.uncork();
            }
          };
          if (how === 0) process.nextTick(un);
          else if (how === 1) setImmediate(un);
          // else: uncorked at the next yield
        }
      }
      // Yield in one of several ways, or not at all.
      const y = r(10);
      if (y < 3) continue;
      if (y < 5) {
        await new Promise((res) => process.nextTick(res));
        continue;
      }
      uncorkAll();
      if (a.destroyed || a.writableEnded) {
        await new Promise((res) => setImmediate(res));
      } else if (a.writableLength > (s.trickle ? 1024 * 1024 + r(1024 * 1024) : 4 * 1024 * 1024)) {
        // Not events.once: it rejects at the socket's 'error' (the peer going away), which is expected here.
        await new Promise<void>((res) => {
          const done = () => {
            a.off('drain', done);
            a.off('close', done);
            res();
          };
          a.on('drain', done);
          a.on('close', done);
        });
      } else if (y < 8 && !s.trickle) {
        await new Promise((res) => setImmediate(res));
      } else {
        await new Promise((res) => setTimeout(res, r(3)));
      }
    }
    looping = false;
    uncorkAll();

    readerDone = true;
    clearTimeout(pauseTimer);
    b?.resume();
    if (!s.stop || s.stop === 'end-flush') {
      await until(() => v.received >= v.expected || v.mismatch !== undefined);
      await until(() => a.writableLength === 0);
      await new Promise((res) => setImmediate(res));
      await new Promise((res) => setImmediate(res));
      a.end();
    } else {
      a.destroy();
      b?.destroy();
    }
    await Promise.race([readerClosed, new Promise((res) => setTimeout(res, 10_000))]);
    await new Promise((res) => setImmediate(res));
    server.close();
    if (!a.destroyed) a.destroy();
    // A write libuv still held when the socket closed is called back (cancelled) as its handle closes.
    await until(() => a.closed);
    await new Promise((res) => setImmediate(res));

    assert.deepEqual(pool.problems.slice(0, 5), [], `seed ${s.seed}`);
    assert.equal(v.mismatch, undefined, `seed ${s.seed}: ${v.mismatch}`);
    if (!s.stop) assert.deepEqual(callbackOrder.slice(0, 5), [], `seed ${s.seed}: user callbacks in order`);
    assert.equal(userCallbacksDone, userCallbacks, `seed ${s.seed}: every user callback ran once`);
    // A reader that trickles leaves writes waiting in libuv: the watch must have seen some complete, or
    // it no longer sees Node's write path (as on Node 24.22 before it followed it) and checks nothing.
    if (s.trickle) assert.ok(inFlight.completions > 0, `seed ${s.seed}: the libuv watch saw no write wait`);
    if (!s.stop || s.stop === 'end-flush') {
      assert.equal(v.received, v.expected);
      assert.equal(pool.gives, trackedPooled + ownCallbackPooled, `seed ${s.seed}: every pooled packet went back once`);
    } else {
      assert.ok(pool.gives <= trackedPooled + ownCallbackPooled);
    }
    return `seed ${s.seed} ${s.wrap}${s.manualCork ? ' +cork' : ''}${s.whileConnecting ? ' connecting' : ''}${s.stop ? ` ${s.stop}` : ''}${s.trickle ? ' trickle' : ''}${s.unix ? ' unix' : ''}: ${(written / 2 ** 20).toFixed(1)} MiB, ${trackedPooled} pooled, ${pool.allocated} buffers allocated, ${pool.gives} given back (${pool.givesInWrite} early), ${reentrant} writes from callbacks or 'drain', ${inFlight.completions} write requests went async (${inFlight.asyncWrites} in flight at a give), ${(v.received / 2 ** 20).toFixed(1)} MiB verified`;
  } finally {
    // Whatever happened, nothing is left open (a failed scenario must not hold the test file).
    readerDone = true;
    clearTimeout(pauseTimer);
    a.destroy();
    b?.destroy();
    server.close();
  }
}

const SEED = Number(process.env.POOL_SEED ?? 0) || 0x5eed;

describe('recycleWrites under hostile write patterns (real TCP, libuv-checked, byte-checked)', () => {
  for (const wrap of ['recycle', 'recycle-then-batch', 'batch-then-recycle'] as const) {
    for (const manualCork of [false, true]) {
      it(`${wrap}${manualCork ? ', corked by hand at random' : ''}: no buffer back while libuv reads it or twice, every byte intact`, async (t) => {
        for (let i = 0; i < 2; i++) t.diagnostic(await run({ seed: SEED + i * 101 + (manualCork ? 7 : 0) + wrap.length, wrap, manualCork, total: 12 * 2 ** 20 }));
      });
    }
  }

  it('writes issued while the socket is still connecting', async (t) => {
    for (const wrap of ['recycle', 'recycle-then-batch'] as const) {
      t.diagnostic(await run({ seed: SEED + 3, wrap, manualCork: true, total: 4 * 2 ** 20, whileConnecting: true }));
    }
  });

  it('end(), destroy(), the peer going away or ending its side mid-burst, writes going on after: no crash, nothing back twice or early, what arrived is intact', async (t) => {
    for (const stop of ['end-flush', 'end', 'destroy', 'peer-destroy', 'peer-end'] as const) {
      for (const wrap of ['recycle', 'recycle-then-batch', 'batch-then-recycle'] as const) {
        t.diagnostic(await run({ seed: SEED + 11 + stop.length + wrap.length, wrap, manualCork: true, total: 8 * 2 ** 20, stop }));
      }
    }
  });

  it('a reader that takes one chunk every few milliseconds: writes wait in libuv', async (t) => {
    for (const wrap of ['recycle', 'recycle-then-batch', 'batch-then-recycle'] as const) {
      t.diagnostic(await run({ seed: SEED + 23 + wrap.length, wrap, manualCork: true, total: 12 * 2 ** 20, trickle: true }));
      t.diagnostic(await run({ seed: SEED + 29 + wrap.length, wrap, manualCork: true, total: 12 * 2 ** 20, trickle: true, unix: true }));
      // A packet or two at a time: each write waits for the one libuv holds, and goes out on its own once that completed.
      t.diagnostic(await run({ seed: SEED + 31 + wrap.length, wrap, manualCork: false, total: 6 * 2 ** 20, trickle: true, unix: true, maxRun: 2 }));
    }
  });

  it('huge synchronous bursts (up to a few hundred packets in one run) against a paused reader', async (t) => {
    t.diagnostic(await run({ seed: SEED + 17, wrap: 'recycle-then-batch', manualCork: false, total: 48 * 2 ** 20, maxRun: 400 }));
    t.diagnostic(await run({ seed: SEED + 19, wrap: 'recycle', manualCork: false, total: 24 * 2 ** 20, maxRun: 400 }));
  });
});

/**
 * The relay's own arrangement through real ssh2 on both ends: packets built by the binding's
 * ciphers in pooled buffers (installPooledPadding, takeInPlacePacketsFrom), the server's socket
 * recycled then batched (node/relay.ts admit, node/ssh-server.ts), the client's the other way
 * round. 64 MiB server to client over CHANNELS channels and 16 MiB back, each client channel
 * paused and resumed at random (each resume lets the server's channel send what it buffered,
 * up to its 2 MiB window, in one synchronous run: the burst the early return is for), the
 * client's socket too, for longer (the server's writes then wait in libuv), and a re-key
 * mid-stream. SHA-256 per channel and direction; libuv and the pool's bookkeeping checked as above.
 */
const CHANNELS = 6;

/**
 * `p`, or a rejection as soon as the pool saw a problem (a mangled packet can stall ssh2 rather
 * than fail it), or after 60 s.
 */
function deadline<T>(p: Promise<T>, what: string, pool: CheckedPool, ms = 60_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let poll: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what}`)), ms);
    poll = setInterval(() => {
      if (pool.problems.length > 0) reject(new Error(`${what}: ${pool.problems[0]}`));
    }, 20);
  });
  return Promise.race([p, late]).finally(() => {
    clearTimeout(timer);
    clearInterval(poll);
  });
}

async function sshRun(cipher: ssh2.CipherAlgorithm, hmac: ssh2.MacAlgorithm | undefined, seed: number): Promise<string> {
  const r = rng(seed);
  installPooledPadding();
  const pool = checkedPool(128);
  takeInPlacePacketsFrom((n) => pool.take(n));
  const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
  const cleanups: Array<() => void> = [() => takeInPlacePacketsFrom(undefined)];
  try {
    const DOWN = 64 * 2 ** 20;
    const UP = 16 * 2 ** 20;
    const algorithms = { cipher: [cipher], ...(hmac ? { hmac: [hmac] } : {}) };
    let serverConn!: Connection;
    let serverWatch: ReturnType<typeof watchInFlight> | undefined;
    let longestRun = 0;
    let rekeys = 0;
    const serverChannels: ServerChannel[] = [];
    let channelArrived: () => void = () => {};
    const sshd = new Ssh2Server({ hostKeys: [hostKey], algorithms }, (conn) => {
      serverConn = conn;
      conn.on('error', () => {});
      const ws = socketOf(conn);
      batchWrites(ws); // the relay's order: recycled at admission, batched by the ssh server
      markWrites(ws, pool);
      const w = ws.write;
      let inRun = 0;
      ws.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
        if (inRun++ === 0)
          process.nextTick(() => {
            longestRun = Math.max(longestRun, inRun);
            inRun = 0;
          });
        return w.apply(this, args);
      } as Socket['write'];
      conn.on('rekey', () => rekeys++);
      conn.on('authentication', (ctx) => ctx.accept());
      conn.on('tcpip', (accept) => {
        serverChannels.push(accept());
        channelArrived();
      });
    });
    const tcp = createServer((sock) => {
      sock.on('error', () => {});
      cleanups.push(() => sock.destroy());
      const watched = watchInFlight(sock);
      serverWatch = watched;
      pool.guards.push((ab) => watched.holds(ab));
      pool.sockets.push(sock);
      recycleWrites(sock, pool);
      sshd.injectSocket(sock);
    });
    tcp.listen(0, '127.0.0.1');
    cleanups.push(() => tcp.close());
    await once(tcp, 'listening');
    const clientSock = connect((tcp.address() as AddressInfo).port, '127.0.0.1');
    clientSock.on('error', () => {});
    cleanups.push(() => clientSock.destroy());
    const watched = watchInFlight(clientSock);
    pool.guards.push((ab) => watched.holds(ab));
    pool.sockets.push(clientSock);
    batchWrites(clientSock); // the other order on the client
    recycleWrites(clientSock, pool);
    markWrites(clientSock, pool);
    const client = new ssh2.Client();
    client.on('error', () => {});
    cleanups.push(() => client.end());
    client.connect({ sock: clientSock, username: 'u', hostVerifier: () => true, algorithms });
    await deadline(once(client, 'ready'), 'the ssh handshake', pool);
    const channels: Duplex[] = [];
    for (let i = 0; i < CHANNELS; i++) {
      channels.push(await new Promise<Duplex>((resolve, reject) => client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, ch) => (err ? reject(err) : resolve(ch)))));
    }
    while (serverChannels.length < CHANNELS) await new Promise<void>((resolve) => (channelArrived = resolve));

    const writeAll = async (w: Duplex, total: number, hash: ReturnType<typeof createHash>, rekeyAt?: number) => {
      for (let off = 0; off < total; ) {
        const n = Math.min(total - off, 1 + r(256 * 1024));
        const chunk = randomBytes(n);
        hash.update(chunk);
        off += n;
        if (rekeyAt !== undefined && off >= rekeyAt && rekeyAt >= 0) {
          rekeyAt = -1;
          serverConn.rekey();
        }
        if (!w.write(chunk)) await once(w, 'drain');
      }
      w.end();
    };
    const readAll = (rd: Duplex) => {
      const hash = createHash('sha256');
      let n = 0;
      rd.on('data', (d: Buffer) => {
        hash.update(d);
        n += d.length;
      });
      return {
        ended: new Promise<void>((resolve) => rd.once('end', resolve)),
        digest: () => hash.digest('hex'),
        get bytes() {
          return n;
        },
      };
    };
    const flows = channels.map((ch, i) => {
      const sch = serverChannels[i]!;
      const sentDown = createHash('sha256');
      const sentUp = createHash('sha256');
      const down = readAll(ch);
      const up = readAll(sch);
      const writing = Promise.all([writeAll(sch, DOWN / CHANNELS, sentDown, i === 0 ? DOWN / CHANNELS / 3 : undefined), writeAll(ch, UP / CHANNELS, sentUp)]);
      return { ch, sentDown, sentUp, down, up, writing };
    });
    // The client pauses its channels, and its socket, at random.
    let done = false;
    let pauser: NodeJS.Timeout | undefined;
    const toggle = () => {
      if (done) return;
      const what = r(CHANNELS + 2);
      if (what < CHANNELS) {
        const ch = channels[what]!;
        if (ch.isPaused()) ch.resume();
        else ch.pause();
        pauser = setTimeout(toggle, r(5));
      } else if (what === CHANNELS) {
        if (clientSock.isPaused()) {
          clientSock.resume();
          pauser = setTimeout(toggle, r(5));
        } else {
          clientSock.pause();
          pauser = setTimeout(toggle, 5 + r(60));
        }
      } else pauser = setTimeout(toggle, r(5));
    };
    cleanups.push(() => {
      done = true;
      clearTimeout(pauser);
    });
    toggle();
    await deadline(Promise.all(flows.map((f) => f.writing)), 'the writes', pool);
    done = true;
    clearTimeout(pauser);
    clientSock.resume();
    for (const ch of channels) ch.resume();
    await deadline(Promise.all(flows.flatMap((f) => [f.down.ended, f.up.ended])), 'every channel ending', pool);
    for (const [i, f] of flows.entries()) {
      assert.equal(f.down.digest(), f.sentDown.digest('hex'), `channel ${i}, server to client: every byte (${f.down.bytes} bytes)`);
      assert.equal(f.up.digest(), f.sentUp.digest('hex'), `channel ${i}, client to server: every byte (${f.up.bytes} bytes)`);
    }
    assert.deepEqual(pool.problems.slice(0, 5), []);
    assert.equal(rekeys, 1, 're-keyed mid-stream');
    assert.ok(pool.reused > 0 && pool.givesInWrite > 0, `the pool was used (${pool.takes} taken, ${pool.reused} reused, ${pool.givesInWrite} given back early)`);
    return `${cipher}${hmac ? `+${hmac}` : ''}: ${DOWN / 2 ** 20} MiB down, ${UP / 2 ** 20} MiB up over ${CHANNELS} channels, ${pool.takes} packets taken, ${pool.allocated} buffers allocated, ${pool.gives} given back (${pool.givesInWrite} early); the server's socket: ${serverWatch?.completions} writes waited in libuv, longest synchronous run ${longestRun} writes, ${rekeys} re-key`;
  } finally {
    for (const c of cleanups.reverse()) c();
  }
}

describe('recycleWrites through real ssh2 (the relay’s arrangement), bursts after a paused channel resumes', () => {
  for (const [cipher, hmac] of [
    ['aes128-gcm@openssh.com', undefined],
    ['chacha20-poly1305@openssh.com', undefined],
    ['aes128-ctr', 'hmac-sha2-256-etm@openssh.com'],
  ] as const) {
    it(`${cipher}${hmac ? ` with ${hmac}` : ''}: SHA-256 intact both ways, nothing back early or twice`, { skip: !nativeCryptoAvailable() && 'ssh2 native binding not built' }, async (t) => {
      t.diagnostic(await sshRun(cipher, hmac, SEED + cipher.length));
    });
  }
});
