/**
 * A stop while a lease request is in flight, when the control plane has already issued the lease
 * and its answer has not reached the CLI yet (a slow control plane): the CLI, as its own process,
 * SIGTERM; tunnel open, tunnel expose and tunnel cert. The lease is not left active until it expires: the CLI finds it among the caller's
 * active leases by the key it sent, and revokes it (and no other lease). A loopback control plane
 * that commits each lease request as it comes, holds its answer for ever, and lists and revokes
 * what it committed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fingerprintSha256, parsePublicKeyLine } from '../protocol/ssh-key.js';
import { EXIT } from './errors.js';
import { writeCredentials } from './settings.js';
import { tempDir } from '../shared/testing/temp-dir.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

function leaseRow(id: string, sshKey: string) {
  const t0 = new Date().toISOString();
  return {
    id, kind: 'open', user: 'bob', node: 'relay-1', exposure: 'hostx', port: 22, targets: null, ssh_key: sshKey, serial: '1',
    not_before: t0, expires_at: new Date(Date.now() + 600_000).toISOString(), revoked_at: null, created_at: t0,
  };
}

/** The control plane described above; `issued` resolves once a lease request was committed (its answer held). */
async function slowControlPlane() {
  // Another lease of the same user, for another key: not to be touched.
  const other = leaseRow('lse_ffffffffffffffffffffffffffffffff', 'SHA256:' + 'A'.repeat(43));
  const leases = [other];
  const revoked: string[] = [];
  const listed: string[] = [];
  let committed!: (id: string) => void;
  const issued = new Promise<string>((r) => (committed = r));
  const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/v1/exposures/hostx') {
        return json(res, 200, { name: 'hostx', owner: 'bob', allow: [], pinned_node: null, node: null, online: false, port: null, created_at: new Date().toISOString() });
      }
      if (req.method === 'POST' && req.url === '/v1/leases') {
        const key = (JSON.parse(body) as { public_key: string }).public_key;
        const id = 'lse_0123456789abcdef0123456789abcdef';
        leases.unshift(leaseRow(id, fingerprintSha256(parsePublicKeyLine(key).blob)));
        committed(id);
        return; // committed; the answer never goes out
      }
      if (req.method === 'GET' && req.url?.startsWith('/v1/leases?')) {
        listed.push(req.url);
        return json(res, 200, { leases });
      }
      if (req.method === 'DELETE' && req.url?.startsWith('/v1/leases/')) {
        const id = req.url.slice('/v1/leases/'.length);
        revoked.push(id);
        return json(res, 200, { ...leases.find((l) => l.id === id), revoked_at: new Date().toISOString() });
      }
      json(res, 404, { type: 'about:blank', title: 'Not Found', status: 404, code: 'NOT_FOUND', detail: 'no', request_id: 'r' });
    });
  });
  servers.push(srv);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return { url: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, issued, revoked, listed };
}

describe('SIGTERM while the lease request is in flight and the lease was already issued', () => {
  for (const [argv, exit] of [
    [['open', '--stdio', 'hostx'], EXIT.STOPPED],
    [['open', '--listen', '127.0.0.1:0', 'hostx'], 0],
    [['expose', '22', '--name', 'hostx'], 0],
    [['cert', 'hostx', '--out', '<home>/certs'], EXIT.STOPPED],
  ] as const) {
    it(`tunnel ${argv.join(' ')}: the lease is found by its key and revoked, no other; exit ${exit}`, { timeout: 10_000 }, async () => {
      const cp = await slowControlPlane();
      const home = tempDir('tunnel-cli-');
      writeCredentials({ env: { HOME: home }, homeDir: home }, { server: cp.url, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
      const child = spawn(process.execPath, [join(import.meta.dirname, 'main.js'), ...argv.map((v) => v.replace('<home>', home))], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home },
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = once(child, 'exit');
      const id = await cp.issued;
      child.kill('SIGTERM');
      const [code, signal] = await exited;
      assert.deepEqual([code, signal], [exit, null], stderr);
      assert.deepEqual(cp.revoked, [id], stderr);
      assert.deepEqual(cp.listed, ['/v1/leases?active=true&limit=100']);
      if (argv[0] === 'cert') {
        assert.equal(stderr, `tunnel cert: stopped while waiting for the control plane at ${cp.url}; the lease it had issued (${id}) was revoked\n`);
        assert.equal(existsSync(join(home, 'certs')), false, 'no key written');
      }
    });
  }
});
