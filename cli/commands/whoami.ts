import { MeSchema } from '../../protocol/api-types.js';
import { Session } from '../session.js';
import { parseCommand } from '../args.js';
import { out, type Context } from '../context.js';
import type { Command } from './command.js';

export const whoami: Command = {
  name: 'whoami',
  summary: 'show who you are logged in as',
  usage: `Usage: tunnel whoami [--json]

Shows the user (and role) of the stored login and the control plane it belongs to.

Example:
  tunnel whoami`,
  async run(ctx: Context, argv: string[]) {
    const a = parseCommand('whoami', argv, {});
    const s = Session.load(ctx, a.server);
    const me = await s.call('GET', '/v1/me', MeSchema, undefined, ctx.stopSignal);
    if (a.json) out(ctx, JSON.stringify({ ...me, server: s.api.server }, null, 2));
    else out(ctx, `${me.name} (${me.role}${me.scopes ? `, service token: ${me.scopes.join(' ')}` : ''}) at ${s.api.server}`);
    return 0;
  },
};
