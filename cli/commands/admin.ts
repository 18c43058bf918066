import {
  EgressTargetListSchema,
  EgressTargetSchema,
  EnrollmentTokenCreatedSchema,
  ServiceTokenCreatedSchema,
  ServiceTokenListSchema,
  ServiceTokenSchema,
  UserListSchema,
  UserNameSchema,
  UserSchema,
} from '../../protocol/api-types.js';
import { parseHostPort } from '../../protocol/host-port.js';
import { lazySession } from '../session.js';
import { parseCommand } from '../args.js';
import { info, out } from '../context.js';
import { UsageError } from '../errors.js';
import { readLine } from '../prompt.js';
import { printTable } from '../output.js';
import type { Command } from './command.js';

/** Where setup-host.sh puts the relay's settings, read by infra/systemd/tunnel-node.service. */
const NODE_ENV_FILE = '/etc/tunnel/node.env';

const USAGE = `Usage: tunnel admin users ls | add NAME [--admin] [--password] | disable NAME
       tunnel admin service-tokens ls | create NAME --scope SCOPE... [--user NAME] [--ttl SECS] | revoke ID
       tunnel admin enroll-token NODE_NAME [--ttl SECS] [--advertise HOST:PORT]
       tunnel admin egress ls | put NAME --node NODE --host HOST --port PORT [--allow USER...] | rm NAME

Administration. Members may create, list and revoke service tokens of their own and list the
egress targets they may use; everything else needs the admin role. A service token may do only
what its scopes say (NAME may be *):
  expose:NAME    see exposure NAME, create it if missing, expose it (tunnel expose)
  open:NAME      see exposure NAME, open it (tunnel open)
  manage:NAME    see exposure NAME, change its allow list, delete it
  egress:TARGET  see and use egress target TARGET
and besides read /v1/me and see or revoke the leases it issued itself; never more than its user
may do. Revoking a token revokes the leases issued through it.
enroll-token prints a one-time token for a new relay on stdout, and on stderr the commands that
enroll it: as root with the systemd unit (the settings into /etc/tunnel/node.env, then systemctl),
or tunnel-node in the foreground as another user. --advertise is the host:port clients will use
to reach that relay; without it the commands say RELAY_HOST:2222, a placeholder to replace.
Exposures have their own command: tunnel exposures --help.
"add --password" reads the new user's password from the terminal or standard input.

Examples:
  tunnel admin users add alice --password
  tunnel admin service-tokens create hostx --scope expose:hostx-ssh
  tunnel admin enroll-token relay-1 --advertise relay1.example.com:2222
  tunnel admin egress put db --node relay-1 --host 10.0.0.5 --port 5432 --allow alice`;

export const admin: Command = {
  name: 'admin',
  summary: 'users, service tokens, node enrollment tokens and egress targets',
  usage: USAGE,
  async run(ctx, argv) {
    const a = parseCommand('admin', argv, {
      admin: { type: 'boolean' },
      password: { type: 'boolean' },
      scope: { type: 'string', multiple: true },
      user: { type: 'string' },
      ttl: { type: 'string' },
      node: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      allow: { type: 'string', multiple: true },
      advertise: { type: 'string' },
    });
    const [group, sub, name, ...rest] = a.positionals;
    if (rest.length) throw new UsageError('admin', `unexpected argument "${rest[0]}"`);
    const s = lazySession(ctx, a.server);
    const ttl = a.values.ttl === undefined ? undefined : intArg('--ttl', a.values.ttl);
    const need = (v: string | undefined, what: string) => {
      if (!v) throw new UsageError('admin', `${group} ${sub} needs ${what}`);
      return v;
    };
    const done = (data: unknown, line: string) => (a.json ? out(ctx, JSON.stringify(data, null, 2)) : info(ctx, line));

    // `enroll-token NODE` takes its argument where the other groups have a subcommand.
    switch (group === 'enroll-token' ? group : `${group} ${sub ?? ''}`.trim()) {
      case 'users ls':
      case 'users': {
        const r = await s.call('GET', '/v1/users', UserListSchema, undefined, ctx.stopSignal);
        printTable(ctx, a.json, r, ['NAME', 'ROLE', 'DISABLED'], r.users.map((u) => [u.name, u.role, u.disabled ? 'yes' : 'no']));
        return 0;
      }
      case 'users add': {
        const userName = need(name, 'a NAME');
        if (!UserNameSchema.safeParse(userName).success) throw new UsageError('admin', `NAME must match [a-z][a-z0-9._-]{0,63}, got "${userName.slice(0, 80)}"`);
        s.load(); // not logged in: said before the password is asked for
        const password = a.values.password ? await readLine(ctx, 'Password for the new user: ', true) : undefined;
        const u = await s.call('POST', '/v1/users', UserSchema, {
          name: userName,
          role: a.values.admin ? 'admin' : 'member',
          ...(password ? { password } : {}),
        }, ctx.stopSignal);
        done(u, `Created ${u.role} ${u.name}.`);
        return 0;
      }
      case 'users disable': {
        const u = await s.call('DELETE', `/v1/users/${encodeURIComponent(need(name, 'a NAME'))}`, UserSchema, undefined, ctx.stopSignal);
        done(u, `Disabled ${u.name}; their sessions, service tokens and leases are revoked.`);
        return 0;
      }
      case 'service-tokens ls':
      case 'service-tokens': {
        const r = await s.call('GET', '/v1/service-tokens', ServiceTokenListSchema, undefined, ctx.stopSignal);
        printTable(
          ctx,
          a.json,
          r,
          ['ID', 'NAME', 'USER', 'SCOPES', 'EXPIRES', 'REVOKED'],
          r.service_tokens.map((t) => [t.id, t.name, t.user, t.scopes.join(' '), t.expires_at, t.revoked ? 'yes' : 'no']),
        );
        return 0;
      }
      case 'service-tokens create': {
        if (!a.values.scope?.length) throw new UsageError('admin', 'service-tokens create needs at least one --scope (e.g. expose:hostx-ssh)');
        const t = await s.call('POST', '/v1/service-tokens', ServiceTokenCreatedSchema, {
          name: need(name, 'a NAME'),
          scopes: a.values.scope,
          ...(a.values.user ? { user: a.values.user } : {}),
          ...(ttl ? { ttl_seconds: ttl } : {}),
        }, ctx.stopSignal);
        if (a.json) out(ctx, JSON.stringify(t, null, 2));
        else {
          info(ctx, `Created service token ${t.id} for ${t.user} (${t.scopes.join(' ')}). It is shown only now:`);
          out(ctx, t.token);
        }
        return 0;
      }
      case 'service-tokens revoke': {
        const t = await s.call('DELETE', `/v1/service-tokens/${encodeURIComponent(need(name, 'an ID'))}`, ServiceTokenSchema, undefined, ctx.stopSignal);
        done(t, `Revoked service token ${t.id}.`);
        return 0;
      }
      case 'enroll-token': {
        // `tunnel admin enroll-token NAME`: the name arrives as `sub`.
        const nodeName = need(sub, 'a NODE_NAME');
        if (name) throw new UsageError('admin', `unexpected argument "${name}"`);
        // Without --advertise the printed command carries a placeholder for the operator to edit; it is
        // not a host:port (RELAY_HOST has an underscore), so only a given --advertise is checked.
        const given = a.values.advertise;
        if (given !== undefined && !parseHostPort(given, { allowZero: true })) throw new UsageError('admin', `--advertise must be host:port, got "${given}"`);
        const advertise = given ?? 'RELAY_HOST:2222';
        const t = await s.call('POST', '/v1/nodes/enrollment-tokens', EnrollmentTokenCreatedSchema, {
          name: nodeName,
          ...(ttl ? { ttl_seconds: ttl } : {}),
        }, ctx.stopSignal);
        // The token goes in the environment, not argv, so other local users cannot read it from ps.
        // The relay verifies the control plane the way this CLI does (a pin is stored at enrollment).
        const { api } = s.load();
        const trust = api.trust;
        const verify = trust.caPin ? ` --ca-pin ${trust.caPin}` : trust.caFile ? ' --ca-file CA_FILE' : '';
        const insecure = trust.insecureHttp && api.server.startsWith('http:') ? ' --insecure-http' : '';
        // tunnel-node refuses to start as root (its egress lock would filter all of root's traffic),
        // and the deploy guide's operator is root with the systemd unit: the settings go in the
        // unit's environment file (what docs/deploy.md step 4 writes) and systemd starts it as tunnel-node.
        const settings = [
          `TUNNEL_CONTROL_URL=${api.server}`,
          ...(trust.caPin ? [`TUNNEL_CA_PIN=${trust.caPin}`] : trust.caFile ? ['TUNNEL_CA_FILE=CA_FILE'] : []),
          ...(insecure ? ['TUNNEL_INSECURE_HTTP=1'] : []),
          `TUNNEL_ADVERTISE=${advertise}`,
          `TUNNEL_ENROLL_TOKEN=${t.token}`,
        ];
        const systemdCommand = `printf '%s\\n' ${settings.join(' ')} > ${NODE_ENV_FILE} && systemctl enable --now tunnel-node`;
        const command = `TUNNEL_ENROLL_TOKEN=${t.token} tunnel-node --control-url ${api.server}${verify}${insecure} --advertise ${advertise}`;
        if (a.json) out(ctx, JSON.stringify({ ...t, systemd_command: systemdCommand, command }, null, 2));
        else {
          info(ctx, `One-time enrollment token for relay ${t.name} (expires ${t.expires_at}):`);
          out(ctx, t.token);
          const placeholder = given ? '' : ' (replace RELAY_HOST:2222 with the host:port clients will use)';
          info(ctx, `On the relay host, as root, with the package installed and setup-host.sh node run (docs/deploy.md, steps 1 and 4), enroll and start it with${placeholder}:`);
          info(ctx, `  ${systemdCommand}`);
          info(ctx, `and once \`tunnel nodes wait ${t.name}\` says it is online, remove the TUNNEL_ENROLL_TOKEN line from ${NODE_ENV_FILE}.`);
          info(ctx, 'Or, without systemd, as a user other than root (tunnel-node refuses to start as root), in the foreground:');
          info(ctx, `  ${command}`);
        }
        return 0;
      }
      case 'egress ls':
      case 'egress': {
        const r = await s.call('GET', '/v1/egress-targets', EgressTargetListSchema, undefined, ctx.stopSignal);
        printTable(ctx, a.json, r, ['NAME', 'NODE', 'TARGET', 'ALLOW'], r.targets.map((t) => [t.name, t.node, `${t.host}:${t.port}`, t.allow.join(',') || '-']));
        return 0;
      }
      case 'egress put': {
        const t = await s.call('PUT', `/v1/egress-targets/${encodeURIComponent(need(name, 'a NAME'))}`, EgressTargetSchema, {
          node: need(a.values.node, '--node'),
          host: need(a.values.host, '--host'),
          port: intArg('--port', need(a.values.port, '--port')),
          allow: a.values.allow ?? [],
        }, ctx.stopSignal);
        done(t, `Egress target ${t.name}: ${t.host}:${t.port} on ${t.node}.`);
        return 0;
      }
      case 'egress rm': {
        await s.call('DELETE', `/v1/egress-targets/${encodeURIComponent(need(name, 'a NAME'))}`, null, undefined, ctx.stopSignal);
        done({ deleted: name }, `Deleted egress target ${name}.`);
        return 0;
      }
      default:
        throw new UsageError('admin', `unknown admin command "${[group, sub].filter(Boolean).join(' ')}"`);
    }
  },
};

function intArg(flag: string, v: string): number {
  if (!/^\d{1,9}$/.test(v)) throw new UsageError('admin', `${flag} must be a whole number, got "${v}"`);
  return Number(v);
}
