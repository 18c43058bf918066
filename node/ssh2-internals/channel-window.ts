import type { Duplex, Readable } from 'node:stream';
import { joinsSmallChunksOf, pushJoined } from './small-chunks.js';

/** ssh2's standard channel window (lib/Channel.js MAX_WINDOW), also its readable high-water mark. */
export const STANDARD_WINDOW = 2 * 1024 * 1024;

/** What node/adaptive-window.ts needs of one ssh2 channel's receive window. */
export interface ChannelWindow {
  /** Bytes the peer may still send (granted, not yet received). */
  window(): number;
  /** Bytes received and not yet consumed. */
  readable(): number;
  /**
   * The readable side's high-water mark: ssh2's 2 MiB, unless the reader asked for more at once
   * (`read(n)` raises it past n); such a reader waits until that much is buffered.
   */
  asked(): number;
  /** Grants the peer `n` more bytes (SSH_MSG_CHANNEL_WINDOW_ADJUST); nothing once this side closed the channel. */
  grant(n: number): void;
  /**
   * Calls `received(n, accepted)` after each CHANNEL_DATA of `n` bytes was pushed (the window
   * already reduced; `accepted` false when the readable side is full), `drained()` after ssh2's
   * own `_read` (the reader wants more after backpressure), and `consumed()` after every `read()`
   * (which flowing mode calls too): the reader took data out of the readable side, or asked for
   * more than it holds (`asked`). From then on the hooked side grants all of the channel's
   * window: ssh2's own top-up (to 2 MiB once the window fell to 1 MiB, while the readable side
   * is not full) no longer runs.
   */
  hook(h: { received(n: number, accepted: boolean): void; drained(): void; consumed(): void }): void;
}

interface WindowedChannel {
  incoming?: { window?: number };
  _waitChanDrain?: boolean;
  outgoing?: { id?: number; state?: string };
  _client?: { _protocol?: { channelWindowAdjust?: (id: number, n: number) => void } };
  push: (chunk: unknown, encoding?: BufferEncoding) => boolean;
  _read: (n: number) => void;
  read: (n?: number) => unknown;
  readableLength: number;
  readableHighWaterMark: number;
}

/** Channels whose push the window hook wraps (pushJoined). */
const hooked = new WeakSet<object>();

/**
 * Whether a chunk under SMALL_CHUNK pushed into `ch` is copied by the channel's own push when it
 * will wait: its window is hooked (so its push joins small chunks) and its readable buffer has a
 * shape pushJoined knows. node/parked-chunks.ts leaves such chunks to it rather than copy them
 * twice.
 */
export function joinsSmallChunks(ch: Readable): boolean {
  return hooked.has(ch) && joinsSmallChunksOf(ch);
}

/**
 * The receive window of an ssh2 channel (server or client side). ssh2 grants a fixed 2 MiB
 * window (lib/Channel.js MAX_WINDOW) and offers no way to change it; growing it means sending
 * extra CHANNEL_WINDOW_ADJUSTs and keeping `incoming.window` in step, which is what ssh2's own
 * `windowAdjust` does. Once hooked, ssh2 never adjusts on its own (see `hook`).
 */
export function channelWindow(ch: Duplex): ChannelWindow {
  const c = ch as unknown as WindowedChannel;
  const adjust = c._client?._protocol?.channelWindowAdjust;
  if (typeof c.incoming?.window !== 'number' || typeof c.outgoing?.id !== 'number' || typeof adjust !== 'function' || typeof c._read !== 'function' || typeof c.read !== 'function' || typeof c.readableHighWaterMark !== 'number') {
    throw new Error('ssh2 internals changed: Channel.incoming.window, outgoing.id, _read, read, readableHighWaterMark or _client._protocol.channelWindowAdjust missing');
  }
  const incoming = c.incoming as { window: number };
  const outgoing = c.outgoing as { id: number; state?: string };
  const protocol = c._client!._protocol!;
  return {
    window: () => incoming.window,
    readable: () => c.readableLength,
    asked: () => c.readableHighWaterMark,
    grant(n) {
      // Nothing once this side sent CLOSE ('closing'): what the peer sends from then on is
      // dropped unread (closeChannel), so more window would only have it send more to drop.
      if (outgoing.state === 'closing' || outgoing.state === 'closed' || n <= 0) return;
      incoming.window += n;
      protocol.channelWindowAdjust!(outgoing.id, n);
    },
    hook(h) {
      const push = c.push;
      const _read = c._read;
      const read = c.read;
      // ssh2's CHANNEL_DATA handler (client.js, server.js) tops the window up to 2 MiB once it
      // fell to 1 MiB, unless push() returned false; then it sets _waitChanDrain, and its _read
      // tops up once the reader wants more. Returning false for data (the stream keeps it: the
      // result is only advice to the pusher) and clearing _waitChanDrain before its _read leaves
      // every grant to the hook, which counts unread data against the window as OpenSSH does:
      // ssh2's own top-up let a paused reader hold its 2 MiB readable buffer plus a fresh 2 MiB
      // window (issue 11: the relay's memory per stream).
      // Small chunks that wait are joined (node/ssh2-internals/small-chunks.ts): a Buffer per
      // 1-byte packet cost the relay about 250 bytes of heap per byte its window let in.
      c.push = function (chunk: unknown, encoding?: BufferEncoding): boolean {
        const accepted = Buffer.isBuffer(chunk) ? pushJoined(ch, chunk, (b) => push.call(this, b)) : push.call(this, chunk, encoding);
        if (!(chunk instanceof Uint8Array)) return accepted;
        h.received(chunk.length, accepted);
        return false;
      };
      hooked.add(ch);
      c._read = function (n: number): void {
        c._waitChanDrain = false;
        _read.call(this, n);
        h.drained();
      };
      // What the reader takes frees window: Readable calls _read only when it wants more, and not
      // again until the next push, so a channel whose unread data filled its window would wait
      // for a grant that only a push could prompt.
      // Also after a read() that returned null: read(n) past the high-water mark raises it (asked)
      // without calling _read while an earlier _read still waits for a push.
      c.read = function (n?: number): unknown {
        const chunk = read.call(this, n);
        h.consumed();
        return chunk;
      };
    },
  };
}
