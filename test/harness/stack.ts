import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Server } from 'node:net';
import { after, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectStatus, httpCaller, passwordLogin, repoRoot, startControlProcess, type ApiCall, type ControlProcess } from './control.js';
import { echoService } from './streams.js';
import { startRelayProcess, type RelayProcess, type StartRelayOptions } from './relay-process.js';

export const ADMIN = { name: 'admin', password: 'admin-password-123' };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Asserts a failed run: the expected exit code, and one line on stderr matching `re`, no stack frames. */
export function oneLine(r: CliResult, code: number, re: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at |internal error/);
  assert.match(r.stderr, re);
}

export interface CliUser {
  name: string;
  password: string;
  home: string;
  env: Record<string, string>;
  /** Runs `tunnel ARGS` to completion. */
  run(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<CliResult>;
  /** Starts `tunnel ARGS` in the background (tracked; killed by stack.stop()). */
  spawn(args: string[]): ChildProcess & { output(): { stdout: string; stderr: string } };
}

export interface Stack {
  control: ControlProcess;
  relay: RelayProcess;
  call: ApiCall;
  adminToken: string;
  /** Creates a user (member unless role says otherwise) and logs the CLI in as them. */
  user(name: string, role?: 'admin' | 'member'): Promise<CliUser>;
  /** An enrollment token for another relay. */
  enrollmentToken(name: string): Promise<string>;
  /** Stops the relay with `signal` (SIGKILL: it dies) and starts it again on the same ports and data. */
  restartRelay(signal?: NodeJS.Signals): Promise<RelayProcess>;
  stop(): Promise<void>;
}

export function cliBinary(): string {
  return join(repoRoot(), 'dist', 'cli', 'main.js');
}

/** Real control plane and relay processes on loopback, an admin, and CLI users with their own HOME. */
export async function startStack(opts: { relay?: Partial<StartRelayOptions>; controlEnv?: Record<string, string> } = {}): Promise<Stack> {
  const control = await startControlProcess({ env: opts.controlEnv });
  const children = new Set<ChildProcess>();
  const homes: string[] = [];
  let relay: RelayProcess | undefined;
  try {
    const call = httpCaller(control.url);
    expectStatus(
      await call('POST', '/v1/setup', { body: { setup_code: control.setupCode, name: ADMIN.name, password: ADMIN.password } }),
      201,
      'setup',
    );
    const adminToken = await passwordLogin(call, ADMIN.name, ADMIN.password);
    const enrollmentToken = async (name: string) =>
      expectStatus(await call('POST', '/v1/nodes/enrollment-tokens', { token: adminToken, body: { name } }), 201, 'enrollment token').body
        .token as string;
    relay = await startRelayProcess({ controlUrl: control.url, enrollToken: await enrollmentToken('relay-1'), ...opts.relay });
    const firstRelayDir = opts.relay?.dataDir ? undefined : relay.dataDir;

    const makeCliUser = async (name: string, password: string): Promise<CliUser> => {
      const home = mkdtempSync(join(tmpdir(), `tunnel-cli-${name}-`));
      homes.push(home);
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, XDG_CONFIG_HOME: join(home, '.config'), TUNNEL_SERVER: control.url };
      const run = (args: string[], o: { input?: string; timeoutMs?: number } = {}) =>
        new Promise<CliResult>((resolve, reject) => {
          const child = spawn(process.execPath, [cliBinary(), ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
          child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
          const timer = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`tunnel ${args.join(' ')} did not finish within ${o.timeoutMs ?? 60_000} ms:\n${stderr}`));
          }, o.timeoutMs ?? 60_000);
          child.once('exit', (code) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
          });
          child.stdin.end(o.input ?? '');
        });
      const spawnBg = (args: string[]) => {
        const child = spawn(process.execPath, [cliBinary(), ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
        children.add(child);
        child.once('exit', () => children.delete(child));
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        return Object.assign(child, { output: () => ({ stdout, stderr }) });
      };
      const u: CliUser = { name, password, home, env, run, spawn: spawnBg };
      const login = await run(['login', '--password', '--user', name], { input: `${password}\n` });
      if (login.code !== 0) throw new Error(`tunnel login as ${name} failed (${login.code}): ${login.stderr}`);
      return u;
    };

    const stack: Stack = {
      control,
      relay,
      call,
      adminToken,
      enrollmentToken,
      async user(name, role = 'member') {
        const password = `${name}-password-123`;
        if (name !== ADMIN.name) {
          expectStatus(await call('POST', '/v1/users', { token: adminToken, body: { name, password, role } }), 201, `create user ${name}`);
        }
        return makeCliUser(name, name === ADMIN.name ? ADMIN.password : password);
      },
      async restartRelay(signal = 'SIGKILL') {
        const old = stack.relay;
        await old.stop(signal);
        relay = await startRelayProcess({
          ...opts.relay,
          controlUrl: control.url,
          dataDir: old.dataDir,
          sshPort: old.sshPort,
          metricsPort: old.metricsPort,
        });
        stack.relay = relay;
        return relay;
      },
      async stop() {
        for (const c of children) c.kill('SIGKILL');
        await relay?.stop();
        relay?.cleanup();
        if (firstRelayDir && relay?.dataDir === firstRelayDir) rmSync(firstRelayDir, { recursive: true, force: true });
        await control.stop();
        control.cleanup();
        for (const h of homes) rmSync(h, { recursive: true, force: true });
      },
    };
    return stack;
  } catch (err) {
    for (const c of children) c.kill('SIGKILL');
    await relay?.stop();
    await control.stop();
    control.cleanup();
    throw err;
  }
}

export interface CliFixture {
  stack: Stack;
  /** The admin and a member, each with their own logged-in CLI. */
  admin: CliUser;
  bob: CliUser;
  /** An echo service on loopback for "X" to expose. */
  echo: { server: Server; port: number };
}

/** Registers before/after hooks for the usual CLI end-to-end setup; the fields are set in before(). */
export function cliFixture(): CliFixture {
  const f = {} as CliFixture;
  before(async () => {
    f.stack = await startStack();
    f.echo = await echoService();
    f.admin = await f.stack.user('admin');
    f.bob = await f.stack.user('bob');
  });
  after(async () => {
    f.echo?.server.close();
    await f.stack?.stop();
  });
  return f;
}
