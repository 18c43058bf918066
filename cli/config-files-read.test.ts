/**
 * The CLI's own files (credentials.json, config.json in $XDG_CONFIG_HOME/tunnel) are read bounded
 * and never wait: one that is a FIFO (it waited for a writer, signals unheard: readFileSync blocks
 * the event loop) or /dev/zero behind a symlink (read into memory until the process died) is one
 * line and exit 1; and a file that is not JSON is named without quoting its text (JSON.parse's
 * message quotes the start of it, a token when one was saved there by hand). The CLI runs as its
 * own process; the kill below only ends one that hangs, so the old code fails rather than stalls.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EXIT } from './errors.js';
import { tempDir } from '../shared/testing/temp-dir.js';

/** `tunnel whoami` with HOME `home`; stderr and how it ended. */
async function whoami(home: string): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'main.js'), 'whoami'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // Only a CLI that hangs is killed (then the test fails on the signal).
  const kill = setTimeout(() => child.kill('SIGKILL'), 8_000);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  clearTimeout(kill);
  return { code, signal, stderr };
}

/** The config dir in `home`; for `config.json`'s cases with a login in it, so whoami reads config.json (for the server's trust). */
function configDirIn(home: string, name: string): string {
  const dir = join(home, '.config', 'tunnel');
  mkdirSync(dir, { recursive: true });
  if (name === 'config.json') {
    const creds = { server: 'http://127.0.0.1:9', user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000 };
    writeFileSync(join(dir, 'credentials.json'), JSON.stringify(creds), { mode: 0o600 });
  }
  return dir;
}

describe('the CLI\'s config and credentials files', () => {
  for (const name of ['credentials.json', 'config.json']) {
    it(`${name} a FIFO: refused at once, one line, exit 1`, async () => {
      const home = tempDir('tunnel-cli-');
      const file = join(configDirIn(home, name), name);
      execFileSync('mkfifo', [file]);
      const r = await whoami(home);
      assert.equal(r.signal, null, 'the CLI hung and was killed');
      assert.equal(r.code, EXIT.ERROR, r.stderr);
      assert.equal(r.stderr, `tunnel whoami: cannot read ${file}: a pipe or FIFO; fix or delete it\n`);
    });

    it(`${name} a symlink to /dev/zero: one line, exit 1, no unbounded read`, { skip: !existsSync('/dev/zero') && 'needs /dev/zero' }, async () => {
      const home = tempDir('tunnel-cli-');
      const file = join(configDirIn(home, name), name);
      symlinkSync('/dev/zero', file);
      const r = await whoami(home);
      assert.equal(r.signal, null, 'the CLI hung and was killed');
      assert.equal(r.code, EXIT.ERROR, r.stderr);
      assert.equal(r.stderr, `tunnel whoami: cannot read ${file}: larger than 1 MiB; fix or delete it\n`);
    });

    it(`${name} that is not JSON: named, its text not quoted`, async () => {
      const home = tempDir('tunnel-cli-');
      const file = join(configDirIn(home, name), name);
      writeFileSync(file, 'tnl_st_SECRETSECRETSECRET\n', { mode: 0o600 });
      const r = await whoami(home);
      assert.equal(r.code, EXIT.ERROR, r.stderr);
      assert.doesNotMatch(r.stderr, /tnl_st|SECRET/);
      assert.equal(r.stderr, `tunnel whoami: cannot read ${file}: not valid JSON; fix or delete it\n`);
    });
  }

  it('credentials.json open to group or others: one warning line naming the file and its mode, the command goes on', async () => {
    const home = tempDir('tunnel-cli-');
    const file = join(configDirIn(home, 'config.json'), 'credentials.json');
    chmodSync(file, 0o644);
    const r = await whoami(home);
    const lines = r.stderr.split('\n').filter(Boolean);
    assert.equal(lines[0], `tunnel: warning: ${file} is open to others (mode 0644), and its tokens log in as you: chmod 600 it`);
    // whoami still ran: it went on to the (unreachable) control plane and failed there, once.
    assert.equal(lines.filter((l) => l.includes('warning')).length, 1, r.stderr);
    assert.match(lines[1] ?? '', /^tunnel whoami: /);
    assert.doesNotMatch(r.stderr, /"at"|access_token/);
  });

  it('credentials.json at 0600: no warning', async () => {
    const home = tempDir('tunnel-cli-');
    configDirIn(home, 'config.json');
    const r = await whoami(home);
    assert.doesNotMatch(r.stderr, /warning/, r.stderr);
    assert.match(r.stderr, /^tunnel whoami: /);
  });
});
