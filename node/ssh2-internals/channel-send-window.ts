import type { Duplex } from 'node:stream';
import type { Client, Connection } from 'ssh2';
import { channelsOf, protocolOf, type WindowAdjustHandler } from './protocol.js';

/** What node/forwarding/bridge.ts needs of one ssh2 channel's send window (the peer's). */
export interface SendWindow {
  /** Bytes the peer's window takes now that the channel does not already hold. */
  room(): number;
  /**
   * Calls `cb` once, after the peer's next WINDOW_ADJUST on this channel has been handled (ssh2
   * has added it to the window). A later call replaces an earlier one not yet called. Never
   * called if the channel goes first.
   */
  onGrow(cb: () => void): void;
}

interface SendingChannel {
  outgoing?: { window?: unknown };
  writableLength: number;
  _client?: Connection | Client;
}

/** Each channel's pending onGrow (held by the channel: gone with it). */
const waiting = new WeakMap<object, () => void>();
/** Connections whose WINDOW_ADJUST handler calls the waiters. */
const hooked = new WeakSet<object>();

/**
 * The send window of an ssh2 channel (server or client side). ssh2 offers no event for a
 * WINDOW_ADJUST: a write larger than the window waits inside the channel (`_chunk`, and its
 * Writable queue behind it) and goes to the socket as soon as the window opens, whatever the
 * socket already holds. A writer that writes only `room()` and waits for `onGrow` keeps nothing
 * queued there. The connection's CHANNEL_WINDOW_ADJUST handler is wrapped once (the first time
 * one of its channels is asked for), calling ssh2's own first.
 */
export function channelSendWindow(ch: Duplex): SendWindow {
  const c = ch as unknown as SendingChannel;
  const outgoing = c.outgoing;
  const conn = c._client;
  if (typeof outgoing?.window !== 'number' || !conn) throw new Error('ssh2 internals changed: Channel.outgoing.window or Channel._client missing');
  if (!hooked.has(conn)) hookWindowAdjust(conn);
  const out = outgoing as { window: number };
  return {
    room: () => Math.max(0, out.window - c.writableLength),
    onGrow(cb) {
      waiting.set(ch, cb);
    },
  };
}

function hookWindowAdjust(conn: Connection | Client): void {
  const proto = protocolOf(conn);
  const chanMgr = channelsOf(conn);
  const orig = proto._handlers.CHANNEL_WINDOW_ADJUST;
  if (!orig) throw new Error('ssh2 internals changed: CHANNEL_WINDOW_ADJUST handler missing');
  const handler: WindowAdjustHandler = (p, recipient, amount) => {
    orig(p, recipient, amount);
    const ch = chanMgr.get(recipient);
    if (typeof ch !== 'object' || ch === null) return;
    const cb = waiting.get(ch);
    if (!cb) return;
    waiting.delete(ch);
    cb();
  };
  proto._handlers.CHANNEL_WINDOW_ADJUST = handler;
  hooked.add(conn);
}
