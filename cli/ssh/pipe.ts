import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createGcPacer, type GcPacer } from '../../node/gc-pacer.js';
import { movableToOnread, readIntoPackets } from './packet-reads.js';
import { holdChannelWrites } from './send-backpressure.js';

/**
 * A young-generation collection after every 4 MiB that crosses this process's joins, either way
 * (node/gc-pacer.ts, as the relay does per 1 MiB read). Every packet and socket read is a Buffer
 * with its own off-heap backing store; V8 alone collects them only when 32 MiB of such young
 * memory piled up, and at 50 ms RTT (bench:e2e far rows) what survived that counted against the
 * old generation, so a `tunnel` process ran a full mark-compact about every 16 MiB moved (14 to 20
 * per 256 MiB, against 2 or 3 with pacing), at about a third more CPU per byte for X and Y.
 */
export const GC_EVERY_BYTES = 4 * 1024 * 1024;

let processPacer: GcPacer | undefined;
/** The process's pacer, made at the first join (a command that moves no data never makes one). */
function cliGcPacer(): GcPacer {
  return (processPacer ??= createGcPacer(GC_EVERY_BYTES));
}

/**
 * Joins a local TCP socket (created with allowHalfOpen) and an SSH channel, keeping half-close:
 * each side's end becomes the other's EOF once queued writes have flushed. Nothing is destroyed
 * while data is still queued: the socket goes when the channel has closed and the socket's
 * writes are done; the channel goes at once only when the socket failed. A socket that has not
 * started reading (accepted with pauseOnConnect, or paused before it connected) reads straight
 * into SSH packets (packet-reads.ts), with its own backpressure; any other socket is piped into
 * the channel. The channel is piped into the socket. Calls `done` once, when both are closed,
 * with the byte counts. Every byte either way is counted into `pacer` (by default the process's,
 * see GC_EVERY_BYTES), except that reads into packets count what they allocate rather than what
 * they read (packet-reads.ts): a stream whose packet buffers are reused leaves no garbage, and Y
 * pushing one ran 256 forced scavenges per GiB for none (ssh-ends sender A/B, 8 alternating
 * rounds under load 16-18: median 2.80 CPU s/GiB against 3.20, lower in 6 of 8). Returns the
 * socket it joined: a new one when the connection moved to packet reads (`local` is then
 * destroyed, its connection not).
 */
export function joinSocketAndChannel(
  local: Socket,
  channel: Duplex,
  done: (bytesToChannel: number, bytesToSocket: number) => void,
  pacer: Pick<GcPacer, 'read'> = cliGcPacer(),
): Socket {
  let toChannel = 0;
  const countUp = (n: number) => {
    toChannel += n;
    pacer.read(n);
  };
  // A socket that has not started reading reads straight into packets (packet-reads.ts).
  // Its reads pace collections by what they allocate, not by bytes: a packet buffer the SSH
  // socket took at once is the next read's, and leaves no garbage (97% of them in bench:e2e).
  const inPlace = movableToOnread(local) ? readIntoPackets(local, channel, (n) => (toChannel += n), true, (n) => pacer.read(n)) : undefined;
  const socket = inPlace ?? local;
  socket.setNoDelay(true);
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
  channel.on('data', (d: Buffer) => {
    toSocket += d.length;
    pacer.read(d.length);
  });
  // What is sent toward the relay waits in the local socket, not in ssh2's socket or key exchange queue (send-backpressure.ts).
  holdChannelWrites(channel);
  if (!inPlace) {
    socket.on('data', (d: Buffer) => countUp(d.length));
    socket.pipe(channel, { end: false });
  }
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
  return socket;
}
