/**
 * Setup codes shared through the database (issue 10): every code a replica printed works, the
 * first admin consumes all of them, an expired code is refused, and two setups at the same
 * moment with different codes create exactly one admin. Runs on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { count, like } from 'drizzle-orm';
import { settings, users } from '../db/schema/index.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { prepareSetupCode, SETUP_CODE_TTL_SECONDS } from './setup-code.js';

const PASSWORD = 'first admin password';

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`setup codes (${name})`, { skip: makeApp.unavailable }, () => {
    it('every printed code works until the first admin exists; then none does', async () => {
      const t = await makeApp();
      const a = (await prepareSetupCode(t.deps))!;
      const b = (await prepareSetupCode(t.deps))!;
      assert.ok(a && b && a !== b);
      const stored = await t.deps.db.select().from(settings);
      assert.ok(!stored.some((r) => r.key.includes(a) || r.value.includes(a)), 'only hashes are stored');
      assertOk(await t.call('POST', '/v1/setup', { body: { setup_code: b, name: 'root', password: PASSWORD } }), 201);
      assertProblem(await t.call('POST', '/v1/setup', { body: { setup_code: a, name: 'root2', password: PASSWORD } }), 401, 'INVALID_CREDENTIALS');
      const [left] = await t.deps.db.select({ n: count() }).from(settings).where(like(settings.key, 'setup_code:%'));
      assert.equal(left?.n, 0);
      assert.equal(await prepareSetupCode(t.deps), null);
    });

    it('an expired code is refused and a fresh one still works', async () => {
      const t = await makeApp();
      const old = (await prepareSetupCode(t.deps))!;
      t.clock.advance(SETUP_CODE_TTL_SECONDS * 1000 + 1000);
      assertProblem(await t.call('POST', '/v1/setup', { body: { setup_code: old, name: 'root', password: PASSWORD } }), 401, 'INVALID_CREDENTIALS');
      const fresh = (await prepareSetupCode(t.deps))!;
      assertOk(await t.call('POST', '/v1/setup', { body: { setup_code: fresh, name: 'root', password: PASSWORD } }), 201);
    });

    it('two setups at once with different codes create exactly one admin', async () => {
      const t = await makeApp();
      const codes = [(await prepareSetupCode(t.deps))!, (await prepareSetupCode(t.deps))!];
      const results = await Promise.all(
        codes.map((c, i) => t.call('POST', '/v1/setup', { body: { setup_code: c, name: `root${i}`, password: PASSWORD } })),
      );
      assert.deepEqual(results.map((r) => r.status).sort(), [201, 401], JSON.stringify(results.map((r) => r.body)));
      const [n] = await t.deps.db.select({ n: count() }).from(users);
      assert.equal(n?.n, 1);
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
