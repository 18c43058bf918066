import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import type { Readable } from 'node:stream';

interface Watched {
  output(): { stdout: string; stderr: string };
  stdout: NodeJS.ReadableStream | null;
  stderr: NodeJS.ReadableStream | null;
  once(e: 'exit', f: () => void): unknown;
  off?(e: 'exit', f: () => void): unknown;
}

/** Resolves with the first output line (stdout or stderr) matching `re`, counting from match `nth` (1-based). */
export function waitForLine(child: Watched, re: RegExp, timeoutMs = 20_000, nth = 1): Promise<string> {
  return new Promise((resolve, reject) => {
    const find = () => {
      const { stdout, stderr } = child.output();
      return (stdout + '\n' + stderr).split('\n').filter((l) => re.test(l))[nth - 1];
    };
    const check = () => {
      const m = find();
      if (m !== undefined) {
        cleanup();
        resolve(m);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no line matching ${re} (#${nth}) within ${timeoutMs} ms:\n${JSON.stringify(child.output())}`));
    }, timeoutMs);
    const onExit = () => {
      const m = find();
      cleanup();
      if (m !== undefined) resolve(m);
      else reject(new Error(`process exited before ${re} (#${nth}):\n${JSON.stringify(child.output())}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off('data', check);
      child.stderr?.off('data', check);
      child.off?.('exit', onExit);
    };
    child.stdout?.on('data', check);
    child.stderr?.on('data', check);
    child.once('exit', onExit);
    check();
  });
}

/** An echo service that answers "bye\n" after the client's EOF (to prove half-close). */
export async function echoService(host = '127.0.0.1'): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.setNoDelay(true);
    s.pipe(s, { end: false });
    s.on('end', () => s.end('bye\n'));
    s.on('error', () => {});
  });
  server.listen(0, host);
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port };
}

/** Sends `payload`, half-closes, and returns everything received until the peer's end. */
export async function roundTrip(port: number, payload: Buffer, host = '127.0.0.1'): Promise<Buffer> {
  const sock = connect({ host, port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  await once(sock, 'connect');
  sock.end(payload);
  await once(sock, 'end');
  sock.destroy();
  return Buffer.concat(chunks);
}

/** Retries `fn` until it resolves or `deadlineMs` passes (then rethrows the last error). */
export async function eventually<T>(fn: () => Promise<T>, deadlineMs: number, pauseMs = 200): Promise<T> {
  const end = Date.now() + deadlineMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      return await fn();
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  throw last instanceof Error ? last : new Error(String(last));
}

/**
 * SHA-256 (hex) and length of everything `s` delivers until its end; rejects if it fails or
 * closes before its end (the connection broke).
 */
export function digestUntilEnd(s: Readable): Promise<{ sha: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  s.on('data', (d: Buffer) => {
    h.update(d);
    bytes += d.length;
  });
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve({ sha: h.digest('hex'), bytes }));
    s.once('error', reject);
    s.once('close', () => reject(new Error(`closed after ${bytes} bytes, before the end`)));
  });
}
