/**
 * CLI users in the lab beyond what lab-stack.ts gives: a `tunnel` whose process output a test
 * can follow, a user logged in with a service token (or not at all), `tunnel` on PATH for
 * ssh's ProxyCommand, the real OpenSSH client run with a user's environment, small traffic
 * programs run inside lab hosts, and firewall blocks at a NAT router. Everything runs inside
 * the lab's namespaces; the test process itself sends nothing.
 */
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabCommandError, type Lab, type LabHost } from './lab.js';
import type { LabStack } from './lab-stack.js';
import { cliBinary, type CliResult } from './stack.js';

/** A child process whose output is collected (the shape test/harness/streams.ts waitForLine reads). */
export type Followed = ChildProcess & {
  output(): { stdout: string; stderr: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
};

export function follow(child: ChildProcess): Followed {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return Object.assign(child, { output: () => ({ stdout, stderr }), exited });
}

export interface LabCli {
  name: string;
  host: LabHost;
  home: string;
  /** The whole environment `tunnel` (and ssh) get: PATH starts with a directory holding `tunnel`. */
  env: Record<string, string>;
  /** Runs `tunnel ARGS` in the host to completion. */
  run(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<CliResult>;
  /** Starts `tunnel ARGS` in the host (stopped by lab.destroy() at the latest). */
  spawn(args: string[]): Followed;
  /** Runs any command in the host with this user's environment (e.g. ssh with a ProxyCommand). */
  exec(cmd: string, args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<CliResult>;
}

/** A directory holding a `tunnel` wrapper script (`exec node dist/cli/main.js "$@"`). */
export function tunnelBinDir(parent: string): string {
  const dir = join(parent, 'bin');
  mkdirSync(dir, { recursive: true });
  const wrapper = join(dir, 'tunnel');
  writeFileSync(wrapper, `#!/bin/sh\nexec '${process.execPath}' '${cliBinary()}' "$@"\n`);
  chmodSync(wrapper, 0o755);
  return dir;
}

async function execIn(lab: Lab, host: LabHost, argv: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  try {
    const r = await lab.exec(host, argv[0]!, argv.slice(1), { input: opts.input ?? '', timeoutMs: opts.timeoutMs ?? 60_000 });
    return { code: 0, ...r };
  } catch (err) {
    if (err instanceof LabCommandError) return { code: err.exitCode, stdout: err.stdout, stderr: err.stderr };
    throw err;
  }
}

/**
 * A CLI user in `host` with an empty HOME (not logged in; the server comes from TUNNEL_SERVER).
 * The home lives under `parent`, which the caller removes.
 */
export function labCli(stack: Pick<LabStack, 'lab' | 'controlUrl' | 'caPin'>, name: string, host: LabHost, parent: string): LabCli {
  const home = mkdtempSync(join(parent, `cli-${name}-`));
  mkdirSync(join(home, '.config'), { recursive: true });
  const env = {
    PATH: `${tunnelBinDir(home)}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    TUNNEL_SERVER: stack.controlUrl,
    TUNNEL_CA_PIN: stack.caPin,
  };
  const withEnv = (cmd: string, args: string[]) => ['env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), cmd, ...args];
  return {
    name,
    host,
    home,
    env,
    run: (args, o) => execIn(stack.lab, host, withEnv(process.execPath, [cliBinary(), ...args]), o),
    spawn: (args) => {
      const [cmd, ...rest] = withEnv(process.execPath, [cliBinary(), ...args]);
      return follow(stack.lab.spawn(host, cmd!, rest));
    },
    exec: (cmd, args, o) => execIn(stack.lab, host, withEnv(cmd, args), o),
  };
}

/** Creates user `name` through the API and logs a new CLI in as them with a password. */
export async function passwordUser(
  stack: Pick<LabStack, 'lab' | 'controlUrl' | 'caPin' | 'call' | 'adminToken'>,
  name: string,
  host: LabHost,
  parent: string,
  role: 'admin' | 'member' = 'member',
): Promise<LabCli> {
  const password = `${name}-password-123`;
  const r = await stack.call('POST', '/v1/users', { token: stack.adminToken, body: { name, password, role } });
  if (r.status !== 201) throw new Error(`create user ${name}: ${r.status} ${JSON.stringify(r.body)}`);
  const cli = labCli(stack, name, host, parent);
  const login = await cli.run(['login', '--password', '--user', name], { input: `${password}\n` });
  if (login.code !== 0) throw new Error(`tunnel login as ${name} on ${host} failed (${login.code}): ${login.stderr}`);
  return cli;
}

/** Writes `token` to a 0600 file in the user's home and runs `tunnel login --token-file`. */
export async function serviceTokenLogin(cli: LabCli, token: string): Promise<CliResult> {
  const file = join(cli.home, 'service-token');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return cli.run(['login', '--token-file', file]);
}

/** A temp directory for a test file's homes, keys and known_hosts files. */
export function labTempDir(what: string): string {
  return mkdtempSync(join(tmpdir(), `tunnel-lab-${what}-`));
}

/** Rejects TCP from behind NAT router `router` to `addr:port` (a reset at once, no timeout); returns the undo. */
export async function blockAtRouter(lab: Lab, router: 'natx' | 'naty', addr: string, port: number): Promise<() => Promise<void>> {
  const rule = ['FORWARD', '-p', 'tcp', '-d', addr, '--dport', String(port), '-j', 'REJECT', '--reject-with', 'tcp-reset'];
  await lab.exec(router, 'iptables', ['-I', ...rule]);
  let undone = false;
  return async () => {
    if (undone) return;
    undone = true;
    await lab.exec(router, 'iptables', ['-D', ...rule]);
  };
}

// Sends BYTES random bytes to HOST:PORT while hashing them, half-closes, hashes everything that
// comes back until the peer's end, and prints {"sent","received","sentSha","receivedSha"}.
const PUSH_SCRIPT = `
const net = require('node:net'), crypto = require('node:crypto');
const [host, port, total] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const sentHash = crypto.createHash('sha256'), gotHash = crypto.createHash('sha256');
let sent = 0, received = 0;
const sock = net.connect({ host, port, allowHalfOpen: true });
sock.setNoDelay(true);
sock.on('error', (e) => { console.error(String(e)); process.exit(1); });
sock.on('data', (d) => { received += d.length; gotHash.update(d); });
sock.on('end', () => {
  process.stdout.write(JSON.stringify({ sent, received, sentSha: sentHash.digest('hex'), receivedSha: gotHash.digest('hex') }));
  sock.destroy();
});
sock.on('connect', () => {
  const write = () => {
    while (sent < total) {
      const chunk = crypto.randomBytes(Math.min(256 * 1024, total - sent));
      sent += chunk.length;
      sentHash.update(chunk);
      if (!sock.write(chunk)) return void sock.once('drain', write);
    }
    sock.end();
  };
  write();
});
`;

export interface PushResult {
  sent: number;
  received: number;
  sentSha: string;
  receivedSha: string;
}

/** Runs the push program in `host` against an echo at `addr:port` (see PUSH_SCRIPT). */
export async function pushThrough(lab: Lab, host: LabHost, addr: string, port: number, bytes: number, timeoutMs = 120_000): Promise<PushResult> {
  const { stdout } = await lab.exec(host, process.execPath, ['-e', PUSH_SCRIPT, addr, String(port), String(bytes)], { timeoutMs });
  return JSON.parse(stdout) as PushResult;
}

// One long-lived connection driven line by line: each stdin line goes to the socket; each line
// from the socket is printed as "got LINE"; prints "connected" and, when the socket closes, "closed".
const LINES_SCRIPT = `
const net = require('node:net'), readline = require('node:readline');
const sock = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
sock.setNoDelay(true);
sock.on('connect', () => console.log('connected'));
sock.on('error', (e) => console.log('error ' + e.code));
sock.on('close', () => { console.log('closed'); process.exit(0); });
readline.createInterface({ input: sock }).on('line', (l) => console.log('got ' + l));
readline.createInterface({ input: process.stdin }).on('line', (l) => sock.write(l + '\\n'));
`;

/** Starts the line client in `host` (stdin is a pipe the test writes lines to). */
export function lineClient(lab: Lab, host: LabHost, addr: string, port: number): Followed {
  return follow(lab.spawn(host, process.execPath, ['-e', LINES_SCRIPT, addr, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] }));
}
