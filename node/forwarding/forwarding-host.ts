import type { Connection } from 'ssh2';
import type { Logger } from '../../shared/logger.js';
import type { VerifiedLease } from '../auth/verify-client-cert.js';
import type { ChannelSlots } from '../channel-slots.js';
import type { FaultPoint } from '../fault-guard.js';
import type { RelayContext } from '../relay-context.js';
import type { SendGate } from '../send-budget.js';
import type { Originator } from './originator.js';
import type { RefusalLog } from './refusal-log.js';

/**
 * What both sides of a connection's forwarding (X's, node/forwarding/bound-exposures.ts, and
 * Y's, node/forwarding/direct-channels.ts) and the refusal of its requests
 * (node/forwarding/request-refusals.ts) take from their connection (node/connection.ts). One
 * object per connection, handed to each as it is: a copy per module cost an idle exposure
 * connection a dozen properties each, and V8 gives an object built by a hot spread its own
 * hidden class (issue 11, 40 KB per idle exposure).
 */
export interface ForwardingHost {
  ctx: Pick<RelayContext, 'config' | 'ids' | 'metrics' | 'listeners' | 'egress' | 'windows' | 'channelMemory' | 'live' | 'draining' | 'clock' | 'memberChannels'>;
  sessionId: string;
  /** The peer's TCP address and port as the relay sees them: what X is told Y's channels come from (originator.ts). */
  peer: Originator;
  /** The connection: `forwarded-tcpip` channels are opened on it, its channel opens rejected. */
  conn: Connection;
  log: Logger;
  /** The connection's channel slots: its open channels, pending opens and openers' shares. */
  slots: ChannelSlots;
  /** The peer's send bound: bridges stop feeding its channels while it is over. */
  budget: SendGate;
  /** True once the connection began closing (node/connection.ts `end`) or closed: nothing new starts on it. */
  closing(): boolean;
  /** The connection's lease; undefined before authentication. */
  lease(): VerifiedLease | undefined;
  /** The peer is Tunnel's own CLI: its channels may grow their windows (node/adaptive-window.ts). */
  adaptive: boolean;
  /** Whose share of the window budget the channels take. */
  windowOwner(): unknown;
  /** The connection's ping round trip in ms (Infinity while unknown), for adopt's `pathRtt`. */
  pathRtt: () => number;
  /** Credits bytes its channels carried to the connection. */
  account(bytesIn: number, bytesOut: number): void;
  /** Runs callbacks of ssh2, promises and bridges exception-safely (the connection's FaultGuard). */
  wrap<A extends unknown[]>(where: string, fn: (...args: A) => unknown): (...args: A) => void;
  /** Test-only fault injection (`--test-fault`); a no-op in production. */
  inject(point: FaultPoint): void;
  /** Which of its refused requests and channel opens are logged (all are counted; node/forwarding/refusal-log.ts). */
  refusalLog(): RefusalLog;
}
