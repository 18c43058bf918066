/** Helpers for driving the real OpenSSH client against a relay in tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { formatCertificateLine } from '../../protocol/ssh-cert.js';
import { formatOpenSshPrivateKey } from '../../protocol/ssh-key.js';
import { freePort } from '../harness/net.js';
import { tempDirRemovedAtExit } from '../../shared/testing/temp-dir.js';

export interface ClientFiles {
  dir: string;
  privateKey: KeyObject;
  keyFile: string;
  certFile: string;
  knownHosts: string;
}

/** A fresh client key (0600), its certificate file and a known_hosts pinning the relay. */
export async function clientFiles(relayPort: number, hostKeyLine: string, cert?: Buffer): Promise<ClientFiles> {
  const dir = tempDirRemovedAtExit('tunnel-ssh-');
  const { privateKey } = generateKeyPairSync('ed25519');
  const keyFile = join(dir, 'id_ed25519');
  await writeFile(keyFile, formatOpenSshPrivateKey(privateKey, 'test'), { mode: 0o600 });
  const knownHosts = join(dir, 'known_hosts');
  await writeFile(knownHosts, `[127.0.0.1]:${relayPort} ${hostKeyLine}\n`);
  const certFile = join(dir, 'lease.cert');
  if (cert) await writeFile(certFile, `${formatCertificateLine(cert)}\n`);
  return { dir, privateKey, keyFile, certFile, knownHosts };
}

export async function writeCert(files: ClientFiles, cert: Buffer, name = 'lease.cert'): Promise<string> {
  const path = join(files.dir, name);
  await writeFile(path, `${formatCertificateLine(cert)}\n`);
  return path;
}

export function sshArgs(files: ClientFiles, port: number, user: string, opts: { cert?: string | false; extra?: string[] } = {}): string[] {
  const certFile = opts.cert === false ? [] : ['-o', `CertificateFile=${opts.cert ?? files.certFile}`];
  return [
    '-F', '/dev/null',
    '-i', files.keyFile,
    ...certFile,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${files.knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'ConnectTimeout=10',
    '-p', String(port),
    ...(opts.extra ?? []),
    `${user}@127.0.0.1`,
  ];
}

const children = new Set<ChildProcess>();

export interface Proc {
  child: ChildProcess;
  stderr(): string;
  /** Resolves with the exit code (signal → null). */
  exited: Promise<number | null>;
  waitStderr(re: RegExp, timeoutMs?: number): Promise<void>;
}

export function spawnSsh(args: string[], opts: { bin?: string; stdio?: 'pipe'; env?: NodeJS.ProcessEnv } = {}): Proc {
  const child = spawn(opts.bin ?? 'ssh', args, { stdio: ['pipe', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
  children.add(child);
  let err = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    err += d;
    if (process.env.TUNNEL_TEST_LOG) process.stderr.write(`[ssh] ${d}`);
    for (const w of [...waiters]) if (w.re.test(err)) w.resolve();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    children.delete(child);
    resolve(code);
  }));
  return {
    child,
    stderr: () => err,
    exited,
    waitStderr: (re, timeoutMs = 20_000) =>
      new Promise((resolve, reject) => {
        if (re.test(err)) return resolve();
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} in ssh stderr:\n${err}`)), timeoutMs);
        const w = { re, resolve: () => { clearTimeout(t); waiters.splice(waiters.indexOf(w), 1); resolve(); } };
        waiters.push(w);
        void exited.then(() => { if (waiters.includes(w)) { clearTimeout(t); waiters.splice(waiters.indexOf(w), 1); reject(new Error(`ssh exited before ${re}:\n${err}`)); } });
      }),
  };
}

/**
 * Waits until `ssh -v -L` (one forward) accepts connections. OpenSSH logs "Local forwarding
 * listening on ..." before it binds and listens; the port-listener channel is created after.
 */
export function localForwardReady(p: Proc): Promise<void> {
  return p.waitStderr(/channel \d+: new port-listener/);
}

/** Kills every process spawned through spawnSsh (for after() hooks). */
export function killAll(): void {
  for (const c of children) {
    try {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/** Rejects after `ms`, to bound how long something may take ("within 5 s"). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * X's service: reads everything until EOF, then replies with the SHA-256 of what it read
 * (64 hex chars + '\n') followed by `replyBytes` of data, then ends. A reply that arrives
 * proves half-close survived the relay.
 */
export async function startHashService(replyBytes: number): Promise<{ port: number; server: Server }> {
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    sock.setNoDelay(true);
    const h = createHash('sha256');
    sock.on('data', (d) => h.update(d));
    sock.on('end', () => {
      sock.write(`${h.digest('hex')}\n`);
      writeStream(sock, replyBytes);
      sock.end();
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, server };
}

/**
 * X's service that speaks first: on connect it sends `replyBytes` (writeStream's bytes) and
 * half-closes, while it reads whatever Y sends; `nextHash()` resolves, connection by
 * connection, with the SHA-256 of what it read. Both directions flow at once, so the relay
 * closes X's channel right after the last bytes it forwards to X (a client still consuming
 * them is what PuTTY's winadj race needed).
 */
export async function startSpeakFirstService(replyBytes: number): Promise<{ port: number; server: Server; nextHash(): Promise<string> }> {
  const hashes: string[] = [];
  const waiters: ((h: string) => void)[] = [];
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    sock.setNoDelay(true);
    const h = createHash('sha256');
    sock.on('data', (d) => h.update(d));
    sock.on('end', () => {
      const hex = h.digest('hex');
      const w = waiters.shift();
      if (w) w(hex);
      else hashes.push(hex);
    });
    sock.on('error', () => {});
    writeStream(sock, replyBytes);
    sock.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    nextHash: () => {
      const h = hashes.shift();
      return h !== undefined ? Promise.resolve(h) : new Promise((r) => waiters.push(r));
    },
  };
}

/**
 * Sends `n` bytes into `duplex` with backpressure and ends its write side while reading
 * everything it returns until EOF: `{ sentHash, receivedHash, receivedBytes }`.
 */
export async function sendAndReceive(
  duplex: NodeJS.ReadableStream & { write(b: Buffer, cb?: () => void): boolean; end(): void; once(e: 'drain', f: () => void): unknown },
  n: number,
): Promise<{ sentHash: string; receivedHash: string; receivedBytes: number }> {
  const got = createHash('sha256');
  let receivedBytes = 0;
  const done = new Promise<void>((resolve, reject) => {
    duplex.on('data', (d: Buffer) => {
      got.update(d);
      receivedBytes += d.length;
    });
    duplex.on('end', () => resolve());
    duplex.on('error', reject);
  });
  const h = createHash('sha256');
  let left = n;
  while (left > 0) {
    const chunk = left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left);
    h.update(chunk);
    left -= chunk.length;
    if (!duplex.write(chunk)) await new Promise<void>((r) => duplex.once('drain', r));
  }
  duplex.end();
  await done;
  return { sentHash: h.digest('hex'), receivedHash: got.digest('hex'), receivedBytes };
}

/** An echo service (line-oriented tests of "still works"). */
export async function startEchoService(tag: string): Promise<{ port: number; server: Server }> {
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    sock.on('data', (d) => sock.write(`${tag}:${d.toString()}`));
    sock.on('end', () => sock.end());
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, server };
}

const BLOCK = randomBytes(1 << 20);

/** SHA-256 of the `n` bytes writeStream and exchange send. */
export function streamHash(n: number): string {
  return writeStream({ write: () => true }, n);
}

/** Writes `n` bytes (synchronously queued) and returns their SHA-256. */
export function writeStream(sock: { write(b: Buffer): boolean }, n: number): string {
  const h = createHash('sha256');
  let left = n;
  while (left > 0) {
    const chunk = left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left);
    sock.write(chunk);
    h.update(chunk);
    left -= chunk.length;
  }
  return h.digest('hex');
}

/**
 * Streams `n` bytes into `duplex` with backpressure (fewer once `until` settled: the bytes sent
 * by then), ends its write side, and collects the reply: `{ sentHash, echoedHash (first line),
 * replyHash (rest) }`.
 */
export async function exchange(
  duplex: NodeJS.ReadableStream & { write(b: Buffer, cb?: () => void): boolean; end(): void; once(e: 'drain', f: () => void): unknown },
  n: number,
  until?: Promise<unknown>,
): Promise<{ sentHash: string; echoedHash: string; replyHash: string; replyBytes: number }> {
  let stop = false;
  void until?.then(
    () => (stop = true),
    () => (stop = true),
  );
  const received: Buffer[] = [];
  let total = 0;
  const done = new Promise<void>((resolve, reject) => {
    duplex.on('data', (d: Buffer) => {
      received.push(d);
      total += d.length;
    });
    duplex.on('end', () => resolve());
    duplex.on('error', reject);
  });
  const h = createHash('sha256');
  let left = n;
  while (left > 0 && !stop) {
    const chunk = left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left);
    h.update(chunk);
    left -= chunk.length;
    if (!duplex.write(chunk)) await new Promise<void>((r) => duplex.once('drain', r));
  }
  duplex.end();
  await done;
  const all = Buffer.concat(received, total);
  const nl = all.indexOf(10);
  const echoedHash = all.subarray(0, nl).toString('utf8');
  const rest = all.subarray(nl + 1);
  return { sentHash: h.digest('hex'), echoedHash, replyHash: createHash('sha256').update(rest).digest('hex'), replyBytes: rest.length };
}


export function tcpConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

export { freePort };
