/**
 * The real `tunnel-control` binary (`node dist/control/main.js`) as a child process, for tests
 * that must see what an operator sees: flags, environment, the data directory, stderr, the exit
 * code. Each instance listens on 127.0.0.1 and a free port with its own data directory (a fresh
 * temp dir unless one is given, so a test can restart on the same data).
 *
 * The child gets a clean environment: no DATABASE_URL and no TUNNEL_* from the test runner's
 * environment leak in; pass what a case needs in `env`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';
import { trustConnector } from '../../protocol/tls-trust-undici.js';
import { formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { repoRoot, freePort } from './net.js';

/** The repository root: the nearest directory above this file that holds package.json. */

/** The built entry point of `tunnel-control`; fails with a hint when the build is missing. */
export function controlBinary(): string {
  const bin = join(repoRoot(), 'dist', 'control', 'main.js');
  if (!existsSync(bin)) throw new Error(`${bin} not found: run \`npm run build\` first`);
  return bin;
}

export interface ControlProcess {
  /** Base URL, e.g. http://127.0.0.1:41234 (also the public URL and token issuer); https:// when it serves TLS. */
  url: string;
  /** The certificate pin it printed (sha256:HEX) when it serves TLS, else null. */
  pin: string | null;
  /** For HTTPS: an undici dispatcher that trusts exactly that pin (pass it to httpCaller). */
  dispatcher: Dispatcher | undefined;
  port: number;
  /** Where it serves /metrics (started with --metrics-listen HOST:0 or a port), e.g. http://127.0.0.1:41235; null when it does not. */
  metricsUrl: string | null;
  /** The process id of the server (for CPU accounting in benchmarks). */
  pid: number;
  dataDir: string;
  /** The one-time setup code printed at start, or null when none was printed. */
  setupCode: string | null;
  /** Everything written to stderr / stdout so far. */
  stderr(): string;
  stdout(): string;
  /** Resolves with stderr from `from` once it matches; rejects on timeout or exit. */
  waitForStderr(pattern: RegExp, from?: number, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then waits for the exit; resolves with how it ended. Idempotent. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Removes the data directory if the harness created it. Call after stop(). */
  cleanup(): void;
}

export interface StartControlOptions {
  /** Reuse this data directory (for restart tests); default: a fresh temp dir, removed by cleanup(). */
  dataDir?: string;
  /** Extra environment (merged over a clean base). */
  env?: Record<string, string>;
  /** Extra flags after --listen and --data-dir. */
  args?: string[];
  /** Flags for node itself, before the script (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Give up waiting for readiness after this long (a failure, not a synchronisation sleep). */
  startTimeoutMs?: number;
  /** Another build's `control/main.js` (a benchmark's baseline); default this tree's dist. */
  bin?: string;
  /** A prefix for the command, e.g. a memory cgroup's (bench/lib/memory-cgroup.ts). */
  wrap?: string[];
}


/** A minimal environment: PATH, HOME and the temp dir, plus what the caller adds. */
function cleanEnv(extra: Record<string, string> = {}, home?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    TMPDIR: tmpdir(),
    NODE_ENV: 'test',
  };
  if (home) {
    env.HOME = home;
    env.XDG_DATA_HOME = join(home, 'xdg-data');
  }
  return { ...env, ...extra };
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

const READY_RE = /Tunnel control plane ready at /;
const PIN_RE = /\n {2}(sha256:[0-9a-f]{64})\n/;
const SETUP_CODE_RE = /"setup_code":"(setup_[A-Za-z0-9_-]+)"/;
const METRICS_RE = /"msg":"metrics listening"[^\n]*"listen":"([^"]+)"/;

/**
 * Starts `tunnel-control` and resolves once it logged "control plane listening", printed its
 * ready line (after any setup code) and answers GET /healthz.
 */
export async function startControlProcess(opts: StartControlOptions = {}): Promise<ControlProcess> {
  const bin = opts.bin ?? controlBinary();
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'tunnel-control-'));
  const home = mkdtempSync(join(tmpdir(), 'tunnel-control-home-'));
  const cleanupDirs = (): void => {
    rmSync(home, { recursive: true, force: true });
    if (ownDir) rmSync(dataDir, { recursive: true, force: true });
  };
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const [cmd, ...argv] = [...(opts.wrap ?? []), process.execPath, ...(opts.nodeArgs ?? []), bin, '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, ...(opts.args ?? [])];
    const child = spawn(cmd!, argv, {
      env: cleanEnv(opts.env, home),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const killOnExit = (): void => void child.kill('SIGKILL');
    process.once('exit', killOnExit);
    let stderr = '';
    let stdout = '';
    const listeners = new Set<() => void>();
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      for (const f of listeners) f();
    });
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    const exitedP = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => {
        process.off('exit', killOnExit);
        for (const f of listeners) f();
        resolve({ code, signal });
      }),
    );

    const waitForStderr = (pattern: RegExp, from = 0, timeoutMs = 15_000): Promise<string> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const part = stderr.slice(from);
          if (pattern.test(part)) done(() => resolve(part));
          else if (exited(child)) done(() => reject(new Error(`tunnel-control exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${part}`)));
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`tunnel-control did not print ${pattern} within ${timeoutMs} ms:\n${stderr.slice(from)}`))),
          timeoutMs,
        );
        const done = (settle: () => void): void => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        listeners.add(check);
        check();
      });

    const stop = async (): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
      if (!exited(child)) child.kill('SIGTERM');
      return exitedP;
    };

    try {
      const startTimeout = opts.startTimeoutMs ?? 30_000;
      await waitForStderr(/"msg":"control plane listening"/, 0, startTimeout);
      await waitForStderr(READY_RE, 0, startTimeout);
    } catch (err) {
      if (!exited(child)) child.kill('SIGKILL');
      await exitedP;
      lastError = String(err);
      // Another process may have taken the port between freePort() and the bind.
      if (/EADDRINUSE/.test(stderr)) continue;
      cleanupDirs();
      throw new Error(`tunnel-control failed to start: ${lastError}`, { cause: err });
    }
    const pin = PIN_RE.exec(stderr)?.[1] ?? null;
    const url = `${pin ? 'https' : 'http'}://127.0.0.1:${port}`;
    const dispatcher = pin ? new Agent({ connect: trustConnector({ caPin: pin }, 10_000) }) : undefined;
    await waitForHealthy(url, () => exited(child), opts.startTimeoutMs ?? 30_000, dispatcher).catch(async (err: unknown) => {
      await stop();
      cleanupDirs();
      throw err;
    });
    return {
      url,
      pin,
      dispatcher,
      port,
      metricsUrl: METRICS_RE.exec(stderr) ? `http://${METRICS_RE.exec(stderr)![1]}` : null,
      pid: child.pid!,
      dataDir,
      setupCode: SETUP_CODE_RE.exec(stderr)?.[1] ?? null,
      stderr: () => stderr,
      stdout: () => stdout,
      waitForStderr,
      stop,
      cleanup: cleanupDirs,
    };
  }
  cleanupDirs();
  throw new Error(`tunnel-control could not bind a free port after 5 attempts: ${lastError}`);
}

/** Polls GET /healthz until it answers 200; bounded, fails fast if the process exits. */
async function waitForHealthy(url: string, isExited: () => boolean, timeoutMs: number, dispatcher?: Dispatcher): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (isExited()) throw new Error('tunnel-control exited before /healthz answered');
    try {
      const res = await undiciFetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000), ...(dispatcher ? { dispatcher } : {}) });
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`tunnel-control /healthz did not answer 200 within ${timeoutMs} ms (${last})`);
}

export interface ControlRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `tunnel-control ARGS` to completion (for usage errors and one-shot commands). */
export async function runControl(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<ControlRun> {
  const bin = controlBinary();
  const home = mkdtempSync(join(tmpdir(), 'tunnel-control-home-'));
  try {
    return await new Promise<ControlRun>((resolve, reject) => {
      const child = spawn(process.execPath, [bin, ...args], { env: cleanEnv(env, home), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`tunnel-control ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${stderr}`));
      }, timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr });
      });
    });
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** What a JSON API call returned; `body` is parsed JSON when the response was JSON. */
export interface ApiResult {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
  body: any;
  headers: Headers;
}

export interface ApiCallOptions {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** The shape of `TestApp.call` (in-process) and of `httpCaller` (real HTTP), so helpers serve both. */
export type ApiCall = (method: string, path: string, opts?: ApiCallOptions) => Promise<ApiResult>;

/** JSON calls over real HTTP (undici fetch) to a control plane at `baseUrl` (HTTPS: pass its pinned dispatcher). */
export function httpCaller(baseUrl: string, dispatcher?: Dispatcher): ApiCall {
  return async (method, path, o = {}) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    let body: string | undefined;
    if (o.body !== undefined) {
      body = typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await undiciFetch(new URL(path, baseUrl), { method, headers, body, ...(dispatcher ? { dispatcher } : {}) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed, headers: res.headers as unknown as Headers };
  };
}

/** Asserts an expected status with the response in the message (a failing test then says why). */
export function expectStatus(r: ApiResult, status: number, what: string): ApiResult {
  if (r.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${r.status}: ${JSON.stringify(r.body)}`);
  return r;
}

/** Logs in with the password grant and returns the access token. */
export async function passwordLogin(call: ApiCall, username: string, password: string): Promise<string> {
  const r = expectStatus(
    await call('POST', '/v1/auth/token', { body: { grant_type: 'password', username, password } }),
    200,
    `password login of ${username}`,
  );
  return r.body.access_token as string;
}

export interface EnrolledNode {
  nodeId: string;
  name: string;
  nodeToken: string;
  /** The relay's host key line as enrolled. */
  hostKey: string;
}

/**
 * Enrolls a relay node the way an operator does (admin creates a one-time enrollment token, the
 * node enrolls with its ed25519 host key and address) and sends one heartbeat so it is online.
 * `hostKey`: the public half of the key the node serves SSH with (default: a throwaway one).
 */
export async function enrollOnlineNode(
  call: ApiCall,
  adminToken: string,
  name = 'relay-1',
  address = '127.0.0.1:2222',
  publicKey: KeyObject = generateKeyPairSync('ed25519').publicKey,
): Promise<EnrolledNode> {
  const enr = expectStatus(
    await call('POST', '/v1/nodes/enrollment-tokens', { token: adminToken, body: { name } }),
    201,
    'create enrollment token',
  );
  const hostKey = formatPublicKeyLine(rawPublicKey(publicKey));
  const enrolled = expectStatus(
    await call('POST', '/v1/nodes/enroll', { body: { token: enr.body.token, host_key: hostKey, address } }),
    201,
    'enroll node',
  );
  const node: EnrolledNode = { nodeId: enrolled.body.node_id, name, nodeToken: enrolled.body.node_token, hostKey };
  await nodeHeartbeat(call, node);
  return node;
}

/** One heartbeat of a node, holding `exposures`. */
export async function nodeHeartbeat(call: ApiCall, node: EnrolledNode, exposures: { name: string; port: number }[] = []): Promise<void> {
  expectStatus(
    await call('POST', '/v1/nodes/self/heartbeat', {
      token: node.nodeToken,
      body: { version: 'test', native_crypto: true, egress_driver: 'off', connections: 0, exposures },
    }),
    200,
    'node heartbeat',
  );
}

export { repoRoot };
