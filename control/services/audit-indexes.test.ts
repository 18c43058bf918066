/**
 * The audit log's filters use their indexes (migration 0006): with many lease events, the page
 * query for one actor, one type, a type prefix or one subject (newest first, as the console asks)
 * is planned on that filter's index, not as a walk back through every event checking each. A year
 * of a busy deployment's lease events made those pages take seconds (3 million events on
 * Postgres: 0.4-2.5 s each, under 1 ms with the indexes). Runs EXPLAIN on the query listAudit
 * runs, on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { auditPage, type AuditQuery } from './audit.js';
import { indexesIn } from '../testing/plan-indexes.js';

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`audit filters use their indexes (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    before(async () => {
      t = await makeApp();
      // 20,000 lease events from 2,000 actors on 2,000 exposures, and a few rare ones.
      await t.deps.db.execute(sql`
        insert into audit_events (at, type, actor, subject, data)
        select now(), case when i % 2000 = 0 then 'user.disabled' else 'lease.issued' end, 'usr_' || (i % 2000), 'exp_' || (i % 2000), '{}'::jsonb
        from generate_series(1, 20000) as i`);
      await t.deps.db.execute(sql`analyze audit_events`);
    });

    const planOf = async (q: Partial<AuditQuery>) => {
      const res = await t.deps.db.execute(sql`explain (format json) ${auditPage(t.deps.db, { order: 'desc', limit: 50, ...q })}`);
      const rows = (Array.isArray(res) ? res : (res as { rows: unknown[] }).rows) as Record<string, unknown>[];
      return indexesIn(rows.map((r) => Object.values(r)[0]));
    };

    for (const [what, q, index] of [
      ['one actor', { actor: 'usr_7' }, 'audit_events_actor_idx'],
      ['one type', { type: 'user.disabled' }, 'audit_events_type_idx'],
      ['a type prefix', { type: 'user.' }, 'audit_events_type_idx'],
      ['one subject', { subject: 'exp_42' }, 'audit_events_subject_idx'],
    ] as const) {
      it(`a page for ${what} reads ${index}`, async () => {
        const used = await planOf(q);
        assert.ok(used.includes(index), `plan reads ${JSON.stringify(used)}`);
      });
    }
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
