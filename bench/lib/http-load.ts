/**
 * A closed-loop HTTP load generator: `concurrency` workers share one undici Pool with as many
 * connections, each sends the next request as soon as its previous one finished. Latency is
 * measured per request from send to the last body byte.
 */
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

export interface LoadResult {
  requests: number;
  errors: number;
  /** Status codes (or error names) of the failures, with counts. */
  errorKinds: Map<string, number>;
  elapsedMs: number;
  /** Sorted latencies of successful requests, ms. */
  latencies: Float64Array;
}

export interface LoadOptions {
  origin: string;
  concurrency: number;
  requests: number;
  /** The request for index i (0-based). */
  make(i: number): { method: 'POST' | 'GET'; path: string; headers: Record<string, string>; body?: string };
  /** The status a success has. */
  okStatus: number;
}

/**
 * Closed loop when `rate` is unset. With `rate` (requests/s), open loop instead: request i is
 * due at start + i/rate whatever happened before it, with at most `concurrency` in flight, and
 * its latency counts from when it was due (so a stall is not hidden by sending less: no
 * coordinated omission).
 */
export async function runLoad(o: LoadOptions & { rate?: number }): Promise<LoadResult> {
  return o.rate ? runOpenLoop({ ...o, rate: o.rate }) : runClosedLoop(o);
}

/**
 * What both loops share: one undici Pool with bounded timeouts (a stalled server fails the run
 * instead of hanging it; undici waits 300 s), and one request that records its latency from
 * `from` (send time, or due time in the open loop) or its failure kind.
 */
function loadRun(o: LoadOptions) {
  const pool = new Pool(o.origin, {
    connections: o.concurrency,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  const latencies = new Float64Array(o.requests);
  let ok = 0;
  let errors = 0;
  const errorKinds = new Map<string, number>();
  const fail = (kind: string): void => {
    errors++;
    errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
  };
  return {
    async request(i: number, from = performance.now()): Promise<void> {
      const req = o.make(i);
      try {
        const res = await pool.request({ method: req.method, path: req.path, headers: req.headers, body: req.body });
        const text = await res.body.text();
        if (res.statusCode === o.okStatus) latencies[ok++] = performance.now() - from;
        else fail(`${res.statusCode} ${/"code":"([A-Z_]+)"/.exec(text)?.[1] ?? ''}`.trim());
      } catch (err) {
        fail((err as Error).name);
      }
    },
    async finish(elapsedMs: number): Promise<LoadResult> {
      await pool.close();
      return { requests: o.requests, errors, errorKinds, elapsedMs, latencies: latencies.slice(0, ok).sort() };
    },
  };
}

async function runClosedLoop(o: LoadOptions): Promise<LoadResult> {
  const run = loadRun(o);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < o.requests; i = next++) await run.request(i);
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return run.finish(performance.now() - start);
}

async function runOpenLoop(o: LoadOptions & { rate: number }): Promise<LoadResult> {
  const run = loadRun(o);
  const start = performance.now();
  const intervalMs = 1000 / o.rate;
  let next = 0;
  let inFlight = 0;
  let finished = 0;
  await new Promise<void>((resolve) => {
    const send = (i: number): void => {
      inFlight++;
      void run.request(i, start + i * intervalMs).finally(() => {
        inFlight--;
        if (++finished === o.requests) resolve();
        else pump();
      });
    };
    const pump = (): void => {
      const now = performance.now();
      while (next < o.requests && inFlight < o.concurrency && start + next * intervalMs <= now) send(next++);
    };
    const timer = setInterval(() => {
      pump();
      if (next >= o.requests) clearInterval(timer);
    }, 1);
    pump();
  });
  return run.finish(performance.now() - start);
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

/** Renders rows as an aligned plain-text table (first row is the header). */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]): string => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}
