import type { Client } from 'ssh2';
import { clientSocket, keyExchangeQueue, routeAnswers } from '../../node/ssh2-internals.js';
import { acceptedByKernel } from '../../node/send-budget.js';

/**
 * How many of the CLI's answers to the relay may sit unsent, and how many bytes they may take,
 * before the relay is disconnected. An answer is 32 to 64 bytes on the wire (plus a few hundred
 * in Node's write queue); an honest relay has one or two out at a time (a keepalive every 5 s;
 * a channel open refused at --max-connections, and the relay holds at most --max-pending-opens
 * of those), so these are far above what it ever reaches and far below what a flood builds
 * (about 290 MB in 20 s without a bound).
 */
export const UNSENT_ANSWERS = { count: 4096, bytes: 1024 * 1024 };

export interface UnsentAnswers {
  count: number;
  bytes: number;
}

/**
 * Disconnects a relay that makes the CLI answer faster than it takes the answers: `onOver` is
 * called once, when the CLI's unsent answers pass `limits` (count or bytes), and should end the
 * connection. ssh2 answers every global request and channel request wanting a reply, and every
 * channel open it refuses, by writing to the socket without looking at its backpressure
 * (node/ssh2-internals/answers.ts): a relay that sent `keepalive@openssh.com` requests as fast
 * as it could and never read made `tunnel expose` and `tunnel open` hold every answer (290 MB in
 * the 20 s before the keepalive gave up), and without end when the relay also sent an unasked
 * REQUEST_SUCCESS now and then (ssh2 takes it as its keepalive's answer).
 *
 * Only answers are counted, never channel data: the CLI's own channels already wait for the
 * socket (send-backpressure.ts), and stopping or ending on them would meet the relay's own
 * pause at twice its --max-send-buffer (the read pause of 8f9fbe1 deadlocked an honest relay
 * carrying 1,000 channels; test/e2e/cli-many-channels). And nothing stops reading: an honest
 * relay is never stalled by this, and a hostile one is ended rather than left connected.
 *
 * Each answer's end is placed in the socket's byte stream when ssh2 hands it over: every byte
 * given to the socket so far (`bytesWritten`, sent or buffered) plus what ssh2 holds in its key
 * exchange queue, which is flushed to the socket ahead of anything newer. The answer is sent
 * once the kernel has accepted bytes up to there (acceptedByKernel, as the relay's send budget
 * measures progress): what the kernel holds is bounded by the kernel. A packet queued during a
 * key exchange is counted at its bare length (encryption adds some 20-50 bytes per packet
 * when it is flushed), so such an answer may count as sent a little early; a key exchange the
 * relay never finishes still leaves everything after it unsent, and counted.
 */
export function boundUnsentAnswers(client: Client, onOver: (unsent: UnsentAnswers) => void, limits: UnsentAnswers = UNSENT_ANSWERS): void {
  const sock = clientSocket(client);
  const queued = keyExchangeQueue(client);
  /** Where each unsent answer ends in the socket's byte stream, and its size, oldest first (from `head`). */
  const ends: number[] = [];
  const sizes: number[] = [];
  let head = 0;
  let bytes = 0;
  let over = false;
  const position = () => (sock.bytesWritten ?? 0) + queued();
  routeAnswers(client, (_method, send) => {
    // Once over (or gone), ssh2 may still be handling the rest of a read: its answers go nowhere.
    if (over || sock.destroyed) return;
    const start = position();
    send();
    const end = position();
    const sent = acceptedByKernel(sock);
    while (head < ends.length && ends[head]! <= sent) {
      bytes -= sizes[head]!;
      head++;
    }
    if (end <= sent) return;
    ends.push(end);
    sizes.push(end - start);
    bytes += end - start;
    const count = ends.length - head;
    if (count > limits.count || bytes > limits.bytes) {
      over = true;
      onOver({ count, bytes });
      return;
    }
    if (head >= 1024 && head * 2 >= ends.length) {
      ends.splice(0, head);
      sizes.splice(0, head);
      head = 0;
    }
  });
}
