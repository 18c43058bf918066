import type { Duplex } from 'node:stream';
import type { Client, Connection } from 'ssh2';
import { channelsOf, protocolOf, type ChannelCloseHandler } from './protocol.js';

interface ClosingChannel {
  incoming?: { state?: unknown };
  _client?: Connection | Client;
}

/** Each channel's pending onPeerClose (held by the channel: gone with it). */
const waiting = new WeakMap<object, () => void>();
/** Connections whose CHANNEL_CLOSE handler calls the waiters. */
const hooked = new WeakSet<object>();

/**
 * Calls `cb` once, right after ssh2 handled the peer's CHANNEL_CLOSE on `ch` (server or client
 * side): the peer takes nothing more on it, and ssh2 has answered with its own CLOSE (if this side
 * had not sent one) and let go of the channel's id. ssh2 emits nothing then: its 'close' waits for
 * the readable side's 'end', that is until what the peer sent before its CLOSE has been read, which
 * a reader paused for the other side's window may not do for long. A later call replaces an
 * earlier one not yet called; called at once if the peer's CLOSE came already (ssh2 handles
 * the rest of a read before a promise settled in it runs on: X's confirmation, data and CLOSE in
 * one read were all handled before the bridge asked). The connection's
 * CHANNEL_CLOSE handler is wrapped once (the first time one of its channels is asked for), calling
 * ssh2's own first.
 */
export function onPeerClose(ch: Duplex, cb: () => void): void {
  const c = ch as unknown as ClosingChannel;
  const conn = c._client;
  if (typeof c.incoming?.state !== 'string' || !conn) throw new Error('ssh2 internals changed: Channel.incoming.state or Channel._client missing');
  if (!hooked.has(conn)) hookChannelClose(conn);
  // Already handled: in the read that confirmed the channel, before its promise let the bridge be set up.
  if (c.incoming.state === 'closed') return cb();
  waiting.set(ch, cb);
}

function hookChannelClose(conn: Connection | Client): void {
  const proto = protocolOf(conn);
  const chanMgr = channelsOf(conn);
  const orig = proto._handlers.CHANNEL_CLOSE;
  if (!orig) throw new Error('ssh2 internals changed: CHANNEL_CLOSE handler missing');
  const handler: ChannelCloseHandler = (p, recipient) => {
    // ssh2's handler removes the channel from its manager: look it up first.
    const ch = chanMgr.get(recipient);
    orig(p, recipient);
    if (typeof ch !== 'object' || ch === null) return;
    const cb = waiting.get(ch);
    if (!cb || (ch as ClosingChannel).incoming?.state !== 'closed') return;
    waiting.delete(ch);
    cb();
  };
  proto._handlers.CHANNEL_CLOSE = handler;
  hooked.add(conn);
}
