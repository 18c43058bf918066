import type { Connection } from 'ssh2';
import { protocolOf } from './protocol.js';

/** More pings than this unanswered at once: timing stops for the connection (replies could no longer be matched). */
const MAX_OUTSTANDING = 16;

interface PingingProtocol {
  ping?: () => void;
  _handlers: { REQUEST_SUCCESS?: (...args: unknown[]) => void; REQUEST_FAILURE?: (...args: unknown[]) => void };
}

/**
 * Times the server's `keepalive@openssh.com` pings (ssh2's keepalive, and `ping()` below) to
 * their replies: `onRtt(ms)` once per reply. ssh2's server sends no other global request, and
 * replies come in request order (RFC 4254 §4), so the n-th reply answers the n-th ping. ssh2's
 * server has no handler for replies (it ignores them); a reply with no ping out (a peer's own
 * idea) is ignored, and past MAX_OUTSTANDING unanswered pings timing stops for good. A peer that
 * answers before it was asked only makes its own round trip look shorter.
 *
 * Returns `ping()`: sends one more ping now (ssh2's Protocol#ping).
 */
export function timePings(conn: Connection, onRtt: (ms: number) => void, now: () => number): () => void {
  const proto = protocolOf(conn) as unknown as PingingProtocol;
  const ping = proto.ping;
  if (typeof ping !== 'function') throw new Error('ssh2 internals changed: Protocol#ping missing');
  if (proto._handlers.REQUEST_SUCCESS || proto._handlers.REQUEST_FAILURE) {
    throw new Error('ssh2 internals changed: the server now handles global request replies');
  }
  let sent: number[] | undefined = [];
  proto.ping = function (this: unknown) {
    if (sent && sent.length >= MAX_OUTSTANDING) sent = undefined;
    sent?.push(now());
    ping.call(this);
  };
  const reply = (): void => {
    const at = sent?.shift();
    if (at !== undefined) onRtt(Math.max(0, now() - at));
  };
  proto._handlers.REQUEST_SUCCESS = reply;
  proto._handlers.REQUEST_FAILURE = reply;
  return () => proto.ping!();
}
