/**
 * A running `tunnel expose` whose login ends, with the real binaries on loopback: `tunnel logout`
 * revokes the login's leases (f855b37), and a service token's leases end with the token. Either
 * way expose must stop with one line saying why and exit 3 (not logged in), not reconnect
 * forever or hang.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliFixture, type CliResult } from '../harness/stack.js';
import { waitForLine } from '../harness/streams.js';

type Child = ReturnType<ReturnType<typeof cliFixture>['admin']['spawn']>;

/**
 * The exit code of `child`, which may already have exited (then `exitCode` holds it). Rejects
 * after `timeoutMs`: a hang fails the test instead of the suite's timeout.
 */
function exitOf(child: Child, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`still running after ${timeoutMs} ms:\n${JSON.stringify(child.output())}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** The stderr of a stopped `tunnel expose`: exactly one line, matching `re`, no stack. */
function oneLineWhy(stderr: string, re: RegExp): void {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, stderr);
  assert.doesNotMatch(stderr, /\n\s+at |internal error/);
  assert.match(lines[0]!, re);
}

describe('tunnel expose when its login ends (real binaries)', () => {
  const f = cliFixture();

  it('tunnel logout stops a running tunnel expose of that login: one line, exit 3', async () => {
    const carol = await f.stack.user('carol');
    const x = carol.spawn(['expose', String(f.echo.port), '--name', 'logged-out']);
    const exited = exitOf(x, 60_000);
    const exposing = await waitForLine(x, /^Exposing /);
    // The owner opens it too, through the same login.
    const y = carol.spawn(['open', 'logged-out', '--listen', '127.0.0.1:0', '--json']);
    const yExited = exitOf(y, 60_000);
    const yConnected = await waitForLine(y, /"event":"connected"/, 30_000);
    const out: CliResult = await carol.run(['logout']);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stderr, 'Logged out.\n');
    assert.equal(await exited, 3, JSON.stringify(x.output()));
    // What it printed after "Exposing ...": one line, why; not "reconnecting".
    oneLineWhy(x.output().stderr.replace(`${exposing}\n`, ''), /^tunnel expose: this login session ended \(logged out or revoked\); log in again$/);
    assert.equal(await yExited, 3, JSON.stringify(y.output()));
    oneLineWhy(y.output().stderr, /^tunnel open: this login session ended \(logged out or revoked\); log in again$/);
    assert.doesNotMatch(y.output().stdout.split(yConnected)[1] ?? '', /"event":"disconnected"/, 'it stops, it does not reconnect');
  });

  it("a service token's expiry stops tunnel expose running on it: one line, exit 3", async () => {
    const created = await f.admin.run(['admin', 'service-tokens', 'create', 'short-lived', '--scope', 'expose:short-lived', '--ttl', '60', '--json']);
    assert.equal(created.code, 0, created.stderr);
    const token = JSON.parse(created.stdout) as { token: string; expires_at: string };
    const host = await f.stack.user('hostx');
    const file = join(host.home, 'token');
    writeFileSync(file, `${token.token}\n`, { mode: 0o600 });
    const login = await host.run(['login', '--token-file', file]);
    assert.equal(login.code, 0, login.stderr);

    const x = host.spawn(['expose', String(f.echo.port), '--name', 'short-lived', '--json']);
    const exited = exitOf(x, 150_000);
    const connected = JSON.parse(await waitForLine(x, /"event":"connected"/)) as { expires_at: string };
    assert.ok(new Date(connected.expires_at) <= new Date(token.expires_at), 'the lease ends with the token');
    assert.equal(await exited, 3, JSON.stringify(x.output()));
    oneLineWhy(x.output().stderr, /^tunnel expose: the service token behind this access token (expires now|was revoked or expired)/);
    assert.doesNotMatch(x.output().stdout, /"event":"disconnected"/, 'it stops, it does not reconnect');
    assert.ok(Date.now() >= new Date(token.expires_at).getTime() - 1_000, 'it ran until the token ended');
  });
});
