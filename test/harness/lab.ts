// The network-namespace lab (infra/lab/lab.sh) driven from tests: build it, run processes in its
// hosts, probe TCP reachability between them, prove its shape, and tear it down without leftovers.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LAB_HOSTS = ['ctl', 'relay', 'target-ok', 'target-bad', 'natx', 'hostx', 'naty', 'hosty'] as const;
export type LabHost = (typeof LAB_HOSTS)[number];

/** The address plan built by lab.sh (which holds the same numbers); it exists only inside the lab. */
export const LAB_PLAN = {
  ctl: { addr: '10.77.0.10' },
  relay: { wanAddr: '10.77.0.2', lanAddr: '10.77.1.1' },
  targetOk: { addr: '10.77.1.10', port: 7000, banner: 'target-ok', otherPort: 7001, otherBanner: 'target-ok-7001' },
  targetBad: { addr: '10.77.1.20', port: 7000, banner: 'target-bad' },
  natx: { wanAddr: '10.77.0.21', lanAddr: '10.77.2.1' },
  hostx: { addr: '10.77.2.10', sshPort: 22, echoPort: 7100 },
  naty: { wanAddr: '10.77.0.31', lanAddr: '10.77.3.1' },
  hosty: { addr: '10.77.3.10' },
  /** ctl and relay answer here with "<name> <peer address>\n", which shows the NAT at work. */
  probePort: 7999,
} as const;

export interface LabHosts {
  ctl: { name: 'ctl'; ns: string; addr: string };
  relay: { name: 'relay'; ns: string; wanAddr: string; lanAddr: string };
  targetOk: { name: 'target-ok'; ns: string; addr: string; port: number; banner: string; otherPort: number; otherBanner: string };
  targetBad: { name: 'target-bad'; ns: string; addr: string; port: number; banner: string };
  natx: { name: 'natx'; ns: string; wanAddr: string; lanAddr: string };
  /** sshd listens on addr:22 and 127.0.0.1:22 (root may log in with a key in authorizedKeysFile). */
  hostx: {
    name: 'hostx'; ns: string; addr: string; sshPort: number; echoPort: number;
    /** The sshd host public key, one `ssh-ed25519 AAAA... comment` line. */
    sshHostKey: string;
    authorizedKeysFile: string;
  };
  naty: { name: 'naty'; ns: string; wanAddr: string; lanAddr: string };
  hosty: { name: 'hosty'; ns: string; addr: string };
}

export type ConnectOutcome = 'reachable' | 'refused' | 'unreachable' | 'timeout' | 'error';
/** `data`: what the peer sent up to its first newline (after `send`, if given). */
export interface ConnectResult { result: ConnectOutcome; data: string; code?: string }

/** One reachability fact: `blocked` means no route through (unreachable or timeout). */
export interface LabFact {
  from: LabHost; addr: string; port: number;
  expect: 'reachable' | 'refused' | 'blocked';
  data?: string | RegExp; send?: string;
  got?: ConnectResult; ok?: boolean;
}

export interface Lab {
  readonly id: string;
  /** Every namespace and interface name starts with this (`tl<id>-`). */
  readonly prefix: string;
  readonly stateDir: string;
  readonly hosts: LabHosts;
  ns(host: LabHost): string;
  /** Runs a command in a host and collects its output; rejects with LabCommandError on failure. */
  exec(host: LabHost, cmd: string, args?: string[], opts?: { input?: string; timeoutMs?: number }): Promise<{ stdout: string; stderr: string }>;
  /**
   * Starts a long-running process in a host; destroy() stops it. Default stdio is
   * ['ignore', 'pipe', 'pipe']: read the pipes (or use waitForOutput, which keeps them draining).
   */
  spawn(host: LabHost, cmd: string, args?: string[], opts?: SpawnOptions): ChildProcess;
  /** One TCP connection attempt from a host. */
  connect(host: LabHost, addr: string, port: number, opts?: { timeoutMs?: number; send?: string }): Promise<ConnectResult>;
  /** Probes every shape fact; throws LabShapeError listing the failures. */
  check(): Promise<LabFact[]>;
  /** Stops tracked processes, deletes the namespaces and verifies nothing with the prefix remains. Idempotent. */
  destroy(): Promise<void>;
}

export interface CreateLabOptions {
  /** 4 chars of [a-z0-9]; default random. */
  id?: string;
  /** Start the banner, echo, probe and sshd services (default true; check() needs them). */
  services?: boolean;
  /** Run check() before returning (default true). */
  check?: boolean;
}

export class LabCommandError extends Error {
  constructor(message: string, readonly exitCode: number | null, readonly stdout: string, readonly stderr: string) {
    super(message);
  }
}
export class LabShapeError extends Error {
  constructor(readonly failed: LabFact[]) {
    super(`lab shape is wrong:\n${failed.map(describeFact).join('\n')}`);
  }
}

/** The reason the lab cannot run here (for `t.skip`), or undefined. */
export function labSkipReason(): string | undefined {
  const uid = process.getuid?.();
  if (uid !== 0) return `needs root: network namespaces, veth pairs and iptables need CAP_NET_ADMIN (uid ${uid ?? 'unknown'})`;
  return undefined;
}

function which(name: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'];
  return dirs.some((d) => {
    try {
      accessSync(join(d, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The repository root: the nearest ancestor of this file holding package.json and infra/lab (works from dist/ too). */
export function repoRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'infra/lab/lab.sh'))) return dir;
    if (dirname(dir) === dir) throw new Error('cannot find the repository root (package.json with infra/lab/lab.sh)');
  }
}

function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}) {
  return new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    const stdin = opts.input === undefined ? 'ignore' : 'pipe';
    const child = spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'], env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000 });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new LabCommandError(`${cmd} ${args.join(' ')} exited ${code ?? signal}: ${stderr.trim()}`, code, stdout, stderr));
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined); // a child that exits without reading its input is reported by its exit code
      child.stdin.end(opts.input);
    }
  });
}

/**
 * Resolves with everything the child printed (stdout and stderr) once that output matches `until`
 * (a RegExp or a predicate); rejects if the child exits first or after timeoutMs. The pipes keep
 * draining afterwards so the child never blocks on a full pipe.
 */
export function waitForOutput(child: ChildProcess, until: RegExp | ((output: string) => boolean), timeoutMs = 10_000): Promise<string> {
  const done = typeof until === 'function' ? until : (o: string) => until.test(o);
  return new Promise((resolve, reject) => {
    let seen = '';
    const streams = [child.stdout, child.stderr].filter((s) => s !== null);
    const settle = (err?: Error) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      for (const s of streams) {
        s.off('data', onData);
        s.resume();
      }
      if (err) reject(err);
      else resolve(seen);
    };
    const onData = (chunk: Buffer | string) => {
      seen += chunk.toString();
      if (done(seen)) settle();
    };
    const onExit = (code: number | null) => settle(new Error(`process exited (${code}) before printing ${String(until)}; output: ${seen.trim()}`));
    const timer = setTimeout(() => settle(new Error(`no output matching ${String(until)} within ${timeoutMs} ms; output: ${seen.trim()}`)), timeoutMs);
    child.once('exit', onExit);
    for (const s of streams) s.on('data', onData);
  });
}

function describeFact(f: LabFact): string {
  const got = f.got ? `${f.got.result}${f.got.code ? ` ${f.got.code}` : ''} ${JSON.stringify(f.got.data)}` : 'not run';
  return `${f.ok ? 'ok  ' : 'FAIL'} ${f.from} -> ${f.addr}:${f.port} want ${f.expect}${f.data ? ` ${String(f.data)}` : ''}, got ${got}`;
}

/** The facts check() proves. Negative facts use ports that have a listener, so only the network can stop them. */
export function shapeFacts(): LabFact[] {
  const P = LAB_PLAN;
  const ssh = /^SSH-2\.0-/;
  const x = P.hostx.addr;
  const y = P.hosty.addr;
  return [
    // X and Y reach the relay and the control plane, seen from there as their NAT routers.
    { from: 'hostx', addr: P.relay.wanAddr, port: P.probePort, expect: 'reachable', data: `relay ${P.natx.wanAddr}\n` },
    { from: 'hosty', addr: P.relay.wanAddr, port: P.probePort, expect: 'reachable', data: `relay ${P.naty.wanAddr}\n` },
    { from: 'hostx', addr: P.ctl.addr, port: P.probePort, expect: 'reachable', data: `ctl ${P.natx.wanAddr}\n` },
    { from: 'hosty', addr: P.ctl.addr, port: P.probePort, expect: 'reachable', data: `ctl ${P.naty.wanAddr}\n` },
    { from: 'relay', addr: P.ctl.addr, port: P.probePort, expect: 'reachable', data: `ctl ${P.relay.wanAddr}\n` },
    { from: 'ctl', addr: P.relay.wanAddr, port: P.probePort, expect: 'reachable', data: `relay ${P.ctl.addr}\n` },
    // The relay reaches both hosts on its LAN; the banners say which one answered.
    { from: 'relay', addr: P.targetOk.addr, port: P.targetOk.port, expect: 'reachable', data: `${P.targetOk.banner}\n` },
    { from: 'relay', addr: P.targetOk.addr, port: P.targetOk.otherPort, expect: 'reachable', data: `${P.targetOk.otherBanner}\n` },
    { from: 'relay', addr: P.targetBad.addr, port: P.targetBad.port, expect: 'reachable', data: `${P.targetBad.banner}\n` },
    // X's services answer on X's LAN and on X's loopback.
    { from: 'natx', addr: x, port: P.hostx.sshPort, expect: 'reachable', data: ssh },
    { from: 'hostx', addr: '127.0.0.1', port: P.hostx.sshPort, expect: 'reachable', data: ssh },
    { from: 'natx', addr: x, port: P.hostx.echoPort, expect: 'reachable', send: 'ping\n', data: 'ping\n' },
    { from: 'hostx', addr: '127.0.0.1', port: P.hostx.echoPort, expect: 'reachable', send: 'ping\n', data: 'ping\n' },
    // Y cannot reach X (nor X Y), neither at its address nor through X's router, which forwards no port.
    { from: 'hosty', addr: x, port: P.hostx.sshPort, expect: 'blocked' },
    { from: 'hosty', addr: x, port: P.hostx.echoPort, expect: 'blocked' },
    { from: 'hosty', addr: P.natx.wanAddr, port: P.hostx.sshPort, expect: 'refused' },
    { from: 'hosty', addr: P.natx.wanAddr, port: P.hostx.echoPort, expect: 'refused' },
    { from: 'hostx', addr: y, port: P.probePort, expect: 'blocked' },
    // The wan reaches neither X nor Y.
    ...(['ctl', 'relay'] as const).flatMap((from): LabFact[] => [
      { from, addr: x, port: P.hostx.sshPort, expect: 'blocked' },
      { from, addr: x, port: P.hostx.echoPort, expect: 'blocked' },
      { from, addr: y, port: P.probePort, expect: 'blocked' },
    ]),
    // The relay's LAN is private to the relay: it forwards nothing.
    ...(['ctl', 'hostx', 'hosty'] as const).flatMap((from): LabFact[] => [
      { from, addr: P.targetOk.addr, port: P.targetOk.port, expect: 'blocked' },
      { from, addr: P.targetBad.addr, port: P.targetBad.port, expect: 'blocked' },
    ]),
  ];
}

export function factHolds(f: LabFact, got: ConnectResult): boolean {
  if (f.expect === 'blocked') return got.result === 'unreachable' || got.result === 'timeout';
  if (got.result !== f.expect) return false;
  if (f.data === undefined) return true;
  return typeof f.data === 'string' ? got.data === f.data : f.data.test(got.data);
}

const live = new Set<{ prefix: string; down(): void }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort for a test that forgot destroy(); a killed runner is cleaned up by the next run's gc.
  process.on('exit', () => {
    for (const l of live) l.down();
  });
}

/** Builds a fresh lab (after removing stale ones from crashed runs), starts its services and proves its shape. */
export async function createLab(opts: CreateLabOptions = {}): Promise<Lab> {
  const skip = labSkipReason();
  if (skip) throw new Error(skip);
  const missing = ['ip', 'iptables-restore', 'sshd', 'ssh-keygen', 'timeout', 'setsid'].filter((b) => !which(b));
  if (missing.length > 0) throw new Error(`lab needs ${missing.join(', ')}: apt-get install -y iproute2 iptables openssh-server`);
  if (opts.id !== undefined && !/^[a-z0-9]{4}$/.test(opts.id)) throw new Error(`lab id must be 4 chars of [a-z0-9], got ${opts.id}`);

  const root = repoRoot();
  const script = join(root, 'infra/lab/lab.sh');
  const baseEnv = { ...process.env, LAB_STATE_DIR: '/run/tunnel-lab', LAB_NODE: process.execPath };
  await run(script, ['gc'], { env: baseEnv });

  let id = '';
  for (let attempt = 1; ; attempt++) {
    id = opts.id ?? Array.from({ length: 4 }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[randomInt(36)]).join('');
    try {
      await run(script, ['up'], { env: { ...baseEnv, LAB_ID: id, LAB_SERVICES: '0', LAB_OWNER_PID: String(process.pid) } });
      break;
    } catch (err) {
      if (opts.id !== undefined || attempt >= 3 || !(err instanceof LabCommandError) || !/already exists/.test(err.stderr)) throw err;
    }
  }
  const env = { ...baseEnv, LAB_ID: id };
  const prefix = `tl${id}-`;
  const stateDir = `/run/tunnel-lab/tl${id}`;
  const ns = (host: LabHost): string => {
    if (!LAB_HOSTS.includes(host)) throw new Error(`unknown lab host ${String(host)}`);
    return `${prefix}${host}`;
  };
  const tracked = new Set<ChildProcess>();
  const entry = { prefix, down: () => void spawnSync(script, ['down'], { env, stdio: 'ignore' }) };
  live.add(entry);
  installExitHook();

  const P = LAB_PLAN;
  const sshdDir = join(stateDir, 'hostx-sshd');
  const hosts: LabHosts = {
    ctl: { name: 'ctl', ns: ns('ctl'), ...P.ctl },
    relay: { name: 'relay', ns: ns('relay'), ...P.relay },
    targetOk: { name: 'target-ok', ns: ns('target-ok'), ...P.targetOk },
    targetBad: { name: 'target-bad', ns: ns('target-bad'), ...P.targetBad },
    natx: { name: 'natx', ns: ns('natx'), ...P.natx },
    hostx: { name: 'hostx', ns: ns('hostx'), ...P.hostx, sshHostKey: '', authorizedKeysFile: join(sshdDir, 'authorized_keys') },
    naty: { name: 'naty', ns: ns('naty'), ...P.naty },
    hosty: { name: 'hosty', ns: ns('hosty'), ...P.hosty },
  };

  let destroying: Promise<void> | undefined;
  const lab: Lab = {
    id, prefix, stateDir, hosts, ns,
    exec: (host, cmd, args = [], o = {}) => run('ip', ['netns', 'exec', ns(host), cmd, ...args], o),
    spawn(host, cmd, args = [], o = {}) {
      if (destroying) throw new Error(`lab ${prefix} is destroyed`);
      const child = spawn('ip', ['netns', 'exec', ns(host), cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...o });
      tracked.add(child);
      child.once('exit', () => tracked.delete(child));
      child.on('error', () => tracked.delete(child));
      return child;
    },
    async connect(host, addr, port, o = {}) {
      const args = [join(root, 'infra/lab/probe.mjs'), addr, String(port), String(o.timeoutMs ?? 2000)];
      if (o.send !== undefined) args.push(o.send);
      const { stdout } = await lab.exec(host, process.execPath, args);
      return JSON.parse(stdout) as ConnectResult;
    },
    async check() {
      const facts = await Promise.all(
        shapeFacts().map(async (f) => {
          const got = await lab.connect(f.from, f.addr, f.port, { send: f.send, timeoutMs: 1500 });
          return { ...f, got, ok: factHolds(f, got) };
        }),
      );
      const failed = facts.filter((f) => !f.ok);
      if (failed.length > 0) throw new LabShapeError(failed);
      return facts;
    },
    destroy() {
      destroying ??= (async () => {
        const exits = [...tracked].map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))));
        for (const c of tracked) c.kill('SIGTERM');
        const timer = setTimeout(() => tracked.forEach((c) => c.kill('SIGKILL')), 3000);
        await Promise.all(exits);
        clearTimeout(timer);
        await run(script, ['down'], { env }); // also kills anything else still inside the namespaces
        live.delete(entry);
        const leftovers = await labLeftovers(prefix);
        if (leftovers.length > 0) throw new Error(`lab ${prefix} left behind: ${leftovers.join(', ')}`);
      })();
      return destroying;
    },
  };

  try {
    if (opts.services !== false) await startServices(lab, sshdDir);
    if (opts.check !== false) await lab.check();
    return lab;
  } catch (err) {
    await lab.destroy().catch(() => undefined);
    throw err;
  }
}

async function startServices(lab: Lab, sshdDir: string): Promise<void> {
  const svc = join(repoRoot(), 'infra/lab/service.mjs');
  const node = process.execPath;
  const P = LAB_PLAN;
  const ready = /^listening /m;
  const waits = [
    waitForOutput(lab.spawn('target-ok', node, [svc, 'banner', P.targetOk.addr, String(P.targetOk.port), P.targetOk.banner]), ready),
    waitForOutput(lab.spawn('target-ok', node, [svc, 'banner', P.targetOk.addr, String(P.targetOk.otherPort), P.targetOk.otherBanner]), ready),
    waitForOutput(lab.spawn('target-bad', node, [svc, 'banner', P.targetBad.addr, String(P.targetBad.port), P.targetBad.banner]), ready),
    waitForOutput(lab.spawn('ctl', node, [svc, 'banner', P.ctl.addr, String(P.probePort), 'ctl', '--peer']), ready),
    waitForOutput(lab.spawn('relay', node, [svc, 'banner', P.relay.wanAddr, String(P.probePort), 'relay', '--peer']), ready),
    waitForOutput(lab.spawn('hostx', node, [svc, 'echo', '0.0.0.0', String(P.hostx.echoPort)]), ready),
  ];
  mkdirSync(sshdDir, { recursive: true });
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege-separation directory
  const hostKey = join(sshdDir, 'ssh_host_ed25519_key');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hostx.lab', '-f', hostKey]);
  lab.hosts.hostx.sshHostKey = (await readFile(`${hostKey}.pub`, 'utf8')).trim();
  await writeFile(lab.hosts.hostx.authorizedKeysFile, '', { mode: 0o600 });
  const config = join(sshdDir, 'sshd_config');
  await writeFile(config, [
    `ListenAddress ${P.hostx.addr}:${P.hostx.sshPort}`,
    `ListenAddress 127.0.0.1:${P.hostx.sshPort}`,
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${lab.hosts.hostx.authorizedKeysFile}`,
    'PidFile none', 'UsePAM no', 'StrictModes no', 'PermitRootLogin prohibit-password',
    'PasswordAuthentication no', 'KbdInteractiveAuthentication no', '',
  ].join('\n'));
  const sshd = lab.spawn('hostx', '/usr/sbin/sshd', ['-D', '-e', '-f', config]);
  const listening = (addr: string) => `Server listening on ${addr} port ${P.hostx.sshPort}.`;
  waits.push(waitForOutput(sshd, (o) => o.includes(listening(P.hostx.addr)) && o.includes(listening('127.0.0.1'))));
  await Promise.all(waits);
}

/** Namespaces and root-namespace links whose names start with the prefix. */
export async function labLeftovers(prefix: string): Promise<string[]> {
  const [nss, links] = await Promise.all([run('ip', ['netns', 'list']), run('ip', ['-o', 'link', 'show'])]);
  const names = [
    ...nss.stdout.split('\n').map((l) => l.split(' ')[0] ?? ''),
    ...links.stdout.split('\n').map((l) => (l.split(': ')[1] ?? '').split('@')[0] ?? ''),
  ];
  return names.filter((n) => n.startsWith(prefix));
}
