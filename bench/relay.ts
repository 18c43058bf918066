/**
 * `npm run bench:relay`: the relay against the setup it replaces, side by side on this machine.
 *
 *   old:    ssh -L (Y) -> sshd -> ssh -R (X)            throwaway sshd, AuthorizedKeysFile, root
 *   Tunnel: ssh -L (Y) -> tunnel-node -> ssh -R (X)     real tunnel-node + tunnel-control,
 *                                                        control-issued certificates
 *
 * The same OpenSSH client binaries and the same cipher (`-c`) on both paths, once per cipher.
 * Measures: throughput of one stream pushed Y->X, connect-to-first-byte p50/p99, daemon CPU
 * seconds per GiB (/proc/<pid>/stat), daemon memory idle and per saturated stream, and memory
 * per idle exposure connection (ssh2 clients holding a `tcpip-forward` each). Prints a markdown
 * table with the targets. Everything it starts is stopped, also on failure or Ctrl-C.
 *
 * Options: --bytes N (default 1 GiB) --connections N (200) --idle N (1000) --sshd-idle N (100)
 *          --cipher NAME (repeatable) --cpu-prof DIR (profile the relay process into DIR)
 *          --relay-node-arg FLAG, --relay-env K=V (repeatable; for experiments on the relay process)
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { Client } from 'ssh2';
import { formatOpenSshPrivateKey, formatPublicKeyLine, parseKeyLine, rawPublicKey } from '../protocol/ssh-key.js';
import { nativeCryptoAvailable } from '../node/ssh2-internals.js';
import { closeAll, forwardIn, mapLimit } from './lib/idle-clients.js';
import { idleExposures } from './lib/relay-footprint.js';
import { freePort, killTracked, sshArgs, startKeySshd, track, waitForListen, writeKey, type KeySshd, type SshTarget } from './lib/openssh.js';
import { cpuSeconds, machineTicks, rssBytes, sampler, treeCpuSeconds, treePssBytes } from './lib/proc.js';
import { startRelayStack, type RelayStack } from './lib/relay-stack.js';
import { parseBenchArgs } from './lib/bench-args.js';
import { runBench } from './lib/run-bench.js';
import { firstByteLatencies, openStream, pump, quantile, startService, waitForPath, type Service } from './lib/traffic.js';

const GiB = 1024 ** 3;
const MB = 1e6;
const EXPOSURE = 'bench-svc';

const opts = parseBenchArgs(
  {
    bytes: { type: 'string', default: String(GiB) },
    connections: { type: 'string', default: '200' },
    idle: { type: 'string', default: '1000' },
    'sshd-idle': { type: 'string', default: '100' },
    cipher: { type: 'string', multiple: true, default: ['chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com'] },
    'cpu-prof': { type: 'string' },
    'relay-node-arg': { type: 'string', multiple: true, default: [] },
    'relay-env': { type: 'string', multiple: true, default: [] },
  },
  `usage: node dist/bench/relay.js [options]      (npm run bench:relay builds first)
  --bytes N              bytes pushed per stream (1 GiB)     --connections N  first-byte connections (200)
  --idle N               idle exposure connections on the relay (1000)   --sshd-idle N  on sshd (100)
  --cipher NAME          cipher, repeatable (chacha20-poly1305@openssh.com, aes128-gcm@openssh.com)
  --cpu-prof DIR         profile the relay process into DIR
  --relay-node-arg FLAG, --relay-env K=V   repeatable; for experiments on the relay process`,
);
const BYTES = Number(opts.bytes);
const CONNECTIONS = Number(opts.connections);
const IDLE = Number(opts.idle);
const SSHD_IDLE = Number(opts['sshd-idle']);

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

/** What one path measured. Memory in bytes. */
interface PathResult {
  mbps: number;
  mbps4: number;
  p50: number;
  p99: number;
  cpuPerGiB: number;
  /** The two ssh clients (ssh -L + ssh -R) and this process (source and sink), CPU s per GiB. */
  clientsCpuPerGiB: number;
  benchCpuPerGiB: number;
  /** Share of all CPUs busy during the single-stream push. */
  machineBusy: number;
  idleMem: number;
  perStream1: number;
  perStream4: number;
}

interface Daemon {
  cpu(): number;
  mem(): number;
  /** CPU seconds of the ssh clients. */
  clientsCpu(): number;
}

/** Memory "during" a run: the median of samples taken while it ran (one GC peak is not the level). */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Pushes `n` streams of `bytes` each through `port` at once; resolves with elapsed seconds. */
async function push(port: number, service: Service, n: number, bytes: number): Promise<number> {
  const streams = await Promise.all(Array.from({ length: n }, () => openStream(port)));
  const target = service.received() + n * bytes;
  const t0 = performance.now();
  await Promise.all([...streams.map((s) => pump(s.sock, bytes)), service.waitForBytes(target, 15 * 60_000)]);
  const secs = (performance.now() - t0) / 1000;
  for (const s of streams) s.sock.destroy();
  return secs;
}

/** The measurements shared by both setups, through Y's local port. */
async function measurePath(localPort: number, service: Service, daemon: Daemon): Promise<PathResult> {
  await waitForPath(localPort, 30_000);
  const lat = await firstByteLatencies(localPort, CONNECTIONS);
  const idleMem = median(Array.from({ length: 5 }, () => daemon.mem()));

  const cpu0 = daemon.cpu();
  const clients0 = daemon.clientsCpu();
  const bench0 = process.cpuUsage();
  const machine0 = machineTicks();
  const s1 = sampler(() => daemon.mem());
  const secs = await push(localPort, service, 1, BYTES);
  const mem1 = median(s1.stop());
  const cpu = daemon.cpu() - cpu0;
  const clientsCpu = daemon.clientsCpu() - clients0;
  const benchUse = process.cpuUsage(bench0);
  const machine1 = machineTicks();
  const gib = BYTES / GiB;

  const s4 = sampler(() => daemon.mem());
  const secs4 = await push(localPort, service, 4, Math.floor(BYTES / 4));
  const mem4 = median(s4.stop());
  return {
    mbps: BYTES / MB / secs,
    mbps4: (4 * Math.floor(BYTES / 4)) / MB / secs4,
    p50: quantile(lat, 0.5),
    p99: quantile(lat, 0.99),
    cpuPerGiB: cpu / gib,
    clientsCpuPerGiB: clientsCpu / gib,
    benchCpuPerGiB: (benchUse.user + benchUse.system) / 1e6 / gib,
    machineBusy: (machine1.busy - machine0.busy) / (machine1.total - machine0.total),
    idleMem,
    perStream1: mem1 - idleMem,
    perStream4: (mem4 - idleMem) / 4,
  };
}

function knownHosts(dir: string, port: number, hostKeyLine: string): string {
  const file = join(dir, `known_hosts_${port}`);
  writeFileSync(file, `[127.0.0.1]:${port} ${hostKeyLine}\n`);
  return file;
}

/** The old setup: ssh -R 127.0.0.1:Q:127.0.0.1:P and ssh -L 127.0.0.1:R:127.0.0.1:Q through sshd. */
async function runSshd(cipher: string, service: Service, dir: string): Promise<PathResult> {
  const x = writeKey(dir, 'sshd_x');
  const y = writeKey(dir, 'sshd_y');
  const sshd = await startKeySshd([x.publicKeyLine, y.publicKeyLine]);
  try {
    const kh = knownHosts(dir, sshd.port, sshd.hostKeyLine);
    const target = (keyFile: string): SshTarget => ({ port: sshd.port, user: 'root', keyFile, knownHosts: kh });
    const q = await freePort();
    const r = await freePort();
    const xs = track('ssh', sshArgs(target(x.file), cipher, ['-R', `127.0.0.1:${q}:127.0.0.1:${service.port}`]));
    await waitForListen(q, 20_000);
    const ys = track('ssh', sshArgs(target(y.file), cipher, ['-L', `127.0.0.1:${r}:127.0.0.1:${q}`]));
    try {
      return await measurePath(r, service, {
        cpu: () => treeCpuSeconds(sshd.pid),
        mem: () => treePssBytes(sshd.pid),
        clientsCpu: () => cpuSeconds(xs.pid) + cpuSeconds(ys.pid),
      });
    } finally {
      await ys.stop();
      await xs.stop();
    }
  } finally {
    await sshd.stop();
  }
}

/** Tunnel: ssh -R bench-svc:22:127.0.0.1:P and ssh -L 127.0.0.1:R:bench-svc:22 with control-issued certificates. */
async function runRelay(cipher: string, service: Service, stack: RelayStack, dir: string): Promise<PathResult> {
  const relay = await stack.restartRelay(); // fresh process: memory figures do not carry over
  const kh = knownHosts(dir, relay.sshPort, stack.hostKeyLine);
  const client = async (name: string, kind: 'expose' | 'open') => {
    const k = writeKey(dir, `relay_${name}`);
    const issued = await stack.lease({ kind, exposure: EXPOSURE, ...(kind === 'expose' ? { port: 22 } : {}), ttl_seconds: 3600 }, k.publicKeyLine);
    const certFile = `${k.file}-cert.pub`;
    writeFileSync(certFile, `${issued.certificate}\n`);
    return { port: relay.sshPort, user: stack.user, keyFile: k.file, knownHosts: kh, certFile } satisfies SshTarget;
  };
  const r = await freePort();
  const xs = track('ssh', sshArgs(await client('x', 'expose'), cipher, ['-R', `${EXPOSURE}:22:127.0.0.1:${service.port}`]));
  const ys = track('ssh', sshArgs(await client('y', 'open'), cipher, ['-L', `127.0.0.1:${r}:${EXPOSURE}:22`]));
  try {
    return await measurePath(r, service, {
      cpu: () => cpuSeconds(relay.pid),
      mem: () => rssBytes(relay.pid),
      clientsCpu: () => cpuSeconds(xs.pid) + cpuSeconds(ys.pid),
    });
  } finally {
    await ys.stop();
    await xs.stop();
  }
}

/** Direct loopback to the service, no tunnel: the ceiling. */
async function runDirect(service: Service): Promise<{ mbps: number; p50: number; p99: number }> {
  const lat = await firstByteLatencies(service.port, CONNECTIONS);
  const secs = await push(service.port, service, 1, BYTES);
  return { mbps: BYTES / MB / secs, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99) };
}

/** sshd memory per idle `ssh -R`-style connection (ssh2 clients with plain keys), for comparison. */
async function idleSshd(): Promise<{ per: number }> {
  const keys = Array.from({ length: SSHD_IDLE }, () => generateKeyPairSync('ed25519').privateKey);
  const sshd: KeySshd = await startKeySshd(keys.map((k) => formatPublicKeyLine(rawPublicKey(k))));
  const clients: Client[] = [];
  try {
    await settle();
    const idle = median(Array.from({ length: 5 }, () => treePssBytes(sshd.pid)));
    const hostBlob = parseKeyLine(sshd.hostKeyLine).blob;
    await mapLimit(keys, 8, async (key) => {
      const client = new Client();
      client.on('error', () => {});
      await new Promise<void>((res, rej) => {
        client.once('ready', () => res()).once('error', rej);
        client.connect({ host: '127.0.0.1', port: sshd.port, username: 'root', privateKey: formatOpenSshPrivateKey(key), hostVerifier: (k: Buffer) => k.equals(hostBlob), readyTimeout: 20_000 });
      });
      clients.push(client);
      await forwardIn(client, '127.0.0.1', 0);
    });
    await settle();
    const loaded = median(Array.from({ length: 5 }, () => treePssBytes(sshd.pid)));
    return { per: (loaded - idle) / SSHD_IDLE };
  } finally {
    await closeAll(clients);
    await sshd.stop();
  }
}

const settle = () => new Promise((r) => setTimeout(r, 1000));

// ---- output ----

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const mb = (bytes: number) => f1(bytes / 2 ** 20);
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');

function table(results: { cipher: string; sshd: PathResult; relay: PathResult }[], direct: { mbps: number; p50: number; p99: number }, idle: { relay: { idle: number; loaded: number; per: number }; sshd: { per: number } }): string {
  const head = ['metric', 'target', ...results.flatMap((r) => [`sshd ${r.cipher}`, `relay ${r.cipher}`]), 'relay vs target'];
  const rows: string[][] = [];
  const row = (metric: string, target: string, pick: (p: PathResult) => string, check?: (r: { sshd: PathResult; relay: PathResult }) => boolean) =>
    rows.push([metric, target, ...results.flatMap((r) => [pick(r.sshd), pick(r.relay)]), check ? results.map((r) => verdict(check(r))).join(' / ') : '']);
  row(`throughput, 1 stream of ${f1(BYTES / GiB)} GiB Y->X (MB/s)`, '>= 1.5x sshd', (p) => f1(p.mbps), (r) => r.relay.mbps >= 1.5 * r.sshd.mbps);
  rows.push(['  relay / sshd', '>= 1.5', ...results.flatMap((r) => ['', `${f2(r.relay.mbps / r.sshd.mbps)}x`]), '']);
  row('throughput, 4 parallel streams (MB/s, total)', '', (p) => f1(p.mbps4));
  row(`connect-to-first-byte p50 (ms, ${CONNECTIONS} conns)`, '<= 1 ms', (p) => f2(p.p50), (r) => r.relay.p50 <= 1);
  row(`connect-to-first-byte p99 (ms, ${CONNECTIONS} conns)`, '<= 3 ms', (p) => f2(p.p99), (r) => r.relay.p99 <= 3);
  row('daemon CPU seconds per GiB', '', (p) => f2(p.cpuPerGiB));
  row('  ssh -L + ssh -R CPU seconds per GiB', '', (p) => f2(p.clientsCpuPerGiB));
  row('  source + sink (this process) CPU seconds per GiB', '', (p) => f2(p.benchCpuPerGiB));
  row(`  all ${cpus().length} CPUs busy during the push (%)`, '', (p) => f1(100 * p.machineBusy));
  row('daemon memory idle (MB)', '', (p) => mb(p.idleMem));
  row('memory per saturated stream, 1 stream (MB)', '<= 4 MB', (p) => mb(p.perStream1), (r) => r.relay.perStream1 <= 4 * 2 ** 20);
  row('memory per saturated stream, 4 streams (MB)', '<= 4 MB', (p) => mb(p.perStream4), (r) => r.relay.perStream4 <= 4 * 2 ** 20);
  row('  marginal: (4 streams - 1 stream) / 3 (MB)', '', (p) => mb((4 * p.perStream4 - p.perStream1) / 3));
  const idleCells = results.flatMap(() => [`${f1(idle.sshd.per / 1024)} (${SSHD_IDLE} conns)`, `${f1(idle.relay.per / 1024)} (${IDLE} conns)`]);
  rows.push(['memory per idle exposure connection (KB)', '<= 40 KB', ...idleCells, verdict(idle.relay.per <= 40 * 1024)]);
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [
    line(head),
    line(head.map(() => '---')),
    ...rows.map(line),
    '',
    `Direct loopback, no tunnel: ${f1(direct.mbps)} MB/s, first byte p50 ${f2(direct.p50)} ms, p99 ${f2(direct.p99)} ms.`,
    `Idle relay with ${IDLE} exposure connections: ${mb(idle.relay.loaded)} MB (${mb(idle.relay.idle)} MB before).`,
  ].join('\n');
}

runBench('bench:relay', async (cleanups) => {
  const dir = mkdtempSync(join(tmpdir(), 'tunnel-bench-relay-'));
  cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
  const profDir = opts['cpu-prof'] ? resolve(opts['cpu-prof']) : undefined;
  const sshVersion = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim();
  log(`${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}, ssh2 native crypto ${nativeCryptoAvailable() ? 'yes' : 'NO'}`);
  const service = await startService();
  cleanups.add(() => service.close());
  const stack = await startRelayStack(
    ['--max-channels-per-connection', '1024', '--max-channels-per-member', '1024', '--max-pending-opens', '256', '--events-queue-max', '100000'],
    [...opts['relay-node-arg'], ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [])],
    Object.fromEntries(opts['relay-env'].map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
  );
  cleanups.add(() => stack.stop());
  cleanups.add(() => killTracked());
  await stack.exposure(EXPOSURE);
  log('direct loopback');
  const direct = await runDirect(service);
  const results: { cipher: string; sshd: PathResult; relay: PathResult }[] = [];
  for (const cipher of opts.cipher) {
    log(`${cipher}: sshd`);
    const sshd = await runSshd(cipher, service, dir);
    log(`${cipher}: relay`);
    const relay = await runRelay(cipher, service, stack, dir);
    results.push({ cipher, sshd, relay });
  }
  log('idle exposure connections: relay');
  const idleR = await idleExposures(stack, IDLE, log);
  log('idle connections: sshd');
  const idleS = await idleSshd();
  process.stdout.write(`\n${table(results, direct, { relay: idleR, sshd: idleS })}\n\n`);
  process.stdout.write(
    `Machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ` +
      `Node ${process.version}; ssh2 native crypto: ${nativeCryptoAvailable() ? 'yes' : 'no'}; ${sshVersion}. ` +
      'sshd memory is the summed PSS of its process tree (per-connection processes share pages); relay memory is VmRSS of the one tunnel-node process. ' +
      'Memory during streams is the median of 50 ms samples.\n',
  );
  if (profDir) process.stdout.write(`Relay CPU profiles: ${profDir}\n`);
});
