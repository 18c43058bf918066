import type { Connection } from 'ssh2';
import { protocolOf } from './protocol.js';

/** Marks a custom global request re-dispatched through ssh2's own request path. */
export const CUSTOM_REQUEST = Symbol('tunnel.customGlobalRequest');
export interface CustomRequestData {
  [CUSTOM_REQUEST]: { name: string; payload: Buffer };
}
/** The custom request carried by a `request` event's data, if it is one. */
export function customRequestOf(data: unknown): { name: string; payload: Buffer } | undefined {
  return typeof data === 'object' && data !== null && CUSTOM_REQUEST in data ? (data as CustomRequestData)[CUSTOM_REQUEST] : undefined;
}

/**
 * ssh2's server answers every global request it does not know (like `lease-renew@tunnel`)
 * with FAILURE and never emits it. Replies to global requests must go out in request order
 * (RFC 4254 §4), and ssh2 keeps that order in a private queue that only its `request` event
 * path feeds. So a request named in `names` is re-dispatched under the name of a request ssh2
 * does emit (`cancel-streamlocal-forward@openssh.com`), with data tagged by CUSTOM_REQUEST;
 * the `request` listener recognises the tag and gets ordered `accept`/`reject`.
 */
export function routeCustomGlobalRequests(conn: Connection, names: readonly string[]): void {
  const proto = protocolOf(conn);
  const orig = proto._handlers.GLOBAL_REQUEST;
  if (!orig) throw new Error('ssh2 internals changed: GLOBAL_REQUEST handler missing');
  proto._handlers.GLOBAL_REQUEST = (p, name, wantReply, data) => {
    if (names.includes(name) && Buffer.isBuffer(data)) {
      const tagged: CustomRequestData = { [CUSTOM_REQUEST]: { name, payload: data } };
      orig(p, 'cancel-streamlocal-forward@openssh.com', wantReply, tagged);
      return;
    }
    orig(p, name, wantReply, data);
  };
}
