/**
 * `tunnel cert --out /proc/x`: a directory that answers ENOENT although its parent exists. Node's
 * recursive mkdir spun on it for ever with the event loop blocked (not even SIGTERM ended it);
 * now it is one line, exit 1, with the lease just issued revoked. The CLI runs as its own process
 * (a spin in this one could not be ended) against a loopback control plane; the kill below only
 * ends a process that hangs, so the old code fails the test rather than stalling it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { EXIT } from '../errors.js';
import { writeCredentials } from '../settings.js';
import { tempDir } from '../../shared/testing/temp-dir.js';
import { testContext } from '../testing/test-context.js';

const LEASE_ID = 'lse_0123456789abcdef0123456789abcdef';
const lease = {
  id: LEASE_ID, kind: 'expose', user: 'bob', node: 'relay-1', exposure: 'hostx-ssh', port: 22, targets: null, ssh_key: 'ssh-ed25519 AAAA', serial: '1',
  not_before: '2026-01-01T00:00:00Z', expires_at: '2026-01-01T00:10:00Z', revoked_at: null, created_at: '2026-01-01T00:00:00Z',
};
const issued = {
  lease, token: 'jwt', certificate: 'ssh-ed25519-cert-v01@openssh.com AAAA',
  relay: { node_id: 'nod_1', name: 'relay-1', address: '127.0.0.1:2222', host_key: 'ssh-ed25519 AAAAhost' },
};

const requests: string[] = [];
const srv = createServer((req, res) => {
  req.resume();
  requests.push(`${req.method} ${req.url}`);
  res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(req.method === 'POST' ? issued : { ...lease, revoked_at: '2026-01-01T00:01:00Z' }));
});
after(() => {
  srv.closeAllConnections();
  srv.close();
});

describe('tunnel cert --out a directory that cannot be made', { skip: !existsSync('/proc/self') && 'needs /proc' }, () => {
  it('/proc/x: one line, exit 1, the lease revoked (no spin)', async () => {
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
    const ctx = testContext();
    writeCredentials(ctx, { server: url, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
    const main = join(import.meta.dirname, '..', 'main.js');
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: ctx.homeDir, XDG_CONFIG_HOME: join(ctx.homeDir, '.config') };
    const out = await new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [main, 'cert', 'hostx-ssh', '--expose', '--out', '/proc/x'], { env, timeout: 20_000, killSignal: 'SIGKILL', cwd: tempDir('tunnel-cert-') }, (_err, _stdout, stderr) =>
        resolve({ code: child.exitCode, signal: child.signalCode, stderr }),
      );
    });
    assert.equal(out.signal, null, 'the CLI hung and was killed');
    assert.equal(out.code, EXIT.ERROR, out.stderr);
    assert.match(out.stderr, new RegExp(`^tunnel cert: cannot write "/proc/x" \\(ENOENT\\); the lease ${LEASE_ID} was revoked\\n$`));
    assert.deepEqual(requests, ['POST /v1/leases', `DELETE /v1/leases/${LEASE_ID}`]);
  });
});
