import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { makeDirs } from './make-dirs.js';

/**
 * Writes `path` as a new file with exactly `mode`, so readers see the old content or the new one,
 * never a torn one, and a crash leaves one of the two: its parent made if missing (mode 0700,
 * make-dirs.ts), the data written to a fresh temp file next to it (created exclusively, with a
 * random name, so nothing planted there is followed or written into), flushed to disk, given
 * `mode` (whatever the umask), then renamed over `path`. Whatever was at `path` (an older file
 * with a looser mode, a symlink) is replaced, never written into. On failure the temp file is
 * removed and the error (its errno code kept) thrown. The CLI writes synchronously; the relay
 * uses writeFileAtomic, which does the same without blocking its event loop on the disk.
 */
export function writeFileAtomicSync(path: string, data: string, mode = 0o600): void {
  makeDirs(dirname(path), 0o700);
  const tmp = tempName(path);
  try {
    const fd = openSync(tmp, 'wx', mode);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** writeFileAtomicSync without blocking the event loop while the data goes to disk. */
export async function writeFileAtomic(path: string, data: string, mode = 0o600): Promise<void> {
  makeDirs(dirname(path), 0o700);
  const tmp = tempName(path);
  try {
    const file = await open(tmp, 'wx', mode);
    try {
      await file.writeFile(data);
      await file.sync();
      await file.chmod(mode);
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function tempName(path: string): string {
  return `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
}
