import type { Client, Connection } from 'ssh2';
import { protocolOf } from './protocol.js';

/**
 * The Protocol methods through which ssh2 answers what the peer sent, on its own and without
 * looking at the socket's backpressure: REQUEST_SUCCESS/FAILURE (every global request wanting a
 * reply: client.js answers `keepalive@openssh.com` and any other with FAILURE), CHANNEL_SUCCESS/
 * FAILURE (a channel request wanting a reply), CHANNEL_OPEN_FAILURE (a channel open it refuses:
 * an unknown type, a `forwarded-tcpip` for no forward), and the `hostkeys-prove-00@openssh.com`
 * request client.js sends for every `hostkeys-00@openssh.com` the peer announces.
 */
export const ANSWER_METHODS = ['requestSuccess', 'requestFailure', 'channelSuccess', 'channelFailure', 'channelOpenFail', 'openssh_hostKeysProve'] as const;
export type AnswerMethod = (typeof ANSWER_METHODS)[number];

/**
 * Routes every answer through `around(method, send)`, which must call `send()` once to hand the
 * packet to ssh2's sender (each method above writes one packet through `sendPacket`: to the
 * socket, or to `_queue` during a key exchange). Installed on the connection's own Protocol
 * (instance properties over the prototype's methods: other connections are untouched). ssh2
 * calls these on `_protocol` (client.js `proto.requestFailure()`, `p.channelFailure(...)`,
 * `self._protocol.channelOpenFail(...)`), so a Client must be connected (ssh2 creates its
 * Protocol in `connect()`). An exception from `around` propagates into ssh2's packet handling,
 * like one from any handler.
 */
export function routeAnswers(conn: Connection | Client, around: (method: AnswerMethod, send: () => void) => void): void {
  const proto = protocolOf(conn) as unknown as Record<AnswerMethod, (...args: unknown[]) => unknown>;
  for (const name of ANSWER_METHODS) {
    const orig = proto[name];
    if (typeof orig !== 'function') throw new Error(`ssh2 internals changed: Protocol#${name} missing`);
    proto[name] = function (this: unknown, ...args: unknown[]) {
      around(name, () => void orig.apply(this, args));
    };
  }
}
