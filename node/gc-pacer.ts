import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { gcFunction, majorCollector } from '../shared/gc.js';

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
 * With `burstBytes`, a paced collection is also a full one once a burst has drained: the open
 * bridges and send queues held at least `burstBytes` at a paced collection, and now hold at most a
 * quarter of it. What a burst held lived across paced young collections and was promoted; it is
 * garbage from the moment it drains, and collecting it then, before malloc's heap grows on top of
 * it, keeps the heap lower than waiting for its growth (issue 11: bench:footprint under load, one
 * stream on a fresh relay, median / peak above the idle relay in MiB: 4.3 / 12.4, 8.9 / 12.6,
 * 8.0 / 13.8, 10.8 / 22.2, 15.1 / 17.4, 6.6 / 15.9 with `--gc-full-burst 1MiB`, against
 * 15.8 / 26.4, 14.0 / 18.9, 17.2 / 22.5, 5.2 / 6.8, 22.9 / 24.5, 14.5 / 31.4, 11.6 / 17.6,
 * 10.5 / 24.2 with the default). Off by default: its CPU per byte is not settled (docs/performance.md).
 * Full collections are at least FULL_MIN_INTERVAL_MS apart (FullPacing.minIntervalMs) and
 * FULL_MIN_READ_BYTES read apart (FullPacing.minReadBytes), so their CPU has a ceiling in time and
 * per byte whatever a peer makes the relay hold and drop.
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
  /**
   * A burst: `live()` at least this many bytes at a paced collection. Once a burst has drained
   * (`live()` back to at most a quarter of this), the next paced collection is a full one: what
   * the burst held lived across paced young collections, was promoted, and is now garbage only a
   * full collection frees (before malloc's heap grows on top of it). 0: no burst rule.
   */
  burstBytes: number;
  /** Bytes the caller knows are live now (the relay: its bridges and send queues). */
  live(): number;
  /**
   * At most one full collection per this many milliseconds of `now()`, however fast the memory
   * grows: a peer that fills and drains a paused bridge over and over cannot make the relay run
   * one every few MiB (a full collection costs the relay 5-8 ms of CPU).
   */
  minIntervalMs: number;
  /** And at least this many bytes read apart (bytes given to `read`), so that their CPU per byte has a ceiling too; 0 or absent: no such floor. */
  minReadBytes?: number;
  now(): number;
  /** Bytes held outside V8's heap now (Buffers' backing stores); the pacer counts this less `live()`. */
  external(): number;
  collect(): void;
}

/** A young-generation collection of this isolate, without --expose-gc on the command line (see scavengeOnMainThread). */
export function minorCollector(): () => void {
  const collect = gcFunction();
  scavengeOnMainThread();
  return () => collect({ type: 'minor' });
}

/**
 * V8 flags that make every young collection run on the main thread alone: no parallel scavenge
 * tasks, and the Buffers' backing stores freed at the end of the collection, not by a sweeping
 * job on a worker thread. Both flags are read at the start of each collection, so they can be set
 * at run time (--single-threaded-gc cannot: V8 aborts at its next full collection). On Node 24
 * (V8 13) a young collection asked for while V8's incremental marking is ready to finish runs as
 * that mark-compact instead (about one paced collection in 20 in gc-pacer.test's allocation
 * pattern; never seen on Node 20 and 22): Buffers allocated during the marking count as live in
 * it and are freed by the next full collection, as with any collection V8 schedules itself.
 */
export const MAIN_THREAD_SCAVENGE_FLAGS = ['--no-parallel-scavenge', '--no-concurrent-array-buffer-sweeping'] as const;

let mainThreadScavenges = false;
/**
 * A paced process (the relay after every `--gc-every` bytes, the CLI every 4 MiB) runs about a
 * thousand small young collections per GiB moved, each of a few MB at most. V8 spreads each over
 * worker threads (up to 4 here) and frees the dead packets' backing stores in another job on a
 * worker: per collection that is tasks posted, threads woken (futex) and malloc'd memory freed
 * from a thread that did not allocate it, which costs more than the collection's own work. On
 * the main thread alone the same collections cost less CPU (issue 11: bench:e2e, 512 MiB after
 * a 256 MiB warm-up, 8 alternating pairs under load 6-14: the relay's CPU per GiB against sshd's
 * in the same run 1.25 against 1.53 (medians), lower in 7 pairs and equal in 1; the whole path
 * against OpenSSH's 1.33 against 1.52, lower in 7). Set once, when a process starts pacing; with
 * `--gc-every 0` V8's defaults stay.
 */
function scavengeOnMainThread(): void {
  if (mainThreadScavenges) return;
  mainThreadScavenges = true;
  for (const flag of MAIN_THREAD_SCAVENGE_FLAGS) setFlagsFromString(flag);
}

/**
 * Full pacing with V8's full collection and its external memory counter (4 µs to read, where
 * process.memoryUsage() takes 35), less `live()`: the bytes the caller knows it holds (the
 * relay: its bridges' and send queues' contents), so that data in flight (windows grown for
 * distance hold tens of MB) does not look like garbage and cost full collections for nothing.
 * `afterBytes` 0: none. The collection is `gc()` without options: on Node 20,
 * `gc({ type: 'major' })` left promoted Buffers' memory allocated.
 */
export function v8FullPacing(afterBytes: number, live: () => number = () => 0, burstBytes = 0, minReadBytes = FULL_MIN_READ_BYTES, minIntervalMs = FULL_MIN_INTERVAL_MS, now: () => number = () => Number(process.hrtime.bigint()) / 1e6): FullPacing | undefined {
  if (afterBytes <= 0 && burstBytes <= 0) return undefined;
  return { afterBytes, burstBytes, minReadBytes, minIntervalMs, now, live, external: () => getHeapStatistics().external_memory, collect: majorCollector() };
}

/** The full collections' floor (FullPacing.minIntervalMs): at most about 1% of one core. */
export const FULL_MIN_INTERVAL_MS = 1000;
/**
 * And their floor in bytes read (FullPacing.minReadBytes): at most 4 per GiB, about 0.03 CPU s/GiB
 * at 5-8 ms each. With the time floor alone a relay moving 50-100 MB/s could run one a second,
 * and bench:e2e put the relay at 1.59 times sshd's CPU per GiB with `--gc-full-burst 1MiB`
 * against 1.38 with the default (medians of 5 alternating runs under load 8-11); with this floor
 * too, 1.34 / 1.46 / 1.51 against the default's 1.71 / 1.63 / 1.17 (3 alternating, load 10-12).
 */
export const FULL_MIN_READ_BYTES = 256 * 1024 * 1024;

/** A pacer; `bytesPerCollection` 0 turns it off (V8 alone decides); `full` paces full collections too. */
export function createGcPacer(bytesPerCollection: number, collect: () => void = bytesPerCollection > 0 ? minorCollector() : () => {}, full?: FullPacing): GcPacer {
  let since = 0;
  let collections = 0;
  let fullCollections = 0;
  /** The lowest external memory seen at a paced collection since the last full one. */
  let low = Infinity;
  let lastFull = -Infinity;
  /** Bytes read since the last full collection. */
  let readSinceFull = Infinity;
  /** A burst was seen since the last full collection and has not been collected after. */
  let burst = false;
  return {
    read(bytes) {
      if (bytesPerCollection <= 0) return;
      since += bytes;
      readSinceFull += bytes;
      if (since < bytesPerCollection) return;
      since = 0;
      collections++;
      if (full) {
        const live = full.live();
        let drained = false;
        if (full.burstBytes > 0) {
          if (live >= full.burstBytes) burst = true;
          else drained = burst && live <= full.burstBytes / 4;
        }
        const held = full.afterBytes > 0 ? full.external() - live : 0;
        const grown = full.afterBytes > 0 && held > low + full.afterBytes + low / 2;
        if ((drained || grown) && full.now() - lastFull >= full.minIntervalMs && readSinceFull >= (full.minReadBytes ?? 0)) {
          readSinceFull = 0;
          fullCollections++;
          low = Infinity;
          burst = false;
          lastFull = full.now();
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
