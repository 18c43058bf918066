import type { Duplex } from 'node:stream';

/** ssh2's standard channel window (lib/Channel.js MAX_WINDOW), also its readable high-water mark. */
export const STANDARD_WINDOW = 2 * 1024 * 1024;

/** What node/adaptive-window.ts needs of one ssh2 channel's receive window. */
export interface ChannelWindow {
  /** Bytes the peer may still send (granted, not yet received). */
  window(): number;
  /** Bytes received and not yet consumed. */
  readable(): number;
  /** Grants the peer `n` more bytes (SSH_MSG_CHANNEL_WINDOW_ADJUST). */
  grant(n: number): void;
  /**
   * Calls `received(n, accepted)` after each CHANNEL_DATA of `n` bytes was pushed (the window
   * already reduced; `accepted` false when the readable side is full), and `drained()` after
   * ssh2's own `_read` (the reader wants more after backpressure).
   */
  hook(h: { received(n: number, accepted: boolean): void; drained(): void }): void;
}

interface WindowedChannel {
  incoming?: { window?: number };
  outgoing?: { id?: number; state?: string };
  _client?: { _protocol?: { channelWindowAdjust?: (id: number, n: number) => void } };
  push: (chunk: unknown, encoding?: BufferEncoding) => boolean;
  _read: (n: number) => void;
  readableLength: number;
}

/**
 * The receive window of an ssh2 channel (server or client side). ssh2 grants a fixed 2 MiB
 * window (lib/Channel.js MAX_WINDOW) and offers no way to change it; growing it means sending
 * extra CHANNEL_WINDOW_ADJUSTs and keeping `incoming.window` in step, which is what ssh2's own
 * `windowAdjust` does. ssh2 then never adjusts on its own while the window stays above 1 MiB.
 */
export function channelWindow(ch: Duplex): ChannelWindow {
  const c = ch as unknown as WindowedChannel;
  const adjust = c._client?._protocol?.channelWindowAdjust;
  if (typeof c.incoming?.window !== 'number' || typeof c.outgoing?.id !== 'number' || typeof adjust !== 'function' || typeof c._read !== 'function') {
    throw new Error('ssh2 internals changed: Channel.incoming.window, outgoing.id or _client._protocol.channelWindowAdjust missing');
  }
  const incoming = c.incoming as { window: number };
  const outgoing = c.outgoing as { id: number; state?: string };
  const protocol = c._client!._protocol!;
  return {
    window: () => incoming.window,
    readable: () => c.readableLength,
    grant(n) {
      if (outgoing.state === 'closed' || n <= 0) return;
      incoming.window += n;
      protocol.channelWindowAdjust!(outgoing.id, n);
    },
    hook(h) {
      const push = c.push;
      const read = c._read;
      c.push = function (chunk: unknown, encoding?: BufferEncoding): boolean {
        const accepted = push.call(this, chunk, encoding);
        if (chunk instanceof Uint8Array) h.received(chunk.length, accepted);
        return accepted;
      };
      c._read = function (n: number): void {
        read.call(this, n);
        h.drained();
      };
    },
  };
}
