import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { Connection } from 'ssh2';

/**
 * The few ssh2 1.17 internals the relay depends on, in one place so an upgrade has one file
 * to check. Each use is explained where ssh2's public API falls short.
 */

const require = createRequire(import.meta.url);

/** Whether ssh2's native crypto binding loaded (it silently falls back to pure JS). */
export function nativeCryptoAvailable(): boolean {
  try {
    return (require('ssh2/lib/protocol/crypto.js') as { bindingAvailable?: boolean }).bindingAvailable === true;
  } catch {
    return false;
  }
}

type GlobalRequestHandler = (p: unknown, name: string, wantReply: boolean, data: unknown) => void;
type ChannelOpenHandler = (p: unknown, info: { type: string; sender: number }) => void;
interface ProtocolInternals {
  _handlers: { GLOBAL_REQUEST?: GlobalRequestHandler; CHANNEL_OPEN?: ChannelOpenHandler };
}

function protocolOf(conn: Connection): ProtocolInternals {
  const proto = (conn as unknown as { _protocol?: ProtocolInternals })._protocol;
  if (!proto?._handlers) throw new Error('ssh2 internals changed: Connection._protocol._handlers missing');
  return proto;
}

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

/**
 * Lets the relay see channel opens that ssh2 rejects on its own (session, x11,
 * direct-streamlocal, unknown types) so they are logged and counted. ssh2 still decides.
 */
export function observeChannelOpens(conn: Connection, observe: (type: string) => void): void {
  const proto = protocolOf(conn);
  const orig = proto._handlers.CHANNEL_OPEN;
  if (!orig) throw new Error('ssh2 internals changed: CHANNEL_OPEN handler missing');
  proto._handlers.CHANNEL_OPEN = (p, info) => {
    observe(info.type);
    orig(p, info);
  };
}

/** The TCP socket under an ssh2 server connection (ssh2 keeps it as `_sock`). */
export function socketOf(conn: Connection): Socket {
  const sock = (conn as unknown as { _sock?: Socket })._sock;
  if (!sock) throw new Error('ssh2 internals changed: Connection._sock missing');
  return sock;
}
