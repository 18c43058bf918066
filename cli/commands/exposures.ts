import type { z } from 'zod';
import { ExposureListSchema, ExposureSchema, UserNameSchema } from '../../protocol/api-types.js';
import { EXPOSURE_NAME_RE } from '../../protocol/lease-claims.js';
import { ApiError } from '../api-client.js';
import { lazySession } from '../session.js';
import { parseCommand } from '../args.js';
import { info, out, type Context } from '../context.js';
import { UsageError } from '../errors.js';
import { printTable } from '../output.js';
import type { Command } from './command.js';

/** Times allow/deny read the list and write their edit when others keep changing it meanwhile. */
const EDIT_ATTEMPTS = 3;

const USAGE = `Usage: tunnel exposures ls [--json]
       tunnel exposures show NAME [--json]
       tunnel exposures create NAME [--allow USER ...] [--node NODE]
       tunnel exposures allow NAME USER [USER ...]
       tunnel exposures deny NAME USER [USER ...]
       tunnel exposures rm NAME

Manages exposures (names Y can open) without exposing anything: what \`tunnel expose\` does for
you on X, for when X runs plain OpenSSH (\`tunnel cert NAME --expose\`). You own the exposures
you create; the owner and admins may change or delete one. allow/deny add or remove users from
who may open it (besides the owner and admins); rm deletes it and revokes its leases.
--node pins it to one relay (admins only).

Examples:
  tunnel exposures create hostx-ssh --allow alice
  tunnel cert hostx-ssh --expose --port 22 --out /etc/tunnel --ttl 86400
  tunnel exposures allow hostx-ssh bob carol
  tunnel exposures deny hostx-ssh carol
  tunnel exposures ls
  tunnel exposures rm hostx-ssh`;

export const exposures: Command = {
  name: 'exposures',
  summary: 'create, list, allow/deny users on, and delete exposures',
  usage: USAGE,
  async run(ctx, argv) {
    const a = parseCommand('exposures', argv, { allow: { type: 'string', multiple: true }, node: { type: 'string' } });
    const [sub = 'ls', name, ...users] = a.positionals;
    const needName = () => {
      if (!name) throw new UsageError('exposures', `${sub} needs an exposure NAME`);
      if (!EXPOSURE_NAME_RE.test(name)) throw new UsageError('exposures', `NAME must match [a-z0-9-]{1,63}, got "${name}"`);
      return name;
    };
    const noMore = () => {
      if (users.length) throw new UsageError('exposures', `unexpected argument "${users[0]}"`);
    };
    const flagsOnlyFor = (allowed: string) => {
      if ((a.values.allow || a.values.node !== undefined) && sub !== allowed) throw new UsageError('exposures', '--allow and --node are for create');
    };
    const checkUsers = (list: string[]) => {
      for (const u of list) if (!UserNameSchema.safeParse(u).success) throw new UsageError('exposures', `"${u}" is not a user name`);
      return list;
    };
    flagsOnlyFor('create');
    const s = lazySession(ctx, a.server);
    const path = (n: string) => `/v1/exposures/${encodeURIComponent(n)}`;

    switch (sub) {
      case 'ls': {
        if (name) throw new UsageError('exposures', `unexpected argument "${name}"`);
        const res = await s.call('GET', '/v1/exposures', ExposureListSchema, undefined, ctx.stopSignal);
        printTable(
          ctx,
          a.json,
          res,
          ['NAME', 'OWNER', 'ONLINE', 'NODE', 'PORT', 'ALLOW'],
          res.exposures.map((e) => [e.name, e.owner, e.online ? 'yes' : 'no', e.node ?? e.pinned_node, e.port, e.allow.join(',') || '-']),
        );
        return 0;
      }
      case 'show': {
        const n = needName();
        noMore();
        show(ctx, a.json, await s.call('GET', path(n), ExposureSchema, undefined, ctx.stopSignal));
        return 0;
      }
      case 'create': {
        const n = needName();
        noMore();
        const allow = checkUsers(a.values.allow ?? []);
        const e = await s.call('PUT', path(n), ExposureSchema, { allow, ...(a.values.node !== undefined ? { node: a.values.node } : {}) }, ctx.stopSignal);
        if (a.json) out(ctx, JSON.stringify(e, null, 2));
        else info(ctx, `Exposure ${e.name} (owner ${e.owner}); may open it besides the owner and admins: ${e.allow.join(', ') || 'nobody'}.`);
        return 0;
      }
      case 'allow':
      case 'deny': {
        const n = needName();
        if (!users.length) throw new UsageError('exposures', `${sub} needs at least one USER`);
        checkUsers(users);
        // The edit is of the list as read: changed by someone else before it is written (or the
        // exposure deleted), the control plane refuses it (CONFLICT) and it is made again on the
        // list as it is then, so a user someone else took off meanwhile is not put back.
        let e: z.infer<typeof ExposureSchema>;
        for (let attempt = 1; ; attempt++) {
          const cur = await s.call('GET', path(n), ExposureSchema, undefined, ctx.stopSignal);
          const next = new Set(cur.allow);
          for (const u of users) {
            if (sub === 'allow') next.add(u);
            else next.delete(u);
          }
          try {
            e = await s.call('PUT', path(n), ExposureSchema, { allow: [...next].sort(), expect_allow: cur.allow }, ctx.stopSignal);
            break;
          } catch (err) {
            if (err instanceof ApiError && err.code === 'CONFLICT' && attempt < EDIT_ATTEMPTS) continue;
            throw err;
          }
        }
        if (a.json) out(ctx, JSON.stringify(e, null, 2));
        else info(ctx, `${e.name}: may open it besides the owner and admins: ${e.allow.join(', ') || 'nobody'}.`);
        return 0;
      }
      case 'rm': {
        const n = needName();
        noMore();
        await s.call('DELETE', path(n), null, undefined, ctx.stopSignal);
        if (a.json) out(ctx, JSON.stringify({ deleted: n }));
        else info(ctx, `Deleted exposure ${n}; its leases are revoked.`);
        return 0;
      }
      default:
        throw new UsageError('exposures', `unknown subcommand "${sub}" (ls, show, create, allow, deny or rm)`);
    }
  },
};

function show(ctx: Context, json: boolean, e: z.infer<typeof ExposureSchema>): void {
  if (json) {
    out(ctx, JSON.stringify(e, null, 2));
    return;
  }
  out(ctx, `name     ${e.name}`);
  out(ctx, `owner    ${e.owner}`);
  out(ctx, `allow    ${e.allow.join(', ') || '-'}`);
  out(ctx, `online   ${e.online ? `yes, on ${e.node ?? '?'} port ${e.port ?? '?'}` : 'no'}`);
  out(ctx, `pinned   ${e.pinned_node ?? '-'}`);
  out(ctx, `created  ${e.created_at}`);
}
