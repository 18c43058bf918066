import { connect as netConnect } from 'node:net';
import { ExposureSchema, UserNameSchema } from '../../protocol/api-types.js';
import { EXPOSURE_NAME_RE } from '../../protocol/lease-claims.js';
import { ApiError } from '../api-client.js';
import { Session } from '../session.js';
import { parseCommand, parseHostPort, parseTtl } from '../args.js';
import { info, out, type Context } from '../context.js';
import { terminalText } from '../terminal-text.js';
import { CliError, STOPPED, UsageError } from '../errors.js';
import { RECONNECT_LINE_EVERY_MS, repeatsQuieted } from '../output.js';
import { LeaseSupervisor } from '../ssh/lease-session.js';
import { joinSocketAndChannel } from '../ssh/pipe.js';
import { windowAdopter } from '../ssh/windows.js';
import { resolveWindowBudget } from '../settings.js';
import type { Command } from './command.js';

export const expose: Command = {
  name: 'expose',
  summary: 'publish a local TCP service (on X) under a name; runs until stopped',
  usage: `Usage: tunnel expose [HOST:]PORT --name NAME [--allow USER ... [--replace-allow]] [--json]

Publishes the TCP service at HOST:PORT (default host 127.0.0.1) as exposure NAME on a relay.
Creates the exposure if needed (--allow sets who may open it besides you and admins; an existing
exposure keeps its allow list, which an admin may have edited, unless --replace-allow), makes a
key in memory, gets an expose lease, connects to the relay with its host key pinned from the
lease, and serves each incoming connection by dialing HOST:PORT. It renews the lease in band
before it expires, notices a dead relay within about 30 seconds, and reconnects with backoff.
Stop it with Ctrl-C or SIGTERM (exit 0, whenever the stop comes). It stops by itself, with one line saying why, when its login
ends (tunnel logout, its service token revoked or expired: exit 3) or its lease is revoked or no
longer permitted (exit 4), or when the control plane refuses its lease for a reason that asking
again cannot mend (a client error other than a rate limit or X being offline: exit 1).
--json prints one JSON event per line on stdout.

Options:
  --name NAME      exposure name, [a-z0-9-]{1,63}
  --allow USER     a user who may open it (repeat for more), when the exposure is created
  --replace-allow  also replace an existing exposure's allow list with the --allow users
  --ttl SECS       lease lifetime to ask for (default: the server's, 1 hour); renewed before it ends
  --max-connections N
                   connections to HOST:PORT open at once, at most (default 1024); the relay's
                   further channels are refused, so a relay cannot make this host open sockets
                   without end
  --server URL     only check that the login is to this control plane (exit 3 when not)

Examples:
  tunnel expose 22 --name hostx-ssh --allow alice
  tunnel expose 192.168.1.20:8080 --name printer-web`,
  async run(ctx, argv) {
    const a = parseCommand('expose', argv, {
      name: { type: 'string' },
      allow: { type: 'string', multiple: true },
      'replace-allow': { type: 'boolean' },
      ttl: { type: 'string' },
      'max-connections': { type: 'string' },
    });
    const ttl = parseTtl('expose', a.values.ttl);
    const maxConnections = parseMaxConnections(a.values['max-connections']);
    if (a.positionals.length !== 1) throw new UsageError('expose', 'give exactly one [HOST:]PORT to expose');
    const target = parseHostPort('expose', 'the target', a.positionals[0]!);
    const name = a.values.name;
    if (!name) throw new UsageError('expose', '--name NAME is required');
    if (!EXPOSURE_NAME_RE.test(name)) throw new UsageError('expose', `--name must match [a-z0-9-]{1,63}, got "${name}"`);
    // Checked here whether or not the exposure exists (and so whether the list is sent at all).
    for (const u of a.values.allow ?? []) if (!UserNameSchema.safeParse(u).success) throw new UsageError('expose', `--allow "${u.slice(0, 80)}" is not a user name`);
    if (a.values['replace-allow'] && !a.values.allow) throw new UsageError('expose', '--replace-allow needs --allow USER (the new list)');
    const adaptWindow = windowAdopter(resolveWindowBudget(ctx));
    const session = Session.load(ctx, a.server);

    try {
      await ensureExposure(ctx, session, name, a.values.allow, a.values['replace-allow'] === true);
    } catch (err) {
      // It runs until stopped: a stop is its end, also before it got going (exit 0, as for a
      // supervisor's stop: systemd counts any other code after its SIGTERM as a failure).
      if (err instanceof CliError && err.code === STOPPED) return 0;
      throw err;
    }
    const events = a.json ? (e: Record<string, unknown>) => out(ctx, JSON.stringify({ time: new Date().toISOString(), ...e })) : undefined;
    const status = new StatusLine(ctx, !a.json && ctx.stderr.isTTY === true);
    let active = 0;
    let bytes = 0;
    /** Connections to the target being dialed or joined: at most maxConnections. */
    let inUse = 0;
    /** Whether the refusal at the cap was said since the count was last below it (one line per episode). */
    let refusalSaid = false;

    const sup = new LeaseSupervisor(session, {
      request: { kind: 'expose', exposure: name, port: target.port, ...(ttl ? { ttl_seconds: ttl } : {}) },
      setup: ({ client }) =>
        new Promise<void>((resolve, reject) => {
          client.forwardIn(name, target.port, (err) => (err ? reject(new Error(`the relay refused to bind ${name}:${target.port}`)) : resolve()));
        }),
    });
    // The same reason again (the control plane or every relay down for long) is a line a minute, not one per retry.
    const quiet = repeatsQuieted(RECONNECT_LINE_EVERY_MS);
    sup.on('connected', ({ client, lease }) => {
      quiet.reset();
      client.on('tcp connection', (_info, accept, reject) => {
        if (inUse >= maxConnections) {
          reject();
          events?.({ event: 'channel_refused', reason: 'max_connections', max_connections: maxConnections });
          if (!events && !refusalSaid) info(ctx, `tunnel expose: ${maxConnections} connections open (--max-connections); refusing more until one closes`);
          refusalSaid = true;
          return;
        }
        inUse++;
        const release = () => {
          inUse--;
          if (inUse < maxConnections) refusalSaid = false;
        };
        const sock = netConnect({ host: target.host, port: target.port, allowHalfOpen: true });
        // Nothing is read before the join, which can then read straight into packets (cli/ssh/packet-reads.ts).
        sock.pause();
        let connected = false;
        sock.once('connect', () => {
          connected = true;
          const channel = accept();
          adaptWindow(client, channel, true);
          active++;
          events?.({ event: 'channel_open', active });
          joinSocketAndChannel(sock, channel, (up, down) => {
            release();
            active--;
            bytes += up + down;
            events?.({ event: 'channel_close', active, bytes_from_service: up, bytes_to_service: down });
          });
        });
        sock.once('error', (err) => {
          // A dial failure (net clears `connecting` before emitting it, so track 'connect'):
          // refuse the channel at once, so Y hears "service unreachable" instead of a timeout.
          if (connected) return;
          release();
          events?.({ event: 'dial_failed', target: `${target.host}:${target.port}`, error: (err as NodeJS.ErrnoException).code });
          if (!events) info(ctx, `tunnel expose: cannot reach ${target.host}:${target.port} (${(err as NodeJS.ErrnoException).code})`);
          reject();
        });
      });
      events?.({ event: 'connected', relay: lease.relay.name, address: lease.relay.address, lease: lease.lease.id, expires_at: lease.lease.expires_at });
      if (!events && !status.enabled) info(ctx, `Exposing ${target.host}:${target.port} as ${name} through relay ${lease.relay.name} (${lease.relay.address}).`);
    });
    sup.on('renewed', (lease) => events?.({ event: 'renewed', lease: lease.lease.id, expires_at: lease.lease.expires_at }));
    sup.on('disconnected', ({ reason, retryInMs }) => {
      events?.({ event: 'disconnected', reason, retry_in_ms: retryInMs });
      const line = `tunnel expose: ${reason}; reconnecting${retryInMs ? ` in ${(retryInMs / 1000).toFixed(1)}s` : ''}`;
      if (!events && quiet.print(line)) info(ctx, line);
    });
    status.start(() => {
      const c = sup.current;
      return c ? `${name} → ${target.host}:${target.port} via ${c.lease.relay.name} · lease until ${c.lease.lease.expires_at.slice(11, 19)} · ${active} active · ${formatBytes(bytes)}` : `${name}: connecting...`;
    });
    try {
      await sup.run(ctx.stopSignal);
    } finally {
      status.stop();
    }
    events?.({ event: 'stopped' });
    return 0;
  },
};

/**
 * Creates the exposure when missing, with --allow. An existing exposure's allow list belongs to
 * its owner and admins: a restart must not undo their edit, so --allow replaces it only with
 * --replace-allow (issue 9). Ctrl-C cancels its requests (a control plane that does not answer).
 */
async function ensureExposure(ctx: Context, session: Session, name: string, allow: string[] | undefined, replace: boolean): Promise<void> {
  let current: { allow: string[] } | undefined;
  try {
    current = await session.call('GET', `/v1/exposures/${name}`, ExposureSchema, undefined, ctx.stopSignal);
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 'NOT_FOUND')) throw err;
  }
  if (!current || (allow && replace)) {
    await session.call('PUT', `/v1/exposures/${name}`, ExposureSchema, { allow: allow ?? [] }, ctx.stopSignal);
    return;
  }
  const same = allow && allow.length === current.allow.length && allow.every((u) => current.allow.includes(u));
  if (allow && !same) {
    info(ctx, `tunnel expose: ${name} exists; keeping its allow list (${current.allow.join(', ') || 'nobody else'}); --replace-allow replaces it`);
  }
}

function formatBytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : n < 1 << 30 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / (1 << 30)).toFixed(2)} GiB`;
}

/** A one-line status on a terminal's stderr, redrawn every second. */
class StatusLine {
  readonly enabled: boolean;
  #timer: NodeJS.Timeout | undefined;
  readonly #ctx: Context;
  constructor(ctx: Context, enabled: boolean) {
    this.#ctx = ctx;
    this.enabled = enabled;
  }
  start(render: () => string): void {
    if (!this.enabled) return;
    this.#timer = setInterval(() => this.#ctx.stderr.write(`\r\x1b[2K${terminalText(render())}`), 1000);
    this.#timer.unref();
  }
  stop(): void {
    if (!this.#timer) return;
    clearInterval(this.#timer);
    this.#ctx.stderr.write('\r\x1b[2K');
  }
}

/** `--max-connections N`: 1 to 65535 (default 1024). */
function parseMaxConnections(v: string | undefined): number {
  if (v === undefined) return DEFAULT_MAX_CONNECTIONS;
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new UsageError('expose', `--max-connections must be a whole number from 1 to 65535, got "${v}"`);
  return Number(v);
}

/** Connections one `tunnel expose` serves at once by default (a relay allows 256 channels per connection by default). */
export const DEFAULT_MAX_CONNECTIONS = 1024;
