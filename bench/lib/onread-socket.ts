/**
 * net's `onread` (reads go into memory the caller provides, with no Buffer allocated and no
 * 'data' event per read) for a socket a server accepted: net.createServer has no such option,
 * only net.connect and new net.Socket do. The accepted socket's handle moves to a new socket that
 * has it. The server must be created with pauseOnConnect (nothing may have been read yet); the
 * accepted socket, left without its handle, is destroyed so that the server stops counting it.
 *
 * Relies on net.Socket's `_handle` (the field Node's own child_process and cluster use to hand a
 * socket around) and throws if that is gone; bench/lib/delay-line.test.ts exercises it.
 */
import { Socket, type OnReadOpts } from 'node:net';

export function acceptedWithOnread(accepted: Socket, onread: OnReadOpts, o: { allowHalfOpen?: boolean } = {}): Socket {
  const holder = accepted as unknown as { _handle: unknown };
  const handle = holder._handle;
  if (!handle) throw new Error("acceptedWithOnread: the accepted socket has no _handle (did net.Socket's internals change?)");
  holder._handle = null;
  accepted.destroy();
  return new Socket({ handle, allowHalfOpen: o.allowHalfOpen ?? false, readable: true, writable: true, onread } as ConstructorParameters<typeof Socket>[0]);
}
