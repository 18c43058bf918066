/**
 * PuTTY (Debian's putty-tools 0.78) against a relay: the lease key and its OpenSSH certificate
 * become one .ppk with `puttygen --certificate`, and plink pins the relay's host key with
 * `-hostkey` (no host key cache, no prompts).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fingerprintSha256, parseKeyLine } from '../../protocol/ssh-key.js';
import { spawnSsh, type ClientFiles, type Proc } from '../node/ssh-tools.js';

const execFileP = promisify(execFile);

/** Writes `<dir>/lease.ppk`: the client key with its certificate incorporated. */
export async function puttyKey(files: ClientFiles, certFile = files.certFile): Promise<string> {
  const ppk = join(files.dir, 'lease.ppk');
  await execFileP('puttygen', [files.keyFile, '--certificate', certFile, '-O', 'private', '-o', ppk]);
  return ppk;
}

/** Starts plink with the lease key, the relay's host key pinned and HOME in the client's dir. */
export function spawnPlink(files: ClientFiles, ppk: string, relay: { port: number; hostKeyLine: string }, user: string, extra: string[]): Proc {
  const hostKey = fingerprintSha256(parseKeyLine(relay.hostKeyLine).blob);
  const args = ['-ssh', '-batch', '-noagent', '-v', '-P', String(relay.port), '-l', user, '-i', ppk, '-hostkey', hostKey, ...extra, '127.0.0.1'];
  // HOME: plink keeps its random seed under ~/.putty; keep it in the test's temp dir.
  return spawnSsh(args, { bin: 'plink', env: { ...process.env, HOME: files.dir } });
}
