/**
 * `npm run bench:footprint`: the control plane's footprint on the embedded default (issue 11:
 * a control plane that fits a 512 MB VPS).
 *
 * Starts the real binaries on fresh data directories and reports, per row:
 * - first start: spawn to "ready" printed and /healthz answering, on an empty data dir;
 * - restart: the same on the data the first start left;
 * - peak RSS during the first start (VmHWM), and steady RSS: after setup, a login and
 *   `--leases` issued leases (so the database and the HTTP paths have run), then `--settle`
 *   seconds idle.
 * Rows: tunnel-control alone (PGlite), and the all-in-one (`npm start`: control + one relay in
 * one process). Prints the machine's load average with the table: the machine is shared, start
 * times scale with it.
 *
 * Relay rows (bench/lib/relay-footprint.ts, a real tunnel-control and tunnel-node): idle relay
 * RSS (after 30 s idle, once the relay's own full collection 10 s after ready and V8's memory
 * reducer have collected start-up's garbage; 2 s after start, for context; and a bare `node`
 * started beside it, the floor; `--only relay --relay-rows idle` runs this row alone, in about 40 s); RSS per idle exposure connection with `--exposures` of them (10,000 by default: the
 * issue's "10,000 under 1 GiB", measured); RSS per saturated stream (streams of `--stream-bytes`,
 * the CLI's own connection code at both ends: 1 stream on a fresh relay, above the idle relay at
 * rest, so the first stream's one-time growth counts; then 1 and 4 streams on the now warm relay,
 * each above the RSS at rest before it; and what the relay keeps at rest after them) with the
 * relay's CPU s/GiB.
 * `--relay-variant` repeated compares node and tunnel-node flags for the relay in one run.
 *
 * Usage: `node dist/bench/footprint.js --help`.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { formatPublicKeyLine, rawPublicKey } from '../protocol/ssh-key.js';
import { enrollOnlineNode, expectStatus, httpCaller, passwordLogin, repoRoot, startControlProcess, type ApiCall } from '../test/harness/control.js';
import { parseBenchArgs } from './lib/bench-args.js';
import { freePort, killTracked, track } from './lib/openssh.js';
import { cpuSeconds, rssBytes } from './lib/proc.js';
import { IDLE_STEADY_S, idleCredentials, idleExposures, idleRelayRss, streamFootprint, type IdleExposures, type IdleRelay, type RelayVariant, type StreamFootprint, type StreamFootprints } from './lib/relay-footprint.js';
import { MemoryCgroupError, memoryCgroups, type MemoryCgroups } from './lib/memory-cgroup.js';
import { startRelayStack } from './lib/relay-stack.js';

const USAGE = `Usage: node dist/bench/footprint.js [options]   (npm run bench:footprint builds first)
  --only LIST            rows to run: control,all-in-one,relay (default all)
  --rounds N             control and all-in-one rounds, the median reported (3)
  --leases N             leases issued before the steady RSS (200)
  --settle S             seconds idle before a steady figure (5)
  --node-args='...'      node flags for tunnel-control and the all-in-one
  --relay-rows LIST      relay rows: idle,streams,exposures (default all)
  --exposures N          idle exposure connections for the per-connection row (10000; about 6 min)
  --stream-bytes N       bytes per saturated stream (536870912)
  --relay-variant='NODE FLAGS;RELAY FLAGS'  how to run the relay (write it with =): node flags,
                         and after ';' tunnel-node flags. Repeat it to compare in one run (every
                         relay row for each, with the relay's CPU s/GiB; the target table shows
                         the first), e.g. --relay-variant= --relay-variant=';--gc-every 0'
                         --relay-variant=';--gc-full-after 2MiB'
  --relay-node-args='...' the same as --relay-variant with node flags only
  --memory-limit SIZE    run each measured process (control plane, all-in-one, relay, the bare
                         node beside it) in a memory cgroup of its own limited to SIZE (e.g. 1GiB),
                         as on a VPS of that size: Node sizes V8's heap from that limit as from a
                         machine's memory (root and a memory cgroup controller needed)
`;

const opts = parseBenchArgs(
  {
    rounds: { type: 'string', default: '3' },
    leases: { type: 'string', default: '200' },
    settle: { type: 'string', default: '5' },
    'node-args': { type: 'string', default: '' },
    only: { type: 'string', default: 'control,all-in-one,relay' },
    exposures: { type: 'string', default: '10000' },
    'stream-bytes': { type: 'string', default: String(512 * 1024 ** 2) },
    'relay-node-args': { type: 'string', multiple: true, default: [] },
    'relay-variant': { type: 'string', multiple: true, default: [] },
    'relay-rows': { type: 'string', default: 'idle,streams,exposures' },
    'memory-limit': { type: 'string', default: '' },
  },
  USAGE,
);
const EXPOSURES = Number(opts.exposures);
const STREAM_BYTES = Number(opts['stream-bytes']);
/** How to run the relay: one run of its rows per variant (the target table shows the first). */
const words = (s: string | undefined) => (s ?? '').split(' ').filter(Boolean);
const RELAY_VARIANTS: RelayVariant[] = [
  ...opts['relay-variant'].map((v) => ({ nodeArgs: words(v.split(';')[0]), args: words(v.split(';')[1]) })),
  ...opts['relay-node-args'].map((v) => ({ nodeArgs: words(v), args: [] })),
];
if (RELAY_VARIANTS.length === 0) RELAY_VARIANTS.push({ nodeArgs: [], args: [] });
const RELAY_ROWS = opts['relay-rows'].split(',');
const ROUNDS = Number(opts.rounds);
const LEASES = Number(opts.leases);
const SETTLE_MS = Number(opts.settle) * 1000;
/** Flags for node in front of both binaries (for experiments, e.g. --max-semi-space-size=2). */
const NODE_ARGS = opts['node-args'].split(' ').filter(Boolean);
const ONLY = opts.only.split(',');
const CGROUPS = opts['memory-limit'] ? cgroupsOrExit(parseLimit(opts['memory-limit'])) : undefined;
const MEMORY_LIMIT_LINE = `Each measured process ran in a memory cgroup of its own limited to ${opts['memory-limit']} (as on a VPS of that size); the machine has ${(totalmem() / 1024 ** 3).toFixed(1)} GiB.`;
/** The prefix every measured process runs under (empty without --memory-limit). */
const WRAP = CGROUPS?.wrap ?? [];
/** The per-user lease rate limit, raised: the bench issues `--leases` in well under a minute. */
const LEASE_RATE = String(Math.max(120, 2 * Number(opts.leases)));
process.env.TUNNEL_LEASE_RATE_LIMIT = LEASE_RATE; // the all-in-one inherits this environment
const MB = 1e6;
const PASSWORD = 'bench-footprint-password';
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

function hwmBytes(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Setup, admin login, an exposure on `node` (enrolled first through the API when `enroll`, for
 * tunnel-control alone; the all-in-one's relay enrolled itself), then `n` expose leases for fresh keys.
 */
async function exercise(call: ApiCall, setupCode: string | null, node: string, n: number, enroll: boolean): Promise<void> {
  if (!setupCode) throw new Error('no setup code printed on the first start');
  expectStatus(await call('POST', '/v1/setup', { body: { setup_code: setupCode, name: 'admin', password: PASSWORD } }), 201, 'setup');
  const token = await passwordLogin(call, 'admin', PASSWORD);
  if (enroll) await enrollOnlineNode(call, token, node);
  const put = await call('PUT', '/v1/exposures/footprint', { token, body: { allow: [], node } });
  if (put.status !== 200 && put.status !== 201) throw new Error(`PUT exposure: ${put.status} ${JSON.stringify(put.body)}`);
  for (let i = 0; i < n; i++) {
    const key = formatPublicKeyLine(rawPublicKey(generateKeyPairSync('ed25519').publicKey));
    expectStatus(await call('POST', '/v1/leases', { token, body: { kind: 'expose', exposure: 'footprint', port: 22, public_key: key } }), 201, 'lease');
  }
}

interface Started {
  pid: number;
  url: string;
  setupCode: string | null;
  seconds: number;
  /** CPU seconds the process used until ready (less sensitive to a busy machine than `seconds`). */
  cpuS: number;
  stop(): Promise<unknown>;
}

interface Row {
  firstStartS: number;
  firstStartCpuS: number;
  restartS: number;
  peakMB: number;
  steadyMB: number;
  idleAfterRestartMB: number;
}

const idle = () => new Promise((r) => setTimeout(r, SETTLE_MS)); // idle memory: waiting is the point

/** One round on a fresh data dir: first start, exercise, settle, stop; restart, settle. */
async function round(start: (dataDir: string) => Promise<Started>, node: string, enroll: boolean): Promise<Row> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tunnel-footprint-'));
  try {
    const first = await start(dataDir);
    try {
      const peakMB = hwmBytes(first.pid) / MB;
      await exercise(httpCaller(first.url), first.setupCode, node, LEASES, enroll);
      await idle();
      const steadyMB = rssBytes(first.pid) / MB;
      await first.stop();
      const again = await start(dataDir);
      try {
        await idle();
        return { firstStartS: first.seconds, firstStartCpuS: first.cpuS, restartS: again.seconds, peakMB, steadyMB, idleAfterRestartMB: rssBytes(again.pid) / MB };
      } finally {
        await again.stop();
      }
    } finally {
      await first.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** tunnel-control alone: spawn to ready line and /healthz (test/harness/control.ts). */
async function startControl(dataDir: string): Promise<Started> {
  const t0 = performance.now();
  const c = await startControlProcess({ dataDir, nodeArgs: NODE_ARGS, wrap: WRAP, env: { TUNNEL_LEASE_RATE_LIMIT: LEASE_RATE } });
  const seconds = (performance.now() - t0) / 1000;
  // cleanup() removes the process's home directory (the data directory is the caller's).
  return { pid: c.pid, url: c.url, setupCode: c.setupCode, seconds, cpuS: cpuSeconds(c.pid), stop: async () => { await c.stop(); c.cleanup(); } };
}

/**
 * `npm start` (dist/infra/all-in-one/main.js): control + relay in one process, to its ready line.
 * A restart reuses the ports (the relay's enrollment names the control URL).
 */
function allInOne(): (dataDir: string) => Promise<Started> {
  let ports: number[] | undefined;
  return async (dataDir) => {
    ports ??= [await freePort(), await freePort(), await freePort()];
    return startAllInOne(dataDir, ports as [number, number, number]);
  };
}

async function startAllInOne(dataDir: string, [http, ssh, metrics]: [number, number, number]): Promise<Started> {
  const t0 = performance.now();
  const [cmd, ...argv] = [
    ...WRAP,
    process.execPath,
    ...NODE_ARGS,
    join(repoRoot(), 'dist', 'infra', 'all-in-one', 'main.js'),
    '--data-dir', dataDir,
    '--listen', `127.0.0.1:${http}`,
    '--relay-listen', `127.0.0.1:${ssh}`,
    '--metrics-listen', `127.0.0.1:${metrics}`,
  ];
  const p = track(cmd!, argv);
  await p.waitFor(/"ready":true/, 120_000);
  const cpuS = cpuSeconds(p.pid);
  return {
    cpuS,
    pid: p.pid,
    url: `http://127.0.0.1:${http}`,
    setupCode: /"setup_code":"(setup_[A-Za-z0-9_-]+)"/.exec(p.output())?.[1] ?? null,
    seconds: (performance.now() - t0) / 1000,
    stop: () => p.stop(),
  };
}

const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');

async function main(): Promise<void> {
  const load0 = loadavg();
  const rows: { name: string; rounds: Row[] }[] = [
    { name: 'tunnel-control (PGlite)', rounds: [] },
    { name: 'all-in-one (control + relay)', rounds: [] },
  ];
  for (let i = 0; i < ROUNDS; i++) {
    if (ONLY.includes('control')) {
      log(`round ${i + 1}/${ROUNDS}: tunnel-control`);
      rows[0]!.rounds.push(await round(startControl, 'relay-1', true));
    }
    if (ONLY.includes('all-in-one')) {
      log(`round ${i + 1}/${ROUNDS}: all-in-one`);
      rows[1]!.rounds.push(await round(allInOne(), 'local', false));
    }
  }
  const load1 = loadavg();
  const m = (r: Row[], k: keyof Row) => median(r.map((x) => x[k]));
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const out = [
    line(['process', 'first start (s)', 'its CPU (s)', 'restart (s)', 'peak RSS, first start (MB)', `steady RSS after ${LEASES} leases (MB)`, 'idle RSS after restart (MB)']),
    line(Array(7).fill('---')),
    ...rows.map((r) => line([r.name, f2(m(r.rounds, 'firstStartS')), f2(m(r.rounds, 'firstStartCpuS')), f2(m(r.rounds, 'restartS')), f1(m(r.rounds, 'peakMB')), f1(m(r.rounds, 'steadyMB')), f1(m(r.rounds, 'idleAfterRestartMB'))])),
    '',
    '| target | wanted | got | |',
    '| --- | --- | --- | --- |',
    `| control first start | <= 3 s | ${f2(m(rows[0]!.rounds, 'firstStartS'))} s | ${verdict(m(rows[0]!.rounds, 'firstStartS') <= 3)} |`,
    `| control steady RSS | <= 200 MB | ${f1(m(rows[0]!.rounds, 'steadyMB'))} MB | ${verdict(m(rows[0]!.rounds, 'steadyMB') <= 200)} |`,
    `| all-in-one steady RSS | <= 300 MB | ${f1(m(rows[1]!.rounds, 'steadyMB'))} MB | ${verdict(m(rows[1]!.rounds, 'steadyMB') <= 300)} |`,
    '',
    'First start: spawn to the ready line (and /healthz for tunnel-control) on an empty data directory; its CPU: user+system seconds the process used by then.',
    `Median of ${ROUNDS} round(s), each on a fresh data directory. Rounds, first start (s): ${rows.map((r) => `${r.name} ${r.rounds.map((x) => f2(x.firstStartS)).join('/')}`).join('; ')}.`,
    `Load average (1/5/15 min) before: ${load0.map(f2).join(' ')}, after: ${load1.map(f2).join(' ')}; ${cpus().length} CPUs; Node ${process.version}.`,
    ...(CGROUPS ? [MEMORY_LIMIT_LINE] : []),
  ];
  if (ONLY.includes('control') || ONLY.includes('all-in-one')) process.stdout.write(`\n${out.join('\n')}\n\n`);
  if (ONLY.includes('relay')) process.stdout.write(`${await relayFootprint()}${CGROUPS ? `\n${MEMORY_LIMIT_LINE}` : ''}\n\n`);
}

/** The relay's rows (issue 11, target 3); see bench/lib/relay-footprint.ts for how each is taken. */
async function relayFootprint(): Promise<string> {
  const load0 = loadavg();
  const KB = 1024;
  const MiB = 1024 ** 2;
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const flags = (v: RelayVariant) => [v.nodeArgs.length ? `node ${v.nodeArgs.join(' ')}` : '', v.args.length ? `tunnel-node ${v.args.join(' ')}` : ''].filter(Boolean).join('; ') || '(defaults)';
  // The admin issues a lease per exposure: lift the per-user lease rate limit for the run.
  const stack = await startRelayStack(RELAY_VARIANTS[0]!.args, RELAY_VARIANTS[0]!.nodeArgs, {}, { TUNNEL_LEASE_RATE_LIMIT: String(Math.max(120, 2 * EXPOSURES)) }, WRAP);
  try {
    const results: { variant: RelayVariant; idle?: IdleRelay; streams?: StreamFootprints; exposures?: IdleExposures }[] = [];
    // The exposures and their leases once, for every variant (creating 10,000 takes minutes).
    const creds = RELAY_ROWS.includes('exposures') ? await idleCredentials(stack, EXPOSURES, log) : [];
    for (const variant of RELAY_VARIANTS) {
      const r: (typeof results)[number] = { variant };
      if (RELAY_ROWS.includes('idle')) {
        log(`relay (${flags(variant)}): idle`);
        r.idle = await idleRelayRss(stack, variant);
      }
      if (RELAY_ROWS.includes('streams')) {
        log(`relay (${flags(variant)}): saturated streams`);
        r.streams = await streamFootprint(stack, [1, 4], STREAM_BYTES, log, variant);
      }
      if (RELAY_ROWS.includes('exposures')) {
        log(`relay (${flags(variant)}): ${EXPOSURES} idle exposure connections`);
        r.exposures = await idleExposures(stack, creds, log, variant);
      }
      results.push(r);
    }
    const first = results[0]!;
    const idle = first.exposures;
    const cold = first.streams?.runs.find((s) => s.phase === 'cold');
    const s1 = first.streams?.runs.find((s) => s.phase === 'warm' && s.streams === 1);
    const s4 = first.streams?.runs.find((s) => s.phase === 'warm' && s.streams === 4);
    const out = [line(['relay (tunnel-node)', 'wanted', 'got', '']), line(Array(4).fill('---'))];
    if (first.idle !== undefined) {
      out.push(
        line([`idle RSS, nothing connected, after ${IDLE_STEADY_S} s idle`, '<= 60 MB', `${f1(first.idle.steady / MB)} MB`, verdict(first.idle.steady <= 60 * MB)]),
        line(['same, 2 s after start (start-up garbage not collected yet)', '(context)', `${f1(first.idle.afterStart / MB)} MB`, '']),
        line([`bare node beside it (an empty script), after ${IDLE_STEADY_S} s`, '(the floor)', `${f1(first.idle.bareNode / MB)} MB`, '']),
      );
    }
    if (idle) {
      out.push(
        line([`RSS per idle exposure connection (${idle.count} connections, after ${IDLE_STEADY_S} s idle)`, '<= 40 KB', `${f1(idle.per / KB)} KB`, verdict(idle.per <= 40 * KB)]),
        line(['same, 1 s after the last connected', '(context)', `${f1(idle.perJustConnected / KB)} KB`, '']),
        line([
          `RSS with ${idle.count} idle exposures`,
          idle.count >= 10_000 ? '< 1 GiB at 10,000' : `< 1 GiB at 10,000 (only ${idle.count} measured)`,
          `${f1(idle.loaded / MB)} MB (${f1(idle.idle / MB)} MB before)`,
          idle.count >= 10_000 ? verdict(idle.loaded < 1024 ** 3) : 'not measured at 10,000',
        ]),
      );
    }
    const mp = (s: StreamFootprint) => `${f1(s.perStreamMedian / MiB)} / ${f1(s.perStreamPeak / MiB)} MiB`;
    if (cold && s1 && s4) {
      out.push(
        line(['RSS per saturated stream, 1 stream on a fresh relay (median / peak above the idle relay at rest: counts the first stream\'s one-time growth)', '<= 4 MB, no fixed overshoot', mp(cold), verdict(cold.perStreamPeak <= 4 * MiB)]),
        line(['RSS per saturated stream, 1 stream, warm (median / peak above the RSS at rest before it)', '<= 4 MB', mp(s1), verdict(s1.perStreamPeak <= 4 * MiB)]),
        line(['RSS per saturated stream, 4 streams, warm (median / peak above before, per stream)', '<= 4 MB', mp(s4), verdict(s4.perStreamPeak <= 4 * MiB)]),
      );
    }
    out.push('');
    if (cold && s1 && s4 && first.streams) {
      out.push(
        `Saturated streams: the CLI's connection code at both ends (tunnel-cli identification, adaptive windows), ${f1(STREAM_BYTES / MiB)} MiB per stream; ` +
          `${f1(cold.mbps)} / ${f1(s1.mbps)} / ${f1(s4.mbps)} MB/s (cold 1 stream / warm 1 / warm 4); relay CPU ${f2(cold.cpuPerGiB)} / ${f2(s1.cpuPerGiB)} / ${f2(s4.cpuPerGiB)} s/GiB; ` +
          `relay RSS before: ${f1(cold.before / MB)} / ${f1(s1.before / MB)} / ${f1(s4.before / MB)} MB, at rest after the last: ${f1(first.streams.after / MB)} MB. The peak counts garbage V8 has not collected yet and malloc's high-water mark.`,
      );
    }
    if (results.length > 1) {
      out.push(
        '',
        'The same rows with the relay run other ways, in this run:',
        '',
        line(['relay run with', `idle RSS: 2 s / ${IDLE_STEADY_S} s (MB)`, `per idle exposure connection: 1 s / ${IDLE_STEADY_S} s (KB, ${EXPOSURES})`, '1 stream cold: median / peak (MiB)', '1 stream warm', '4 streams warm, per stream', 'RSS at rest after (MB)', 'relay CPU s/GiB, cold 1 / warm 1 / warm 4', 'MB/s, cold 1 / warm 1 / warm 4']),
        line(Array(9).fill('---')),
        ...results.map((r) => {
          const runs = r.streams?.runs ?? [];
          const c = runs.find((s) => s.phase === 'cold');
          const a = runs.find((s) => s.phase === 'warm' && s.streams === 1);
          const b = runs.find((s) => s.phase === 'warm' && s.streams === 4);
          const mpp = (s: StreamFootprint | undefined) => (s ? `${f1(s.perStreamMedian / MiB)} / ${f1(s.perStreamPeak / MiB)}` : 'n/a');
          return line([
            flags(r.variant),
            r.idle === undefined ? 'n/a' : `${f1(r.idle.afterStart / MB)} / ${f1(r.idle.steady / MB)}`,
            r.exposures === undefined ? 'n/a' : `${f1(r.exposures.perJustConnected / KB)} / ${f1(r.exposures.per / KB)}`,
            mpp(c),
            mpp(a),
            mpp(b),
            r.streams ? f1(r.streams.after / MB) : 'n/a',
            c && a && b ? `${f2(c.cpuPerGiB)} / ${f2(a.cpuPerGiB)} / ${f2(b.cpuPerGiB)}` : 'n/a',
            c && a && b ? `${f1(c.mbps)} / ${f1(a.mbps)} / ${f1(b.mbps)}` : 'n/a',
          ]);
        }),
        '',
      );
    }
    out.push(
      `Relay run with: ${flags(RELAY_VARIANTS[0]!)}. ` +
        `Load average (1/5/15 min) before: ${load0.map(f2).join(' ')}, after: ${loadavg().map(f2).join(' ')}.`,
    );
    return out.join('\n');
  } finally {
    await stack.stop();
  }
}

function cgroupsOrExit(limit: number): MemoryCgroups {
  try {
    return memoryCgroups(limit);
  } catch (err) {
    if (!(err instanceof MemoryCgroupError)) throw err;
    process.stderr.write(`bench:footprint: --memory-limit: ${err.message}\n`);
    process.exit(2);
  }
}

/** `1GiB`, `512MiB`, `1073741824`: a whole number of bytes. */
function parseLimit(s: string): number {
  const m = /^(\d+)(KiB|MiB|GiB)?$/.exec(s);
  if (!m) {
    process.stderr.write(`bench:footprint: --memory-limit ${JSON.stringify(s)} is not a size like 1GiB or 512MiB\n`);
    process.exit(2);
  }
  return Number(m[1]) * { '': 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[m[2] ?? '']!;
}

main().then(
  () => {
    CGROUPS?.remove();
    process.exit(0);
  },
  async (err: unknown) => {
    await killTracked();
    CGROUPS?.remove();
    process.stderr.write(`bench:footprint failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
