import type { Socket } from 'node:net';

/**
 * Outgoing SSH packets in memory that is used again once the socket has sent them (issue 11,
 * relay RSS per saturated stream).
 *
 * ssh2 builds every packet in a fresh Buffer (its cipher's `allocPacket`), encrypts it in place
 * (the native binding's cipher classes) and writes it to the socket. A packet of channel data is
 * over Node's 4 KiB pool limit, so each has a backing store of its own, freed only once V8
 * collects its small JS wrapper. A relay forwarding to a peer that reads slower than the other
 * sends keeps up to its send bound (`--max-send-buffer`, 1 MiB by default) of them in the socket's write
 * queue: each waits there across the paced young collections (node/gc-pacer.ts), so V8 promotes
 * it, and it stays allocated, dead, until a full collection. That dead memory, not data in
 * flight, was the relay's memory per saturated stream: malloc's heap grew with it to 20-50 MB
 * and kept its high-water mark.
 *
 * A PacketPool hands out packets of up to POOLED_PACKET_BYTES as views of buffers it made, and
 * a socket watched by `recycleWrites` gives each such buffer back when its write has completed
 * (the kernel has the bytes; nothing refers to the memory any more but the view, which nobody
 * reads again). At most `maxFree` buffers wait in the pool; one given back to a full pool is
 * left to the collector, as before. So a stream reuses the same few MB of packet memory
 * whatever it moves, and V8's external memory no longer grows with the traffic (which made V8
 * start its own full collections, about 30 per GiB). Packets of other sizes, and packets of a
 * cipher that does not encrypt in place (what it writes is not the packet), are allocated as
 * before.
 */
export interface PacketPool {
  /** A packet buffer of `size` bytes, or undefined when `size` is not one the pool serves (the caller allocates). */
  take(size: number): Buffer | undefined;
  /** True when `ab` is the memory of a packet this pool handed out. */
  owns(ab: ArrayBufferLike): boolean;
  /** `ab`'s write has completed: it may be handed out again. */
  give(ab: ArrayBufferLike): void;
  /** Buffers waiting in the pool now. */
  readonly free: number;
  /** Buffers the pool has allocated so far. */
  readonly allocated: number;
  /** Packets handed out in a buffer used before. */
  readonly reused: number;
}

/**
 * The largest packet the pool serves: a CHANNEL_DATA packet of 32 KiB of data (every peer's
 * usual maximum: OpenSSH's and ssh2's) with its 14 bytes of headers, up to 19 of padding and a
 * tag or MAC of up to 64 (hmac-sha2-512).
 */
export const POOLED_PACKET_BYTES = 32 * 1024 + 128;
/** Smaller packets come from Node's own shared Buffer pool (Buffer.allocUnsafe below 4 KiB), which is not per packet. */
export const POOLED_PACKET_MIN = 4 * 1024;
/**
 * Buffers the relay's pool keeps: 128 (4 MiB), what four peers' send bounds (`--max-send-buffer`,
 * 1 MiB by default) hold in their socket queues. A socket queue swings by up to its bound: a
 * bridge that waited for the peer hands its backlog on at once, and the queue drains as the peer
 * reads. With 32 and the bound at its earlier default of 4 MiB, one packet in ten still took a
 * new buffer (bench:footprint, 1 and 4 streams); 32 at today's default is not measured.
 */
export const RELAY_POOL_MAX_FREE = 128;

export function createPacketPool(maxFree: number): PacketPool {
  const free: ArrayBuffer[] = [];
  const mine = new WeakSet<ArrayBufferLike>();
  let allocated = 0;
  let reused = 0;
  return {
    take(size) {
      if (size <= POOLED_PACKET_MIN || size > POOLED_PACKET_BYTES) return undefined;
      let ab = free.pop();
      if (ab) reused++;
      else {
        ab = new ArrayBuffer(POOLED_PACKET_BYTES);
        mine.add(ab);
        allocated++;
      }
      return Buffer.from(ab, 0, size);
    },
    owns: (ab) => mine.has(ab),
    give(ab) {
      if (free.length < maxFree && mine.has(ab)) free.push(ab as ArrayBuffer);
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
 * Gives the pool's packets written to `sock` back to it once their writes complete. ssh2 writes
 * a packet with `socket.write(packet)` and never looks at it again; this adds a completion
 * callback to those writes (only to a write of one of the pool's packets with no callback of its
 * own). A stream socket completes its writes in order, so each successful completion is the
 * oldest pooled write still pending. After the socket's first failed write (it is being
 * destroyed; Node then calls the rest back with errors, in an order that no longer says which
 * write finished) nothing more goes back: those buffers are left to the collector. Call before
 * anything else wraps `sock.write` or after: either works.
 *
 * A write the kernel took at once is complete before its callback runs: Node calls it on the
 * next process tick. ssh2 forwarding a channel's buffered data (a bridge resuming a channel that
 * holds its 2 MiB window) writes every packet in one synchronous run, so their callbacks all
 * waited for that run to end and the pool handed out a fresh buffer for each: 64 of them on a
 * relay's first stream (issue 11, the first stream's memory). So at each pooled write, before and
 * after it, when the socket holds nothing unsent (`writableLength` 0: every write so far was
 * handed to the kernel whole; Node counts a write there until it completed) every pending buffer
 * goes back at once, and the callbacks of those writes, which come first and in order, are only
 * counted.
 */
export function recycleWrites(sock: Socket, pool: PacketPool): void {
  const write = sock.write as (this: Socket, ...a: unknown[]) => boolean;
  const pending: ArrayBufferLike[] = [];
  /** Completions still to come for writes whose buffers already went back. */
  let early = 0;
  let failed = false;
  const done = (err?: Error | null) => {
    if (err) failed = true;
    if (early > 0) {
      early--;
      return;
    }
    const ab = pending.shift();
    if (!failed && ab) pool.give(ab);
  };
  const sent = () => {
    if (pending.length === 0 || failed || sock.destroyed || sock.writableLength !== 0) return;
    for (const ab of pending) pool.give(ab);
    early += pending.length;
    pending.length = 0;
  };
  sock.write = function (this: Socket, chunk: unknown, ...rest: unknown[]): boolean {
    if (rest.length === 0 && chunk instanceof Uint8Array && pool.owns(chunk.buffer)) {
      sent();
      pending.push(chunk.buffer);
      const ok = write.call(this, chunk, done);
      sent();
      return ok;
    }
    return write.call(this, chunk, ...rest);
  } as Socket['write'];
}

/** The relay's pool (one per process: ssh2's cipher classes, where packets are allocated, are too). */
export const relayPackets: PacketPool = createPacketPool(RELAY_POOL_MAX_FREE);
