import { ExposureListSchema } from '../../protocol/api-types.js';
import { Session } from '../session.js';
import { parseCommand } from '../args.js';
import { printTable } from '../output.js';
import type { Command } from './command.js';

export const ls: Command = {
  name: 'ls',
  summary: 'list the exposures you own or may open',
  usage: `Usage: tunnel ls [--json]

Lists exposures you own or are allowed to open, with where they are online.

Example:
  tunnel ls`,
  async run(ctx, argv) {
    const a = parseCommand('ls', argv, {});
    const s = Session.load(ctx, a.server);
    const res = await s.call('GET', '/v1/exposures', ExposureListSchema, undefined, ctx.stopSignal);
    printTable(
      ctx,
      a.json,
      res,
      ['NAME', 'OWNER', 'ONLINE', 'NODE', 'PORT', 'ALLOW'],
      res.exposures.map((e) => [e.name, e.owner, e.online ? 'yes' : 'no', e.node, e.port, e.allow.join(',') || '-']),
    );
    return 0;
  },
};
