/**
 * OpenSSH processes for the relay benchmark: the old setup's throwaway sshd (its own config,
 * host key and AuthorizedKeysFile in a temp dir, root login, loopback only) and `ssh` clients.
 * Every process started here is tracked so the benchmark can stop all of them, even on failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatOpenSshPrivateKey, formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { freePort } from '../../test/harness/net.js';

export const SSHD = '/usr/sbin/sshd';

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** Kills every process started through this module and waits for them. */
export async function killTracked(): Promise<void> {
  const gone = [...running].map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))));
  for (const c of running) c.kill('SIGKILL');
  await Promise.all(gone);
}

export interface Tracked {
  child: ChildProcess;
  pid: number;
  output(): string;
  exited: Promise<number | null>;
  /** Resolves once the output matches; rejects on exit or after `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

export function track(cmd: string, args: string[]): Tracked {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: string) => {
    out = (out + d).slice(-64 * 1024);
    for (const f of listeners) f();
  };
  child.stdout!.setEncoding('utf8').on('data', onData);
  child.stderr!.setEncoding('utf8').on('data', onData);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      for (const f of listeners) f();
      resolve(code);
    }),
  );
  const isExited = () => child.exitCode !== null || child.signalCode !== null;
  return {
    child,
    pid: child.pid!,
    output: () => out,
    exited,
    waitFor: (re, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(out)) done(resolve);
          else if (isExited()) done(() => reject(new Error(`${cmd} exited before ${re}:\n${out}`)));
        };
        const t = setTimeout(() => done(() => reject(new Error(`${cmd}: no ${re} within ${timeoutMs} ms:\n${out}`))), timeoutMs);
        const done = (f: () => void) => {
          clearTimeout(t);
          listeners.delete(check);
          f();
        };
        listeners.add(check);
        check();
      }),
    stop: async () => {
      if (!isExited()) child.kill('SIGTERM');
      await exited;
    },
  };
}


export interface KeyPair {
  key: KeyObject;
  file: string;
  publicKeyLine: string;
}

/** A fresh ed25519 key written as an OpenSSH private key file (0600) in `dir`. */
export function writeKey(dir: string, name: string): KeyPair {
  const { privateKey } = generateKeyPairSync('ed25519');
  const file = join(dir, name);
  writeFileSync(file, formatOpenSshPrivateKey(privateKey, name), { mode: 0o600 });
  return { key: privateKey, file, publicKeyLine: formatPublicKeyLine(rawPublicKey(privateKey)) };
}

export interface KeySshd {
  port: number;
  pid: number;
  hostKeyLine: string;
  stop(): Promise<void>;
}

/** The old setup's sshd: key authentication from an AuthorizedKeysFile in its own temp dir. */
export async function startKeySshd(authorizedKeys: string[], extraConfig: string[] = []): Promise<KeySshd> {
  if (process.getuid?.() !== 0) throw new Error('the sshd baseline needs root (sshd refuses to run otherwise)');
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(join(tmpdir(), 'tunnel-bench-sshd-'));
  const host = writeKey(dir, 'ssh_host_ed25519_key');
  writeFileSync(join(dir, 'authorized_keys'), authorizedKeys.map((k) => `${k}\n`).join(''), { mode: 0o600 });
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const config = join(dir, 'sshd_config');
    writeFileSync(
      config,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${host.file}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'PermitRootLogin yes',
        'AllowTcpForwarding yes',
        'GatewayPorts no',
        'UseDNS no',
        'PrintMotd no',
        'MaxStartups 200:30:400',
        'LogLevel INFO',
        ...extraConfig,
        '',
      ].join('\n'),
    );
    const p = track(SSHD, ['-D', '-e', '-f', config]);
    try {
      await p.waitFor(new RegExp(`Server listening on 127\\.0\\.0\\.1 port ${port}`), 10_000);
    } catch (err) {
      await p.stop();
      if (/Address already in use/.test(p.output())) continue;
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return {
      port,
      pid: p.pid,
      hostKeyLine: host.publicKeyLine,
      stop: async () => {
        await p.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error('sshd could not bind a free port');
}

export interface SshTarget {
  port: number;
  user: string;
  keyFile: string;
  knownHosts: string;
  certFile?: string;
}

/** `ssh -N` with only the given identity, a pinned host key, and `cipher`. */
export function sshArgs(t: SshTarget, cipher: string, forward: string[]): string[] {
  return [
    '-F', '/dev/null',
    '-N',
    '-i', t.keyFile,
    ...(t.certFile ? ['-o', `CertificateFile=${t.certFile}`] : []),
    '-o', 'IdentitiesOnly=yes',
    '-o', 'IdentityAgent=none',
    '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${t.knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'ExitOnForwardFailure=yes',
    '-o', 'ConnectTimeout=10',
    '-c', cipher,
    '-p', String(t.port),
    ...forward,
    `${t.user}@127.0.0.1`,
  ];
}

/** Resolves once something accepts TCP on 127.0.0.1:`port`; bounded. */
export async function waitForListen(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

export { freePort };
