import { closeSync, constants, openSync, readSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Socket } from 'node:net';

/** What readFileBounded throws for a file longer than its bound. */
export class FileTooLargeError extends Error {
  readonly code = 'FILE_TOO_LARGE';
  constructor(path: string, maxBytes: number) {
    super(`${path} is longer than ${maxBytes} bytes`);
    this.name = 'FileTooLargeError';
  }
}

/**
 * A file's content, at most `maxBytes` of it (longer: FileTooLargeError), so a file that never
 * ends (`/dev/zero`) is refused once past the bound instead of filling memory (readFileSync read
 * on, with the event loop blocked: not even SIGTERM ended it). A pipe or FIFO (`<(cmd)`,
 * /dev/stdin, a named FIFO nobody writes to yet) is read without blocking any thread, so `signal`
 * aborted rejects with its reason at once and the process can still exit (Node's exit waits for a
 * thread blocked in a FIFO's open or read). Errors keep their errno code.
 */
export async function readFileBounded(path: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer> {
  signal?.throwIfAborted();
  const st = await stat(path);
  signal?.throwIfAborted();
  if (st.isFIFO() || st.isSocket()) return readPipe(path, maxBytes, signal);
  const file = await open(path, 'r');
  try {
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    while (n < buf.length) {
      signal?.throwIfAborted();
      const { bytesRead } = await file.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > maxBytes) throw new FileTooLargeError(path, maxBytes);
    // A copy: the bound-sized buffer is not kept alive by what the caller holds on to.
    return Buffer.from(buf.subarray(0, n));
  } finally {
    await file.close();
  }
}

/**
 * A pipe or FIFO, opened non-blocking (a FIFO's open does not wait for a writer) and read through
 * the event loop: until its writers close it, `maxBytes` is passed, or `signal` aborts.
 */
function readPipe(path: string, maxBytes: number, signal: AbortSignal | undefined): Promise<Buffer> {
  const sock = new Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const done = (err: unknown, buf?: Buffer) => {
      signal?.removeEventListener('abort', onAbort);
      sock.destroy();
      if (buf) resolve(buf);
      else reject(err);
    };
    const onAbort = () => done(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.on('data', (d: Buffer) => {
      n += d.length;
      if (n > maxBytes) return done(new FileTooLargeError(path, maxBytes));
      chunks.push(d);
    });
    sock.once('end', () => done(undefined, Buffer.concat(chunks, n)));
    sock.once('error', (err) => done(err));
  });
}

/**
 * readFileBounded for a caller that cannot wait (a TLS setting resolved when a client is built):
 * at most `maxBytes` (longer: FileTooLargeError), so `/dev/zero` is refused past the bound rather
 * than read until memory runs out. It blocks while it reads, so it is for regular files: a FIFO
 * still waits for its writer.
 */
export function readFileBoundedSync(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    if (n > maxBytes) throw new FileTooLargeError(path, maxBytes);
    // A copy: the bound-sized buffer is not kept alive by what the caller holds on to.
    return Buffer.from(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}
