/**
 * A userspace delay line for benchmarks: a TCP proxy on 127.0.0.1 that holds every chunk for
 * `oneWayMs` in each direction before passing it on (RTT = 2 x oneWayMs added), at no rate limit,
 * without dropping or reordering anything. This kernel has no netem; the long-distance rows of
 * bench:e2e put one in front of the relay (and of sshd) with it.
 *
 * Memory is bounded: each direction of each connection holds at most `maxQueuedBytes` (plus the
 * one chunk being read when the bound is reached, at most a socket read of 64 KiB). At the bound
 * it stops reading its source (TCP backpressure to the sender) and resumes once the queue is down
 * to half. So a process with N connections holds at most N x 2 x (maxQueuedBytes + 64 KiB).
 * A bound below bandwidth x delay would cap throughput at maxQueuedBytes / oneWayMs; the default
 * (64 MiB) allows 850 MB/s at 75 ms one way, more than this machine moves through a tunnel.
 * A chunk also waits while its destination socket is not draining (its kernel buffer is full).
 *
 * Close: EOF is delayed like data and passed on as a half-close (the other direction keeps
 * flowing); a reset or error on either side destroys both at once. `connections()` counts open
 * pairs, so a test can see everything was torn down.
 */
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export const DEFAULT_MAX_QUEUED = 64 * 1024 * 1024;

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

type Item = { due: number; chunk: Buffer | null };

/** One direction: src -> (hold oneWayMs) -> dst, EOF included. */
function pipeDelayed(src: Socket, dst: Socket, oneWayMs: () => number, maxQueued: number, peak: (n: number) => void): void {
  const queue: Item[] = [];
  let head = 0;
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let waitingDrain = false;
  let paused = false;

  const flush = (): void => {
    timer = undefined;
    if (waitingDrain || dst.destroyed) return;
    const now = performance.now();
    while (head < queue.length) {
      const item = queue[head]!;
      // Never early: a timer may fire up to a millisecond before performance.now() reaches `due`.
      if (item.due > now) {
        timer = setTimeout(flush, Math.max(1, Math.ceil(item.due - now)));
        break;
      }
      head++;
      if (item.chunk === null) {
        dst.end();
        continue;
      }
      queued -= item.chunk.length;
      if (!dst.write(item.chunk)) {
        waitingDrain = true;
        dst.once('drain', () => {
          waitingDrain = false;
          flush();
        });
        break;
      }
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
    if (paused && queued <= maxQueued / 2 && !src.destroyed) {
      paused = false;
      src.resume();
    }
  };

  const push = (chunk: Buffer | null): void => {
    const delay = oneWayMs();
    // Later chunks never overtake earlier ones, even right after the delay was lowered.
    const last = queue.length > head ? queue[queue.length - 1]!.due : 0;
    queue.push({ due: Math.max(performance.now() + delay, last), chunk });
    if (chunk) {
      queued += chunk.length;
      peak(queued);
      if (queued >= maxQueued && !paused) {
        paused = true;
        src.pause();
      }
    }
    if (!timer && !waitingDrain) timer = setTimeout(flush, delay);
  };

  src.on('data', (chunk: Buffer) => push(chunk));
  src.once('end', () => push(null));
  // What src sent before it closed is still delivered; only a gone dst stops the queue.
  dst.once('close', () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
  });
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
  const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (client) => {
    const upstream = connect({ host: '127.0.0.1', port: o.targetPort, allowHalfOpen: true, noDelay: true });
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
      pipeDelayed(client, upstream, delay, maxQueued, notePeak);
      pipeDelayed(upstream, client, delay, maxQueued, notePeak);
      client.resume();
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
