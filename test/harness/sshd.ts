/**
 * A throwaway real OpenSSH sshd on 127.0.0.1 and the real `ssh` client, for interop tests.
 *
 * The daemon gets its own temp dir, host key and config; it trusts only the CA keys given to
 * startSshd, has no authorized_keys and no passwords, and runs in the foreground (`-D -e`) as a
 * child of the test process so stop() (and the process dying) ends it. Needs root: sshd
 * refuses to start otherwise, and logs in as the current user.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './net.js';

const execFileP = promisify(execFile);

export const SSHD_PATH = '/usr/sbin/sshd';

export interface SshdOptions {
  /** Lines for TrustedUserCAKeys (`ssh-ed25519 AAAA... comment`). */
  trustedUserCaKeys: string[];
  /** Extra sshd_config lines, appended after the defaults. */
  extraConfig?: string[];
  /** Give up waiting for the port after this long (a failure, not a synchronisation sleep). */
  startTimeoutMs?: number;
}

export interface Sshd {
  port: number;
  /** The host public key line (`ssh-ed25519 AAAA...`). */
  hostKeyLine: string;
  /** A known_hosts line pinning the host key for `host` on this port. */
  knownHostsLine(host?: string): string;
  /** The daemon's own temp dir (config, keys, pid file). */
  dir: string;
  /** Everything sshd wrote to stderr so far (LogLevel VERBOSE): use in failure messages. */
  log(): string;
  /**
   * Resolves with the log text from `from` (a previous `log().length`) once that part matches
   * `pattern`; driven by sshd's output, rejects after `timeoutMs` or if sshd exits.
   */
  waitForLog(pattern: RegExp, from?: number, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}


function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Polls until sshd accepts TCP; fails fast if it exits (e.g. the port was taken meanwhile). */
async function waitForPort(child: ChildProcess, port: number, listening: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited(child)) return false;
    // The log line proves it is *our* sshd that bound the port, not a racing process.
    if (listening() && (await tryConnect(port))) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`sshd did not accept connections on ${port} within ${timeoutMs} ms`);
}

export async function startSshd(opts: SshdOptions): Promise<Sshd> {
  if (!existsSync(SSHD_PATH)) throw new Error(`${SSHD_PATH} not found: install the openssh-server package`);
  if (process.getuid?.() !== 0) throw new Error('startSshd needs root (sshd refuses to run otherwise)');
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(join(tmpdir(), 'tunnel-sshd-'));
  const hostKey = join(dir, 'ssh_host_ed25519_key');
  await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tunnel-test-host', '-f', hostKey]);
  const hostKeyLine = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  const caFile = join(dir, 'trusted_user_ca_keys');
  writeFileSync(caFile, opts.trustedUserCaKeys.map((l) => `${l.trim()}\n`).join(''));

  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const config = join(dir, 'sshd_config');
    writeFileSync(
      config,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `TrustedUserCAKeys ${caFile}`,
        'AuthorizedKeysFile none',
        'AuthorizedPrincipalsFile none',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'HostbasedAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'PermitRootLogin yes',
        'UseDNS no',
        'PrintMotd no',
        'PrintLastLog no',
        'LogLevel VERBOSE',
        ...(opts.extraConfig ?? []),
        '',
      ].join('\n'),
    );
    const child = spawn(SSHD_PATH, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const onLog = new Set<() => void>();
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      log += d;
      for (const f of onLog) f();
    });
    // If the test process exits without calling stop(), take the daemon with it.
    const killOnExit = (): void => void child.kill('SIGKILL');
    process.once('exit', killOnExit);
    const spawnFailed = new Promise<never>((_, reject) => child.once('error', reject));
    spawnFailed.catch(() => undefined);
    const listening = (): boolean => log.includes(`Server listening on 127.0.0.1 port ${port}.`);
    const up = await Promise.race([waitForPort(child, port, listening, opts.startTimeoutMs ?? 10_000), spawnFailed]).catch(
      (err: unknown) => {
        child.kill('SIGKILL');
        process.off('exit', killOnExit);
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`sshd failed to start: ${String(err)}\n${log}`, { cause: err });
      },
    );
    if (!up) {
      process.off('exit', killOnExit);
      if (/Address already in use|Cannot bind/i.test(log)) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`sshd exited during start (code ${child.exitCode}):\n${log}`);
    }
    const stop = async (): Promise<void> => {
      if (!exited(child)) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await gone;
      }
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    };
    const waitForLog = (pattern: RegExp, from = 0, timeoutMs = 10_000): Promise<string> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const part = log.slice(from);
          if (pattern.test(part)) done(() => resolve(part));
          else if (exited(child)) done(() => reject(new Error(`sshd exited before logging ${pattern}:\n${part}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`sshd did not log ${pattern} within ${timeoutMs} ms:\n${log.slice(from)}`))), timeoutMs);
        const done = (settle: () => void): void => {
          clearTimeout(timer);
          onLog.delete(check);
          child.off('exit', check);
          settle();
        };
        onLog.add(check);
        child.on('exit', check);
        check();
      });
    return {
      port,
      hostKeyLine,
      knownHostsLine: (host = '127.0.0.1') => `[${host}]:${port} ${hostKeyLine}`,
      dir,
      log: () => log,
      waitForLog,
      stop,
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error('sshd could not bind a free port after 5 attempts');
}

export interface SshRunOptions {
  port: number;
  user: string;
  /** Private key file (mode 0600). */
  identityFile: string;
  /** The certificate file (`*-cert.pub`). */
  certificateFile: string;
  /** A known_hosts file that pins the server's host key. */
  knownHostsFile: string;
  host?: string;
  command?: string;
  extraOptions?: string[];
}

export interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real OpenSSH client non-interactively with only the given key and certificate. */
export async function runSsh(o: SshRunOptions): Promise<SshResult> {
  const args = [
    '-F', '/dev/null',
    '-p', String(o.port),
    '-l', o.user,
    '-i', o.identityFile,
    '-o', `CertificateFile=${o.certificateFile}`,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'IdentityAgent=none',
    '-o', 'BatchMode=yes',
    '-o', 'PasswordAuthentication=no',
    '-o', 'KbdInteractiveAuthentication=no',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${o.knownHostsFile}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'ConnectTimeout=10',
    ...(o.extraOptions ?? []),
    o.host ?? '127.0.0.1',
    o.command ?? 'echo ok',
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
