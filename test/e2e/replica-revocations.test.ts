/**
 * The revocation feed's long poll across two real control-plane replicas on one real Postgres:
 * a relay's poll held by replica B hears what replica A commits, through Postgres NOTIFY
 * (control/server.ts): a revocation A commits answers it, and a node enrolling again on A ends
 * the poll B holds with the node's old credential in 401 (the old credential must stop
 * receiving the node's revocations at once, not when its held poll runs out).
 */
import assert from 'node:assert/strict';
import { randomBytes, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { enrollOnlineNode, expectStatus, httpCaller, passwordLogin, startControlProcess, type ApiCall, type ControlProcess } from '../harness/control.js';
import { postgresUnavailableReason, startPostgres, type PostgresInstance } from '../harness/postgres.js';
import { ADMIN } from '../harness/stack.js';
import { eventually } from '../harness/streams.js';

const unavailable = postgresUnavailableReason();

describe('revocation long polls across two replicas on one Postgres', { skip: unavailable }, () => {
  let pg: PostgresInstance;
  let dir: string;
  let a: ControlProcess;
  let b: ControlProcess;
  let callA: ApiCall;
  let callB: ApiCall;
  let admin: string;

  before(async () => {
    pg = await startPostgres();
    dir = mkdtempSync(join(tmpdir(), 'tunnel-replica-revocations-'));
    const masterKeyFile = join(dir, 'master.key');
    writeFileSync(masterKeyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    const env = { DATABASE_URL: pg.url, TUNNEL_MASTER_KEY_FILE: masterKeyFile };
    a = await startControlProcess({ env });
    b = await startControlProcess({ env, args: ['--metrics-listen', '127.0.0.1:0'] });
    callA = httpCaller(a.url);
    callB = httpCaller(b.url);
    expectStatus(await callA('POST', '/v1/setup', { body: { setup_code: a.setupCode, name: ADMIN.name, password: ADMIN.password } }), 201, 'setup');
    admin = await passwordLogin(callA, ADMIN.name, ADMIN.password);
  });
  after(async () => {
    for (const c of [a, b]) {
      await c?.stop();
      c?.cleanup();
    }
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Resolves once replica B holds `n` revocation polls (its /metrics). */
  const heldOnB = (n: number) =>
    eventually(async () => {
      const text = await (await fetch(`${b.metricsUrl}/metrics`)).text();
      assert.match(text, new RegExp(`^tunnel_control_revocation_polls_waiting ${n}$`, 'm'));
    }, 20_000, 20);

  it('a revocation committed on A answers the poll B holds', async () => {
    const node = await enrollOnlineNode(callA, admin, 'relay-poke');
    const exposure = await callA('PUT', '/v1/exposures/poked', { token: admin, body: { allow: [] } });
    assert.ok(exposure.status === 200 || exposure.status === 201, JSON.stringify(exposure.body));
    const publicKey = formatPublicKeyLine(rawPublicKey(generateKeyPairSync('ed25519').publicKey));
    const lease = expectStatus(await callA('POST', '/v1/leases', { token: admin, body: { kind: 'expose', exposure: 'poked', public_key: publicKey } }), 201, 'lease');
    const cursor = expectStatus(await callB('GET', '/v1/nodes/self/revocations', { token: node.nodeToken }), 200, 'feed').body.cursor as string;
    const polling = callB('GET', `/v1/nodes/self/revocations?after=${cursor}&wait=20`, { token: node.nodeToken });
    await heldOnB(1);
    expectStatus(await callA('DELETE', `/v1/leases/${lease.body.lease.id}`, { token: admin }), 200, 'revoke');
    const res = expectStatus(await polling, 200, 'held poll');
    assert.deepEqual(
      res.body.revocations.map((r: { lease_id: string }) => r.lease_id),
      [lease.body.lease.id],
    );
  });

  it('the node enrolling again on A ends the poll B holds with its old credential: 401, no revocation', async () => {
    const old = await enrollOnlineNode(callA, admin, 'relay-again');
    const polling = callB('GET', '/v1/nodes/self/revocations?wait=20', { token: old.nodeToken });
    await heldOnB(1);
    const again = await enrollOnlineNode(callA, admin, 'relay-again');
    assert.equal(again.nodeId, old.nodeId);
    const res = await polling;
    assert.equal(res.status, 401, JSON.stringify(res.body));
    assert.equal(res.body.code, 'TOKEN_INVALID');
    await heldOnB(0);
    // The new credential polls B as before.
    expectStatus(await callB('GET', '/v1/nodes/self/revocations', { token: again.nodeToken }), 200, 'new credential');
  });
});
