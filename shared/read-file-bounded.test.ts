import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, constants, createWriteStream, existsSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FileKindRefusedError, FileTooLargeError, readFileBounded, readFileBoundedSync, readFileBoundedSyncWithMode } from './read-file-bounded.js';
import { withFirstReadSync } from './testing/first-read-sync.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

function fifo(): string {
  const p = join(tempDir('tunnel-fifo-'), 'fifo');
  execFileSync('mkfifo', [p]);
  return p;
}

describe('readFileBounded', () => {
  it('reads a file up to the bound, refuses one beyond it, keeps errno codes', async () => {
    const dir = tempDir('tunnel-read-');
    writeFileSync(join(dir, 'ok'), 'x'.repeat(16));
    writeFileSync(join(dir, 'big'), 'x'.repeat(17));
    assert.equal((await readFileBounded(join(dir, 'ok'), 16)).toString(), 'x'.repeat(16));
    await assert.rejects(readFileBounded(join(dir, 'big'), 16), FileTooLargeError);
    await assert.rejects(readFileBounded(join(dir, 'none'), 16), { code: 'ENOENT' });
  });

  it('a file that never ends (/dev/zero) is refused past the bound', { skip: !existsSync('/dev/zero') && 'needs /dev/zero' }, async () => {
    await assert.rejects(readFileBounded('/dev/zero', 64 * 1024), FileTooLargeError);
    assert.throws(() => readFileBoundedSync('/dev/zero', 64 * 1024), FileTooLargeError);
  });

  it('readFileBoundedSync: up to the bound, not beyond, errno codes kept', () => {
    const dir = tempDir('tunnel-read-');
    writeFileSync(join(dir, 'ok'), 'x'.repeat(16));
    writeFileSync(join(dir, 'big'), 'x'.repeat(17));
    assert.equal(readFileBoundedSync(join(dir, 'ok'), 16).toString(), 'x'.repeat(16));
    assert.throws(() => readFileBoundedSync(join(dir, 'big'), 16), FileTooLargeError);
    assert.throws(() => readFileBoundedSync(join(dir, 'none'), 16), { code: 'ENOENT' });
  });

  it('readFileBoundedSyncWithMode: the bytes and the mode of the file it read, not of what the path names later', () => {
    const dir = tempDir('tunnel-read-');
    const p = join(dir, 'f');
    writeFileSync(p, 'first');
    chmodSync(p, 0o640);
    const read = readFileBoundedSyncWithMode(p, 16);
    assert.equal(read.bytes.toString(), 'first');
    assert.equal(read.mode & 0o777, 0o640);
    assert.equal(read.mode & constants.S_IFMT, constants.S_IFREG);
    // Through a symlink: the file's mode, not the link's.
    symlinkSync(p, join(dir, 'link'));
    assert.equal(readFileBoundedSyncWithMode(join(dir, 'link'), 16).mode & 0o777, 0o640);
    // The path replaced by another file (a rename) after the open: the mode is still the read file's.
    const next = join(dir, 'next');
    writeFileSync(next, 'second');
    chmodSync(next, 0o600);
    const raced = withFirstReadSync(
      () => renameSync(next, p),
      () => readFileBoundedSyncWithMode(p, 16),
    );
    assert.equal(statSync(p).mode & 0o777, 0o600, 'the path names the other file now');
    assert.deepEqual({ bytes: raced.bytes.toString(), mode: raced.mode & 0o777 }, { bytes: 'first', mode: 0o640 });
    assert.throws(() => readFileBoundedSyncWithMode(join(dir, 'none'), 16), { code: 'ENOENT' });
  });

  it('readFileBoundedSync refuses a FIFO, even one with a writer, without opening it', async () => {
    // The writer (its own process) waits in its open until a reader opens the FIFO: the old code
    // read what it wrote; now the FIFO is refused before it is opened, and the writer still waits.
    const p = fifo();
    const writer = spawn('sh', ['-c', 'printf ca > "$0"', p], { stdio: 'ignore' });
    const exited = once(writer, 'exit');
    try {
      assert.throws(() => readFileBoundedSync(p, 64), (err: unknown) => err instanceof FileKindRefusedError && err.kind === 'pipe');
    } finally {
      writer.kill('SIGKILL');
      await exited;
    }
  });

  it('a FIFO: waits for its writer and reads to its end; bounded; a stop while nobody writes rejects at once', async () => {
    const a = fifo();
    const read = readFileBounded(a, 64);
    const w = createWriteStream(a);
    w.end('token\n');
    assert.equal((await read).toString(), 'token\n');

    const b = fifo();
    const big = readFileBounded(b, 64);
    const wb = createWriteStream(b);
    wb.on('error', () => {}); // EPIPE once the reader gave up
    wb.write('y'.repeat(65));
    await assert.rejects(big, FileTooLargeError);
    wb.destroy();

    // Stopped once it reads (a writer's open completes when the FIFO has a reader), nothing written.
    const c = fifo();
    const stop = new AbortController();
    const waiting = readFileBounded(c, 64, stop.signal);
    const wc = createWriteStream(c);
    await once(wc, 'open');
    stop.abort(new Error('stopped'));
    await assert.rejects(waiting, /stopped/);
    wc.destroy();
  });
});
