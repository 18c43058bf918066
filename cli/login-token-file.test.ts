/**
 * `tunnel login --token-file F` reads F bounded and without blocking signals: a file that never
 * ends (/dev/zero; as --ca-file too) is one line and exit 2 (it was read into memory until the process died, SIGTERM
 * ignored meanwhile), and a FIFO nobody writes to takes SIGTERM: one line, exit 130 (it hung).
 * What could wait for input with the stop unheard is refused, one line and exit 2: a terminal as
 * --token-file (no signal, not even a second, ended the CLI then) and a pipe or FIFO as --ca-file
 * (read synchronously: SIGTERM and SIGINT did nothing). The CLI runs as its own process; the kill
 * below only ends one that hangs, so the old code fails the test rather than stalling it. Nothing
 * is sent: the server is never asked.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EXIT } from './errors.js';
import { tempDir } from '../shared/testing/temp-dir.js';

function hasScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function login(tokenFile: string, args: string[] = ['--server', 'http://127.0.0.1:9']) {
  const home = tempDir('tunnel-cli-');
  const child = spawn(process.execPath, [join(import.meta.dirname, 'main.js'), 'login', ...args, '--token-file', tokenFile], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // Only a CLI that hangs is killed (then the test fails on the signal).
  const kill = setTimeout(() => child.kill('SIGKILL'), 8_000);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => {
    clearTimeout(kill);
    return { code: code as number | null, signal: signal as string | null, stderr };
  });
  return { child, exited };
}

describe('tunnel login --token-file', () => {
  it('/dev/zero: one line, exit 2, no unbounded read', { skip: !existsSync('/dev/zero') && 'needs /dev/zero' }, async () => {
    const r = await login('/dev/zero').exited;
    assert.equal(r.signal, null, 'the CLI hung and was killed');
    assert.equal(r.code, EXIT.USAGE, r.stderr);
    assert.equal(r.stderr, 'tunnel login: cannot read a service token from /dev/zero (longer than 64 KiB)\n');
  });

  it('--ca-file /dev/zero: one line, exit 2, no unbounded read', { skip: !existsSync('/dev/zero') && 'needs /dev/zero' }, async () => {
    const dir = tempDir('tunnel-token-');
    writeFileSync(join(dir, 'token'), 'tnl_st_x\n');
    const r = await login(join(dir, 'token'), ['--server', 'https://127.0.0.1:9', '--ca-file', '/dev/zero']).exited;
    assert.equal(r.signal, null, 'the CLI hung and was killed');
    assert.equal(r.code, EXIT.USAGE, r.stderr);
    assert.equal(r.stderr, 'tunnel login: cannot read the CA file /dev/zero (larger than 4 MiB)\n');
  });

  it('--ca-file a FIFO: refused at once, one line, exit 2 (it waited for a writer with signals unheard)', async () => {
    const dir = tempDir('tunnel-fifo-');
    writeFileSync(join(dir, 'token'), 'tnl_st_x\n');
    const fifo = join(dir, 'ca.pem');
    execFileSync('mkfifo', [fifo]);
    const r = await login(join(dir, 'token'), ['--server', 'https://127.0.0.1:9', '--ca-file', fifo]).exited;
    assert.equal(r.signal, null, 'the CLI hung and was killed');
    assert.equal(r.code, EXIT.USAGE, r.stderr);
    assert.equal(r.stderr, `tunnel login: cannot read the CA file ${fifo} (a pipe or FIFO, not a regular file: save the certificates to a file and give its path)\n`);
  });

  it('--token-file a terminal: refused at once, one line, exit 2 (no signal ended it)', { skip: !hasScript() && 'needs script(1) for a terminal' }, async () => {
    // script(1) runs the CLI on a new terminal (its /dev/tty), whose input is a pipe held open here:
    // nothing is typed, nothing ends it.
    const home = tempDir('tunnel-cli-');
    const cmd = [process.execPath, join(import.meta.dirname, 'main.js'), 'login', '--server', 'http://127.0.0.1:9', '--token-file', '/dev/tty'];
    const child = spawn('script', ['-qec', cmd.map((a) => `'${a}'`).join(' '), '/dev/null'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const kill = setTimeout(() => child.kill('SIGKILL'), 8_000);
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    clearTimeout(kill);
    child.stdin.destroy();
    assert.equal(signal, null, 'the CLI hung and was killed');
    assert.equal(code, EXIT.USAGE, output);
    assert.equal(
      output.replace(/\r\n/g, '\n'),
      'tunnel login: cannot read a service token from /dev/tty (a terminal: give a file, or a pipe such as --token-file <(pass show NAME))\n',
    );
  });

  it('a FIFO nobody writes to: SIGTERM ends it, one line, exit 130', async () => {
    const fifo = join(tempDir('tunnel-fifo-'), 'token');
    execFileSync('mkfifo', [fifo]);
    const l = login(fifo);
    // The writer's open completes once the CLI has the FIFO open for reading; nothing is written.
    const w = createWriteStream(fifo);
    w.on('error', () => {});
    await once(w, 'open');
    l.child.kill('SIGTERM');
    const r = await l.exited;
    w.destroy();
    assert.equal(r.signal, null, 'the CLI hung and was killed');
    assert.equal(r.code, EXIT.STOPPED, r.stderr);
    assert.equal(r.stderr, `tunnel login: stopped while reading ${fifo}\n`);
  });
});
