import { createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Client } from 'ssh2';
import { TargetNameSchema } from '../../protocol/api-types.js';
import { parseRefusal } from '../../protocol/channel-refusals.js';
import { EXPOSURE_NAME_RE } from '../../protocol/lease-claims.js';
import { Session } from '../session.js';
import { parseCommand, parseHostPort, parseTtl } from '../args.js';
import { info, out, type Context } from '../context.js';
import { CliError, EXIT, STOPPED, UsageError } from '../errors.js';
import { CONNECTION_CLOSED, openWhenOnline, RELAY_BUSY, retryPlan } from './open-when-online.js';
import { clientSocket } from '../../node/ssh2-internals.js';
import { RECONNECT_LINE_EVERY_MS, repeatsQuieted } from '../output.js';
import { peerText } from '../terminal-text.js';
import { LeaseSupervisor, type Connected, type LeaseRequest } from '../ssh/lease-session.js';
import { localWait } from '../ssh/local-wait.js';
import { joinSocketAndChannel } from '../ssh/pipe.js';
import { holdChannelWrites } from '../ssh/send-backpressure.js';
import { windowAdopter, type AdaptWindow } from '../ssh/windows.js';
import { resolveWindowBudget } from '../settings.js';
import type { Command } from './command.js';

const WAIT_FOR_RELAY_MS = 15_000;

export const open: Command = {
  name: 'open',
  summary: 'reach an exposure or an egress target (on Y): a local port, or stdio for ssh ProxyCommand',
  usage: `Usage: tunnel open NAME[:PORT] [--listen [HOST:]PORT] [--json]
       tunnel open NAME[:PORT] --stdio
       tunnel open --egress TARGET [--listen [HOST:]PORT | --stdio] [--json]

Opens exposure NAME through its relay. With --listen (default 127.0.0.1 and a free port) it
serves a local port: every local connection is carried over one SSH connection to the relay,
which is renewed before its lease expires and re-established when it drops (it stops, with one
line saying why, when the control plane refuses the lease for a reason that asking again cannot
mend: not logged in or not permitted, an unknown name, any client error other than a rate limit
or the exposure being offline). A local connection
that comes while there is no connection to the relay, or while the exposure is offline (X
reconnecting) or the relay busy, waits for it, at most 15 s, and is then closed; one whose client
goes away meanwhile (closes without sending anything, or resets) stops waiting at once. With
--stdio it carries one connection over standard input and output, for ssh's ProxyCommand. PORT
is the exposure's port (default: the one X exposed). --ttl SECS asks for a lease lifetime (default:
the server's, 10 minutes); the lease is renewed in band before it ends either way.

--egress TARGET does the same for an egress target an admin defined (tunnel admin egress ls):
the relay connects to the target's host:port on its own network, for users the target allows.

Ctrl-C or SIGTERM stops it: exit 0 (with --stdio: 130 before the connection is open, 0 after).
Exit codes besides the usual (0 ok, 1 error, 2 usage, 3 not logged in, 4 not permitted,
5 control plane or relay unreachable, with --stdio also the relay connection lost mid-session;
130 stopped):
  6  the exposure is offline (no tunnel expose is connected for it)
  7  X is connected but could not connect to its service (or, with --egress, the relay could
     not connect to the target)
  8  X exposes the name on another port than the one asked for

Examples:
  tunnel open hostx-ssh --listen 127.0.0.1:2200      # then: ssh -p 2200 user@127.0.0.1
  ssh -o ProxyCommand='tunnel open --stdio %h' user@hostx-ssh
  tunnel open --egress lan-db --listen 127.0.0.1:5432`,
  async run(ctx, argv) {
    const a = parseCommand('open', argv, {
      listen: { type: 'string' },
      stdio: { type: 'boolean' },
      ttl: { type: 'string' },
      egress: { type: 'string' },
    });
    const ttl = parseTtl('open', a.values.ttl);
    if (a.values.stdio && a.values.listen) throw new UsageError('open', '--stdio and --listen exclude each other');
    const listen = a.values.stdio ? undefined : parseHostPort('open', '--listen', a.values.listen ?? '127.0.0.1:0', { allowZero: true });
    let request: LeaseRequest;
    let label: string;
    let destOf: (c: Connected) => Dest;
    if (a.values.egress !== undefined) {
      const target = a.values.egress;
      if (a.positionals.length) throw new UsageError('open', 'give either an exposure NAME or --egress TARGET, not both');
      if (!TargetNameSchema.safeParse(target).success) throw new UsageError('open', `--egress TARGET must match [a-z0-9][a-z0-9-]{0,62}, got "${target}"`);
      request = { kind: 'egress', targets: [target], ...(ttl ? { ttl_seconds: ttl } : {}) };
      label = `egress target ${target}`;
      destOf = (c) => {
        const t = c.lease.lease.targets?.[0];
        if (!t) throw new CliError(EXIT.ERROR, `the lease for ${label} names no target`);
        return { host: t.host, port: t.port, label: `${target} (${t.host}:${t.port})` };
      };
    } else {
      if (a.positionals.length !== 1) throw new UsageError('open', 'give exactly one exposure NAME (or --egress TARGET)');
      const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(a.positionals[0]!);
      const name = m?.[1] ?? '';
      if (!EXPOSURE_NAME_RE.test(name)) throw new UsageError('open', `exposure name must match [a-z0-9-]{1,63}, got "${a.positionals[0]}"`);
      const explicitPort = m?.[2] ? Number(m[2]) : undefined;
      if (explicitPort !== undefined && (explicitPort < 1 || explicitPort > 65535)) throw new UsageError('open', 'PORT must be from 1 to 65535');
      request = { kind: 'open', exposure: name, ...(ttl ? { ttl_seconds: ttl } : {}) };
      label = name;
      // Without PORT: the port X has bound, as the lease reports it (22 when unknown).
      destOf = (c) => {
        const port = explicitPort ?? c.lease.lease.port ?? 22;
        return { host: name, port, label: `${name}:${port}` };
      };
    }
    const adapt = windowAdopter(resolveWindowBudget(ctx));
    const session = Session.load(ctx, a.server);
    if (a.values.stdio) return stdio(ctx, session, request, destOf, adapt);

    const sup = new LeaseSupervisor(session, { request });
    const events = a.json ? (e: Record<string, unknown>) => out(ctx, JSON.stringify({ time: new Date().toISOString(), ...e })) : undefined;
    const onFail = (err: CliError) => {
      // Stopping (Ctrl-C, or run() ending with a permanent refusal it reports itself) refuses
      // every waiting connection: that is not news, one line each.
      if (ctx.stopSignal.aborted || sup.stopped) return;
      events?.({ event: 'channel_failed', error: err.message, exit_code: err.exitCode });
      if (!events) info(ctx, `tunnel open: ${err.message}`);
    };
    // pauseOnConnect: nothing is read before the channel is open, and the join can then read straight into packets (cli/ssh/packet-reads.ts).
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => void serveLocal(sup, sock, destOf, onFail, events, adapt));
    server.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new CliError(EXIT.ERROR, `cannot listen on ${listen!.host}:${listen!.port} (${err.code})`)),
      );
      server.listen(listen!.port, listen!.host, resolve);
    });
    const addr = server.address() as { address: string; port: number };
    events?.({ event: 'listening', address: `${addr.address}:${addr.port}`, ...(request.kind === 'egress' ? { egress: request.targets![0] } : { exposure: label }) });
    if (!events) info(ctx, `Listening on ${addr.address}:${addr.port} for ${label} (Ctrl-C to stop).`);
    // The same reason again (X offline for long: a retry a second) is a line a minute, not one per retry.
    const quiet = repeatsQuieted(RECONNECT_LINE_EVERY_MS);
    sup.on('connected', ({ lease }) => {
      quiet.reset();
      events?.({ event: 'connected', relay: lease.relay.name, lease: lease.lease.id, expires_at: lease.lease.expires_at });
    });
    sup.on('renewed', (lease) => events?.({ event: 'renewed', lease: lease.lease.id, expires_at: lease.lease.expires_at }));
    sup.on('disconnected', ({ reason, retryInMs }) => {
      events?.({ event: 'disconnected', reason, retry_in_ms: retryInMs });
      const line = `tunnel open: ${reason}; reconnecting`;
      if (!events && quiet.print(line)) info(ctx, line);
    });
    try {
      await sup.run(ctx.stopSignal);
    } finally {
      server.close();
    }
    return 0;
  },
};

interface Dest {
  host: string;
  port: number;
  /** How messages name it: NAME:PORT, or TARGET (host:port). */
  label: string;
}

/**
 * A failed channel open as one line and its exit code, from the relay's refusal word
 * (protocol/channel-refusals.ts); relays without words get the generic message.
 */
export function channelOpenError(err: unknown, dest: Dest): CliError {
  const raw = err instanceof Error ? err.message : String(err);
  const parsed = parseRefusal(raw.replace(/^\(SSH\) Channel open failure: /, ''));
  // The relay's text (any bytes, up to a packet) goes to the user's terminal: one line, cut short.
  const message = peerText(raw);
  const refusal = parsed && { kind: parsed.kind, detail: peerText(parsed.detail) };
  switch (refusal?.kind) {
    case 'exposure_offline':
      return new CliError(EXIT.EXPOSURE_OFFLINE, `${dest.label} is offline: no tunnel expose is connected for it`);
    case 'no_such_port':
      return new CliError(EXIT.NO_SUCH_PORT, `nothing is exposed on ${dest.label}: ${refusal.detail}`);
    case 'service_unreachable':
      return new CliError(EXIT.SERVICE_UNREACHABLE, `${dest.label} is online, but the exposing host could not connect to its service (is it running?)`);
    case 'open_timeout':
      return new CliError(EXIT.SERVICE_UNREACHABLE, `${dest.label} is online, but the exposing host did not answer in time`);
    case 'egress_failed':
      return new CliError(EXIT.SERVICE_UNREACHABLE, `the relay could not connect to ${dest.label}: ${refusal.detail}`);
    case 'not_in_lease':
      return new CliError(EXIT.NOT_PERMITTED, `the relay refused ${dest.label}: ${refusal.detail}`);
    case 'busy':
      return new CliError(EXIT.UNREACHABLE, `the relay is busy: ${refusal.detail}; try again`, { code: RELAY_BUSY });
    default:
      return new CliError(EXIT.ERROR, `the relay refused ${dest.label} (${message})`);
  }
}

/**
 * How long the relay may take to answer a channel open. An honest relay answers within its own
 * `--open-timeout` (10 s by default: X's answer, or `open_timeout`); one that never answers would
 * leave `tunnel open --stdio` hanging and `--listen` connections piling up.
 */
export const CHANNEL_OPEN_TIMEOUT_MS = 60_000;

/** Opens a channel to `dest`; a channel the relay grants after the timeout is closed at once. */
export function forwardOut(client: Client, srcPort: number, dest: Dest, adapt: AdaptWindow, timeoutMs = CHANNEL_OPEN_TIMEOUT_MS): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(new CliError(EXIT.UNREACHABLE, `the relay did not answer the request to open ${dest.label} within ${timeoutMs >= 1000 ? `${Math.round(timeoutMs / 1000)} s` : `${timeoutMs} ms`}`));
    }, timeoutMs);
    timer.unref();
    try {
      client.forwardOut('127.0.0.1', srcPort, dest.host, dest.port, (err, ch) => {
        clearTimeout(timer);
        if (timedOut) {
          ch?.close();
          return;
        }
        // The connection closed with the open unanswered (the relay restarting or gone): ssh2
        // answers 'No response from server'. Not a refusal: the next connection may open it.
        if (err) return reject(connectionGone(client) ? closedBeforeOpen(dest) : channelOpenError(err, dest));
        adapt(client, ch);
        resolve(ch);
      });
    } catch {
      // ssh2 throws "Not connected" when the connection closed meanwhile.
      clearTimeout(timer);
      reject(closedBeforeOpen(dest));
    }
  });
}

function closedBeforeOpen(dest: Dest): CliError {
  return new CliError(EXIT.UNREACHABLE, `the connection to the relay closed before ${dest.label} could be opened`, { code: CONNECTION_CLOSED });
}

/** Whether the client's connection is closed (ssh2 then fails every pending open alike). */
function connectionGone(client: Client): boolean {
  try {
    const sock = clientSocket(client);
    return sock.destroyed || !sock.writable;
  } catch {
    return false; // not a client ssh2 connected (tests' fakes): its refusal as given
  }
}

async function serveLocal(
  sup: LeaseSupervisor,
  sock: Socket,
  destOf: (c: Connected) => Dest,
  onFail: (err: CliError) => void,
  events: ((e: Record<string, unknown>) => void) | undefined,
  adapt: AdaptWindow,
) {
  sock.on('error', () => {});
  // While the connection really waits (no relay connection, or a pause before trying again), its
  // client is watched: one that goes away stops waiting at once, its place among the waiters
  // freed (local-wait.ts says how, and why not otherwise).
  const wait = localWait(sock);
  const plan = retryPlan(WAIT_FOR_RELAY_MS, wait.signal);
  try {
    // The open connection, or the next one while the supervisor reconnects; an offline exposure is
    // tried again: at most WAIT_FOR_RELAY_MS in all.
    const ch = await openWhenOnline(
      (timeoutMs) => {
        if (!sup.current) wait.watch();
        return sup.next(timeoutMs, wait.signal);
      },
      (c) => {
        wait.signal.throwIfAborted();
        return forwardOut(c.client, sock.remotePort ?? 0, destOf(c), adapt);
      },
      {
        ...plan,
        wait: (ms) => {
          wait.watch();
          return plan.wait(ms);
        },
      },
    );
    // Gone while the relay answered the open: the channel is closed unused.
    if (wait.signal.aborted) {
      ch.destroy();
      sock.destroy();
      return;
    }
    wait.release();
    events?.({ event: 'channel_open' });
    joinSocketAndChannel(sock, ch, (up, down) => events?.({ event: 'channel_close', bytes_to_exposure: up, bytes_from_exposure: down }));
  } catch (err) {
    wait.release();
    // A local client that went away is not news: no line for it.
    if (!wait.signal.aborted) onFail(err instanceof CliError ? err : new CliError(EXIT.ERROR, (err as Error).message));
    sock.destroy();
  }
}

/**
 * One connection over stdin/stdout. Every failure ends as one CliError (no unhandled rejection).
 * A stop once the channel is open ends it with exit 0 and nothing said: that is how ssh ends its
 * ProxyCommand (SIGHUP), and the line would land on the user's terminal after every session. A
 * stop before then (the lease requested, the relay connecting, the channel opening) is exit 130.
 */
async function stdio(ctx: Context, session: Session, request: LeaseRequest, destOf: (c: Connected) => Dest, adapt: AdaptWindow): Promise<number> {
  const sup = new LeaseSupervisor(session, { request, once: true });
  let failure: CliError | undefined;
  let opened = false;
  let channelDone: Promise<void> = Promise.resolve();
  sup.once('connected', (c) => {
    channelDone = (async () => {
      try {
        const ch = await forwardOut(c.client, 0, destOf(c), adapt);
        opened = true;
        await new Promise<void>((resolve) => {
          // ssh went away (EPIPE on stdout): end the channel rather than crash on an unhandled 'error'.
          ctx.stdout.once('error', () => ch.destroy());
          ch.on('error', () => ch.destroy());
          // What ssh sends waits in stdin, not in ssh2's socket or key exchange queue (send-backpressure.ts).
          holdChannelWrites(ch);
          ctx.stdin.pipe(ch, { end: false });
          ch.pipe(ctx.stdout, { end: false });
          ctx.stdin.once('end', () => ch.end());
          ch.once('close', () => {
            ctx.stdin.unpipe(ch);
            resolve();
          });
        });
      } catch (err) {
        failure = err instanceof CliError ? err : new CliError(EXIT.ERROR, (err as Error).message);
      } finally {
        sup.stop();
      }
    })();
  });
  try {
    await sup.run(ctx.stopSignal);
    await channelDone;
  } catch (err) {
    failure = err instanceof CliError ? err : new CliError(EXIT.ERROR, (err as Error).message);
  }
  if (ctx.stopSignal.aborted && !opened && failure?.code !== STOPPED) {
    failure = new CliError(EXIT.STOPPED, 'stopped before the connection was open', { code: STOPPED, cause: failure });
  }
  if (failure) throw failure;
  return 0;
}
