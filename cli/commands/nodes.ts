import { setTimeout as sleep } from 'node:timers/promises';
import { NodeListSchema } from '../../protocol/api-types.js';
import { Session } from '../session.js';
import { parseCommand } from '../args.js';
import type { Context } from '../context.js';
import { info, out } from '../context.js';
import { CliError, EXIT, STOPPED, UsageError } from '../errors.js';
import { ago, printTable } from '../output.js';
import type { Command } from './command.js';

/** `tunnel nodes wait`: the default --timeout, and the pause between two looks. */
const WAIT_DEFAULT_SECS = 120;
const WAIT_POLL_MS = 1000;

export const nodes: Command = {
  name: 'nodes',
  summary: 'list relay nodes, wait for one to come online, or remove one',
  usage: `Usage: tunnel nodes [ls] [--json]
       tunnel nodes wait NAME [--timeout SECS] [--json]
       tunnel nodes rm NAME [--json]

Lists relay nodes with their SSH address, whether they are online, the version each last reported
(a relay not upgraded yet shows the old one) and how many exposures they hold.
wait asks every second until relay NAME is enrolled and online, then prints one line (its
address) and exits 0; it prints nothing while it waits. After --timeout seconds (default
${WAIT_DEFAULT_SECS}; 0 looks once) it exits 1 with one line.
rm (admins) removes relay NAME: its credential stops working at once, so the relay closes every
connection and admits none (it logs that the control plane refuses its credential); its leases
and its unused enrollment tokens go; exposures online there go offline, and their expose
clients move to another relay. Refused while an exposure is pinned to it or an egress target
is on it (move those first). To bring a relay back, make a new enrollment token for its name.

Examples:
  tunnel nodes ls
  tunnel nodes wait relay-z
  tunnel nodes rm relay-z`,
  async run(ctx, argv) {
    const a = parseCommand('nodes', argv, { timeout: { type: 'string' } });
    const [sub = 'ls', name, extra] = a.positionals;
    if (sub === 'wait') {
      if (!name || extra) throw new UsageError('nodes', 'wait needs one NAME');
      const t = a.values.timeout ?? String(WAIT_DEFAULT_SECS);
      if (!/^\d{1,6}$/.test(t)) throw new UsageError('nodes', `--timeout must be whole seconds, got "${t}"`);
      return waitOnline(ctx, a.server, a.json, name, Number(t) * 1000);
    }
    if (a.values.timeout !== undefined) throw new UsageError('nodes', '--timeout goes with wait');
    if (sub === 'rm') {
      if (!name || extra) throw new UsageError('nodes', 'rm needs one NAME');
      await Session.load(ctx, a.server).call('DELETE', `/v1/nodes/${encodeURIComponent(name)}`, null, undefined, ctx.stopSignal);
      if (a.json) out(ctx, JSON.stringify({ removed: name }));
      else info(ctx, `Removed relay ${name}; it closes its connections and admits none.`);
      return 0;
    }
    if (sub !== 'ls' || name) throw new UsageError('nodes', `unknown subcommand "${[sub, name].filter(Boolean).join(' ')}" (ls, wait, rm)`);
    const res = await Session.load(ctx, a.server).call('GET', '/v1/nodes', NodeListSchema, undefined, ctx.stopSignal);
    printTable(
      ctx,
      a.json,
      res,
      ['NAME', 'ADDRESS', 'ONLINE', 'VERSION', 'EXPOSURES', 'EGRESS LOCK', 'LAST SEEN'],
      res.nodes.map((n) => [
        n.name,
        n.address,
        n.online ? 'yes' : 'no',
        n.version ?? '-',
        n.active_exposures,
        n.egress_driver === 'off' ? 'OFF' : (n.egress_driver ?? '-'),
        ago(n.last_seen_at),
      ]),
    );
    return 0;
  },
};

/**
 * Looks at the node list until `name` is online (exit 0) or `timeoutMs` passed (exit 1), on the
 * monotonic clock. A failed request ends it at once, as for `tunnel nodes`: what it waits for is
 * the relay, not the control plane.
 */
async function waitOnline(ctx: Context, server: string | undefined, json: boolean, name: string, timeoutMs: number): Promise<number> {
  const session = Session.load(ctx, server);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const res = await session.call('GET', '/v1/nodes', NodeListSchema, undefined, ctx.stopSignal);
    const node = res.nodes.find((n) => n.name === name);
    if (node?.online) {
      out(ctx, json ? JSON.stringify(node, null, 2) : `Relay ${name} is online at ${node.address}.`);
      return 0;
    }
    if (performance.now() + WAIT_POLL_MS > deadline) {
      const state = node ? 'is enrolled but not online' : 'has not enrolled';
      throw new CliError(EXIT.ERROR, `relay ${name} ${state} after ${Math.round(timeoutMs / 1000)} s; see the relay's log`);
    }
    try {
      await sleep(WAIT_POLL_MS, undefined, { signal: ctx.stopSignal });
    } catch (err) {
      throw new CliError(EXIT.STOPPED, `stopped while waiting for relay ${name}`, { code: STOPPED, cause: err });
    }
  }
}
