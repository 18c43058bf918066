import type { Connection } from 'ssh2';
import { protocolOf } from './protocol.js';

/**
 * Lets the relay see channel opens that ssh2 rejects on its own (session, x11,
 * direct-streamlocal, unknown types) so they are logged and counted. ssh2 still decides; when
 * `observe` returns a description, a refusal ssh2 sends while handling that open carries it
 * (ssh2's own is empty: OpenSSH printed "open failed: administratively prohibited: " and no why).
 */
export function observeChannelOpens(conn: Connection, observe: (type: string) => string | undefined): void {
  const proto = protocolOf(conn);
  const orig = proto._handlers.CHANNEL_OPEN;
  if (!orig) throw new Error('ssh2 internals changed: CHANNEL_OPEN handler missing');
  const failing = proto as unknown as { channelOpenFail?: (remote: number, reason: number, desc?: string) => void };
  proto._handlers.CHANNEL_OPEN = (p, info) => {
    const description = observe(info.type);
    const fail = failing.channelOpenFail;
    if (description === undefined || typeof fail !== 'function') return orig(p, info);
    // ssh2 refuses these types synchronously, inside its handler: only that call is swapped.
    failing.channelOpenFail = (remote: number, reason: number) => fail.call(proto, remote, reason, description);
    try {
      orig(p, info);
    } finally {
      delete failing.channelOpenFail; // back to the prototype's method
      if (failing.channelOpenFail !== fail) failing.channelOpenFail = fail;
    }
  };
}

/** SSH_MSG_CHANNEL_OPEN_FAILURE reason codes (RFC 4254 5.1). */
export const OPEN_FAILURE = { ADMINISTRATIVELY_PROHIBITED: 1, CONNECT_FAILED: 2, UNKNOWN_CHANNEL_TYPE: 3, RESOURCE_SHORTAGE: 4 } as const;

/**
 * Refuses a channel open with a reason code and description of our choosing. ssh2's `reject()`
 * always sends its own code and an empty description (clients print "connect failed: "); it
 * calls `_protocol.channelOpenFail(sender, code, '')` synchronously, so this swaps in ours
 * for exactly that one call.
 */
export function rejectChannelOpen(conn: Connection, reject: () => void, code: number, description: string): void {
  const proto = (conn as unknown as { _protocol?: { channelOpenFail?: (remote: number, reason: number, desc: string) => void } })._protocol;
  const orig = proto?.channelOpenFail;
  if (!proto || typeof orig !== 'function') return reject();
  proto.channelOpenFail = (remote: number) => orig.call(proto, remote, code, description);
  try {
    reject();
  } finally {
    delete (proto as { channelOpenFail?: unknown }).channelOpenFail; // back to the prototype's method
    if (proto.channelOpenFail !== orig) proto.channelOpenFail = orig;
  }
}
