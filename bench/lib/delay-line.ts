/**
 * A userspace delay line for benchmarks: a TCP proxy on 127.0.0.1 that holds every chunk for
 * `oneWayMs` in each direction before passing it on (RTT = 2 x oneWayMs added), at no rate limit,
 * without dropping or reordering anything. This kernel has no netem; the long-distance rows of
 * bench:e2e put one in front of the relay (and of sshd) with it.
 *
 * It is bench equipment sharing the machine's cores with what it measures (a real link costs the
 * hosts nothing), so it moves bytes as cheaply as Node allows: each socket reads with net's
 * `onread` straight into reused 1 MiB slabs (up to the rest of the slab per read call, not Node's
 * 64 KiB into a fresh Buffer, and no 'data' event), the queue holds views of the slabs, and when
 * a chunk is due every chunk due by then goes out in one corked write (one writev call) instead
 * of one write per chunk and a 'drain' between. Slabs go back to a small pool once written: a
 * fresh 1 MiB allocation is a fresh mapping, and page faults on it cost more than the copy.
 *
 * Memory is bounded: each direction of each connection holds at most `maxQueuedBytes` (plus the
 * one read in progress when the bound is reached, at most MAX_READ_BYTES). At the bound it stops
 * reading its source (TCP backpressure to the sender) and resumes once the queue is down to half.
 * So a process with N connections holds at most N x 2 x (maxQueuedBytes + 2 slabs) in slabs,
 * plus at most MAX_FREE_SLABS slabs in the pool.
 * A bound below bandwidth x delay would cap throughput at maxQueuedBytes / oneWayMs; the default
 * (64 MiB) allows 850 MB/s at 75 ms one way, more than this machine moves through a tunnel.
 * A chunk also waits while its destination socket is not draining (its kernel buffer is full).
 *
 * Close: EOF is delayed like data and passed on as a half-close (the other direction keeps
 * flowing); a reset or error on either side destroys both at once. `connections()` counts open
 * pairs, so a test can see everything was torn down.
 */
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type OnReadOpts, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { moveToOnread } from '../../cli/ssh/packet-reads.js';

export const DEFAULT_MAX_QUEUED = 64 * 1024 * 1024;
/** Read bytes wait in slabs of this size. */
const SLAB_BYTES = 1024 * 1024;
/** The most one read call takes from a socket (the rest of a slab). */
export const MAX_READ_BYTES = SLAB_BYTES;
/** A read gets at least this much room: with less left in the slab, it goes into another one. */
const MIN_READ_BYTES = 64 * 1024;
/** Written bytes Node may hold for a destination before the line waits for 'drain'. */
const WRITE_HIGH_WATER = 1024 * 1024;

export interface DelayLineOptions {
  /** Where to forward, on 127.0.0.1. */
  targetPort: number;
  /** Delay added in each direction, ms. */
  oneWayMs: number;
  /** Bound on bytes held per direction per connection (see above). */
  maxQueuedBytes?: number;
}

export interface DelayLine {
  port: number;
  /** Open client/upstream pairs. */
  connections(): number;
  /** The most bytes any one direction held at once so far. */
  peakQueuedBytes(): number;
  /** Changes the delay for chunks read from now on (one line serves several rows of a bench). */
  setOneWayMs(ms: number): void;
  close(): Promise<void>;
}

type Item = { due: number; chunk: Buffer | null; slab?: Slab };

/** Where read bytes wait: filled in order, back to the pool once written and no longer filled. */
type Slab = { buf: Buffer; used: number; pending: number };

/** Written slabs kept for reuse (see the file comment), shared by all connections. */
const freeSlabs: Buffer[] = [];
const MAX_FREE_SLABS = 16;
const takeSlab = (): Slab => ({ buf: freeSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES), used: 0, pending: 0 });
const release = (s: Slab): void => {
  if (freeSlabs.length < MAX_FREE_SLABS) freeSlabs.push(s.buf);
};

/**
 * One direction: src -> (hold oneWayMs) -> dst, EOF included. Returns src's `onread` option (the
 * socket is created with it) and `attach`, which starts the direction once both sockets exist.
 */
function delayedDirection(oneWayMs: () => number, maxQueued: number, peak: (n: number) => void) {
  const queue: Item[] = [];
  let head = 0;
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let waitingDrain = false;
  let paused = false;
  let src: Socket | undefined;
  let dst: Socket | undefined;
  /** The slab being read into. */
  let slab: Slab = takeSlab();

  const flush = (): void => {
    timer = undefined;
    if (!dst || waitingDrain || dst.destroyed) return;
    const now = performance.now();
    let end = false;
    dst.cork();
    while (head < queue.length) {
      const item = queue[head]!;
      // Never early: a timer may fire up to a millisecond before performance.now() reaches `due`.
      if (item.due > now) {
        timer = setTimeout(flush, Math.max(1, Math.ceil(item.due - now)));
        break;
      }
      head++;
      if (item.chunk === null) {
        end = true;
        break;
      }
      queued -= item.chunk.length;
      const from = item.slab!;
      dst.write(item.chunk, () => {
        // Written (or the socket is gone): the slab may go back once it is no longer filled.
        if (--from.pending === 0 && from !== slab) release(from);
      });
    }
    // Everything due in one writev call.
    dst.uncork();
    if (end) dst.end();
    else if (dst.writableLength > WRITE_HIGH_WATER) {
      waitingDrain = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      dst.once('drain', () => {
        waitingDrain = false;
        flush();
      });
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
    if (paused && queued <= maxQueued / 2 && src && !src.destroyed) {
      paused = false;
      src.resume();
    }
  };

  const push = (chunk: Buffer | null, from?: Slab): void => {
    const delay = oneWayMs();
    const now = performance.now();
    // Later chunks never overtake earlier ones, even right after the delay was lowered.
    const last = queue.length > head ? queue[queue.length - 1]! : undefined;
    const due = Math.max(now + delay, last?.due ?? 0);
    queue.push(from ? { due, chunk, slab: from } : { due, chunk });
    if (chunk) {
      queued += chunk.length;
      peak(queued);
    }
    if (!timer && !waitingDrain) timer = setTimeout(flush, Math.max(0, due - now));
  };

  /** net's onread buffer: where the next read goes, the rest of the slab (or a new one). */
  const readBuffer = (): Buffer => {
    if (slab.buf.length - slab.used < MIN_READ_BYTES) {
      const full = slab;
      slab = takeSlab();
      if (full.pending === 0) release(full);
    }
    return slab.buf.subarray(slab.used);
  };

  /** net's onread callback: `n` bytes were read into the buffer readBuffer gave last. */
  const onread = (n: number, buf: Buffer): boolean => {
    if (buf.buffer !== slab.buf.buffer || buf.byteOffset !== slab.buf.byteOffset + slab.used) throw new Error('delay line: net read into another buffer than the one it was given');
    slab.pending++;
    push(buf.subarray(0, n), slab);
    slab.used += n;
    if (queued >= maxQueued && !paused) {
      paused = true;
      return false; // net stops reading; flush resumes it
    }
    return true;
  };

  return {
    onread: { buffer: readBuffer, callback: onread as OnReadOpts['callback'] } satisfies OnReadOpts,
    /** Starts the direction once both sockets exist. */
    attach(from: Socket, to: Socket) {
      src = from;
      dst = to;
      from.once('end', () => push(null));
      // What src sent before it closed is still delivered; only a gone dst stops the queue.
      to.once('close', () => {
        if (timer) clearTimeout(timer);
        timer = undefined;
      });
      if (queue.length > head && !timer) flush();
    },
  };
}

export async function startDelayLine(o: DelayLineOptions): Promise<DelayLine> {
  const maxQueued = o.maxQueuedBytes ?? DEFAULT_MAX_QUEUED;
  if (!(o.oneWayMs >= 0) || !(maxQueued > 0)) throw new RangeError('oneWayMs >= 0 and maxQueuedBytes > 0');
  let oneWay = o.oneWayMs;
  const delay = () => oneWay;
  const open = new Set<Socket>();
  let pairs = 0;
  let peak = 0;
  const notePeak = (n: number) => {
    if (n > peak) peak = n;
  };
  const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (accepted) => {
    const up = delayedDirection(delay, maxQueued, notePeak);
    const down = delayedDirection(delay, maxQueued, notePeak);
    const client = moveToOnread(accepted, up.onread, true);
    client.setNoDelay(true);
    client.pause();
    const upstream = connect({ host: '127.0.0.1', port: o.targetPort, allowHalfOpen: true, noDelay: true, onread: down.onread });
    upstream.pause();
    pairs++;
    open.add(client);
    open.add(upstream);
    let closed = 0;
    const destroyBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    // A socket closes by itself once it has both sent and received EOF (allowHalfOpen); a close
    // with an error (a reset) takes the other side down at once.
    const onClose = (s: Socket) => (hadError: boolean) => {
      open.delete(s);
      if (hadError) destroyBoth();
      if (++closed === 2) pairs--;
    };
    client.once('close', onClose(client));
    upstream.once('close', onClose(upstream));
    client.on('error', destroyBoth);
    upstream.on('error', destroyBoth);
    upstream.once('connect', () => {
      up.attach(client, upstream);
      down.attach(upstream, client);
      client.resume();
      upstream.resume();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => pairs,
    peakQueuedBytes: () => peak,
    setOneWayMs: (ms) => {
      if (!(ms >= 0)) throw new RangeError('oneWayMs >= 0');
      oneWay = ms;
    },
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
