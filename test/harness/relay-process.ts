import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, repoRoot } from './net.js';
import { RELAY_NODE_FLAGS } from '../../node/node-flags.js';

export interface RelayProcess {
  sshPort: number;
  metricsPort: number;
  nodeId: string;
  pid: number;
  dataDir: string;
  child: ChildProcess;
  stderr(): string;
  /** Resolves once stderr (from `from`) matches; rejects on timeout or exit. */
  waitForStderr(pattern: RegExp, from?: number, timeoutMs?: number): Promise<string>;
  /** SIGTERM and wait; idempotent. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  cleanup(): void;
}

export interface StartRelayOptions {
  controlUrl: string;
  /** Needed on the first start of a data dir. */
  enrollToken?: string;
  dataDir?: string;
  sshPort?: number;
  metricsPort?: number;
  args?: string[];
  env?: Record<string, string>;
  nodeArgs?: string[];
  /** Wrap the command, e.g. ['ip', 'netns', 'exec', 'ns'] (the relay then runs inside it). */
  wrap?: string[];
  host?: string;
}

/**
 * node's arguments that run this tree's `tunnel-node` as it runs as a program (node/main.ts's first
 * lines exec node with RELAY_NODE_FLAGS): the flags, `nodeArgs`, then the script; the relay's own
 * flags follow. Every test that starts the relay without startRelayProcess starts it with these.
 */
export function relayNodeArgv(nodeArgs: readonly string[] = []): string[] {
  return [...RELAY_NODE_FLAGS, ...nodeArgs, join(repoRoot(), 'dist', 'node', 'main.js')];
}

/** Starts the real `tunnel-node` binary and resolves on its `{"ready":true,...}` line. */
export async function startRelayProcess(o: StartRelayOptions): Promise<RelayProcess> {
  const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), 'tunnel-node-'));
  const own = o.dataDir === undefined;
  const host = o.host ?? '127.0.0.1';
  const sshPort = o.sshPort ?? (await freePort());
  const metricsPort = o.metricsPort ?? (await freePort());
  const argv = [
    ...relayNodeArgv(o.nodeArgs),
    '--control-url',
    o.controlUrl,
    '--data-dir',
    dataDir,
    '--listen',
    `${host}:${sshPort}`,
    '--metrics-listen',
    `${host}:${metricsPort}`,
    ...(o.enrollToken ? ['--enroll-token', o.enrollToken] : []),
    ...(o.args ?? []),
  ];
  const [cmd, ...args] = o.wrap ? [...o.wrap, process.execPath, ...argv] : [process.execPath, ...argv];
  const child = spawn(cmd!, args, {
    // The egress lock is off unless a test asks for it (and then runs the relay inside a lab
    // namespace): a relay in the root namespace must never rewrite the host's iptables.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dataDir, TUNNEL_EGRESS_DRIVER: 'off', ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killOnExit = () => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stderr = '';
  let stdout = '';
  const listeners = new Set<() => void>();
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    for (const f of listeners) f();
  });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    for (const f of listeners) f();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      process.off('exit', killOnExit);
      for (const f of listeners) f();
      resolve({ code, signal });
    }),
  );
  const isExited = () => child.exitCode !== null || child.signalCode !== null;
  const waitFor = (get: () => string, pattern: RegExp, from: number, timeoutMs: number, what: string) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const part = get().slice(from);
        if (pattern.test(part)) finish(() => resolve(part));
        else if (isExited()) finish(() => reject(new Error(`tunnel-node exited before ${what} matched ${pattern}:\n${stderr.slice(-4000)}`)));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`tunnel-node: no ${pattern} on ${what} within ${timeoutMs} ms:\n${stderr.slice(-4000)}`))), timeoutMs);
      const finish = (f: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        f();
      };
      listeners.add(check);
      check();
    });
  try {
    await waitFor(() => stdout, /"ready":true/, 0, 30_000, 'stdout');
  } catch (err) {
    if (!isExited()) child.kill('SIGKILL');
    await exited;
    if (own) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const ready = JSON.parse(stdout.split('\n').find((l) => l.includes('"ready":true'))!) as { node_id: string };
  return {
    sshPort,
    metricsPort,
    nodeId: ready.node_id,
    pid: child.pid!,
    dataDir,
    child,
    stderr: () => stderr,
    waitForStderr: (p, from = 0, t = 15_000) => waitFor(() => stderr, p, from, t, 'stderr'),
    async stop(signal = 'SIGTERM') {
      if (!isExited()) child.kill(signal);
      return exited;
    },
    cleanup() {
      if (own) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
