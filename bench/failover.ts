/**
 * bench:failover: how long X is unreachable for Y when a relay or a control-plane replica dies.
 *
 * In the network-namespace lab (root, Postgres server binaries): two relays and two control
 * replicas on one real Postgres (test/harness/lab-failover.ts). X runs `tunnel expose` of its
 * echo service, Y runs `tunnel open --stdio` against it (both with the replica list). Each run:
 *
 * - relay kill: SIGKILL the relay holding X's exposure, then Y runs `tunnel open` until one
 *   carries "ping" to X and back; the killed relay is started again for the next run.
 * - control kill: SIGKILL one replica (alternating), the same measurement; the replica is
 *   started again for the next run.
 *
 * The figure is SIGKILL to Y's first successful round trip, including the CLI's own start (a
 * new `tunnel` process per attempt, as a user or ssh's ProxyCommand would run it).
 * Prints p50 and max per scenario, every value, and the load average.
 *
 * Options: --runs N (5 of each)
 */
import { loadavg } from 'node:os';
import { rmSync } from 'node:fs';
import { labSkipReason } from '../test/harness/lab.js';
import { labTempDir, passwordUser } from '../test/harness/lab-cli.js';
import { controlKillRun, openOnce, relayKillRun, startFailoverLab, type FailoverRun } from '../test/harness/lab-failover.js';
import { postgresUnavailableReason } from '../test/harness/postgres.js';
import { waitForLine } from '../test/harness/streams.js';
import { parseBenchArgs } from './lib/bench-args.js';
import { runBench } from './lib/run-bench.js';
import { quantile } from './lib/traffic.js';

const values = parseBenchArgs(
  { runs: { type: 'string', default: '5' } },
  'usage: node dist/bench/failover.js [--runs N]   (npm run bench:failover builds first; root: network namespaces)\n  --runs N   kills of each kind, p50/p99 of the time to recover (5)',
);
const RUNS = Number(values.runs);
if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 100) {
  process.stderr.write('bench:failover: --runs must be an integer from 1 to 100\n');
  process.exit(2);
}
const EXPOSURE = 'x-echo';
const LIMIT_MS = 120_000;

runBench('bench:failover', async (cleanups) => {
  const why = labSkipReason() ?? postgresUnavailableReason();
  if (why) throw new Error(`cannot run: ${why}`);
  const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
  process.stdout.write(`bench:failover: ${RUNS} runs of each; load average at start ${load()}\n`);
  const fl = await startFailoverLab();
  cleanups.add(() => fl.destroy());
  const dir = labTempDir('bench-failover');
  cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
  const xavier = await passwordUser(fl, 'xavier', 'hostx', dir);
  const bob = await passwordUser(fl, 'bob', 'hosty', dir);
  const x = xavier.spawn(['expose', '7100', '--name', EXPOSURE, '--allow', 'bob', '--json']);
  cleanups.add(() => x.kill('SIGKILL'));
  await waitForLine(x, /"event":"connected"/, 30_000);
  const ready = async () => {
    const start = Date.now();
    while (!(await openOnce(bob, EXPOSURE))) {
      if (Date.now() - start > LIMIT_MS) throw new Error('Y cannot reach X');
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  await ready();

  const relayRuns: FailoverRun[] = [];
  const controlRuns: FailoverRun[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await relayKillRun(fl, () => x.output().stdout, bob, EXPOSURE, LIMIT_MS);
    relayRuns.push(r);
    process.stdout.write(`  relay kill ${i + 1}: ${r.from} -> ${r.to}, ${r.ms} ms (${r.attempts} attempts)\n`);
    await ready();
    const c = await controlKillRun(fl, i % 2, bob, EXPOSURE, LIMIT_MS);
    controlRuns.push(c);
    process.stdout.write(`  control kill ${i + 1}: ${c.from} down, ${c.ms} ms (${c.attempts} attempts)\n`);
    await ready();
  }

  const row = (name: string, runs: FailoverRun[]) => {
    const ms = runs.map((r) => r.ms).sort((a, b) => a - b);
    return `| ${name} | ${runs.length} | ${quantile(ms, 0.5)} | ${ms[ms.length - 1]} | ${ms.join(', ')} |`;
  };
  process.stdout.write(
    [
      '',
      'kill to X reachable from Y again (ms, SIGKILL to the first tunnel open that round-trips):',
      '| scenario | runs | p50 ms | max ms | all (ms) |',
      '|---|---|---|---|---|',
      row('relay holding X SIGKILLed', relayRuns),
      row('control replica SIGKILLed', controlRuns),
      `load average at end: ${load()}`,
      '',
    ].join('\n'),
  );
});
