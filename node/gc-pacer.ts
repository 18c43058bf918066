import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Young-generation collections paced by the bytes the relay reads (issue 11, relay footprint).
 *
 * ssh2 allocates fresh Buffers for every packet (the decrypted payload, the outgoing packet; a
 * decipher object per AES-GCM packet), each above Node's 4 KiB pool limit, so each has its own
 * off-heap backing store. That memory is only freed when V8 collects the small JS wrappers, and
 * V8 schedules collections by on-heap allocation, which a packet hardly adds to: a relay moving
 * one stream held 30-40 MB of such garbage, and glibc kept the grown heap afterwards. A
 * scavenge costs in proportion to what is live, not to the garbage, so collecting the young
 * generation after every `bytesPerCollection` bytes read from peers keeps that garbage to a few
 * MB for little CPU (bench:footprint compares, with the relay's CPU s/GiB). An idle relay reads
 * nothing and collects nothing. The `tunnel` CLI paces the same way, per 4 MiB its forwarded
 * connections move (cli/ssh/pipe.ts).
 *
 * A young collection never frees a packet that lived across two of them (data a bridge held
 * while the other peer was slow, a socket's write queue): V8 promotes it to the old
 * generation, and its backing store stays until a full collection, which V8 schedules by the
 * old generation's own growth, not by the Buffers' memory (a relay moving one stream held 20-40
 * MB of such dead packets). With `full`, a paced collection is a full one instead when the
 * memory held in Buffers (V8's external memory less what the relay knows is live, read before
 * each paced collection) has grown
 * `afterBytes` plus half its lowest level above that lowest level since the last full
 * collection: the relay's memory under traffic stays within a few MB of what its streams hold,
 * and a relay holding more (many streams, windows grown for distance) collects in proportion.
 */
export interface GcPacer {
  /** Counts bytes read; collects once `bytesPerCollection` have been read since the last collection. */
  read(bytes: number): void;
  /** Collections done so far (full ones included). */
  readonly collections: number;
  /** Full collections done so far. */
  readonly fullCollections: number;
}

/** Full collections paced by the memory held in Buffers (see above). */
export interface FullPacing {
  /** Growth of `external()` above its lowest level since the last full collection (plus half that level) that calls `collect`. */
  afterBytes: number;
  /** Bytes held outside V8's heap now (Buffers' backing stores), less those known to be live. */
  external(): number;
  collect(): void;
}

/** A young-generation collection of this isolate, without --expose-gc on the command line. */
export function minorCollector(): () => void {
  const collect = gcFunction();
  return () => collect({ type: 'minor' });
}

/**
 * Full pacing with V8's full collection and its external memory counter (4 µs to read, where
 * process.memoryUsage() takes 35), less `live()`: the bytes the caller knows it holds (the
 * relay: its bridges' and send queues' contents), so that data in flight (windows grown for
 * distance hold tens of MB) does not look like garbage and cost full collections for nothing.
 * `afterBytes` 0: none. The collection is `gc()` without options: on Node 20,
 * `gc({ type: 'major' })` left promoted Buffers' memory allocated.
 */
export function v8FullPacing(afterBytes: number, live: () => number = () => 0): FullPacing | undefined {
  if (afterBytes <= 0) return undefined;
  return { afterBytes, external: () => getHeapStatistics().external_memory - live(), collect: majorCollector() };
}

function gcFunction(): (o?: object) => void {
  const exposed = (globalThis as { gc?: (o?: object) => void }).gc;
  let gc = exposed;
  if (typeof gc !== 'function') {
    // The documented way to reach V8's gc extension at run time: expose it, take the function
    // from a fresh context (the flag applies to contexts created after it), and stop exposing it.
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as (o?: object) => void;
    setFlagsFromString('--no-expose-gc');
  }
  return gc;
}

/**
 * A full (mark-compact) collection of this isolate, now, without --expose-gc on the command line.
 * gc() without options: Node 20's V8 runs a scavenge for any options object, `{ type: 'major' }`
 * included (node/startup-memory.test.ts sees the kind of collection).
 */
export function majorCollector(): () => void {
  const gc = gcFunction();
  return () => gc();
}

/** A pacer; `bytesPerCollection` 0 turns it off (V8 alone decides); `full` paces full collections too. */
export function createGcPacer(bytesPerCollection: number, collect: () => void = bytesPerCollection > 0 ? minorCollector() : () => {}, full?: FullPacing): GcPacer {
  let since = 0;
  let collections = 0;
  let fullCollections = 0;
  /** The lowest external memory seen at a paced collection since the last full one. */
  let low = Infinity;
  return {
    read(bytes) {
      if (bytesPerCollection <= 0) return;
      since += bytes;
      if (since < bytesPerCollection) return;
      since = 0;
      collections++;
      if (full) {
        const held = full.external();
        if (held > low + full.afterBytes + low / 2) {
          fullCollections++;
          low = Infinity;
          return full.collect();
        }
        low = Math.min(low, held);
      }
      collect();
    },
    get collections() {
      return collections;
    },
    get fullCollections() {
      return fullCollections;
    },
  };
}
