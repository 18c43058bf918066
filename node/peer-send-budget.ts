import type { Connection } from 'ssh2';
import type { Logger } from '../shared/logger.js';
import type { RelayContext } from './relay-context.js';
import { SendBudget } from './send-budget.js';
import { keyExchangeQueue, socketOf } from './ssh2-internals.js';

/** What a connection's send budget takes from its connection (node/connection.ts). */
export interface PeerSendBudgetOptions {
  ctx: Pick<RelayContext, 'config' | 'metrics'>;
  log: Logger;
  /** The peer took nothing from a full send buffer for --send-stall-timeout: close at once. */
  stalled(): void;
  /** Runs the budget's socket and timer callbacks exception-safely (the connection's FaultGuard). */
  wrap<A extends unknown[]>(where: string, fn: (...args: A) => unknown): (...args: A) => void;
}

/**
 * One connection's SendBudget (node/send-budget.ts): what is buffered for its peer, in the socket
 * and in ssh2's key exchange queue, against --max-send-buffer; counted in the relay's metrics,
 * logged, a stalled peer disconnected. Re-evaluated after each chunk ssh2 handles and each key
 * exchange.
 */
export function watchSendBudget(conn: Connection, o: PeerSendBudgetOptions): SendBudget {
  const { ctx } = o;
  const sock = socketOf(conn);
  const limits = ctx.config.limits;
  const budget: SendBudget = new SendBudget({
    socket: sock,
    held: keyExchangeQueue(conn),
    limit: limits.sendBufferBytes,
    stallMs: limits.sendStallMs,
    onOver: () => ctx.metrics.sendThrottled.inc(),
    onReadPaused: () => {
      ctx.metrics.sendReadPaused.inc();
      o.log.warn('peer is not reading its replies; stopped reading from it', { buffered: budget.buffered, limit: limits.sendBufferBytes });
    },
    onStall: () => {
      ctx.metrics.sendStallDisconnects.inc();
      o.log.warn('peer took nothing from a full send buffer; disconnecting', {
        socketBytes: budget.socketBytes,
        keyExchangeBytes: budget.heldBytes,
        limit: limits.sendBufferBytes,
        stallMs: limits.sendStallMs,
      });
      o.stalled();
    },
    onPeak: (n) => ctx.metrics.notePeakSendBuffer(n),
    wrap: o.wrap, // the connection's own (a closure of its own here would cost an idle connection 56 bytes)
  });
  // After ssh2 (whose listener came first) has handled a chunk from the peer: what it queued
  // in reply counts, and past twice the bound reading stops (SendBudget).
  sock.on('data', o.wrap('send-budget', () => budget.update()));
  conn.on('handshake', o.wrap('send-budget', () => budget.handshake()));
  return budget;
}
