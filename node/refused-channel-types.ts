import type { Connection } from 'ssh2';
import { loggable, type Logger } from '../shared/logger.js';
import type { VerifiedLease } from './auth/verify-client-cert.js';
import type { FaultPoint } from './fault-guard.js';
import type { RelayContext } from './relay-context.js';
import type { RefusalLog } from './forwarding/refusal-log.js';
import { observeChannelOpens } from './ssh2-internals.js';
import { formatRefusal } from '../protocol/channel-refusals.js';

/** Channel types of SSH and OpenSSH, counted by name when refused. */
const CHANNEL_TYPES: ReadonlySet<string> = new Set([
  'session',
  'x11',
  'forwarded-tcpip',
  'auth-agent@openssh.com',
  'direct-streamlocal@openssh.com',
  'forwarded-streamlocal@openssh.com',
  'tun@openssh.com',
]);

/** What the count of a connection's refused channel types takes from its connection (node/connection.ts). */
export interface RefusedChannelTypesOptions {
  ctx: Pick<RelayContext, 'metrics'>;
  log: Logger;
  /** The connection's lease; undefined before authentication. */
  lease(): VerifiedLease | undefined;
  /** Which of its refusals are logged (all are counted). */
  refusalLog(): RefusalLog;
  /** Test-only fault injection (`--test-fault`); a no-op in production. */
  inject(point: FaultPoint): void;
  /** Runs the observer exception-safely (the connection's FaultGuard). */
  wrap<A extends unknown[]>(where: string, fn: (...args: A) => unknown): (...args: A) => void;
}

/**
 * Counts the channel opens of every type but `direct-tcpip`, which ssh2 refuses on its own
 * (session, x11, ...), and logs them for a member (within the connection's RefusalLog). The whole
 * observer runs under the connection's guard: a throw in it is a fault of the connection (ssh2,
 * whose parser it runs in, would only have ended the socket), and the refusal then carries ssh2's
 * own empty description.
 */
export function countRefusedChannelTypes(conn: Connection, o: RefusedChannelTypesOptions): void {
  // What the guarded observer tells the refusal (ssh2 asks synchronously, before it refuses).
  let description: string | undefined;
  const observe = o.wrap('channel-open', (type: string) => {
    o.inject('channel-open');
    // The type is the peer's text, authenticated or not: a label only when it is one of
    // SSH's, else `other` (each made-up type was a series kept for good), and logged only
    // for a member, cut short.
    o.ctx.metrics.refusedRequests.inc({ type: CHANNEL_TYPES.has(type) ? type : 'other' });
    if (!o.lease()) return;
    const logging = o.refusalLog().take();
    if (logging) o.log.info('channel type refused', { type: loggable(type, 64), ...logging });
    // A member who tries `ssh relay` (a shell, a command, sftp, -L to a socket) is told why.
    description =
      type === 'session'
        ? formatRefusal('not_offered', 'the relay runs no shell, command or subsystem; it forwards TCP to what the lease names (ssh -W NAME:PORT, or tunnel open)')
        : formatRefusal('not_offered', `the relay opens no ${CHANNEL_TYPES.has(type) ? type : 'such'} channels; it forwards TCP to what the lease names`);
  });
  observeChannelOpens(conn, (type) => {
    if (type === 'direct-tcpip') return undefined; // the relay's own (DirectChannels), not refused here
    description = undefined;
    observe(type);
    return description;
  });
}
