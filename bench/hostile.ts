/**
 * `npm run bench:hostile`: the relay under each attack of issue 8 for --seconds (default 60)
 * while one legitimate client pushes data, against a quiet run. Real tunnel-control and
 * tunnel-node processes; the legitimate X and Y are OpenSSH (`ssh -R`, `ssh -L`) with
 * control-issued certificates; each attacker is its own process (bench/hostile-attacker.ts).
 *
 *   preauth         1,000 sockets that never send an identification line, from one address
 *   preauth-spread  the same 1,000 from 50 addresses (the global --max-startups cap, not the per-source one)
 *   window-flood    10 authenticated Ys granting ~4 GiB of window on a firehose, never reading
 *   reply-flood     4 clients flooding keepalive@openssh.com with want-reply, never reading
 *   channel-hog     one Y opening every channel it is given to the legitimate exposure
 *
 * Per phase: relay RSS before/peak/after, buffered bytes (the relay's own accounting on
 * /metrics), open fds, the legitimate client's throughput against the quiet run, whether a
 * legitimate stream or a fresh legitimate SSH connection was ever refused, and what happened
 * to the attackers. Relay flags are the defaults unless given with --relay-arg.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fetch } from 'undici';
import { parseCertificateLine } from '../protocol/ssh-cert.js';
import { formatPublicKeyLine, rawPublicKey } from '../protocol/ssh-key.js';
import { nativeCryptoAvailable } from '../node/ssh2-internals.js';
import { parsePrometheusText, type PromText } from '../test/node/prom-text.js';
import { connectWithCertificate } from '../test/node/ssh2-cert-client.js';
import type { AttackReport, AttackSpec, AttackerCreds } from './hostile-attacker.js';
import { freePort, killTracked, sshArgs, track, writeKey, type SshTarget } from './lib/openssh.js';
import { rssBytes } from './lib/proc.js';
import { startRelayStack, type RelayStack } from './lib/relay-stack.js';
import { runBench } from './lib/run-bench.js';
import { openStream, pump, startService, waitForPath, type Service } from './lib/traffic.js';
import { parseBenchArgs } from './lib/bench-args.js';

const EXPOSURE = 'bench-legit';
const FIREHOSE = 'bench-firehose';
const MiB = 2 ** 20;

const opts = parseBenchArgs(
  {
    seconds: { type: 'string', default: '60' },
    'quiet-seconds': { type: 'string', default: '30' },
    'chunk-mib': { type: 'string', default: '16' },
    phase: { type: 'string', multiple: true },
    'relay-arg': { type: 'string', multiple: true, default: [] },
    cipher: { type: 'string', default: 'aes128-gcm@openssh.com' },
  },
  `usage: node dist/bench/hostile.js [options]      (npm run bench:hostile builds first)
  --seconds N           seconds per attack phase (60)     --quiet-seconds N  seconds of the quiet baseline (30)
  --chunk-mib N         MiB per write of the legitimate stream (16)
  --phase NAME          run only this phase, repeatable: preauth, preauth-spread, window-flood, reply-flood, channel-hog
                        (quiet always runs)
  --relay-arg ARG       extra tunnel-node flag, repeatable    --cipher NAME  cipher (aes128-gcm@openssh.com)`,
);
const SECONDS = Number(opts.seconds);
const CHUNK = Number(opts['chunk-mib']) * MiB;
const PHASES = ['quiet', 'preauth', 'preauth-spread', 'window-flood', 'reply-flood', 'channel-hog'] as const;
type Phase = (typeof PHASES)[number];
const selected = new Set<Phase>((opts.phase as Phase[] | undefined) ?? PHASES);
selected.add('quiet');

const log = (msg: string) => process.stderr.write(`[bench:hostile] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  rss: number;
  fds: number;
  buffered: number;
  unauth: number;
  connections: number;
}

interface PhaseResult {
  phase: Phase;
  seconds: number;
  before: Sample;
  peak: Sample;
  after: Sample;
  legitBytes: number;
  legitStreamsRefused: number;
  legitConnects: number;
  legitConnectsRefused: number;
  attack?: AttackReport;
  metricDeltas: Record<string, number>;
}

function fds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

async function metricsOf(stack: RelayStack): Promise<PromText> {
  return parsePrometheusText(await (await fetch(`http://127.0.0.1:${stack.relay.metricsPort}/metrics`)).text());
}

const sumOf = (m: PromText, name: string) => m.samples.filter((s) => s.name === name).reduce((n, s) => n + s.value, 0);

async function sample(stack: RelayStack): Promise<Sample> {
  const m = await metricsOf(stack);
  return {
    rss: rssBytes(stack.relay.pid),
    fds: fds(stack.relay.pid),
    // What the relay holds for peers: socket and ssh2 queues, plus bridged channel streams.
    buffered: sumOf(m, 'tunnel_node_send_buffer_bytes') + sumOf(m, 'tunnel_node_bridge_buffer_bytes'),
    unauth: m.value('tunnel_node_unauthenticated_connections'),
    connections: m.value('tunnel_node_connections'),
  };
}

/** Counters whose movement says how the relay dealt with an attack. */
const WATCHED: [string, Record<string, string>?][] = [
  ['tunnel_node_preauth_drops_total', { reason: 'per_source' }],
  ['tunnel_node_preauth_drops_total', { reason: 'max_startups' }],
  ['tunnel_node_preauth_drops_total', { reason: 'max_startups_random' }],
  ['tunnel_node_preauth_drops_total', { reason: 'login_grace' }],
  ['tunnel_node_send_throttled_total'],
  ['tunnel_node_send_read_paused_total'],
  ['tunnel_node_send_stall_disconnects_total'],
  ['tunnel_node_bridged_channels_total', { outcome: 'opener_share' }],
  ['tunnel_node_bridged_channels_total', { outcome: 'idle_timeout' }],
  ['tunnel_node_handler_faults_total'],
];
const watchedKey = (name: string, labels?: Record<string, string>) => `${name.replace(/^tunnel_node_|_total$/g, '')}${labels ? `{${Object.values(labels).join(',')}}` : ''}`;
function watched(m: PromText): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, labels] of WATCHED) out[watchedKey(name, labels)] = labels ? m.value(name, labels) : sumOf(m, name);
  return out;
}

runBench('bench:hostile', async (cleanups) => {
  const dir = mkdtempSync(join(tmpdir(), 'tunnel-bench-hostile-'));
  cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
  log(`${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}, ssh2 native crypto ${nativeCryptoAvailable() ? 'yes' : 'NO'}`);
  const service: Service = await startService();
  cleanups.add(() => service.close());
  const stack = await startRelayStack(opts['relay-arg']);
  cleanups.add(() => stack.stop());
  cleanups.add(() => killTracked());
  await stack.exposure(EXPOSURE);
  await stack.exposure(FIREHOSE);
  const relay = stack.relay;
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${relay.sshPort} ${stack.hostKeyLine}\n`);

  /** A fresh key and a control-issued certificate. */
  const creds = async (name: string, body: { kind: 'expose' | 'open'; exposure: string; port?: number }): Promise<AttackerCreds & { keyFile: string; certFile: string }> => {
    const k = writeKey(dir, name);
    const issued = await stack.lease({ ...body, ttl_seconds: 3600 }, k.publicKeyLine);
    const certFile = `${k.file}-cert.pub`;
    writeFileSync(certFile, `${issued.certificate}\n`);
    return { privateKeyPem: k.key.export({ type: 'pkcs8', format: 'pem' }) as string, certificate: issued.certificate, user: stack.user, keyFile: k.file, certFile };
  };

  // The legitimate X and Y: OpenSSH with certificates, X's service is the counting sink.
  const target = (c: { keyFile: string; certFile: string }): SshTarget => ({ port: relay.sshPort, user: stack.user, keyFile: c.keyFile, knownHosts, certFile: c.certFile });
  const localPort = await freePort();
  const xs = track('ssh', sshArgs(target(await creds('legit_x', { kind: 'expose', exposure: EXPOSURE, port: 22 })), opts.cipher, ['-R', `${EXPOSURE}:22:127.0.0.1:${service.port}`]));
  const ys = track('ssh', sshArgs(target(await creds('legit_y', { kind: 'open', exposure: EXPOSURE })), opts.cipher, ['-L', `127.0.0.1:${localPort}:${EXPOSURE}:22`]));
  await waitForPath(localPort, 30_000);
  // A fresh legitimate SSH connection every 2 s (new connections are what pre-auth floods deny).
  const probeKey = generateKeyPairSync('ed25519').privateKey;
  const probeLease = await stack.lease({ kind: 'open', exposure: EXPOSURE, ttl_seconds: 3600 }, formatPublicKeyLine(rawPublicKey(probeKey)));

  const runPhase = async (phase: Phase, attack?: AttackSpec): Promise<PhaseResult> => {
    const seconds = phase === 'quiet' ? Number(opts['quiet-seconds']) : SECONDS;
    log(`${phase}: ${seconds} s`);
    const m0 = watched(await metricsOf(stack));
    const before = await sample(stack);
    const peak = { ...before };
    let attacker: ReturnType<typeof track> | undefined;
    if (attack) {
      const file = join(dir, `${phase}.json`);
      writeFileSync(file, JSON.stringify({ ...attack, seconds }));
      attacker = track(process.execPath, [join(import.meta.dirname, 'hostile-attacker.js'), file]);
    }
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let running = true;
    const sampling = (async () => {
      while (running) {
        const s = await sample(stack).catch(() => undefined);
        if (s) for (const k of Object.keys(peak) as (keyof Sample)[]) peak[k] = Math.max(peak[k], s[k]);
        await sleep(500);
      }
    })();
    let legitBytes = 0;
    let legitStreamsRefused = 0;
    const legit = (async () => {
      while (performance.now() < end) {
        try {
          const { sock } = await openStream(localPort, 10_000);
          const got = service.received();
          await pump(sock, CHUNK);
          await service.waitForBytes(got + CHUNK, 120_000);
          legitBytes += CHUNK;
          sock.destroy();
        } catch (err) {
          legitStreamsRefused++;
          log(`${phase}: legitimate stream refused: ${err instanceof Error ? err.message : String(err)}`);
          await sleep(500);
        }
      }
    })();
    let legitConnects = 0;
    let legitConnectsRefused = 0;
    const connects = (async () => {
      while (performance.now() < end) {
        legitConnects++;
        try {
          const c = await connectWithCertificate({ port: relay.sshPort, username: stack.user, privateKey: probeKey, certificate: parseCertificateLine(probeLease.certificate), hostKeyLine: stack.hostKeyLine });
          c.end();
        } catch (err) {
          legitConnectsRefused++;
          log(`${phase}: legitimate connection refused: ${err instanceof Error ? err.message : String(err)}`);
        }
        await sleep(2000);
      }
    })();
    await Promise.all([legit, connects]);
    const elapsed = (performance.now() - t0) / 1000;
    let report: AttackReport | undefined;
    if (attacker) {
      await attacker.exited;
      const line = attacker.output().split('\n').find((l) => l.startsWith('{"kind"'));
      report = line ? (JSON.parse(line) as AttackReport) : undefined;
      if (!report) log(`${phase}: attacker printed no report:\n${attacker.output().slice(-2000)}`);
    }
    running = false;
    await sampling;
    await sleep(3000); // let the relay let go of what the attackers left behind
    const after = await sample(stack);
    const m1 = watched(await metricsOf(stack));
    const metricDeltas = Object.fromEntries(Object.entries(m1).map(([k, v]) => [k, v - (m0[k] ?? 0)]).filter(([, v]) => v !== 0));
    return { phase, seconds: elapsed, before, peak, after, legitBytes, legitStreamsRefused, legitConnects, legitConnectsRefused, attack: report, metricDeltas };
  };

  const base = { port: relay.sshPort, hostKeyLine: stack.hostKeyLine, seconds: SECONDS };
  const results: PhaseResult[] = [];
  const idleRss = rssBytes(relay.pid);
  results.push(await runPhase('quiet'));
  if (selected.has('preauth')) results.push(await runPhase('preauth', { ...base, kind: 'preauth', sockets: 1000, sources: ['127.0.0.2'] }));
  if (selected.has('preauth-spread')) {
    const sources = Array.from({ length: 50 }, (_, i) => `127.0.1.${i + 1}`);
    results.push(await runPhase('preauth-spread', { ...base, kind: 'preauth', sockets: 1000, sources }));
  }
  if (selected.has('window-flood')) {
    // The firehose X first (control issues open leases only for an online exposure), then the Ys.
    const fh = await creds('firehose_x', { kind: 'expose', exposure: FIREHOSE, port: 22 });
    const file = join(dir, 'firehose.json');
    writeFileSync(file, JSON.stringify({ ...base, seconds: SECONDS + 30, kind: 'firehose', firehose: fh, exposure: FIREHOSE } satisfies AttackSpec));
    const x = track(process.execPath, [join(import.meta.dirname, 'hostile-attacker.js'), file]);
    await x.waitFor(/online/, 30_000);
    const ys = await Promise.all(Array.from({ length: 10 }, (_, i) => creds(`wf_${i}`, { kind: 'open', exposure: FIREHOSE })));
    results.push(await runPhase('window-flood', { ...base, kind: 'window-flood', creds: ys, exposure: FIREHOSE }));
    await x.stop();
  }
  if (selected.has('reply-flood')) {
    const cs = await Promise.all(Array.from({ length: 4 }, (_, i) => creds(`rf_${i}`, { kind: 'open', exposure: EXPOSURE })));
    results.push(await runPhase('reply-flood', { ...base, kind: 'reply-flood', creds: cs }));
  }
  if (selected.has('channel-hog')) {
    const hog = await creds('hog', { kind: 'open', exposure: EXPOSURE });
    results.push(await runPhase('channel-hog', { ...base, kind: 'channel-hog', creds: [hog], exposure: EXPOSURE }));
  }
  await ys.stop();
  await xs.stop();
  process.stdout.write(`\n${table(results, idleRss)}\n`);
  process.stdout.write(
    `\nMachine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ` +
      `Node ${process.version}; ssh2 native crypto: ${nativeCryptoAvailable() ? 'yes' : 'no'}; relay flags: defaults${opts['relay-arg'].length ? ` + ${opts['relay-arg'].join(' ')}` : ''}; ` +
      `legitimate client: OpenSSH -L/-R, ${opts.cipher}, ${CHUNK / MiB} MiB streams back to back, plus a fresh SSH connection every 2 s.\n`,
  );
});

const mb = (b: number) => (Number.isFinite(b) ? (b / MiB).toFixed(1) : 'n/a');

function table(results: PhaseResult[], idleRss: number): string {
  const quiet = results.find((r) => r.phase === 'quiet')!;
  const quietRate = quiet.legitBytes / quiet.seconds;
  const head = ['phase', 'RSS before / peak / after (MB)', 'peak RSS over idle (MB) <= 256', 'buffered peak (MB)', 'fds before / peak / after', 'unauth peak', 'legit MB/s (vs quiet) >= 50%', 'legit refused (streams, connects)', 'attackers: closed by relay / made; refused', 'relay counters moved'];
  const rows = results.map((r) => {
    const rate = r.legitBytes / r.seconds;
    const overIdle = r.peak.rss - idleRss;
    const a = r.attack;
    return [
      r.phase,
      `${mb(r.before.rss)} / ${mb(r.peak.rss)} / ${mb(r.after.rss)}`,
      `${mb(overIdle)} ${overIdle <= 256 * MiB ? 'met' : '**missed**'}`,
      mb(r.peak.buffered),
      `${r.before.fds} / ${r.peak.fds} / ${r.after.fds}`,
      String(r.peak.unauth),
      `${(rate / 1e6).toFixed(1)} (${((100 * rate) / quietRate).toFixed(0)}%) ${r.phase === 'quiet' ? '' : rate >= quietRate / 2 ? 'met' : '**missed**'}`,
      `${r.legitStreamsRefused}, ${r.legitConnectsRefused}/${r.legitConnects} ${r.legitStreamsRefused + r.legitConnectsRefused === 0 ? 'never' : '**refused**'}`,
      a ? `${a.closedByRelay} / ${a.connections}; ${a.refused}${Object.keys(a.detail).length ? ` (${Object.entries(a.detail).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}` : '',
      Object.entries(r.metricDeltas).map(([k, v]) => `${k} +${v}`).join(', '),
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line), '', `Idle relay RSS before the quiet run: ${mb(idleRss)} MB.`].join('\n');
}
