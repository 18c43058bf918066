import type { Logger } from '../../shared/logger.js';
import type { ChannelSlots } from '../channel-slots.js';
import type { SendGate } from '../send-budget.js';
import type { RefuseRequest } from './request-refusals.js';

/**
 * What both sides of a connection's forwarding (X's, node/forwarding/bound-exposures.ts, and
 * Y's, node/forwarding/direct-channels.ts) take from their connection (node/connection.ts).
 */
export interface ForwardingHost {
  log: Logger;
  /** The connection's channel slots: its open channels, pending opens and openers' shares. */
  slots: ChannelSlots;
  /** The peer's send bound: bridges stop feeding its channels while it is over. */
  budget: SendGate;
  /** True once the connection closed. */
  closed(): boolean;
  /** The peer is Tunnel's own CLI: its channels may grow their windows (node/adaptive-window.ts). */
  adaptive: boolean;
  /** Whose share of the window budget the channels take. */
  windowOwner(): unknown;
  /** The connection's ping round trip in ms (Infinity while unknown), for adopt's `pathRtt`. */
  pathRtt: () => number;
  /** Credits bytes its channels carried to the connection. */
  account(bytesIn: number, bytesOut: number): void;
  refuse: RefuseRequest;
  /** Runs callbacks of ssh2, promises and bridges exception-safely (the connection's FaultGuard). */
  wrap<A extends unknown[]>(where: string, fn: (...args: A) => unknown): (...args: A) => void;
}
