/**
 * A connection's in-band renewals are found through leases_user_key_idx (migration 0007): one
 * user with thousands of connections under distinct SSH keys, each renewed in band a few times,
 * made the history prune's stale-connection query look each connection's renewals up through
 * leases_user_idx (user_id, expires_at), reading every live lease of the user per connection (on
 * PGlite, which keeps no statistics, 4,000 such connections took the prune 2.4 s; 0.2-0.5 s with
 * the index). Runs EXPLAIN on the query the prune runs, with and without statistics, on PGlite and
 * on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { enrollNode, uniq } from '../testing/fixtures.js';
import { staleOpenConnections } from './history-prune.js';
import { indexesIn } from '../testing/plan-indexes.js';

const KEYS = 2000;
const RENEWALS = 4;

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`in-band renewals are looked up by user, key and relay (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    before(async () => {
      t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      const node = await enrollNode(t, admin.token);
      const now = t.clock.now().getTime();
      const at = (ms: number) => new Date(now + ms).toISOString();
      // One user, KEYS connections each under its own key, each renewed in band RENEWALS times
      // (the earlier leases expired, the newest valid).
      await t.deps.db.execute(sql`insert into leases (id, kind, user_id, node_id, exposure, ssh_key, serial, not_before, expires_at, created_at)
        select 'lse_k' || k::text || '_' || r::text, 'expose', ${admin.id}, ${node.id}, 'svc', 'SHA256:key' || k::text, k::text,
          ${at(-3600_000)}::timestamptz, case when r = ${RENEWALS} then ${at(600_000)}::timestamptz else ${at(-600_000)}::timestamptz end, ${at(-3600_000)}::timestamptz
        from generate_series(1, ${KEYS}) k, generate_series(0, ${RENEWALS}) r`);
      await t.deps.db.execute(sql`insert into connections (node_id, session_id, lease_id, opened_at)
        select ${node.id}, 's' || k::text, 'lse_k' || k::text || '_0', ${at(-3600_000)}::timestamptz from generate_series(1, ${KEYS}) k`);
    });

    const planOf = async () => {
      const res = await t.deps.db.execute(sql`explain (format json) ${staleOpenConnections(t.deps.db)}`);
      const rows = (Array.isArray(res) ? res : (res as { rows: unknown[] }).rows) as Record<string, unknown>[];
      return indexesIn(rows.map((r) => Object.values(r)[0]));
    };

    it("the prune's stale-connection query reads leases_user_key_idx without statistics", async () => {
      const used = await planOf();
      assert.ok(used.includes('leases_user_key_idx'), `plan reads ${JSON.stringify(used)}`);
    });

    it('and with them', async () => {
      await t.deps.db.execute(sql`analyze leases`);
      await t.deps.db.execute(sql`analyze connections`);
      const used = await planOf();
      assert.ok(used.includes('leases_user_key_idx'), `plan reads ${JSON.stringify(used)}`);
    });

    it('the query still finds no stale connection among them (each has a valid renewal)', async () => {
      assert.deepEqual(await staleOpenConnections(t.deps.db), []);
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
