import { LeaseListSchema, LeaseSchema } from '../../protocol/api-types.js';
import { Session } from '../api-client.js';
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

ls lists your active leases (--all: every lease, for admins everyone's). revoke ends a lease
now: every relay closes its connections within 5 seconds.

Examples:
  tunnel leases
  tunnel leases revoke lse_0123456789abcdef0123456789abcdef`,
  async run(ctx, argv) {
    const a = parseCommand('leases', argv, { all: { type: 'boolean' } });
    const [sub = 'ls', id, ...rest] = a.positionals;
    if (sub === 'revoke' && (!id || rest.length)) throw new UsageError('leases', 'revoke takes exactly one lease id');
    if (sub === 'revoke' && !/^lse_[a-f0-9]{32}$/.test(id!)) throw new UsageError('leases', `"${id}" is not a lease id (lse_...)`);
    if (sub !== 'ls' && sub !== 'revoke') throw new UsageError('leases', `unknown subcommand "${sub}" (ls or revoke)`);
    const s = Session.load(ctx, a.server);
    if (sub === 'ls') {
      if (id) throw new UsageError('leases', `unexpected argument "${id}"`);
      const q = a.values.all ? '?all=true' : '?active=true';
      const res = await s.call('GET', `/v1/leases${q}`, LeaseListSchema);
      printTable(
        ctx,
        a.json,
        res,
        ['ID', 'KIND', 'USER', 'WHAT', 'NODE', 'EXPIRES', 'REVOKED'],
        res.leases.map((l) => [
          l.id,
          l.kind,
          l.user,
          l.exposure ? `${l.exposure}${l.port ? `:${l.port}` : ''}` : (l.targets ?? []).map((t) => `${t.host}:${t.port}`).join(','),
          l.node,
          ago(l.expires_at),
          l.revoked_at ? ago(l.revoked_at) : null,
        ]),
      );
      return 0;
    }
    {
      const l = await s.call('DELETE', `/v1/leases/${id}`, LeaseSchema);
      if (a.json) out(ctx, JSON.stringify(l, null, 2));
      else info(ctx, `Revoked ${l.id}; relays close its connections within 5 seconds.`);
      return 0;
    }
  },
};
