import type { Connection } from 'ssh2';
import { formatRefusal, refusalWord } from '../../protocol/channel-refusals.js';
import { loggable, type Logger } from '../../shared/logger.js';
import type { RelayContext } from '../relay-context.js';
import { rejectChannelOpen } from '../ssh2-internals.js';
import { channelRefusal } from './refusal-text.js';
import type { RefusalLog } from './refusal-log.js';

/** What refusing one connection's requests takes from it (its ForwardingHost, node/forwarding/forwarding-host.ts). */
export interface RefusalHost {
  ctx: Pick<RelayContext, 'config' | 'metrics'>;
  /** The connection whose channel opens are rejected with a reason code and text. */
  conn: Connection;
  log: Logger;
  /** Which of its refusals are logged (all are counted). */
  refusalLog(): RefusalLog;
}

/**
 * Refuses one of the peer's requests (a global request, or a `direct-tcpip` channel open) on
 * `host`'s connection: counts it under `kind`, logs it with `reason` and `fields` (within the
 * connection's RefusalLog), and rejects it (a channel open with its code and text). `reject`
 * undefined: the peer wants no reply.
 * A function of the host, not a closure per connection (issue 11, 40 KB per idle exposure).
 */
export function refuseRequest(host: RefusalHost, kind: string, reason: string, fields: Record<string, unknown>, reject: (() => void) | undefined): void {
  host.ctx.metrics.refusedRequests.inc({ type: kind });
  // Addresses and hosts here are the peer's text (up to a packet, 35 KB): logged cut short.
  const logging = host.refusalLog().take();
  if (logging) {
    const logged = Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, typeof v === 'string' ? loggable(v, 256) : v]));
    host.log.info('request refused', { request: kind, reason, ...logged, ...logging });
  }
  if (!reject) return;
  if (kind !== 'direct-tcpip') return reject(); // global request failures carry no text in SSH
  const { code, text } = channelRefusal(reason, { ...fields, timeoutMs: host.ctx.config.openTimeoutMs });
  // A stable word first (protocol/channel-refusals.ts) so the CLI can tell the cases apart.
  rejectChannelOpen(host.conn, reject, code, formatRefusal(refusalWord(reason), text));
}
