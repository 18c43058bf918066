/**
 * `npm run bench:e2e`: Tunnel with the CLI at both ends against the setup it replaces, side by
 * side in one run on loopback.
 *
 *   old:    ssh -L (Y) -> throwaway sshd -> ssh -R (X)                 key auth, AuthorizedKeysFile
 *   Tunnel: tunnel open --listen (Y) -> tunnel-node -> tunnel expose (X) real tunnel-control too
 *
 * X's service writes one byte on accept and counts what it receives. Measures, through Y's local
 * port: throughput of one stream pushed Y->X (1 GiB by default) and connect-to-first-byte p50/p99
 * over 200 sequential connections; also CPU seconds per GiB of the processes on the path. OpenSSH
 * runs once per cipher (-c); the CLI negotiates aes128-gcm (its first preference) with the relay.
 * Prints a markdown table with the issue's targets, and per process during the push its kernel
 * CPU and its read and write syscalls per GiB (/proc/PID/io syscr and syscw: read/readv and
 * write/writev calls), to compare what each end asks of the kernel with OpenSSH's (e.g. under
 * load: `tunnel expose` 34k writes per GiB to the local service, one per 32 KiB packet, against
 * 14k for ssh -R; its kernel CPU 0.7-0.9 s/GiB against 0.76). Everything it starts is stopped,
 * also on failure or Ctrl-C. Not a test: numbers depend on the machine.
 *
 * Long distance: single-stream rows at each `--rtt` (default 50 and 150 ms) with a userspace delay
 * line (bench/lib/delay-line.ts: each chunk held RTT/2 per direction, no rate limit) in front of
 * the daemon, for both paths: ssh -R/-L dial sshd through it; for Tunnel a second relay
 * (relay-far) advertises the delay line's port, and the exposure is pinned to it. Both use
 * aes128-gcm. Each row is the median of `--far-rounds` (3) pushes of `--far-bytes` (256 MiB), each
 * on a new stream, so each starts at the standard window and grows it again (one push's rate
 * varied by a third between runs), after a warm-up push of `--far-warmup` (256 MiB) that is
 * printed but not in the median: the row's clients (and relay-far at the first row) are fresh
 * processes, and a first push on them cost 12.1 CPU s/GiB over X, relay and Y against 7.7-8.9 for
 * the pushes after it (under load); a tunnel's processes normally run warm.
 * The delay line runs in a process of its own (bench/lib/delay-line-process.ts), and each row
 * reports CPU s/GiB per process, the line's and this bench's included; --profile/--cpu-prof also
 * profile the far rows' tunnel processes.
 *
 * The apparatus shares the 2 cores with the path it measures, while the network it stands for
 * costs the hosts nothing, and a Tunnel far row is CPU-bound: so the delay line reads with net's
 * `onread` into reused slabs and writes every due chunk in one writev, and X's service only
 * counts what it reads, into one reused buffer (bench/lib/traffic.ts). Both paths get the same
 * apparatus. Under load (2 cores, load 8-10) that took the line from 3.2-4.0 to 2.8-3.1 CPU
 * s/GiB and the source and sink from 2.0-2.5 to 1.0-1.1 on a Tunnel far row.
 *
 * Options: --bytes N (default 1 GiB) --connections N (200) --rounds N (3; the median is reported)
 *          --far-rounds N (3 pushes per long-distance row; the median is reported) --far-warmup N (256 MiB first, not measured)
 *          --cipher NAME (repeatable) --cpu-prof DIR (profile tunnel expose, tunnel open and the relay into DIR)
 *          --profile (profile them, into --cpu-prof DIR or a temporary one, and print each one's table from
 *            bench/lib/cpu-profile.ts: busy time by category and the top functions by self time; a profile
 *            covers the process's whole life, so pair it with e.g. --connections 20 --rounds 1 --rtt '')
 *          --rtt MS,MS (50,150; empty: no long-distance rows) --far-bytes N (256 MiB)
 *          --warmup N (0): first push N bytes through each loopback path on its fresh processes, not in the
 *            figures; that push's CPU s/GiB is printed apart. A first push on fresh Tunnel processes costs
 *            them their JIT warm-up (V8 compiles the data path's hot functions on its worker threads): with
 *            512 MiB pushes under load, 9.3 against 7.6-8.0 CPU s/GiB for the next two (relay 4.34 against
 *            3.30-3.54), while OpenSSH's path costs the same cold or warm. --rounds 1 without --warmup
 *            measures the cold push, which a long-running relay pays once.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { nativeCryptoAvailable } from '../node/ssh2-internals.js';
import { cliBinary, startStack, type CliUser, type Stack } from '../test/harness/stack.js';
import { parseBenchArgs } from './lib/bench-args.js';
import { freePort, killTracked, sshArgs, startKeySshd, track, waitForListen, writeKey, type SshTarget, type Tracked } from './lib/openssh.js';
import { cpuSeconds, processTree, procUse, treeCpuSeconds, treeProcUse, type ProcUse } from './lib/proc.js';
import { startDelayLineProcess } from './lib/delay-line-process.js';
import { formatCpuSummary, summariseCpuProfile } from './lib/cpu-profile.js';
import { attachPerf } from './lib/perf-attach.js';
import { ADMIN } from '../test/harness/stack.js';
import { httpCaller, passwordLogin } from '../test/harness/control.js';
import { startRelayProcess } from '../test/harness/relay-process.js';
import { firstByteLatencies, openStream, pump, quantile, startService, waitForPath, type Service } from './lib/traffic.js';

const GiB = 1024 ** 3;
const MB = 1e6;
const EXPOSURE = 'bench-e2e';
const TUNNEL_CIPHER = 'aes128-gcm@openssh.com';

const opts = parseBenchArgs(
  {
    bytes: { type: 'string', default: String(GiB) },
    connections: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '3' },
    cipher: { type: 'string', multiple: true, default: ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com'] },
    'cpu-prof': { type: 'string' },
    profile: { type: 'boolean', default: false },
    'node-arg': { type: 'string', multiple: true, default: [] },
    'relay-arg': { type: 'string', multiple: true, default: [] },
    top: { type: 'string', default: '12' },
    rtt: { type: 'string', default: '50,150' },
    'far-bytes': { type: 'string', default: String(256 * 1024 ** 2) },
    'far-rounds': { type: 'string', default: '3' },
    'far-warmup': { type: 'string', default: String(256 * 1024 ** 2) },
    warmup: { type: 'string', default: '0' },
    perf: { type: 'string' },
  },
  [
    'usage: node dist/bench/e2e.js [options]',
    '  --bytes N          bytes per push (default 1 GiB)      --rounds N       rounds, median reported (3)',
    '  --connections N    first-byte connections per round (200)',
    '  --cipher NAME      OpenSSH path cipher, repeatable (aes128-gcm, chacha20-poly1305)',
    "  --rtt MS,MS        long-distance rows (50,150; '' for none)   --far-bytes N  bytes per far push (256 MiB)",
    '  --far-rounds N     pushes per long-distance row, each a new stream; the median is reported (3)',
    '  --far-warmup N     bytes pushed first on each long-distance row, not in the median (256 MiB; 0: none)',
    '  --warmup N         bytes pushed first through each loopback path, on its fresh processes, not in the median (0: none);',
    "                     its CPU s/GiB is printed: what the processes' JIT warm-up costs, which a long-running relay pays once",
    '  --cpu-prof DIR     write V8 CPU profiles of tunnel expose, tunnel open and the relay into DIR',
    '  --profile          profile them and print where each one\'s CPU went (bench/lib/cpu-profile.ts)',
    '  --top N            functions per profile table (12)',
    '  --node-arg ARG     extra node flag for tunnel expose, tunnel open and the relay, repeatable (e.g. --node-arg=--max-semi-space-size=32)',
    '  --relay-arg ARG    extra tunnel-node flag for both relays, repeatable (e.g. --relay-arg=--gc-full-after=0)',
    '  --perf DIR         attach perf (root) to each loopback path\'s processes during each push: perf record (cpu-clock,',
    '                     call chains) into DIR/PATH-rN.data and per process syscall counts into DIR/PATH-rN.WHAT.PID.stat',
    '                     (bench/lib/perf-attach.ts); add --node-arg=--perf-basic-prof for JS frame names',
    "  e.g. a quick profile: --bytes 268435456 --rounds 1 --connections 20 --rtt '' --cipher aes128-gcm@openssh.com --profile",
    '',
  ].join('\n'),
);
const RTTS = opts.rtt.split(',').filter(Boolean).map(Number);
const FAR_BYTES = Number(opts['far-bytes']);
const FAR_ROUNDS = Number(opts['far-rounds']);
const FAR_WARMUP = Number(opts['far-warmup']);
const BYTES = Number(opts.bytes);
const CONNECTIONS = Number(opts.connections);
const ROUNDS = Number(opts.rounds);
const WARMUP = Number(opts.warmup);
const RELAY_ARGS = opts['relay-arg'];

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

interface Round {
  mbps: number;
  p50: number;
  p99: number;
  /** CPU seconds per GiB of the path's processes (daemon and both clients). */
  cpuPerGiB: number;
  /** The same per process: [X's client, daemon, Y's client]. */
  split: number[];
  /** Per process, per GiB: kernel CPU seconds (part of split), read and write syscalls. */
  sys: number[];
  reads: number[];
  writes: number[];
}

/** CPU seconds so far of the path's processes: X's client, the daemon, Y's client (and for far rows the delay line). */
type CpuReader = () => number[];
/** What the loopback path's processes used so far: X's client, the daemon, Y's client. */
type UseReader = () => ProcUse[];
/** For --perf: a name for the path, and its processes now (the daemon's whole tree). */
interface PerfTargets {
  label: string;
  pids: () => { what: string; pid: number }[];
}

interface PathResult extends Round {
  rounds: Round[];
  /** CPU s/GiB per process of the --warmup push (undefined without one). */
  warmup?: number[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** One round through Y's local port: latencies first (idle path), then the push. */
async function measureRound(localPort: number, service: Service, use: UseReader, perf?: PerfTargets & { round: number }): Promise<Round> {
  const lat = await firstByteLatencies(localPort, CONNECTIONS);
  const { sock } = await openStream(localPort);
  const target = service.received() + BYTES;
  const attached = perf && opts.perf ? await attachPerf(resolve(opts.perf), `${perf.label}-r${perf.round}`, perf.pids()) : undefined;
  const use0 = use();
  const t0 = performance.now();
  await Promise.all([pump(sock, BYTES), service.waitForBytes(target, 15 * 60_000)]);
  const secs = (performance.now() - t0) / 1000;
  const use1 = use();
  await attached?.stop();
  const per = (k: keyof ProcUse) => use1.map((u, i) => (u[k] - use0[i]![k]) / (BYTES / GiB));
  const split = per('cpu');
  sock.destroy();
  return { mbps: BYTES / MB / secs, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), cpuPerGiB: split.reduce((a, b) => a + b, 0), split, sys: per('sys'), reads: per('reads'), writes: per('writes') };
}

/** WARMUP bytes through the path, on a stream of their own; CPU s/GiB per process. */
async function warmupPush(localPort: number, service: Service, use: UseReader): Promise<number[]> {
  const { sock } = await openStream(localPort);
  const cpu0 = use();
  await Promise.all([pump(sock, WARMUP), service.waitForBytes(service.received() + WARMUP, 15 * 60_000)]);
  const used = use().map((c, i) => (c.cpu - cpu0[i]!.cpu) / (WARMUP / GiB));
  sock.destroy();
  return used;
}

/** ROUNDS rounds (after a --warmup push, if any); each figure is the median over the rounds. */
async function measurePath(localPort: number, service: Service, use: UseReader, perf?: PerfTargets): Promise<PathResult> {
  await waitForPath(localPort, 30_000);
  const warmup = WARMUP > 0 ? await warmupPush(localPort, service, use) : undefined;
  const rounds: Round[] = [];
  for (let i = 0; i < ROUNDS; i++) rounds.push(await measureRound(localPort, service, use, perf && { ...perf, round: i + 1 }));
  const m = (k: 'mbps' | 'p50' | 'p99' | 'cpuPerGiB') => median(rounds.map((r) => r[k]));
  const each = (k: 'split' | 'sys' | 'reads' | 'writes') => rounds[0]![k].map((_, i) => median(rounds.map((r) => r[k][i]!)));
  return { mbps: m('mbps'), p50: m('p50'), p99: m('p99'), cpuPerGiB: m('cpuPerGiB'), split: each('split'), sys: each('sys'), reads: each('reads'), writes: each('writes'), rounds, ...(warmup ? { warmup } : {}) };
}

/** The old setup: ssh -R 127.0.0.1:Q:127.0.0.1:P (X) and ssh -L 127.0.0.1:R:127.0.0.1:Q (Y) through a throwaway sshd. */
async function runOpenSsh(cipher: string, service: Service, dir: string): Promise<PathResult> {
  const x = writeKey(dir, 'x_ed25519');
  const y = writeKey(dir, 'y_ed25519');
  const sshd = await startKeySshd([x.publicKeyLine, y.publicKeyLine]);
  try {
    const knownHosts = join(dir, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${sshd.port} ${sshd.hostKeyLine}\n`);
    const target = (keyFile: string): SshTarget => ({ port: sshd.port, user: 'root', keyFile, knownHosts });
    const q = await freePort();
    const r = await freePort();
    const xs = track('ssh', sshArgs(target(x.file), cipher, ['-R', `127.0.0.1:${q}:127.0.0.1:${service.port}`]));
    await waitForListen(q, 20_000);
    const ys = track('ssh', sshArgs(target(y.file), cipher, ['-L', `127.0.0.1:${r}:127.0.0.1:${q}`]));
    try {
      const targets = () => [{ what: 'X-ssh-R', pid: xs.pid }, ...processTree(sshd.pid).map((pid) => ({ what: 'sshd', pid })), { what: 'Y-ssh-L', pid: ys.pid }];
      return await measurePath(r, service, () => [procUse(xs.pid), treeProcUse(sshd.pid), procUse(ys.pid)], { label: `openssh-${short(cipher)}`, pids: targets });
    } finally {
      await ys.stop();
      await xs.stop();
    }
  } finally {
    await sshd.stop();
  }
}

/** `tunnel ARGS` as `user`, with node flags (e.g. --cpu-prof); `env -i` execs node, so the pid is node's. */
function tunnel(user: CliUser, nodeArgs: string[], args: string[]): Tracked {
  const env = Object.entries(user.env).map(([k, v]) => `${k}=${v}`);
  return track('env', ['-i', ...env, process.execPath, ...nodeArgs, cliBinary(), ...args]);
}

/** Tunnel: `tunnel expose P --name bench-e2e` (X) and `tunnel open bench-e2e --listen 127.0.0.1:R` (Y). */
async function runTunnel(stack: Stack, x: CliUser, y: CliUser, service: Service, nodeArgs: string[]): Promise<PathResult> {
  const expose = tunnel(x, nodeArgs, ['expose', String(service.port), '--name', EXPOSURE, '--allow', y.name, '--json']);
  await expose.waitFor(/"event":"connected"/, 30_000);
  const r = await freePort();
  const open = tunnel(y, nodeArgs, ['open', EXPOSURE, '--listen', `127.0.0.1:${r}`, '--json']);
  try {
    await open.waitFor(/"event":"listening"/, 30_000);
    const relayPid = stack.relay.pid;
    profiled.push({ what: 'X: tunnel expose', pid: expose.pid }, { what: 'relay: tunnel-node', pid: relayPid }, { what: 'Y: tunnel open --listen', pid: open.pid });
    const targets = () => [{ what: 'X-expose', pid: expose.pid }, { what: 'relay', pid: relayPid }, { what: 'Y-open', pid: open.pid }];
    return await measurePath(r, service, () => [procUse(expose.pid), procUse(relayPid), procUse(open.pid)], { label: 'tunnel', pids: targets });
  } finally {
    // SIGTERM: the CLI exits cleanly, so --cpu-prof writes its profile.
    await open.stop();
    await expose.stop();
  }
}

/** The Tunnel processes profiled with --cpu-prof (their pid is in the profile's file name). */
const profiled: { what: string; pid: number }[] = [];

/** Each profiled process's table (bench/lib/cpu-profile.ts), from the profiles node wrote into `dir`. */
function profileTables(dir: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  return profiled
    .map(({ what, pid }) => {
      // node's default name: CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile
      const file = files.find((f) => f.split('.')[3] === String(pid));
      if (!file) return `**${what}** (pid ${pid}): no profile written to ${dir}\n`;
      return formatCpuSummary(summariseCpuProfile(join(dir, file), { top: Number(opts.top) }), `${what} (pid ${pid}, ${file})`);
    })
    .join('\n');
}

/**
 * One long-distance row: MB/s, and CPU s/GiB of [X's client, daemon, Y's client, delay line, this
 * bench (source and sink)], each the median over the row's pushes; `pushes`: each push's MB/s.
 */
interface FarRow {
  mbps: number;
  cpu: number[];
  pushes: number[];
  /** The warm-up push's MB/s (NaN without one). */
  warmup: number;
}

/** FAR_ROUNDS pushes of FAR_BYTES through Y's local port, each on a new stream; `cpu` reads the path's processes and the delay line. */
async function farPushes(localPort: number, service: Service, cpu: CpuReader): Promise<FarRow> {
  await waitForPath(localPort, 60_000);
  let warmup = NaN;
  if (FAR_WARMUP > 0) {
    const { sock } = await openStream(localPort);
    const t0 = performance.now();
    await Promise.all([pump(sock, FAR_WARMUP), service.waitForBytes(service.received() + FAR_WARMUP, 15 * 60_000)]);
    warmup = FAR_WARMUP / MB / ((performance.now() - t0) / 1000);
    sock.destroy();
  }
  const rows: Omit<FarRow, 'pushes' | 'warmup'>[] = [];
  for (let i = 0; i < FAR_ROUNDS; i++) rows.push(await farPush(localPort, service, cpu));
  return {
    mbps: median(rows.map((r) => r.mbps)),
    cpu: rows[0]!.cpu.map((_, i) => median(rows.map((r) => r.cpu[i]!))),
    pushes: rows.map((r) => r.mbps),
    warmup,
  };
}

/** One push of FAR_BYTES on a new stream. */
async function farPush(localPort: number, service: Service, cpu: CpuReader): Promise<Omit<FarRow, 'pushes' | 'warmup'>> {
  const { sock } = await openStream(localPort);
  const self = () => (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
  const cpu0 = [...cpu(), self()];
  const t0 = performance.now();
  await Promise.all([pump(sock, FAR_BYTES), service.waitForBytes(service.received() + FAR_BYTES, 15 * 60_000)]);
  const mbps = FAR_BYTES / MB / ((performance.now() - t0) / 1000);
  const used = [...cpu(), self()].map((c, i) => (c - cpu0[i]!) / (FAR_BYTES / GiB));
  sock.destroy();
  return { mbps, cpu: used };
}

/** The old setup with sshd behind the delay line (both ssh clients dial the line), one row per RTT. */
async function runOpenSshFar(service: Service, dir: string): Promise<FarRow[]> {
  const x = writeKey(dir, 'xf_ed25519');
  const y = writeKey(dir, 'yf_ed25519');
  const sshd = await startKeySshd([x.publicKeyLine, y.publicKeyLine]);
  const line = await startDelayLineProcess({ targetPort: sshd.port, oneWayMs: 0 });
  try {
    const knownHosts = join(dir, 'known_hosts_far');
    writeFileSync(knownHosts, `[127.0.0.1]:${line.port} ${sshd.hostKeyLine}\n`);
    const target = (keyFile: string): SshTarget => ({ port: line.port, user: 'root', keyFile, knownHosts });
    const out: FarRow[] = [];
    for (const rtt of RTTS) {
      await line.setOneWayMs(rtt / 2);
      log(`old setup, ${rtt} ms RTT`);
      const q = await freePort();
      const r = await freePort();
      const xs = track('ssh', sshArgs(target(x.file), TUNNEL_CIPHER, ['-R', `127.0.0.1:${q}:127.0.0.1:${service.port}`]));
      try {
        await waitForListen(q, 30_000);
        const ys = track('ssh', sshArgs(target(y.file), TUNNEL_CIPHER, ['-L', `127.0.0.1:${r}:127.0.0.1:${q}`]));
        try {
          out.push(await farPushes(r, service, () => [cpuSeconds(xs.pid), treeCpuSeconds(sshd.pid), cpuSeconds(ys.pid), cpuSeconds(line.pid)]));
        } finally {
          await ys.stop();
        }
      } finally {
        await xs.stop();
      }
    }
    return out;
  } finally {
    await line.close();
    await sshd.stop();
  }
}

/**
 * Tunnel with a second relay (relay-far) behind the delay line: it advertises the line's port,
 * so both CLIs dial through it; the exposure is pinned to relay-far. One row per RTT.
 */
/** The relay's largest adaptive-window reservation so far (bytes, from its /metrics). */
async function windowPeak(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^tunnel_node_window_reserved_peak_bytes (\d+)/m.exec(text)?.[1] ?? NaN);
}

/** relay-far's window reservation peak after each Tunnel far row. */
const windowPeaks: number[] = [];

async function runTunnelFar(stack: Stack, x: CliUser, y: CliUser, service: Service, nodeArgs: string[]): Promise<FarRow[]> {
  const sshPort = await freePort();
  const line = await startDelayLineProcess({ targetPort: sshPort, oneWayMs: 0 });
  const relay = await startRelayProcess({
    nodeArgs,
    controlUrl: stack.control.url,
    enrollToken: await stack.enrollmentToken('relay-far'),
    sshPort,
    args: ['--advertise', `127.0.0.1:${line.port}`, ...RELAY_ARGS],
  });
  try {
    const call = httpCaller(stack.control.url);
    const token = await passwordLogin(call, ADMIN.name, ADMIN.password);
    const put = await call('PUT', `/v1/exposures/${EXPOSURE}-far`, { token, body: { allow: [y.name], node: 'relay-far' } });
    if (put.status !== 200 && put.status !== 201) throw new Error(`PUT exposure: ${put.status} ${JSON.stringify(put.body)}`);
    const out: FarRow[] = [];
    for (const rtt of RTTS) {
      await line.setOneWayMs(rtt / 2);
      log(`Tunnel, ${rtt} ms RTT`);
      const expose = tunnel(x, nodeArgs, ['expose', String(service.port), '--name', `${EXPOSURE}-far`, '--allow', y.name, '--json']);
      try {
        await expose.waitFor(/"event":"connected"/, 60_000);
        const r = await freePort();
        const open = tunnel(y, nodeArgs, ['open', `${EXPOSURE}-far`, '--listen', `127.0.0.1:${r}`, '--json']);
        try {
          await open.waitFor(/"event":"listening"/, 60_000);
          profiled.push({ what: `${rtt} ms RTT, X: tunnel expose`, pid: expose.pid }, { what: `${rtt} ms RTT, Y: tunnel open --listen`, pid: open.pid });
          out.push(await farPushes(r, service, () => [cpuSeconds(expose.pid), cpuSeconds(relay.pid), cpuSeconds(open.pid), cpuSeconds(line.pid)]));
          windowPeaks.push(await windowPeak(relay.metricsPort));
        } finally {
          await open.stop();
        }
      } finally {
        await expose.stop();
      }
    }
    return out;
  } finally {
    await line.close();
    profiled.push({ what: 'relay-far: tunnel-node (all RTT rows)', pid: relay.pid });
    await relay.stop(); // SIGTERM: with --cpu-prof it writes its profile
    relay.cleanup();
  }
}

/** Direct loopback to the service, no tunnel: the ceiling. */
async function runDirect(service: Service): Promise<PathResult> {
  const none: ProcUse = { cpu: 0, sys: 0, reads: 0, writes: 0 };
  return measurePath(service.port, service, () => [none, none, none]);
}

// ---- output ----

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
const short = (cipher: string) => cipher.replace(/@openssh\.com$/, '');

function table(direct: PathResult, old: { cipher: string; r: PathResult }[], tun: PathResult): string {
  const same = old.find((o) => o.cipher === TUNNEL_CIPHER) ?? old[0]!;
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const head = ['path', 'cipher', `MB/s, 1 stream of ${f2(BYTES / GiB)} GiB Y->X`, 'vs old (aes128-gcm)', `first byte p50 (ms)`, 'p99 (ms)', 'CPU s/GiB, path processes', '  X client / daemon / Y client'];
  const row = (path: string, cipher: string, r: PathResult, cpu = true) =>
    line([path, cipher, f1(r.mbps), f2(r.mbps / same.r.mbps) + 'x', f2(r.p50), f2(r.p99), cpu ? f2(r.cpuPerGiB) : '', cpu ? r.split.map(f2).join(' / ') : '']);
  return [
    line(head),
    line(head.map(() => '---')),
    row('direct loopback, no tunnel', '-', direct, false),
    ...old.map((o) => row('old: ssh -L / sshd / ssh -R', short(o.cipher), o.r)),
    row('Tunnel: tunnel open --listen / tunnel-node / tunnel expose', short(TUNNEL_CIPHER), tun),
    '',
    `| target | wanted | got | |`,
    `| --- | --- | --- | --- |`,
    `| throughput vs old setup (same cipher family, ${short(same.cipher)}) | >= 1.0x | ${f2(tun.mbps / same.r.mbps)}x | ${verdict(tun.mbps >= same.r.mbps)} |`,
    `| connect-to-first-byte p50 | <= 1.5 ms | ${f2(tun.p50)} ms | ${verdict(tun.p50 <= 1.5)} |`,
    '',
    `Each figure is the median of ${ROUNDS} round(s); per round: ${CONNECTIONS} sequential connections (connect to the service's first byte), then one stream.`,
    ...(WARMUP > 0
      ? [
          `Each path first pushed ${f2(WARMUP / GiB)} GiB on its fresh processes, not in the figures above; its CPU s/GiB (X / daemon / Y): ${[...old.map((o) => `old ${short(o.cipher)} ${o.r.warmup?.map(f2).join(' / ')}`), `Tunnel ${tun.warmup?.map(f2).join(' / ')}`].join('; ')}.`,
        ]
      : []),
    `Rounds, MB/s: ${[...old.map((o) => `old ${short(o.cipher)} ${o.r.rounds.map((x) => f1(x.mbps)).join('/')}`), `Tunnel ${tun.rounds.map((x) => f1(x.mbps)).join('/')}`].join('; ')}.`,
    'CPU s/GiB sums the daemon (sshd process tree, or tunnel-node) and both client processes (ssh -R + ssh -L, or tunnel expose + tunnel open) during the push.',
    '',
    'Per process during the push, per GiB (X client / daemon / Y client; medians over the rounds): kernel CPU seconds (part of the CPU above), write(2)/writev(2) calls and read(2) calls, from /proc/PID/io:',
    '',
    '| path | kernel CPU s/GiB | writes per GiB | reads per GiB |',
    '| --- | --- | --- | --- |',
    ...old.map((o) => syscallRow(`old ${short(o.cipher)}`, o.r)),
    syscallRow('Tunnel', tun),
  ].join('\n');
}

function syscallRow(name: string, r: PathResult): string {
  const k = (n: number) => (Number.isFinite(n) ? `${(n / 1000).toFixed(1)}k` : 'n/a');
  return `| ${name} | ${r.sys.map(f2).join(' / ')} | ${r.writes.map(k).join(' / ')} | ${r.reads.map(k).join(' / ')} |`;
}

function farTable(oldFar: FarRow[], tunFar: FarRow[]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const cpu = (r: FarRow) => r.cpu.map(f2).join(' / ');
  const rows = RTTS.map((rtt, i) => line([`${rtt} ms`, f1(oldFar[i]!.mbps), f1(tunFar[i]!.mbps), f2(tunFar[i]!.mbps / oldFar[i]!.mbps) + 'x', cpu(oldFar[i]!), cpu(tunFar[i]!)]));
  const at50 = RTTS.indexOf(50);
  return [
    line([
      'RTT (delay line in front of the daemon)',
      `old: ssh -L / sshd / ssh -R, MB/s (1 stream, ${f2(FAR_BYTES / GiB)} GiB)`,
      'Tunnel, MB/s',
      'Tunnel / old',
      'CPU s/GiB, old: X / daemon / Y / delay line / bench',
      'CPU s/GiB, Tunnel: X / relay / Y / delay line / bench',
    ]),
    line(Array(6).fill('---')),
    ...rows,
    ...(at50 >= 0
      ? ['', '| target | wanted | got | |', '| --- | --- | --- | --- |', `| single stream at 50 ms RTT vs old | >= 3x | ${f2(tunFar[at50]!.mbps / oldFar[at50]!.mbps)}x | ${verdict(tunFar[at50]!.mbps >= 3 * oldFar[at50]!.mbps)} |`]
      : []),
    '',
    `Each row: the median of ${FAR_ROUNDS} push(es), each a new stream (so each starts at the standard window), after a warm-up push of ${f2(FAR_WARMUP / GiB)} GiB on fresh clients (not in the median); MB/s, warm-up first: ${RTTS.map((rtt, i) => `${rtt} ms old ${[oldFar[i]!.warmup, ...oldFar[i]!.pushes].map(f1).join('/')}, Tunnel ${[tunFar[i]!.warmup, ...tunFar[i]!.pushes].map(f1).join('/')}`).join('; ')}.`,
    'Both paths aes128-gcm; the delay line (its own process) holds each chunk RTT/2 per direction, no rate limit, no loss; every byte crosses it twice (Y->daemon, daemon->X).',
    'CPU s/GiB over the push, per process; "bench" is this process: the source on Y\'s side and the sink on X\'s. With 2 cores, the path is CPU-bound when the columns sum to about 2 x the push\'s seconds per GiB.',
    `Tunnel's adaptive windows: relay-far's largest reservation above the standard 2 MiB window after each row: ${windowPeaks.map((b) => `${f1(b / 2 ** 20)} MiB`).join(', ')} (its --window-budget and --max-channel-window are the defaults).`,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const load0 = loadavg();
  const dir = mkdtempSync(join(tmpdir(), 'tunnel-bench-e2e-'));
  if (opts.perf) mkdirSync(resolve(opts.perf), { recursive: true });
  const profDir = opts['cpu-prof'] ? resolve(opts['cpu-prof']) : opts.profile ? join(dir, 'profiles') : undefined;
  if (profDir) mkdirSync(profDir, { recursive: true });
  const nodeArgs = [...opts['node-arg'], ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [])];
  let stack: Stack | undefined;
  let service: Service | undefined;
  const cleanup = async () => {
    await killTracked();
    await stack?.stop().catch(() => {});
    await service?.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = () => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const sshVersion = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim();
    log(`${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}, ssh2 native crypto ${nativeCryptoAvailable() ? 'yes' : 'NO'}`);
    service = await startService();
    stack = await startStack({ relay: { nodeArgs, args: ['--max-channels-per-connection', '1024', '--max-channels-per-member', '1024', '--max-pending-opens', '256', ...RELAY_ARGS] } });
    const x = await stack.user('admin');
    const y = await stack.user('bob');
    log('direct loopback');
    const direct = await runDirect(service);
    const old: { cipher: string; r: PathResult }[] = [];
    for (const cipher of opts.cipher) {
      log(`old setup, ${cipher}`);
      old.push({ cipher, r: await runOpenSsh(cipher, service, dir) });
    }
    log('Tunnel, CLI at both ends');
    const tun = await runTunnel(stack, x, y, service, nodeArgs);
    let far = '';
    if (RTTS.length) {
      const oldFar = await runOpenSshFar(service, dir);
      const tunFar = await runTunnelFar(stack, x, y, service, nodeArgs);
      far = farTable(oldFar, tunFar);
    }
    process.stdout.write(`\n${table(direct, old, tun)}\n\n${far}`);
    process.stdout.write(`Load average (1/5/15 min) at the start: ${load0.map(f2).join(' ')}; at the end: ${loadavg().map(f2).join(' ')}.\n`);
    if (RELAY_ARGS.length > 0) process.stdout.write(`Relays run with: ${RELAY_ARGS.join(' ')}.\n`);
    process.stdout.write(
      `Machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}; Node ${process.version}; ssh2 native crypto: ${nativeCryptoAvailable() ? 'yes' : 'no'}; ${sshVersion}.\n`,
    );
    if (profDir) {
      await stack.relay.stop(); // the relay writes its profile on a clean exit
      if (opts['cpu-prof']) process.stdout.write(`CPU profiles (tunnel expose, tunnel open, tunnel-node): ${profDir}\n`);
      if (opts.profile) {
        process.stdout.write(
          `\n### Where each Tunnel process's CPU went (V8 --cpu-prof, whole process life: start, ${CONNECTIONS} first-byte connections per round, ${ROUNDS} push(es); profiling itself adds CPU, so the s/GiB figures above are inflated)\n\n`,
        );
        process.stdout.write(profileTables(profDir));
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:e2e failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
