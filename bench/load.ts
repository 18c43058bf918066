/**
 * `npm run bench:load`: 1,000 tunnels at once through one relay (issue 11, target 5).
 *
 * Real `tunnel-control` (PGlite) and `tunnel-node` processes (bench/lib/relay-stack.ts). Per
 * scenario (`--exposures E`, `--connections N` in all, N/E Y connections per exposure):
 * 1. X: E exposures, each one ssh2 connection in this process holding `tcpip-forward` with a
 *    control-issued expose certificate; every channel the relay opens to it is echoed back.
 * 2. Y: N open leases (one fresh key each, as the CLI does), then N ssh2 connections with those
 *    certificates (`--setup-concurrency` handshakes in flight). Setup rate: authenticated
 *    connections per second of wall time, and per second of relay CPU (= per core).
 * 3. With all N connected, each opens one channel and sends `--payload` random bytes, half-closes,
 *    and checks the SHA-256 of what comes back (X echoes): corruption in either direction shows.
 *    Counted: refused (connect or channel open failed), corrupted, relay RSS and CPU.
 * 4. All N leases revoked at once through the API (DELETE /v1/leases/{id}, 32 in flight); for
 *    each, the time from its DELETE answering until Y's connection closed (p50/p99/max).
 *
 * Y clients are ssh2 clients in this one process, not worker processes: the machine has 2 cores,
 * so extra client processes would only take CPU from the relay being measured; one process is
 * enough to hold 1,000 connections (a few MB each in ssh2) and keeps the accounting simple (the
 * relay's CPU is read from /proc, this process's separately). fds: N Y sockets + E X sockets here,
 * N + E in the relay; `ulimit -n` is printed and checked.
 *
 * The relay's pre-auth caps (MaxStartups-like) are raised for the run with flags, since all Y
 * connections come from 127.0.0.1 at once; the control plane's per-user lease rate limit too.
 * Prints a table with the load average (the machine is shared). Not a test.
 *
 *   node dist/bench/load.js [--connections 1000] [--exposures 1,100] [--payload 65536] [--setup-concurrency 64]
 *     [--relay-node-arg=--cpu-prof --relay-node-arg=--cpu-prof-dir=DIR]  (profile the relay)
 */
import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { execSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Client, ClientChannel } from 'ssh2';
import { connectRelay } from '../cli/ssh/relay-connection.js';
import type { LeaseIssued } from '../protocol/api-types.js';
import { formatPublicKeyLine, rawPublicKey } from '../protocol/ssh-key.js';
import { parseBenchArgs } from './lib/bench-args.js';
import { closeAll, forwardIn, mapLimit } from './lib/idle-clients.js';
import { cpuSeconds, rssBytes, sampler } from './lib/proc.js';
import { startRelayStack, type RelayStack } from './lib/relay-stack.js';

const opts = parseBenchArgs(
  {
    connections: { type: 'string', default: '1000' },
    exposures: { type: 'string', default: '1,100' },
    payload: { type: 'string', default: String(64 * 1024) },
    'setup-concurrency': { type: 'string', default: '64' },
    /** Extra node flags for the relay process, e.g. --relay-node-arg=--cpu-prof --relay-node-arg=--cpu-prof-dir=/tmp/p */
    'relay-node-arg': { type: 'string', multiple: true, default: [] },
  },
  `usage: node dist/bench/load.js [options]      (npm run bench:load builds first)
  --connections N          Y connections in all, per scenario (1000)
  --exposures E,E          scenarios: E exposures sharing the N connections (1,100)
  --payload BYTES          bytes each connection sends and gets back, SHA-256 checked (65536)
  --setup-concurrency N    SSH handshakes in flight while connecting (64)
  --relay-node-arg=FLAG    extra node flag for the relay, repeatable (e.g. --cpu-prof)`,
);
const N = Number(opts.connections);
const EXPOSURES = opts.exposures.split(',').map(Number);
const PAYLOAD = Number(opts.payload);
const SETUP_CONCURRENCY = Number(opts['setup-concurrency']);
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
const MB = 1e6;
const TIMINGS = { keepaliveIntervalMs: 30_000, keepaliveCountMax: 3, readyTimeoutMs: 120_000 };

function newKey(): { privateKey: KeyObject; line: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, line: formatPublicKeyLine(rawPublicKey(publicKey)) };
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const q = (s: number[], p: number) => (s.length ? s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]! : NaN);

/** X: one connection per exposure, echoing every channel. */
async function startX(stack: RelayStack, names: string[]): Promise<Client[]> {
  return mapLimit(names, 16, async (name) => {
    await stack.exposure(name);
    const k = newKey();
    const issued = await stack.lease({ kind: 'expose', exposure: name, port: 7 }, k.line);
    const client = await connectRelay(issued, k.privateKey, TIMINGS);
    client.on('error', () => {});
    client.on('tcp connection', (_info, accept) => {
      const ch = accept();
      ch.on('error', () => {});
      ch.pipe(ch); // echo, EOF included
    });
    await forwardIn(client, name, 7);
    return client;
  });
}

interface Y {
  issued: LeaseIssued;
  key: KeyObject;
  client?: Client;
  closedAt?: number;
}

/** One channel: send the payload, half-close, compare the SHA-256 of the echo. */
function roundTrip(client: Client, name: string): Promise<'ok' | 'corrupt' | 'refused'> {
  return new Promise((resolve) => {
    const payload = randomBytes(PAYLOAD);
    const want = createHash('sha256').update(payload).digest('hex');
    client.forwardOut('127.0.0.1', 0, name, 7, (err, ch: ClientChannel) => {
      if (err) return resolve('refused');
      const h = createHash('sha256');
      let n = 0;
      ch.on('data', (d: Buffer) => {
        h.update(d);
        n += d.length;
      });
      ch.on('error', () => {});
      ch.once('close', () => resolve(n === PAYLOAD && h.digest('hex') === want ? 'ok' : 'corrupt'));
      ch.end(payload);
    });
  });
}

interface Result {
  exposures: number;
  connections: number;
  setupPerSec: number;
  setupPerRelayCpuSec: number;
  refused: number;
  corrupt: number;
  ok: number;
  transferS: number;
  relayPeakRssMB: number;
  relayIdleRssMB: number;
  relayCpuS: number;
  revokeP50: number;
  revokeP99: number;
  revokeMax: number;
  notClosed: number;
}

async function scenario(exposures: number): Promise<Result> {
  const perExposure = Math.ceil(N / exposures);
  const stack = await startRelayStack(
    [
      '--max-startups', `${SETUP_CONCURRENCY * 2}:30:${SETUP_CONCURRENCY * 4}`,
      '--per-source-max-startups', String(SETUP_CONCURRENCY * 2),
      '--max-channels-per-connection', '1024',
      '--max-pending-opens', '1024',
      // Every Y lease here belongs to the one bench admin: lift one opener's share of X's channels.
      '--max-channels-per-opener', '1024',
      '--max-channels-per-member', String(N * 2),
    ],
    opts['relay-node-arg'],
    {},
    { TUNNEL_LEASE_RATE_LIMIT: '1000000' },
  );
  const xs: Client[] = [];
  const ys: Y[] = [];
  try {
    const relayPid = stack.relay.pid;
    const names = Array.from({ length: exposures }, (_, i) => `load-${i}`);
    log(`${exposures} exposure(s): X connections`);
    xs.push(...(await startX(stack, names)));
    await stack.waitOnline(names);
    log(`${N} open leases`);
    const leases = await mapLimit(Array.from({ length: N }, (_, i) => i), 16, async (i) => {
      const k = newKey();
      return { issued: await stack.lease({ kind: 'open', exposure: names[Math.floor(i / perExposure)]! }, k.line), key: k.privateKey };
    });
    ys.push(...leases);
    log(`${N} Y connections, ${SETUP_CONCURRENCY} in flight`);
    const cpu0 = cpuSeconds(relayPid);
    const t0 = performance.now();
    let refused = 0;
    await mapLimit(ys, SETUP_CONCURRENCY, async (y) => {
      try {
        y.client = await connectRelay(y.issued, y.key, TIMINGS);
        y.client.on('error', () => {});
        y.client.once('close', () => (y.closedAt = performance.now()));
      } catch {
        refused++;
      }
    });
    const setupS = (performance.now() - t0) / 1000;
    const setupCpu = cpuSeconds(relayPid) - cpu0;
    const connected = ys.filter((y) => y.client);
    log(`${connected.length} connected in ${setupS.toFixed(1)} s; ${N} round trips of ${PAYLOAD} bytes at once`);
    const rss = sampler(() => rssBytes(relayPid), 100);
    const t1 = performance.now();
    const outcomes = await Promise.all(connected.map((y) => roundTrip(y.client!, y.issued.lease.exposure!)));
    const transferS = (performance.now() - t1) / 1000;
    const peak = Math.max(...rss.stop());
    const relayCpuS = cpuSeconds(relayPid) - cpu0;
    const idleRss = rssBytes(relayPid);
    log(`revoking ${connected.length} leases at once`);
    const revokedAt = new Map<Y, number>();
    await mapLimit(connected, 32, async (y) => {
      const r = await stack.api('DELETE', `/v1/leases/${y.issued.lease.id}`);
      if (r.status !== 200) throw new Error(`DELETE lease: ${r.status} ${JSON.stringify(r.body)}`);
      revokedAt.set(y, performance.now());
    });
    const deadline = performance.now() + 30_000;
    while (connected.some((y) => y.closedAt === undefined) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const waits = sorted(connected.filter((y) => y.closedAt !== undefined).map((y) => Math.max(0, y.closedAt! - revokedAt.get(y)!)));
    return {
      exposures,
      connections: N,
      setupPerSec: connected.length / setupS,
      setupPerRelayCpuSec: connected.length / setupCpu,
      refused: refused + outcomes.filter((o) => o === 'refused').length,
      corrupt: outcomes.filter((o) => o === 'corrupt').length,
      ok: outcomes.filter((o) => o === 'ok').length,
      transferS,
      relayPeakRssMB: peak / MB,
      relayIdleRssMB: idleRss / MB,
      relayCpuS,
      revokeP50: q(waits, 0.5),
      revokeP99: q(waits, 0.99),
      revokeMax: waits.at(-1) ?? NaN,
      notClosed: connected.length - waits.length,
    };
  } finally {
    await closeAll(ys.flatMap((y) => (y.client ? [y.client] : [])), 5_000);
    await closeAll(xs, 5_000);
    await stack.stop();
  }
}

const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : 'n/a');
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');

async function main(): Promise<void> {
  const nofile = Number(execSync('ulimit -n', { shell: '/bin/sh', encoding: 'utf8' }).trim());
  if (Number.isFinite(nofile) && nofile < 2 * N + 200) throw new Error(`ulimit -n is ${nofile}; this run needs about ${2 * N + 200} (raise it with ulimit -n)`);
  const load0 = loadavg();
  const results: Result[] = [];
  for (const e of EXPOSURES) {
    const r = await scenario(e);
    log(`result: ${JSON.stringify(r)}`);
    results.push(r);
  }
  const line = (c: string[]) => `| ${c.join(' | ')} |`;
  const out = [
    line(['exposures x Y each', 'ok', 'refused', 'corrupt', 'setup/s (wall)', 'setup per relay CPU s', 'round trips (s)', 'relay RSS peak / after (MB)', 'relay CPU (s)', 'revoke -> closed p50 / p99 / max (ms)', 'not closed in 30 s']),
    line(Array(11).fill('---')),
    ...results.map((r) =>
      line([
        `${r.exposures} x ${Math.ceil(r.connections / r.exposures)}`,
        String(r.ok),
        String(r.refused),
        String(r.corrupt),
        f0(r.setupPerSec),
        f0(r.setupPerRelayCpuSec),
        f1(r.transferS),
        `${f1(r.relayPeakRssMB)} / ${f1(r.relayIdleRssMB)}`,
        f1(r.relayCpuS),
        `${f0(r.revokeP50)} / ${f0(r.revokeP99)} / ${f0(r.revokeMax)}`,
        String(r.notClosed),
      ]),
    ),
    '',
    '| target | wanted | got | |',
    '| --- | --- | --- | --- |',
    ...results.flatMap((r) => [
      `| ${r.exposures} exposure(s): corruption, refused | 0, 0 | ${r.corrupt}, ${r.refused} | ${verdict(r.corrupt === 0 && r.refused === 0 && r.ok === r.connections)} |`,
      `| ${r.exposures} exposure(s): setup per core | >= 200/s | ${f0(r.setupPerRelayCpuSec)}/s | ${verdict(r.setupPerRelayCpuSec >= 200)} |`,
      `| ${r.exposures} exposure(s): revocation p99 | <= 1000 ms | ${f0(r.revokeP99)} ms | ${verdict(r.revokeP99 <= 1000 && r.notClosed === 0)} |`,
    ]),
    '',
    `Payload ${PAYLOAD} bytes each way per connection, SHA-256 checked; ${SETUP_CONCURRENCY} handshakes in flight; the relay long-polls the revocation feed (its defaults: held up to 20 s, answered at once when a revocation commits).`,
    `Setup per relay CPU s: authenticated connections divided by the relay's CPU seconds during setup (one core's worth). ulimit -n ${nofile}.`,
    `Load average (1/5/15 min) before: ${load0.map((x) => x.toFixed(2)).join(' ')}, after: ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${cpus().length} CPUs; Node ${process.version}.`,
  ];
  process.stdout.write(`\n${out.join('\n')}\n\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:load failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
