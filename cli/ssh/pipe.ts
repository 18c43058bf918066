import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Joins a local TCP socket (created with allowHalfOpen) and an SSH channel, keeping half-close:
 * each side's end becomes the other's EOF once queued writes have flushed. Nothing is destroyed
 * while data is still queued: the socket goes when the channel has closed and the socket's
 * writes are done; the channel goes at once only when the socket failed. Backpressure comes
 * from pipe(). Calls `done` once, when both are closed, with the byte counts.
 */
export function joinSocketAndChannel(socket: Socket, channel: Duplex, done: (bytesToChannel: number, bytesToSocket: number) => void): void {
  socket.setNoDelay(true);
  let toChannel = 0;
  let toSocket = 0;
  let socketEnded = false;
  let socketClosed = false;
  let channelClosed = false;
  let reported = false;
  const report = () => {
    if (reported || !socketClosed || !channelClosed) return;
    reported = true;
    done(toChannel, toSocket);
  };
  socket.on('data', (d: Buffer) => (toChannel += d.length));
  channel.on('data', (d: Buffer) => (toSocket += d.length));
  socket.pipe(channel, { end: false });
  channel.pipe(socket, { end: false });
  socket.once('end', () => {
    socketEnded = true;
    channel.end();
  });
  channel.once('end', () => socket.end());
  socket.on('error', () => socket.destroy());
  channel.on('error', () => channel.destroy());
  socket.once('close', () => {
    socketClosed = true;
    // Closed without a FIN (reset, error): the other direction cannot complete either.
    if (!socketEnded && !channelClosed) channel.destroy();
    report();
  });
  channel.once('close', () => {
    channelClosed = true;
    // Nothing more can go upstream; let what is queued for the local peer drain, then close.
    if (socket.writableFinished || socket.destroyed) socket.destroy();
    else {
      socket.once('finish', () => socket.destroy());
      socket.end();
    }
    report();
  });
}
