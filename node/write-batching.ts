import type { Socket } from 'node:net';

/** At most this much waits corked: a bigger burst leaves at once, as it would without batching. */
export const BATCH_MAX_BYTES = 128 * 1024;

/**
 * ssh2 writes every packet to the socket on its own (`socket.write(packet)` per packet of up
 * to 32 KiB): one write request, one syscall and one completion callback each. This corks the
 * socket at its first write in a tick and uncorks it on the next process tick, so the packets
 * produced while handling one incoming chunk leave in one writev. Nothing waits longer than the
 * current tick, and never more than BATCH_MAX_BYTES: past that the batch is flushed at once, so
 * a burst (a peer granting a huge window releases a channel's whole 2 MiB write buffer in one
 * go) reaches the kernel as soon as it did before, and what the relay holds for a peer, counted
 * by node/send-budget.ts through `writableLength`, stays what it was without batching.
 */
export function batchWrites(sock: Socket): void {
  const write = sock.write;
  let corked = false;
  const uncork = () => {
    if (!corked) return;
    corked = false;
    sock.uncork();
  };
  sock.write = function (this: Socket, ...args: Parameters<Socket['write']>): boolean {
    if (!corked && !sock.destroyed) {
      corked = true;
      sock.cork();
      process.nextTick(uncork);
    }
    const ok = write.apply(this, args);
    if (corked && sock.writableLength >= BATCH_MAX_BYTES) uncork();
    return ok;
  } as Socket['write'];
}
