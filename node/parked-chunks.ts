import type { Readable } from 'node:stream';
import { joinsSmallChunks, SMALL_CHUNK } from './ssh2-internals.js';

/**
 * Channel data that a bridge holds while the other side cannot take it, copied into memory that
 * is used again once the data was written on (issue 11, relay RSS per saturated stream).
 *
 * ssh2 hands a channel's data on as views of what it read: a packet wholly inside one socket read
 * is decrypted in place, so a 32 KiB chunk pins the 64 KiB Buffer Node read it into (and every
 * other packet of that read). While the bridge forwards at once, those reads die young and the
 * relay's paced young collections free them. A chunk that waits (in the paused channel, or put
 * back because the other peer's window or send bound is full) lives across collections, so V8
 * promotes it with its read, and the read stays allocated, dead, until a full collection: malloc's
 * heap grows with it and keeps its high-water mark. Copied when it starts to wait, the read dies
 * young, and the copy's memory goes back to this pool once the bridge wrote the chunk on (the
 * write copied it into a packet) with nothing left queued in the stream it went to.
 */
export interface ParkedChunks {
  /** `chunk`, or a copy of it in memory of the pool's own when it is not already one. */
  hold(chunk: Buffer): Buffer;
  /** `chunk` has been written on and nothing refers to it: if it ends one of the pool's copies, that memory is free again. */
  written(chunk: Buffer): void;
  readonly free: number;
  readonly allocated: number;
  readonly reused: number;
}

/** The largest chunk copied into pooled memory: the channel data of one packet (ssh2's and OpenSSH's 32 KiB). */
export const PARKED_CHUNK_BYTES = 32 * 1024;
/**
 * Smaller chunks are copied into memory of their own size (Buffer.from), so a pooled buffer holds
 * at most 1/15 more than its chunk (a full packet, 32 KiB, fills it): a peer sending packets of
 * other sizes into a paused channel makes the relay hold no more than what it sent.
 */
export const PARKED_CHUNK_MIN = 30 * 1024;
/**
 * Copies of at least this size (outside the pool) get memory of their own, and are known as
 * copies: smaller ones come from Node's shared Buffer pool (Buffer.from below 4 KiB), so what
 * is left of one is copied again when put back (at most 4 KiB each time).
 */
const OWN_COPY_MIN = 4 * 1024;
/** Buffers the relay keeps free: 256 (8 MiB), four paused standard windows. */
export const RELAY_PARKED_MAX_FREE = 256;

export function createParkedChunks(maxFree: number): ParkedChunks {
  const free: ArrayBuffer[] = [];
  /** Each of the pool's buffers, and where the copy in it ends. */
  const ends = new WeakMap<ArrayBufferLike, number>();
  /**
   * The memory of each copy made outside the pool (of OWN_COPY_MIN or more): what is left of one
   * when the other side's window took part of it is put back as it is. Copied again at each put
   * back, a peer granting its window a few bytes at a time had the relay copy the whole rest of
   * the chunk for each grant (20 KiB at 256 bytes a grant: 800 KB copied, and allocated).
   */
  const own = new WeakSet<ArrayBufferLike>();
  let allocated = 0;
  let reused = 0;
  return {
    hold(chunk) {
      if (ends.has(chunk.buffer) || own.has(chunk.buffer)) return chunk;
      if (chunk.length < OWN_COPY_MIN) return Buffer.from(chunk);
      if (chunk.length < PARKED_CHUNK_MIN || chunk.length > PARKED_CHUNK_BYTES) {
        const copy = Buffer.allocUnsafeSlow(chunk.length);
        copy.set(chunk);
        own.add(copy.buffer);
        return copy;
      }
      let ab = free.pop();
      if (ab) reused++;
      else {
        ab = new ArrayBuffer(PARKED_CHUNK_BYTES);
        allocated++;
      }
      ends.set(ab, chunk.length);
      const copy = Buffer.from(ab, 0, chunk.length);
      copy.set(chunk);
      return copy;
    },
    written(chunk) {
      const end = ends.get(chunk.buffer);
      // The copy's last bytes: what came before them in it was written before (a stream's data
      // is taken in order), so no view of this memory is left to read.
      if (end === undefined || end === 0 || chunk.byteOffset + chunk.length !== end) return;
      ends.set(chunk.buffer, 0);
      if (free.length < maxFree) free.push(chunk.buffer as ArrayBuffer);
    },
    get free() {
      return free.length;
    },
    get allocated() {
      return allocated;
    },
    get reused() {
      return reused;
    },
  };
}

/**
 * Copies each chunk pushed into `src` that will wait in its readable buffer (the stream is paused,
 * or holds data already) with `held`, until the returned function is called. The copy is pushed in
 * the chunk's place; everything else about the push (what ssh2 and node/adaptive-window.ts count)
 * is unchanged. A chunk under SMALL_CHUNK pushed into a channel whose own push joins small chunks
 * (joinsSmallChunks: its window is hooked, node/ssh2-internals/small-chunks.ts) is left as it is:
 * that push copies it into a joined chunk (copied here as well, each small packet that waited was
 * copied twice). Anywhere else (an unhooked channel, a readable buffer of unknown shape) it is
 * copied here, or it would pin ssh2's read.
 */
export function parkWhileWaiting(src: Readable, held: ParkedChunks): () => void {
  const push = src.push;
  let on = true;
  src.push = function (this: Readable, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (on && Buffer.isBuffer(chunk) && !(src.readableFlowing === true && src.readableLength === 0) && !(chunk.length < SMALL_CHUNK && joinsSmallChunks(src))) {
      return push.call(this, held.hold(chunk), encoding);
    }
    return push.call(this, chunk, encoding);
  };
  return () => {
    on = false;
  };
}

/** The relay's pool (one per process). */
export const relayParkedChunks: ParkedChunks = createParkedChunks(RELAY_PARKED_MAX_FREE);
