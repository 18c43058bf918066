import { ConnectionListSchema, LeaseListSchema, LeaseSchema } from '../../protocol/api-types.js';
import { isLeaseId } from '../../protocol/lease-claims.js';
import { ApiError } from '../api-client.js';
import { Session } from '../session.js';
import { parseCommand } from '../args.js';
import { info, out } from '../context.js';
import { UsageError } from '../errors.js';
import { ago, printTable } from '../output.js';
import type { Command } from './command.js';

export const leases: Command = {
  name: 'leases',
  summary: 'list your leases, or revoke one',
  usage: `Usage: tunnel leases [ls] [--all] [--json]
       tunnel leases revoke ID

ls lists your active leases (--all: every lease, for admins everyone's). CONNECTED says whether
a relay holds a connection under the lease now (yes/no, as the relays report it; - when the
login may not list connections, e.g. a service token). revoke ends a lease now: every relay
closes its connections within 5 seconds.

Examples:
  tunnel leases
  tunnel leases revoke lse_0123456789abcdef0123456789abcdef`,
  async run(ctx, argv) {
    const a = parseCommand('leases', argv, { all: { type: 'boolean' } });
    const [sub = 'ls', id, ...rest] = a.positionals;
    if (sub === 'revoke' && (!id || rest.length)) throw new UsageError('leases', 'revoke takes exactly one lease id');
    if (sub === 'revoke' && !isLeaseId(id)) throw new UsageError('leases', `"${id}" is not a lease id (lse_...)`);
    if (sub !== 'ls' && sub !== 'revoke') throw new UsageError('leases', `unknown subcommand "${sub}" (ls or revoke)`);
    const s = Session.load(ctx, a.server);
    if (sub === 'ls') {
      if (id) throw new UsageError('leases', `unexpected argument "${id}"`);
      const q = a.values.all ? '?all=true' : '?active=true';
      const res = await s.call('GET', `/v1/leases${q}`, LeaseListSchema, undefined, ctx.stopSignal);
      const live = await connectedLeases(s, ctx.stopSignal);
      const connected = (id: string) => (live ? live.has(id) : null);
      printTable(
        ctx,
        a.json,
        { leases: res.leases.map((l) => ({ ...l, connected: connected(l.id) })) },
        ['ID', 'KIND', 'USER', 'WHAT', 'NODE', 'CONNECTED', 'EXPIRES', 'REVOKED'],
        res.leases.map((l) => [
          l.id,
          l.kind,
          l.user,
          l.exposure ? `${l.exposure}${l.port ? `:${l.port}` : ''}` : (l.targets ?? []).map((t) => `${t.host}:${t.port}`).join(','),
          l.node,
          live ? (live.has(l.id) ? 'yes' : 'no') : null,
          ago(l.expires_at),
          l.revoked_at ? ago(l.revoked_at) : null,
        ]),
      );
      return 0;
    }
    {
      const l = await s.call('DELETE', `/v1/leases/${id}`, LeaseSchema, undefined, ctx.stopSignal);
      if (a.json) out(ctx, JSON.stringify(l, null, 2));
      else info(ctx, `Revoked ${l.id}; relays close its connections within 5 seconds.`);
      return 0;
    }
  },
};

/**
 * The ids of leases a relay holds a live connection under (GET /v1/connections: open as last
 * reported, relay online, lease valid): the lease each holds now (`current_lease_id`, a renewal
 * in band of the one it opened with; `lease_id` from a control plane without it); undefined when
 * this login may not list connections.
 */
async function connectedLeases(s: Session, stop: AbortSignal): Promise<Set<string> | undefined> {
  try {
    const res = await s.call('GET', '/v1/connections?state=open&limit=1000', ConnectionListSchema, undefined, stop);
    return new Set(res.connections.flatMap((c) => {
      const held = c.current_lease_id === undefined ? c.lease_id : c.current_lease_id;
      return c.live && held ? [held] : [];
    }));
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return undefined;
    throw err;
  }
}
