import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Socket } from 'node:net';
import { isatty } from 'node:tty';

/** What readFileBounded throws for a file longer than its bound. */
export class FileTooLargeError extends Error {
  readonly code = 'FILE_TOO_LARGE';
  constructor(path: string, maxBytes: number) {
    super(`${path} is longer than ${maxBytes} bytes`);
    this.name = 'FileTooLargeError';
  }
}

/** The kinds of file a bounded read refuses, as a message names them. */
const REFUSED_KINDS = {
  pipe: 'a pipe or FIFO',
  socket: 'a socket',
  terminal: 'a terminal',
  waiting: 'a device with nothing to read yet',
} as const;
export type RefusedKind = keyof typeof REFUSED_KINDS;

/**
 * What a bounded read throws for a file it will not read because the read could wait for input
 * forever: a terminal (either variant), a pipe, FIFO or socket (readFileBoundedSync only), or a
 * device whose non-blocking read finds nothing yet. `kindText` says which, for a message.
 */
export class FileKindRefusedError extends Error {
  readonly code = 'FILE_KIND_REFUSED';
  readonly kindText: string;
  constructor(
    path: string,
    readonly kind: RefusedKind,
  ) {
    super(`${path} is ${REFUSED_KINDS[kind]}`);
    this.name = 'FileKindRefusedError';
    this.kindText = REFUSED_KINDS[kind];
  }
}

/**
 * Flags for opening anything that is not read as a pipe: a device's open and read never wait
 * (a read with nothing there fails EAGAIN), and a terminal does not become the controlling one.
 */
const OPEN_NOT_WAITING = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** A read that would have waited on a non-blocking descriptor, as the kind refused. */
function refuseWaiting(path: string, err: unknown): unknown {
  return (err as NodeJS.ErrnoException).code === 'EAGAIN' ? new FileKindRefusedError(path, 'waiting') : err;
}

/**
 * A file's content, at most `maxBytes` of it (longer: FileTooLargeError), so a file that never
 * ends (`/dev/zero`) is refused once past the bound instead of filling memory (readFileSync read
 * on, with the event loop blocked: not even SIGTERM ended it). A pipe or FIFO (`<(cmd)`,
 * /dev/stdin, a named FIFO nobody writes to yet) is read without blocking any thread, so `signal`
 * aborted rejects with its reason at once and the process can still exit (Node's exit waits for a
 * thread blocked in a FIFO's open or read). A terminal (/dev/tty, /dev/stdin at a prompt) is
 * refused (FileKindRefusedError): its read would hold a thread until a line is typed, and Node's
 * exit waits for that thread, so not even a second Ctrl-C ended the process. Any other device is
 * read without waiting. Errors keep their errno code.
 */
export async function readFileBounded(path: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer> {
  signal?.throwIfAborted();
  const st = await stat(path);
  signal?.throwIfAborted();
  if (st.isFIFO() || st.isSocket()) return readPipe(path, maxBytes, signal);
  const file = await open(path, OPEN_NOT_WAITING);
  try {
    if (isatty(file.fd)) throw new FileKindRefusedError(path, 'terminal');
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    while (n < buf.length) {
      signal?.throwIfAborted();
      const { bytesRead } = await file.read(buf, n, buf.length - n, null).catch((err: unknown) => {
        throw refuseWaiting(path, err);
      });
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
 * than read until memory runs out. It holds the event loop while it reads, so whatever could make
 * it wait is refused (FileKindRefusedError) rather than read: a pipe, FIFO or socket (checked
 * before it is opened, so a FIFO's writer is not disturbed), a terminal, and a device with
 * nothing to read yet. Such a read held the process with its signal handlers never run: Ctrl-C
 * and SIGTERM did nothing.
 */
export function readFileBoundedSync(path: string, maxBytes: number): Buffer {
  return readFileBoundedSyncWithMode(path, maxBytes).bytes;
}

/** What readFileBoundedSyncWithMode read: the file's content, and its mode. */
export interface BoundedRead {
  bytes: Buffer;
  /** The `mode` (Stats.mode: file type and permission bits) of the file read, as fstat gave it on the descriptor the bytes came from. */
  mode: number;
}

/**
 * readFileBoundedSync, with the mode of the very file it read (for a caller that judges the file's
 * permissions, cli/settings.ts): a stat of the path after the read is a second call, and by then
 * the path may name another file (replaced by a rename), so it could judge a file other than the
 * one read.
 */
export function readFileBoundedSyncWithMode(path: string, maxBytes: number): BoundedRead {
  refusePipe(path, statSync(path));
  const fd = openSync(path, OPEN_NOT_WAITING);
  try {
    // Again on what was opened: the path may name something else by now.
    const opened = fstatSync(fd);
    refusePipe(path, opened);
    if (isatty(fd)) throw new FileKindRefusedError(path, 'terminal');
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    while (n < buf.length) {
      let got: number;
      try {
        got = readSync(fd, buf, n, buf.length - n, null);
      } catch (err) {
        throw refuseWaiting(path, err);
      }
      if (got === 0) break;
      n += got;
    }
    if (n > maxBytes) throw new FileTooLargeError(path, maxBytes);
    // A copy: the bound-sized buffer is not kept alive by what the caller holds on to.
    return { bytes: Buffer.from(buf.subarray(0, n)), mode: opened.mode };
  } finally {
    closeSync(fd);
  }
}

function refusePipe(path: string, st: Stats): void {
  if (st.isFIFO()) throw new FileKindRefusedError(path, 'pipe');
  if (st.isSocket()) throw new FileKindRefusedError(path, 'socket');
}
