/**
 * Two `tunnel-control` replicas started at the same moment on one fresh, real Postgres (issue 10):
 * each prints its own setup code, and the code either printed creates the first admin on the
 * other replica; after that no code works on either, and the admin logs in on both.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { expectStatus, httpCaller, passwordLogin, startControlProcess, type ControlProcess } from '../harness/control.js';
import { postgresUnavailableReason, startPostgres, type PostgresInstance } from '../harness/postgres.js';

const PASSWORD = 'replica admin password';
const unavailable = postgresUnavailableReason();

describe('first admin with several control replicas on one Postgres', { skip: unavailable }, () => {
  let pg: PostgresInstance;
  let replicas: ControlProcess[] = [];

  before(async () => {
    pg = await startPostgres();
    const env = { DATABASE_URL: pg.url, TUNNEL_MASTER_KEY: randomBytes(32).toString('base64') };
    const args = ['--public-url', 'http://control.replicas.test'];
    replicas = await Promise.all([startControlProcess({ env, args }), startControlProcess({ env, args })]);
  });

  after(async () => {
    for (const r of replicas) {
      await r.stop();
      r.cleanup();
    }
    await pg?.stop();
  });

  it('each replica prints a code, and replica A\'s code works on replica B exactly once', async () => {
    const [a, b] = replicas as [ControlProcess, ControlProcess];
    assert.ok(a.setupCode && b.setupCode, `${a.stderr()}\n${b.stderr()}`);
    assert.notEqual(a.setupCode, b.setupCode);
    const onA = httpCaller(a.url);
    const onB = httpCaller(b.url);
    expectStatus(await onB('POST', '/v1/setup', { body: { setup_code: a.setupCode, name: 'admin', password: PASSWORD } }), 201, 'setup on B with A\'s code');
    for (const [call, code] of [[onA, b.setupCode], [onB, b.setupCode], [onA, a.setupCode]] as const) {
      const r = await call('POST', '/v1/setup', { body: { setup_code: code, name: 'admin2', password: PASSWORD } });
      assert.equal(r.status, 401, JSON.stringify(r.body));
      assert.equal((r.body as { code: string }).code, 'INVALID_CREDENTIALS');
    }
    assert.ok(await passwordLogin(onA, 'admin', PASSWORD));
    assert.ok(await passwordLogin(onB, 'admin', PASSWORD));
  });
});
