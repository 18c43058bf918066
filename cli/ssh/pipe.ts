import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Joins a local TCP socket and an SSH channel, keeping half-close: each side's end becomes the
 * other's EOF, and both are destroyed once both directions ended or either failed. Backpressure
 * comes from pipe(). Calls `done` once with the byte counts.
 */
export function joinSocketAndChannel(socket: Socket, channel: Duplex, done: (bytesToChannel: number, bytesToSocket: number) => void): void {
  socket.setNoDelay(true);
  let toChannel = 0;
  let toSocket = 0;
  let ended = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    socket.destroy();
    channel.destroy();
    done(toChannel, toSocket);
  };
  const oneEnded = () => {
    if (++ended === 2) finish();
  };
  socket.on('data', (d: Buffer) => (toChannel += d.length));
  channel.on('data', (d: Buffer) => (toSocket += d.length));
  socket.pipe(channel, { end: false });
  channel.pipe(socket, { end: false });
  socket.once('end', () => {
    channel.end();
    oneEnded();
  });
  channel.once('end', () => {
    socket.end();
    oneEnded();
  });
  socket.once('error', finish);
  channel.once('error', finish);
  socket.once('close', () => {
    if (ended < 2) finish();
  });
  channel.once('close', finish);
}
