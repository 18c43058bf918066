/**
 * Rate-limit counters do not pile up (services/rate-limit.ts pruneRateLimits): each source
 * address, account name tried and user leaves a row, and rows whose window is long over are
 * deleted, at most once a minute per replica, by the next counted attempt. PGlite and Postgres.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { like } from 'drizzle-orm';
import { rateLimits } from '../db/schema/index.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { assertOk } from '../testing/problem.js';

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`rate-limit counters (${name})`, { skip: makeApp.unavailable }, () => {
    it('counters of windows over an hour ago are deleted by a later attempt, at most once a minute', async () => {
      const t = await makeApp();
      const { db } = t.deps;
      const keys = async () => (await db.select({ key: rateLimits.key }).from(rateLimits).where(like(rateLimits.key, 'login:%'))).map((r) => r.key).sort();
      const stale = (n: number, prefix: string, ago: number) =>
        Array.from({ length: n }, (_, i) => ({ key: `login:${prefix}${i}`, windowStart: new Date(t.clock.now().getTime() - ago), count: 1 }));
      const device = () => t.call('POST', '/v1/auth/device', { body: {} });

      await db.insert(rateLimits).values([...stale(200, 'old-', 2 * 3600_000), ...stale(2, 'recent-', 10 * 60_000)]);
      assertOk(await device());
      assert.deepEqual(await keys(), ['login:recent-0', 'login:recent-1'], 'the stale ones are gone, the last hour stays');

      // Within the minute, nothing is deleted again; after it, the next attempt deletes.
      await db.insert(rateLimits).values(stale(3, 'later-', 2 * 3600_000));
      assertOk(await device());
      assert.equal((await keys()).length, 5);
      t.clock.advance(61_000);
      assertOk(await device());
      assert.deepEqual(await keys(), ['login:recent-0', 'login:recent-1']);
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
