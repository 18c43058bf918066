import type { EventEmitter } from 'node:events';
import type { Client, Connection } from 'ssh2';
import { protocolOf } from './protocol.js';

/** What ssh2 keeps of a finished key exchange (lib/protocol/kex.js KeyExchange, as `Protocol._kex`). */
interface FinishedKeyExchange {
  type?: string;
  _finished?: boolean;
  /** Curve25519Exchange's x25519 key pair (node:crypto KeyObjects, the private key among them). */
  _keys?: unknown;
  finish?: unknown;
}

/** What a finished exchange's `finish` does when called again: nothing (KeyExchange#finish with `_finished` set). */
const alreadyFinished = (): false => false;

/**
 * Forgets what a key exchange no longer needs once it is finished: the x25519 key pair and the
 * shared secret. ssh2 keeps the finished exchange as `Protocol._kex` for the connection's life
 * (until the next exchange replaces it): it needs only its `sessionID` (the next exchange's and
 * user authentication's), `negotiated` (compression after authentication) and
 * `remoteExtInfoEnabled` (read before 'handshake'), and the object itself being there (a KEXINIT
 * with `_kex` set is a re-key). Its cleanup (kex.js `completeHandshake`) clears the DH objects
 * and the handshake's packets but not a curve25519 exchange's `_keys`; and `finish` is replaced,
 * on the server (and on a client whose host key check answered asynchronously), by
 * `completeHandshake`, a closure whose context holds the shared secret K and the exchange hash.
 * About 0.4 KB of heap and 1-2 KB of RSS per connection (see node/ssh2-internals.ts), and a
 * secret from which the session's keys derive kept in memory as long as the connection lives.
 *
 * On every 'handshake' (the first and each re-key; ssh2 emits it last, after the new keys are in
 * use): `_keys` is set to null and an own `finish` to a function that does what KeyExchange#finish
 * does once `_finished` is set (nothing). Works for a server Connection and a connected Client
 * (ssh2 creates the Client's protocol in `connect()`). Throws "ssh2 internals changed" at the
 * handshake when the exchange is not shaped as expected: the connection then fails with that
 * error (ssh2 catches what its parser's listeners throw) rather than keep the secret unnoticed.
 */
export function forgetKeyExchangeSecrets(conn: Connection | Client): void {
  const proto = protocolOf(conn);
  (conn as unknown as EventEmitter).on('handshake', () => {
    const kex = proto._kex as FinishedKeyExchange | undefined;
    if (kex?._finished !== true || typeof kex.finish !== 'function') {
      throw new Error('ssh2 internals changed: Protocol._kex is not a finished key exchange at handshake');
    }
    if (kex.type === '25519') {
      if (!('_keys' in kex)) throw new Error('ssh2 internals changed: Curve25519Exchange._keys missing');
      kex._keys = null;
    }
    if (Object.hasOwn(kex, 'finish')) kex.finish = alreadyFinished;
  });
}
