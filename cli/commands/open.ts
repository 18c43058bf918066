import { createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Client } from 'ssh2';
import { EXPOSURE_NAME_RE } from '../../protocol/lease-claims.js';
import { Session } from '../api-client.js';
import { parseCommand, parseHostPort, parseTtl } from '../args.js';
import { info, out, type Context } from '../context.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { LeaseSupervisor, type Connected, type LeaseRequest } from '../ssh/lease-session.js';
import { joinSocketAndChannel } from '../ssh/pipe.js';
import type { Command } from './command.js';

const WAIT_FOR_RELAY_MS = 15_000;

export const open: Command = {
  name: 'open',
  summary: 'reach an exposure (on Y): a local port, or stdio for ssh ProxyCommand',
  usage: `Usage: tunnel open NAME[:PORT] [--listen [HOST:]PORT] [--json]
       tunnel open NAME[:PORT] --stdio

Opens exposure NAME through its relay. With --listen (default 127.0.0.1 and a free port) it
serves a local port: every local connection is carried over one SSH connection to the relay,
which is renewed before its lease expires and re-established when it drops. With --stdio it
carries one connection over standard input and output, for ssh's ProxyCommand. PORT is the
exposure's port (default: the one X exposed). --ttl SECS asks for a lease lifetime (default:
the server's, 10 minutes); the lease is renewed in band before it ends either way.

Examples:
  tunnel open hostx-ssh --listen 127.0.0.1:2200      # then: ssh -p 2200 user@127.0.0.1
  ssh -o ProxyCommand='tunnel open --stdio %h' user@hostx-ssh`,
  async run(ctx, argv) {
    const a = parseCommand('open', argv, { listen: { type: 'string' }, stdio: { type: 'boolean' }, ttl: { type: 'string' } });
    const ttl = parseTtl('open', a.values.ttl);
    if (a.positionals.length !== 1) throw new UsageError('open', 'give exactly one exposure NAME');
    const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(a.positionals[0]!);
    const name = m?.[1] ?? '';
    if (!EXPOSURE_NAME_RE.test(name)) throw new UsageError('open', `exposure name must match [a-z0-9-]{1,63}, got "${a.positionals[0]}"`);
    if (a.values.stdio && a.values.listen) throw new UsageError('open', '--stdio and --listen exclude each other');
    const listen = a.values.stdio ? undefined : parseHostPort('open', '--listen', a.values.listen ?? '127.0.0.1:0', { allowZero: true });
    const explicitPort = m?.[2] ? Number(m[2]) : undefined;
    if (explicitPort !== undefined && (explicitPort < 1 || explicitPort > 65535)) throw new UsageError('open', 'PORT must be from 1 to 65535');
    const session = Session.load(ctx, a.server);
    // Without PORT: the port X has bound, as the lease reports it (22 when unknown).
    const portOf = (c: Connected) => explicitPort ?? c.lease.lease.port ?? 22;

    const request = { kind: 'open' as const, exposure: name, ...(ttl ? { ttl_seconds: ttl } : {}) };
    if (a.values.stdio) return stdio(ctx, session, request, portOf);

    const sup = new LeaseSupervisor(session, { request });
    const events = a.json ? (e: Record<string, unknown>) => out(ctx, JSON.stringify({ time: new Date().toISOString(), ...e })) : undefined;
    const server = createServer({ allowHalfOpen: true }, (sock) => void serveLocal(sup, sock, name, portOf, events));
    server.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new CliError(EXIT.ERROR, `cannot listen on ${listen!.host}:${listen!.port} (${err.code})`)),
      );
      server.listen(listen!.port, listen!.host, resolve);
    });
    const addr = server.address() as { address: string; port: number };
    events?.({ event: 'listening', address: `${addr.address}:${addr.port}`, exposure: name });
    if (!events) info(ctx, `Listening on ${addr.address}:${addr.port} for ${name} (Ctrl-C to stop).`);
    sup.on('connected', ({ lease }) => {
      events?.({ event: 'connected', relay: lease.relay.name, lease: lease.lease.id, expires_at: lease.lease.expires_at });
    });
    sup.on('renewed', (lease) => events?.({ event: 'renewed', lease: lease.lease.id, expires_at: lease.lease.expires_at }));
    sup.on('disconnected', ({ reason, retryInMs }) => {
      events?.({ event: 'disconnected', reason, retry_in_ms: retryInMs });
      if (!events) info(ctx, `tunnel open: ${reason}; reconnecting`);
    });
    try {
      await sup.run(ctx.stopSignal);
    } finally {
      server.close();
    }
    return 0;
  },
};

/** The live connection, waiting (bounded) while the supervisor reconnects. */
async function connection(sup: LeaseSupervisor): Promise<Connected> {
  if (sup.current) return sup.current;
  const timeout = AbortSignal.timeout(WAIT_FOR_RELAY_MS);
  const [c] = (await once(sup, 'connected', { signal: timeout }).catch(() => {
    throw new CliError(EXIT.UNREACHABLE, 'no connection to the relay');
  })) as [Connected];
  return c;
}

function forwardOut(client: Client, srcPort: number, name: string, port: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    client.forwardOut('127.0.0.1', srcPort, name, port, (err, ch) => (err ? reject(err) : resolve(ch)));
  });
}

async function serveLocal(sup: LeaseSupervisor, sock: Socket, name: string, portOf: (c: Connected) => number, events?: (e: Record<string, unknown>) => void) {
  sock.on('error', () => {});
  try {
    const c = await connection(sup);
    const ch = await forwardOut(c.client, sock.remotePort ?? 0, name, portOf(c));
    events?.({ event: 'channel_open' });
    joinSocketAndChannel(sock, ch, (up, down) => events?.({ event: 'channel_close', bytes_to_exposure: up, bytes_from_exposure: down }));
  } catch (err) {
    events?.({ event: 'channel_failed', error: (err as Error).message });
    sock.destroy();
  }
}

async function stdio(ctx: Context, session: Session, request: LeaseRequest & { exposure: string }, portOf: (c: Connected) => number): Promise<number> {
  const name = request.exposure;
  const sup = new LeaseSupervisor(session, { request, once: true });
  let channelDone: Promise<void> = Promise.resolve();
  sup.once('connected', (c) => {
    const port = portOf(c);
    channelDone = forwardOut(c.client, 0, name, port).then(
      (ch) =>
        new Promise<void>((resolve) => {
          ctx.stdin.pipe(ch, { end: false });
          ch.pipe(ctx.stdout, { end: false });
          ctx.stdin.once('end', () => ch.end());
          ch.once('close', () => {
            ctx.stdin.unpipe(ch);
            sup.stop();
            resolve();
          });
        }),
      (err: Error) => {
        sup.stop();
        throw new CliError(EXIT.ERROR, `the relay refused ${name}:${port}: ${err.message} (is it exposed on that port?)`);
      },
    );
  });
  await sup.run(ctx.stopSignal);
  await channelDone;
  return 0;
}
