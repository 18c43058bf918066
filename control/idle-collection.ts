import { getHeapSpaceStatistics } from 'node:v8';
import { majorCollector } from '../shared/gc.js';

/**
 * One full collection once the control plane has gone quiet after serving (issue 11: control
 * steady RSS at most 200 MB on the embedded database).
 *
 * A burst of API calls grows V8's young generation to its maximum, which V8 sizes from the
 * machine's memory and which Node 24's V8 allows to be far larger than Node 20's (on a 24 GiB
 * machine 128 MB against 32). V8 gives it back only in a collection made while little is being
 * allocated, and an idle control plane makes none: bench:footprint on Node 24 had it at 316 MB
 * 30 s after 200 leases, and at 171 MB with a full collection every 10 s (Node 20: 190 MB). So
 * once `quietMs` have passed without a request after at least one, the control plane runs one
 * full collection (a few tens of ms of CPU, off the request path), at most once per
 * `minIntervalMs`, and only while the young generation holds more than YOUNG_GROWN_BYTES (so the
 * relays' heartbeats, each followed by a quiet spell, do not make it collect every 30 s once it
 * has shrunk); a control plane that stays busy is left to V8. In the all-in-one the collection
 * also pauses the relay in the same process, once per burst of control-plane requests.
 */

/** No request for this long after some: collect. */
export const IDLE_COLLECTION_QUIET_MS = 2_000;
/** At most one collection this often. */
export const IDLE_COLLECTION_MIN_INTERVAL_MS = 30_000;
/** Young generation (V8's new space, in memory) above which a quiet control plane collects. */
export const YOUNG_GROWN_BYTES = 16 * 1024 * 1024;

/** Whether V8's young generation holds more than `bytes` of memory now. */
export function youngGenerationGrown(bytes = YOUNG_GROWN_BYTES): boolean {
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  return young !== undefined && young.physical_space_size > bytes;
}

export interface IdleCollection {
  /** A request arrived (the HTTP server's 'request' event). */
  request(): void;
  /** Collections run so far. */
  readonly collections: number;
  stop(): void;
}

export interface IdleCollectionOptions {
  quietMs?: number;
  minIntervalMs?: number;
  now?: () => number;
  collect?: () => void;
  /** Whether there is anything to give back (youngGenerationGrown by default). */
  grown?: () => boolean;
  /** How the check is scheduled: every `quietMs / 2` by default (an unref'd interval). */
  every?: (ms: number, f: () => void) => { stop(): void };
  /** A collection that threw (the control plane keeps serving). */
  onError?: (err: unknown) => void;
}

export function createIdleCollection(o: IdleCollectionOptions = {}): IdleCollection {
  const quietMs = o.quietMs ?? IDLE_COLLECTION_QUIET_MS;
  const minIntervalMs = o.minIntervalMs ?? IDLE_COLLECTION_MIN_INTERVAL_MS;
  const now = o.now ?? (() => performance.now());
  let collect = o.collect;
  const grown = o.grown ?? (() => youngGenerationGrown());
  const every =
    o.every ??
    ((ms: number, f: () => void) => {
      const t = setInterval(f, ms);
      t.unref();
      return { stop: () => clearInterval(t) };
    });
  let lastRequest = -Infinity;
  let lastCollection = -Infinity;
  let pending = false;
  let collections = 0;
  const timer = every(Math.max(1, Math.floor(quietMs / 2)), () => {
    const t = now();
    if (!pending || t - lastRequest < quietMs || t - lastCollection < minIntervalMs) return;
    pending = false;
    if (!grown()) return;
    lastCollection = t;
    collections++;
    try {
      collect ??= majorCollector();
      collect();
    } catch (err) {
      o.onError?.(err);
    }
  });
  return {
    request() {
      pending = true;
      lastRequest = now();
    },
    get collections() {
      return collections;
    },
    stop: () => timer.stop(),
  };
}
