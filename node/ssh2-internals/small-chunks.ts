import type { Readable } from 'node:stream';

/** Chunks under this many bytes that wait in a channel's readable side are joined into one (see pushJoined). */
export const SMALL_CHUNK = 1024;
/** The most one joined chunk holds: one of ssh2's packets. */
export const JOINED_MAX = 32 * 1024;
/** A joined chunk starts with room for this much (or the next power of two that holds its first chunk) and doubles as it grows. */
const JOINED_FIRST = 256;

const EMPTY = Buffer.alloc(0);

/** Where the data of each joined chunk's memory ends: bytes past it belong to no view yet. */
const ends = new WeakMap<ArrayBufferLike, number>();

interface ReadableInternals {
  objectMode?: boolean;
  needReadable?: boolean;
  ended?: boolean;
  destroyed?: boolean;
  errored?: unknown;
  length?: number;
  /** Node 20.x and later: an array read from `bufferIndex`; earlier, a BufferList with `tail.data`. */
  buffer?: unknown;
  bufferIndex?: number;
}

/** The last chunk waiting in `st`, and how to replace it, when the buffer's shape is one this knows. */
function lastWaiting(st: ReadableInternals): { chunk: unknown; replace(b: Buffer): void } | undefined {
  const b = st.buffer;
  if (Array.isArray(b)) {
    const first = typeof st.bufferIndex === 'number' ? st.bufferIndex : 0;
    if (b.length <= first) return undefined;
    return { chunk: b[b.length - 1], replace: (c) => void (b[b.length - 1] = c) };
  }
  const tail = (b as { tail?: { data?: unknown } } | undefined)?.tail;
  if (tail && typeof tail === 'object' && 'data' in tail) return { chunk: tail.data, replace: (c) => void (tail.data = c) };
  return undefined;
}

/**
 * Pushes `chunk` into `stream` with `push` (the stream's own), joining it to the chunk before it
 * when both would wait in the readable side. ssh2 pushes each CHANNEL_DATA packet as a chunk of
 * its own, and a Readable keeps each waiting chunk as a Buffer (about 250 bytes of heap with its
 * place in the buffer, however small its data), while channel memory is counted in bytes: a peer
 * sending 1-byte packets into a channel the relay's bridge paused filled its 2 MiB window with
 * two million chunks, about 500 MB more RSS for the relay (test/node/hostile-small-chunks), for
 * 2 MiB counted. OpenSSH keeps a channel's data in one contiguous buffer. Here a chunk under
 * SMALL_CHUNK that will wait (the stream is paused or holds data) is copied into a joined chunk
 * of memory of its own, and later chunks that wait are appended to the last waiting chunk while
 * that is a joined chunk with room (up to JOINED_MAX; its memory doubles as it grows): a Buffer
 * per 32 KiB, or per chunk of 1 KiB or more that follows no joined chunk, so waiting data costs
 * at most about twice its bytes whatever the packet sizes. Nothing is refused: the peer is not
 * told, and what waits reads back byte for byte.
 *
 * What push does beside storing the chunk is kept: the stream's length grows by the chunk's, and
 * an empty push does the rest (no longer reading, read more if it may) and gives the same answer.
 * Nothing is joined while a reader waits for 'readable' (needReadable; but for a paused stream
 * without 'readable' listeners, where that only emits to no one) or when the buffer's shape is not
 * known (then each chunk is pushed as it is). Bytes a view already covers are never
 * written: a joined chunk grows only past the end of every view of its memory, or into new memory.
 */
export function pushJoined(stream: Readable, chunk: Buffer, push: (c: Buffer) => boolean): boolean {
  const st = (stream as unknown as { _readableState?: ReadableInternals })._readableState;
  const n = chunk.length;
  if (!st || st.objectMode === true || n === 0 || n >= JOINED_MAX || typeof st.length !== 'number') return push(chunk);
  // A destroyed or errored stream drops what is pushed (push answers false): nothing is joined
  // into what waits in it, which would grow its length and answer as if it had been taken.
  if (st.destroyed === true || (st.errored !== null && st.errored !== undefined && st.errored !== false)) return push(chunk);
  // Delivered at once (flowing, nothing ahead of it): nothing waits.
  if (stream.readableFlowing === true && st.length === 0) return push(chunk);
  // A paused stream without 'readable' listeners: what push would do for a reader waiting
  // (emitReadable) emits to no one and flows nothing. Otherwise such a reader is left to push.
  const quiet = stream.readableFlowing === false && stream.listenerCount('readable') === 0;
  const last = st.length > 0 && (quiet || !st.needReadable) && !st.ended ? lastWaiting(st) : undefined;
  const prev = last?.chunk;
  if (last && Buffer.isBuffer(prev) && ends.get(prev.buffer) === prev.byteOffset + prev.length && prev.length + n <= JOINED_MAX) {
    const end = prev.byteOffset + prev.length;
    let joined: Buffer;
    if (end + n <= prev.buffer.byteLength) {
      new Uint8Array(prev.buffer, end, n).set(chunk);
      joined = Buffer.from(prev.buffer, prev.byteOffset, prev.length + n);
    } else {
      const ab = new ArrayBuffer(Math.min(JOINED_MAX, Math.max(2 * prev.length, prev.length + n)));
      joined = Buffer.from(ab, 0, prev.length + n);
      joined.set(prev);
      joined.set(chunk, prev.length);
    }
    ends.set(joined.buffer, joined.byteOffset + joined.length);
    last.replace(joined);
    st.length += n;
    return push(EMPTY);
  }
  if (n >= SMALL_CHUNK || !lastWaitingKnown(st)) return push(chunk);
  let cap = JOINED_FIRST;
  while (cap < n) cap *= 2;
  const copy = Buffer.from(new ArrayBuffer(cap), 0, n);
  copy.set(chunk);
  ends.set(copy.buffer, n);
  return push(copy);
}

/**
 * Whether pushJoined copies every chunk of 1 to SMALL_CHUNK - 1 bytes that will wait in `stream`
 * (into a joined chunk, new or the last waiting one): the stream's buffer has a shape it knows.
 * Such a chunk never waits as the view it was pushed as, so a caller that would copy it anyway
 * (node/parked-chunks.ts) can leave it as it is.
 */
export function joinsSmallChunksOf(stream: Readable): boolean {
  const st = (stream as unknown as { _readableState?: ReadableInternals })._readableState;
  return st !== undefined && st.objectMode !== true && typeof st.length === 'number' && lastWaitingKnown(st);
}

/** Whether the buffer's shape is one lastWaiting knows (so a joined chunk started now can be joined to). */
function lastWaitingKnown(st: ReadableInternals): boolean {
  const b = st.buffer;
  return Array.isArray(b) || (typeof b === 'object' && b !== null && 'tail' in b);
}

/** How many chunks wait in `stream`'s readable side now (0 when the buffer's shape is not known). */
export function waitingChunks(stream: Readable): number {
  const st = (stream as unknown as { _readableState?: ReadableInternals })._readableState;
  const b = st?.buffer;
  if (Array.isArray(b)) return b.length - (typeof st?.bufferIndex === 'number' ? st.bufferIndex : 0);
  const n = (b as { length?: unknown } | undefined)?.length;
  return typeof n === 'number' ? n : 0;
}
