/**
 * Lease issuance throughput of the control plane: POST /v1/leases (access-token check, lease
 * token + OpenSSH certificate, lease row + audit row) with concurrent clients over loopback HTTP,
 * on the embedded PGlite and on a throwaway Postgres cluster (test/harness/postgres.ts runs it
 * with fsync, synchronous_commit and full_page_writes off, like the test clusters, so commits
 * do not wait for the disk; a production server adds its flush latency to every lease, not CPU
 * to the control plane).
 *
 * The server is the real built binary (`node dist/control/main.js`, production scrypt cost and
 * sealed keys, system clock) in its own process, so the load generator here does not share its
 * event loop. Before measuring: an admin, a few users with access tokens (password grant), an
 * enrolled relay node that heartbeats, and an exposure it reports online; client public keys are
 * generated up front, one per request, as the CLI makes one per lease.
 *
 *   npm run bench:control
 *   node dist/bench/control-leases.js [--kind open|expose] [--requests 3000] [--concurrency 8,16,32]
 *                                     [--rate 500] [--backend pglite,postgres] [--as user,service]
 *                                     [--cpu-prof DIR] [--profile [--top N]] [--baseline REV [--rounds N]]
 *   node dist/bench/control-leases.js --help
 *
 * `--profile`: runs each control plane under `--cpu-prof` (into `--cpu-prof DIR`, or a temporary
 * directory) and prints, per backend and build, where its CPU went (bench/lib/cpu-profile.ts):
 * busy time by category (drizzle, postgres.js, Hono, zod, Ed25519 signing, socket writes, GC ...)
 * and the top functions by self time. A profile covers the whole life of that control plane
 * (set-up, warm-up and every row of the run); profiling slows it, so take the figures from a
 * run without it. e.g. `--backend postgres --concurrency 8 --rate 0 --as user --profile`.
 *
 * `--baseline REV`: before/after in the same run (issue 9's "issuance must not get slower per
 * lease"). REV is built beside this tree (a temp git worktree, bench/lib/baseline-build.ts), both
 * control planes are started per backend, and every row is measured for each build in turn,
 * `--rounds` times (default 2), interleaved, so both see the same machine state. A summary
 * compares server CPU ms per lease (median over rounds). `npm run bench:control:compare` runs it
 * against the last commit before the authorization policy (f40973a).
 *
 * `--as`: who asks. `user`: interactive access tokens (password grant). `service`: access tokens
 * of scoped service tokens (`open:bench-svc` or `expose:bench-svc-N`), so every lease also passes
 * the policy's scope checks and the guard's service-token lookup (issue 9).
 *
 * `--concurrency`: closed-loop rows, N clients each sending its next request when the last one
 * answered (mean latency = N / throughput, so at 16 clients and 500/s it is 32 ms by
 * construction). `--rate`: open-loop rows, requests offered at a fixed rate (at most 64 in
 * flight), latency counted from when each was due: whether the server sustains that rate and
 * with what tail.
 *
 * Order: each control plane first issues max(--warmup, 3000) leases unmeasured (V8 is still
 * compiling the hot paths over the first thousands: a row measured first cost up to half again
 * as much CPU per lease, which made `user`, measured first, look dearer than `service`); then
 * rounds, each measuring every row (`--as`, concurrency, rate) after its own --warmup, so rows
 * of one round see the same machine and database. The table lists each row's rounds together.
 *
 * Prints a table (not a test: no assertions, the numbers are for people). `one-statement`: the
 * share of a row's leases the one-statement open path issued (services/lease-last-seen.ts, from
 * the control plane's `tunnel_control_lease_last_seen_total{outcome}` on /metrics; about 100% for
 * open leases once warm, `-` for expose leases), and `changed`: its attempts that found the state
 * changed and took the usual path. A lower share means more round trips and CPU per lease.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { formatPublicKeyLine, rawPublicKey } from '../protocol/ssh-key.js';
import {
  enrollOnlineNode,
  expectStatus,
  httpCaller,
  nodeHeartbeat,
  passwordLogin,
  startControlProcess,
  type ControlProcess,
} from '../test/harness/control.js';
import { startPostgres, type PostgresInstance } from '../test/harness/postgres.js';
import { parseBenchArgs } from './lib/bench-args.js';
import { buildBaseline } from './lib/baseline-build.js';
import { cpuTimes } from './lib/proc.js';
import { formatCpuSummary, summariseCpuProfile, type CategoryRule } from './lib/cpu-profile.js';
import { formatTable, quantile, runLoad, type LoadResult } from './lib/http-load.js';

type Backend = 'pglite' | 'postgres';
type Kind = 'open' | 'expose';

const args = parseBenchArgs(
  {
    kind: { type: 'string', default: 'open' },
    requests: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8,16,32' },
    rate: { type: 'string', default: '500' },
    backend: { type: 'string', default: 'pglite,postgres' },
    users: { type: 'string', default: '8' },
    as: { type: 'string', default: 'user,service' },
    'cpu-prof': { type: 'string' },
    profile: { type: 'boolean', default: false },
    'node-arg': { type: 'string', multiple: true, default: [] },
    top: { type: 'string', default: '15' },
    baseline: { type: 'string' },
    rounds: { type: 'string' },
  },
  [
    'usage: node dist/bench/control-leases.js [options]      (npm run bench:control builds first)',
    '  --kind open|expose          which lease (open)',
    '  --requests N                measured requests per row (3000), after --warmup N (300);',
    '                              each control plane first issues max(N, 3000) unmeasured',
    '  --concurrency N,N           closed-loop rows: N clients each (8,16,32)',
    "  --rate R,R                  open-loop rows: R requests/s offered (500; 0 or '' for none)",
    '  --backend pglite,postgres   databases (both; postgres is a throwaway cluster started here)',
    '  --as user,service           who asks: interactive access tokens, service tokens (both)',
    '  --users N                   users the requests are spread over (8)',
    '  --cpu-prof DIR              write each control plane\'s V8 CPU profile into DIR',
    '  --profile                   profile them and print where the CPU went (categories, top functions)',
    '  --top N                     functions in the profile table (15)',
    '  --node-arg ARG              extra node flag for the control planes, repeatable; with',
    '                              --node-arg=--trace-gc each one\'s collections are summarised',
    '  --baseline REV              also build REV beside this tree and measure both, interleaved',
    '  --rounds N                  rounds per row (1; 2 with --baseline), median compared',
    '  e.g. issue 11 target 4: --backend postgres --concurrency 8 --rate 0',
    '',
  ].join('\n'),
);
type As = 'user' | 'service';
const AS = args.as.split(',') as As[];
if (AS.some((a) => a !== 'user' && a !== 'service')) throw new Error('--as must list user and/or service');
const KIND = args.kind as Kind;
if (KIND !== 'open' && KIND !== 'expose') throw new Error('--kind must be open or expose');
const REQUESTS = Number(args.requests);
const WARMUP = Number(args.warmup);
/** Leases issued by each control plane before its first measured row. */
const START_WARMUP = Math.max(WARMUP, 3000);
const CONCURRENCY = args.concurrency.split(',').map(Number);
/** Open-loop rows: requests/s offered regardless of responses (0 or '' for none). */
const RATES = args.rate.split(',').filter(Boolean).map(Number).filter((r) => r > 0);
const OPEN_LOOP_MAX_IN_FLIGHT = 64;
const BACKENDS = args.backend.split(',') as Backend[];
const USERS = Number(args.users);
const PASSWORD = 'bench password 0123456789';
const EXPOSURE = 'bench-svc';
const HEARTBEAT_MS = 10_000;
/** Where the control planes' CPU profiles go: --cpu-prof DIR, or a temporary one for --profile. */
const PROFILE_DIR = args['cpu-prof'] ? resolve(args['cpu-prof']) : args.profile ? mkdtempSync(join(tmpdir(), 'bench-control-prof-')) : undefined;
const NODE_ARGS = args['node-arg'];
const ROUNDS = Number(args.rounds ?? (args.baseline ? '2' : '1'));
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('--rounds must be a whole number of at least 1');

/** A control-plane build to measure: this tree, or a baseline commit built beside it. */
interface Build {
  label: string;
  /** `control/main.js` of the build; undefined: this tree's dist. */
  bin?: string;
}

interface Fixture {
  control: ControlProcess;
  tokens: Record<As, string[]>;
  stop(): Promise<void>;
}

async function startBackend(backend: Backend, build: Build): Promise<Fixture> {
  let pg: PostgresInstance | undefined;
  // The per-user lease limit stays on (its counter is part of the cost per lease) but high
  // enough that a few users can be issued thousands of leases a minute.
  // /metrics has its own address (off by default); a build from before it served it on the API
  // port and ignores the variable, which lastSeenOutcomes falls back to.
  const env: Record<string, string> = { TUNNEL_LEASE_RATE_LIMIT: '1000000000', TUNNEL_METRICS_LISTEN: '127.0.0.1:0' };
  if (backend === 'postgres') {
    pg = await startPostgres({ database: 'tunnel_bench' });
    env.DATABASE_URL = pg.url;
    env.TUNNEL_MASTER_KEY = randomBytes(32).toString('base64');
  }
  const nodeArgs = [...NODE_ARGS, ...(PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${profileName(backend, build)}`] : [])];
  const control = await startControlProcess({ env, nodeArgs, ...(build.bin ? { bin: build.bin } : {}) }).catch(async (err: unknown) => {
    await pg?.stop();
    throw err;
  });
  const call = httpCaller(control.url);
  expectStatus(
    await call('POST', '/v1/setup', { body: { setup_code: control.setupCode, name: 'admin', password: PASSWORD } }),
    201,
    'setup',
  );
  const admin = await passwordLogin(call, 'admin', PASSWORD);
  const names = Array.from({ length: USERS }, (_, i) => `bench-user-${i}`);
  for (const name of names) {
    expectStatus(await call('POST', '/v1/users', { token: admin, body: { name, password: PASSWORD } }), 201, `create ${name}`);
  }
  const tokens: Record<As, string[]> = { user: [], service: [] };
  for (const name of names) tokens.user.push(await passwordLogin(call, name, PASSWORD));
  const node = await enrollOnlineNode(call, admin, 'bench-relay', '127.0.0.1:2222');
  // Open leases: everyone may open one exposure, which the relay reports online. Expose leases:
  // each user owns one exposure (only the owner or an admin may expose it).
  expectStatus(await call('PUT', `/v1/exposures/${EXPOSURE}`, { token: admin, body: { allow: names } }), 201, 'exposure');
  for (const [i, name] of names.entries()) {
    expectStatus(await call('PUT', `/v1/exposures/${EXPOSURE}-${i}`, { token: tokens.user[i], body: { allow: [] } }), 201, `exposure of ${name}`);
  }
  for (const [i, token] of tokens.user.entries()) {
    const scope = KIND === 'open' ? `open:${EXPOSURE}` : `expose:${EXPOSURE}-${i}`;
    const st = expectStatus(await call('POST', '/v1/service-tokens', { token, body: { name: `bench-${i}`, scopes: [scope] } }), 201, 'service token');
    const at = expectStatus(
      await call('POST', '/v1/auth/token', { body: { grant_type: 'urn:tunnel:params:oauth:grant-type:service-token', service_token: st.body.token } }),
      200,
      'service token grant',
    );
    tokens.service.push(at.body.access_token as string);
  }
  // The relay holds the open leases' exposure as X would: through an expose lease issued for it.
  const xKey = formatPublicKeyLine(rawPublicKey(generateKeyPairSync('ed25519').publicKey), 'bench-x');
  expectStatus(await call('POST', '/v1/leases', { token: admin, body: { kind: 'expose', exposure: EXPOSURE, public_key: xKey } }), 201, 'expose lease');
  const held = [{ name: EXPOSURE, port: 22 }];
  await nodeHeartbeat(call, node, held);
  // A relay heartbeats all the time; keep doing so, so the node stays online through long runs.
  const beat = setInterval(() => void nodeHeartbeat(call, node, held).catch(() => undefined), HEARTBEAT_MS);
  beat.unref();
  return {
    control,
    tokens,
    async stop() {
      clearInterval(beat);
      const end = await control.stop();
      if (NODE_ARGS.includes('--trace-gc')) process.stdout.write(`\n${gcSummary(control.stdout(), `control plane, ${backend}, ${build.label}`)}`);
      control.cleanup();
      await pg?.stop();
      if (end.code !== 0) process.stderr.write(`control exited with ${end.code ?? end.signal}:\n${control.stderr().slice(-2000)}\n`);
    },
  };
}

/**
 * The collections `--trace-gc` reported over a control plane's life (set-up, warm-ups and every
 * row): per kind, how many, their pauses' total, median and longest (issue 11: whether GC pauses
 * make the tail of lease latency; every request in flight waits out a pause).
 */
function gcSummary(stdout: string, title: string): string {
  const pauses = new Map<string, number[]>();
  for (const m of stdout.matchAll(/ms: ((?:Minor )?Mark-Compact(?: \(reduce\))?|Scavenge)\b[^,]*, ([\d.]+) \/ [\d.]+ ms/g)) {
    pauses.set(m[1]!, [...(pauses.get(m[1]!) ?? []), Number(m[2])]);
  }
  const rows = [['collection', 'count', 'pause total ms', 'median ms', 'max ms']];
  for (const [kind, ms] of pauses) {
    rows.push([kind, String(ms.length), ms.reduce((a, b) => a + b, 0).toFixed(1), quantile(Float64Array.from(ms).sort(), 0.5).toFixed(2), Math.max(...ms).toFixed(2)]);
  }
  return `**${title}: garbage collections (--trace-gc)**\n${formatTable(rows)}\n`;
}

const profileName = (backend: Backend, build: Build): string => `control-${backend}-${KIND}-${build.label.replace(/[^A-Za-z0-9._-]/g, '_')}.cpuprofile`;

/** The control plane's own categories, tried before cpu-profile.ts's built-in ones. */
const CONTROL_CATEGORIES: CategoryRule[] = [
  { name: 'Ed25519 signing (lease token, certificate)', fn: /^signOneShot$/ },
  { name: 'drizzle (query building, result mapping)', url: /node_modules\/drizzle-orm\// },
  { name: 'postgres.js (driver: protocol, parsing)', url: /node_modules\/postgres\// },
  { name: 'PGlite', url: /node_modules\/@electric-sql\/pglite\// },
  { name: 'zod (validation)', url: /node_modules\/zod\// },
  { name: 'Hono, @hono/node-server, zod-openapi', url: /node_modules\/(hono|@hono)\// },
  { name: 'node:http (parser, responses)', url: /^node:_http|node:internal\/http/ },
];

/** Each profiled control plane's table: where its CPU went over the whole run. */
function printProfiles(builds: Build[]): void {
  if (!args.profile || !PROFILE_DIR) return;
  for (const backend of BACKENDS) {
    for (const build of builds) {
      const file = join(PROFILE_DIR, profileName(backend, build));
      let table: string;
      try {
        table = formatCpuSummary(
          summariseCpuProfile(file, { top: Number(args.top), categories: CONTROL_CATEGORIES }),
          `control plane, ${backend}, ${build.label} (${KIND} leases; set-up, warm-up and every row of this run)`,
        );
      } catch (err) {
        table = `**control plane, ${backend}, ${build.label}**: no profile (${(err as Error).message})\n`;
      }
      process.stdout.write(`\n${table}`);
    }
  }
  if (args['cpu-prof']) process.stdout.write(`\nCPU profiles: ${PROFILE_DIR}\n`);
  else rmSync(PROFILE_DIR, { recursive: true, force: true });
}

function keyLines(n: number): string[] {
  return Array.from({ length: n }, () => formatPublicKeyLine(rawPublicKey(generateKeyPairSync('ed25519').publicKey), 'bench'));
}

interface Measured extends LoadResult {
  /** Server CPU ms per successful lease. */
  cpuMsPerLease: number;
  /** The part of it spent in the kernel (socket reads and writes, mostly). */
  sysMsPerLease: number;
  /**
   * Of the successful leases, the share the one-statement open path issued
   * (`tunnel_control_lease_last_seen_total{outcome="issued"}`); NaN when the control plane
   * does not count it (expose leases never take it).
   */
  fastShare: number;
  /** One-statement attempts that found something changed and fell back to the usual path. */
  fastChanged: number;
}

/** The control plane's `tunnel_control_lease_last_seen_total` by outcome, from its /metrics. */
async function lastSeenOutcomes(fx: Fixture): Promise<Map<string, number>> {
  const res = await fetch(new URL('/metrics', fx.control.metricsUrl ?? fx.control.url));
  const text = await res.text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^tunnel_control_lease_last_seen_total\{outcome="([a-z]+)"\} (\d+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

async function measure(fx: Fixture, as: As, concurrency: number, requests: number, keys: string[], rate?: number): Promise<Measured> {
  const seen0 = await lastSeenOutcomes(fx);
  const cpu0 = cpuTimes(fx.control.pid);
  const r = await load(fx, as, concurrency, requests, keys, rate);
  const cpu1 = cpuTimes(fx.control.pid);
  const seen1 = await lastSeenOutcomes(fx);
  const per = (s: number): number => (s * 1000) / Math.max(1, r.latencies.length);
  const delta = (o: string): number => (seen1.get(o) ?? 0) - (seen0.get(o) ?? 0);
  return {
    ...r,
    cpuMsPerLease: per(cpu1.user - cpu0.user + cpu1.sys - cpu0.sys),
    sysMsPerLease: per(cpu1.sys - cpu0.sys),
    fastShare: seen1.size === 0 ? NaN : delta('issued') / Math.max(1, r.latencies.length),
    fastChanged: delta('changed'),
  };
}

function load(fx: Fixture, as: As, concurrency: number, requests: number, keys: string[], rate?: number): Promise<LoadResult> {
  const tokens = fx.tokens[as];
  return runLoad({
    origin: fx.control.url,
    concurrency,
    rate,
    requests,
    okStatus: 201,
    make: (i) => {
      const u = i % tokens.length;
      const body =
        KIND === 'open'
          ? { kind: 'open', exposure: EXPOSURE, public_key: keys[i % keys.length] }
          : { kind: 'expose', exposure: `${EXPOSURE}-${u}`, port: 22, public_key: keys[i % keys.length] };
      return {
        method: 'POST',
        path: '/v1/leases',
        headers: { authorization: `Bearer ${tokens[u]}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      };
    },
  });
}

function row(backend: Backend, build: string, load: string, r: Measured): string[] {
  const ms = (v: number): string => v.toFixed(1);
  return [
    backend,
    build,
    load,
    String(r.requests),
    ((r.latencies.length / r.elapsedMs) * 1000).toFixed(0),
    ms(quantile(r.latencies, 0.5)),
    ms(quantile(r.latencies, 0.99)),
    ms(quantile(r.latencies, 1)),
    String(r.errors),
    Number.isNaN(r.cpuMsPerLease) ? '-' : r.cpuMsPerLease.toFixed(2),
    Number.isNaN(r.sysMsPerLease) ? '-' : r.sysMsPerLease.toFixed(2),
    Number.isNaN(r.fastShare) ? '-' : `${(r.fastShare * 100).toFixed(0)}%`,
    String(r.fastChanged),
  ];
}

async function main(): Promise<void> {
  process.stderr.write(
    `lease issuance (${KIND}) on ${cpus().length} CPU(s), node ${process.version}, load average ${loadavg()[0]!.toFixed(1)}: ${REQUESTS} requests per row after ${WARMUP} warm-up\n`,
  );
  const baseline = args.baseline ? buildBaseline(args.baseline, (l) => process.stderr.write(l)) : undefined;
  try {
    await measureAll(baseline ? [{ label: baseline.commit, bin: baseline.controlBin }, { label: 'this tree' }] : [{ label: 'this tree' }]);
  } finally {
    baseline?.remove();
  }
}

async function measureAll(builds: Build[]): Promise<void> {
  const keys = keyLines(REQUESTS + WARMUP);
  const rows: string[][] = [['backend', 'build', 'load', 'requests', 'leases/s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'server cpu ms/lease', 'of which kernel', 'one-statement', 'changed']];
  const failures: string[] = [];
  /** CPU ms/lease per backend, load and build, one value per round. */
  const cpu = new Map<string, number[]>();
  for (const backend of BACKENDS) {
    const fixtures: Fixture[] = [];
    /** This backend's rows with the index of their run, to print each run's rounds together. */
    const measured: { run: number; cells: string[] }[] = [];
    try {
      for (const build of builds) fixtures.push(await startBackend(backend, build));
      const runs = AS.flatMap((as) => [
        ...CONCURRENCY.map((c) => ({ as, label: `${as} ${c} clients`, concurrency: c, rate: undefined as number | undefined })),
        ...RATES.map((rate) => ({ as, label: `${as} open ${rate}/s`, concurrency: OPEN_LOOP_MAX_IN_FLIGHT, rate })),
      ]);
      // Start-up warm-up: V8 is still compiling the hot paths over the first few thousand
      // leases, and the first row measured after a short warm-up cost up to half again as much
      // CPU per lease as the next ones (issue 11: the user rows, measured first, looked dearer).
      for (const fx of fixtures) await load(fx, runs[0]!.as, runs[0]!.concurrency, START_WARMUP, keys);
      // Round by round, every row in each round: rows of one round see the same machine and the
      // same database size, whichever `--as` or concurrency they are.
      for (let round = 0; round < ROUNDS; round++) {
        for (const [i, run] of runs.entries()) {
          for (const [b, fx] of fixtures.entries()) {
            await load(fx, run.as, run.concurrency, WARMUP, keys.slice(REQUESTS));
            const r = await measure(fx, run.as, run.concurrency, REQUESTS, keys, run.rate);
            const cells = row(backend, builds[b]!.label, run.label, r);
            measured.push({ run: i, cells });
            process.stderr.write(`  ${cells.join(' ')}\n`);
            const key = `${backend}\t${run.label}\t${builds[b]!.label}`;
            cpu.set(key, [...(cpu.get(key) ?? []), r.cpuMsPerLease]);
            if (r.errors) failures.push(`${backend} ${builds[b]!.label} ${run.label}: ${[...r.errorKinds].map(([k, n]) => `${n}x ${k}`).join(', ')}`);
          }
        }
      }
    } finally {
      for (const fx of fixtures) await fx.stop();
    }
    rows.push(...measured.sort((x, y) => x.run - y.run).map((m) => m.cells));
  }
  process.stdout.write(`${formatTable(rows)}\n`);
  if (builds.length === 2) process.stdout.write(`${formatTable(compareRows(builds, cpu))}\n`);
  if (failures.length) process.stdout.write(`errors: ${failures.join('; ')}\n`);
  printProfiles(builds);
}

/** Before/after: median server CPU ms per lease over the rounds, per backend and load. */
function compareRows(builds: Build[], cpu: Map<string, number[]>): string[][] {
  const [before, after] = builds as [Build, Build];
  const median = (v: number[]): number => {
    const s = [...v].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const out = [['backend', 'load', `cpu ms/lease ${before.label}`, `cpu ms/lease ${after.label}`, 'after/before']];
  const seen = new Set<string>();
  for (const key of cpu.keys()) {
    const [backend, load] = key.split('\t') as [string, string];
    if (seen.has(`${backend}\t${load}`)) continue;
    seen.add(`${backend}\t${load}`);
    const b = median(cpu.get(`${backend}\t${load}\t${before.label}`) ?? [NaN]);
    const a = median(cpu.get(`${backend}\t${load}\t${after.label}`) ?? [NaN]);
    out.push([backend, load, b.toFixed(2), a.toFixed(2), (a / b).toFixed(2)]);
  }
  return out;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
