import { setFlagsFromString } from 'node:v8';
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
 */
export interface GcPacer {
  /** Counts bytes read; collects once `bytesPerCollection` have been read since the last collection. */
  read(bytes: number): void;
  /** Collections done so far. */
  readonly collections: number;
}

/** A young-generation collection of this isolate, without --expose-gc on the command line. */
export function minorCollector(): () => void {
  const exposed = (globalThis as { gc?: (o?: object) => void }).gc;
  let gc = exposed;
  if (typeof gc !== 'function') {
    // The documented way to reach V8's gc extension at run time: expose it, take the function
    // from a fresh context (the flag applies to contexts created after it), and stop exposing it.
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as (o?: object) => void;
    setFlagsFromString('--no-expose-gc');
  }
  const collect = gc;
  return () => collect({ type: 'minor' });
}

/** A pacer; `bytesPerCollection` 0 turns it off (V8 alone decides). */
export function createGcPacer(bytesPerCollection: number, collect: () => void = bytesPerCollection > 0 ? minorCollector() : () => {}): GcPacer {
  let since = 0;
  let collections = 0;
  return {
    read(bytes) {
      if (bytesPerCollection <= 0) return;
      since += bytes;
      if (since < bytesPerCollection) return;
      since = 0;
      collections++;
      collect();
    },
    get collections() {
      return collections;
    },
  };
}
