import { NodeListSchema } from '../../protocol/api-types.js';
import { Session } from '../session.js';
import { parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { ago, printTable } from '../output.js';
import type { Command } from './command.js';

export const nodes: Command = {
  name: 'nodes',
  summary: 'list relay nodes',
  usage: `Usage: tunnel nodes [ls] [--json]

Lists relay nodes with their SSH address, whether they are online and how many exposures they hold.

Example:
  tunnel nodes ls`,
  async run(ctx, argv) {
    const a = parseCommand('nodes', argv, {});
    const [sub = 'ls', extra] = a.positionals;
    if (sub !== 'ls' || extra) throw new UsageError('nodes', `unknown subcommand "${[sub, extra].filter(Boolean).join(' ')}" (ls)`);
    const res = await Session.load(ctx, a.server).call('GET', '/v1/nodes', NodeListSchema, undefined, ctx.stopSignal);
    printTable(
      ctx,
      a.json,
      res,
      ['NAME', 'ADDRESS', 'ONLINE', 'EXPOSURES', 'EGRESS LOCK', 'LAST SEEN'],
      res.nodes.map((n) => [
        n.name,
        n.address,
        n.online ? 'yes' : 'no',
        n.active_exposures,
        n.egress_driver === 'off' ? 'OFF' : (n.egress_driver ?? '-'),
        ago(n.last_seen_at),
      ]),
    );
    return 0;
  },
};
