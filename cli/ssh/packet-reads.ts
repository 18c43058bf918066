import { Socket, type OnReadOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import { channelDataInPlace, channelSocket, IN_PLACE_HEAD, IN_PLACE_TAIL } from '../../node/ssh2-internals.js';
import { SOCKET_SEND_LIMIT, whenDrained } from './send-backpressure.js';

/** Data per read at most, whatever maximum packet size the peer announced (Node's own reads are 64 KiB). */
const MAX_DATA = 64 * 1024 - IN_PLACE_HEAD - IN_PLACE_TAIL;

interface HandleHolder {
  _handle: { reading?: boolean } | null;
}

/**
 * Whether `local` can still be moved to `onread` reads: connected, nothing read yet, and not
 * reading (a server's socket accepted with pauseOnConnect, or a socket paused before it connected).
 */
export function movableToOnread(local: Socket): boolean {
  const handle = (local as unknown as HandleHolder)._handle;
  return !!handle && handle.reading !== true && !local.connecting && local.readableLength === 0 && local.bytesRead === 0 && !local.destroyed;
}

/**
 * Moves a connected socket's handle to a new Socket that reads with net's `onread` (reads go into
 * memory the caller provides: no Buffer allocated and no 'data' event per read). net.createServer
 * and a connected socket have no such option, only `new net.Socket` has; the old socket, left
 * without its handle, is destroyed (a server stops counting it). Relies on net.Socket's
 * `_handle`, the field Node's child_process and cluster hand sockets around with.
 */
export function moveToOnread(local: Socket, onread: OnReadOpts, allowHalfOpen: boolean): Socket {
  const holder = local as unknown as HandleHolder;
  const handle = holder._handle;
  if (!handle) throw new Error("node internals changed: net.Socket's _handle missing");
  holder._handle = null;
  local.destroy();
  return new Socket({ handle, allowHalfOpen, readable: true, writable: true, onread } as ConstructorParameters<typeof Socket>[0]);
}

/**
 * The local socket's reads go straight into buffers laid out as SSH packets for `channel`
 * (node/ssh2-internals.ts channelDataInPlace): each read lands after room for the packet and
 * CHANNEL_DATA headers, and ssh2's cipher encrypts the packet in place. What a `tunnel` process
 * used to do per read instead: Node allocated a 64 KiB Buffer, the stream machinery (push, 'data',
 * pipe, the channel's Writable) handed it to ssh2, which allocated a packet per 32 KiB and
 * copied the data into it. A packet the SSH socket took at once (nothing queued behind it) is
 * the buffer of the next read: no allocation at all while the relay keeps up.
 *
 * A read the window cannot take whole (or one during a key exchange) goes through the channel's
 * own Writable side, which waits for the window, and reading stops until ssh2 took it: one read
 * (at most the peer's packet size) is all this side holds. Reading also stops while the SSH
 * socket holds more than SOCKET_SEND_LIMIT unsent, as holdWritesWhileSocketFull does for the
 * Writable path. `count` sees every read's length; `allocated` the off-heap bytes a read left
 * behind as garbage: a fresh packet buffer, or the packet ssh2 copies a read into on the Writable
 * path (the process paces its young-generation collections by these, pipe.ts: a stream whose
 * packets are reused allocates nothing and needs no collection). `local` must be movableToOnread;
 * returns the socket that now owns its connection (the one to join), or undefined when the
 * channel is not an ssh2 channel this can send on (`local` is then untouched).
 */
export function readIntoPackets(local: Socket, channel: Duplex, count: (n: number) => void, allowHalfOpen = true, allocated: (n: number) => void = () => {}): Socket | undefined {
  const sender = channelDataInPlace(channel);
  const ssh = channelSocket(channel);
  if (!sender || !ssh) return undefined;
  const size = IN_PLACE_HEAD + Math.min(sender.maxData(), MAX_DATA) + IN_PLACE_TAIL;
  let packet: Buffer | undefined; // the buffer the next read goes into
  let spare: Buffer | undefined; // a packet the SSH socket is done with
  const resume = () => {
    if (!sock.destroyed) sock.resume();
  };
  const buffer = (): Uint8Array => {
    if (spare) packet = spare;
    else {
      packet = Buffer.allocUnsafe(size);
      allocated(size);
    }
    spare = undefined;
    return packet.subarray(IN_PLACE_HEAD, size - IN_PLACE_TAIL);
  };
  const callback = (n: number): boolean => {
    const p = packet!;
    count(n);
    if (channel.writableLength === 0 && sender.trySend(p, n)) {
      if (ssh.writableLength === 0) spare = p;
      if (ssh.writableLength <= SOCKET_SEND_LIMIT || ssh.destroyed) return true;
      whenDrained(ssh, resume);
      return false;
    }
    allocated(n);
    channel.write(p.subarray(IN_PLACE_HEAD, IN_PLACE_HEAD + n), resume);
    return false;
  };
  const sock = moveToOnread(local, { buffer, callback } as OnReadOpts, allowHalfOpen);
  return sock;
}
