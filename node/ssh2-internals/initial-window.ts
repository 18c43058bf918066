import type { Connection, ServerChannel } from 'ssh2';
import { STANDARD_WINDOW } from './channel-window.js';

interface OpeningProtocol {
  channelOpenConfirm?: (remote: number, local: number, window: number, packetSize: number) => void;
  forwardedTcpip?: (local: number, window: number, packetSize: number, info: unknown) => void;
}

/**
 * ssh2 opens every channel with a 2 MiB window (lib/server.js: a direct-tcpip `accept()` confirms
 * with MAX_WINDOW, `openChannel` opens forwarded-tcpip with it) and has no option for another
 * size. The relay opens channels with what its channel memory allows (node/channel-memory.ts):
 * these swap the window in the one Protocol call that sends it, made synchronously inside ssh2's
 * `accept()` or `forwardOut()`, and set the Channel's `incoming.window` to match before any of
 * its data can be parsed. A window of 2 MiB or more leaves ssh2 as it is.
 */
function withWindow<T>(conn: Connection, method: keyof OpeningProtocol, window: number, call: () => T): T {
  const proto = (conn as unknown as { _protocol?: OpeningProtocol })._protocol;
  const orig = proto?.[method];
  if (!proto || typeof orig !== 'function') throw new Error(`ssh2 internals changed: Connection._protocol.${method} missing`);
  if (window >= STANDARD_WINDOW) return call();
  const swapped = (method === 'channelOpenConfirm'
    ? (remote: number, local: number, _w: number, packetSize: number) => (orig as NonNullable<OpeningProtocol['channelOpenConfirm']>).call(proto, remote, local, window, packetSize)
    : (local: number, _w: number, packetSize: number, info: unknown) => (orig as NonNullable<OpeningProtocol['forwardedTcpip']>).call(proto, local, window, packetSize, info)) as OpeningProtocol[typeof method];
  Object.assign(proto, { [method]: swapped });
  try {
    return call();
  } finally {
    delete proto[method]; // back to the prototype's method
    if (proto[method] !== orig) Object.assign(proto, { [method]: orig });
  }
}

/** Sets a channel's receive window as ssh2 keeps it; throws if the field is gone. */
export function setIncomingWindow(ch: unknown, window: number): void {
  const incoming = (ch as { incoming?: { window?: unknown } } | undefined)?.incoming;
  if (typeof incoming?.window !== 'number') throw new Error('ssh2 internals changed: Channel.incoming.window missing');
  if (window < STANDARD_WINDOW) incoming.window = window;
}

/** Y's direct-tcpip channel, confirmed with a window of `window` bytes instead of 2 MiB. */
export function acceptWithWindow(conn: Connection, accept: () => ServerChannel | undefined, window: number): ServerChannel | undefined {
  const ch = withWindow(conn, 'channelOpenConfirm', window, accept);
  if (ch) setIncomingWindow(ch, window);
  return ch;
}

/**
 * Sends ssh2's forwarded-tcpip open (`conn.forwardOut(...)`, called by `open`) offering `window`
 * bytes; the caller passes the channel to setIncomingWindow first thing in forwardOut's callback
 * (ssh2 builds the Channel with 2 MiB on the confirmation and calls back synchronously).
 */
export function forwardOutWithWindow(conn: Connection, window: number, open: () => void): void {
  withWindow(conn, 'forwardedTcpip', window, open);
}
