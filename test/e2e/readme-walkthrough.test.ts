/**
 * Runs the README's walkthrough block exactly as written (bash, in a scratch directory that links
 * to this checkout's package.json, dist and node_modules, with a scratch HOME), and checks that the
 * page served by "X" arrives at "Y" through the relay. Uses the walkthrough's fixed ports
 * 8080, 2222, 9090, 8000 and 8001 on 127.0.0.1.
 */
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../harness/control.js';

function walkthrough(): string {
  const readme = readFileSync(join(repoRoot(), 'README.md'), 'utf8');
  const m = /<!-- walkthrough:start -->\s*```bash\n([\s\S]*?)```\s*<!-- walkthrough:end -->/.exec(readme);
  if (!m) throw new Error('README.md has no walkthrough block');
  return m[1]!;
}

const scratch = mkdtempSync(join(tmpdir(), 'tunnel-walkthrough-'));
let pgid: number | undefined;
after(() => {
  if (pgid) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  rmSync(scratch, { recursive: true, force: true });
});

it('the README walkthrough works as written', { timeout: 180_000 }, async () => {
  const root = repoRoot();
  for (const name of ['package.json', 'dist', 'node_modules']) symlinkSync(join(root, name), join(scratch, name));
  const home = join(scratch, 'home');
  const child = spawn('bash', ['-c', walkthrough()], {
    cwd: scratch,
    detached: true,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  pgid = child.pid;
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // The block's `until` loops have no bound of their own: give up after 150 s and show the logs.
  const guard = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 150_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(guard);
  const log = (() => {
    try {
      return readFileSync(join(scratch, 'tunnel.log'), 'utf8');
    } catch {
      return '(no tunnel.log)';
    }
  })();
  assert.match(stdout, /<title>Directory listing for \/<\/title>/, `stdout:\n${stdout}\nstderr:\n${stderr}\ntunnel.log:\n${log.slice(-3000)}`);
  assert.match(stderr, /Logged in to http:\/\/127\.0\.0\.1:8080 as admin/);
  assert.doesNotMatch(log, /walkthrough-password/, 'the password must not reach the logs');
  assert.equal(code, 0, stderr);
});
