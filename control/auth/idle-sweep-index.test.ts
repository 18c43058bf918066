/**
 * The sweep of abandoned console sessions (auth/idle-sessions.ts) reads the live console refresh
 * tokens through an index of their own, not the whole table: every rotation leaves a row, kept
 * until it expires (a CLI renewing its leases writes about 24 a day, for 30 days), and live
 * console tokens are a few among them. Runs EXPLAIN on the sweep's query, with and without
 * statistics, on PGlite and on a real Postgres, and checks what it finds.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { uniq } from '../testing/fixtures.js';
import { indexesIn } from '../testing/plan-indexes.js';
import { idleConsoleTokens } from './idle-sessions.js';
import { idleAfterSeconds } from './sessions.js';

const ROTATED_CLI = 60_000;
const LIVE_CLI = 1_000;
const ROTATED_CONSOLE = 10_000;
const LIVE_CONSOLE = 200;
const IDLE_CONSOLE = 20;

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`the idle sweep reads live console tokens through an index (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let idleAfter: number;
    before(async () => {
      t = await makeApp();
      idleAfter = idleAfterSeconds(t.deps.settings)!;
      const user = await t.user(uniq('u'), 'member');
      // Rows dated by the database's clock: `age` seconds old, expiring in 30 days less that.
      const rows = (n: number, family: string, state: 'rotated' | 'live', ageOf: string) =>
        t.deps.db.execute(sql`insert into refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at, rotated_at)
          select ${`${family}_`} || i::text || '_' || ${state}, ${family} || '_' || (i % 500)::text, ${user.id}, md5(${`${family}${state}`} || i::text),
            now() - (${sql.raw(ageOf)}) * interval '1 second', now() + interval '30 days' - (${sql.raw(ageOf)}) * interval '1 second',
            case when ${state} = 'rotated' then now() - (${sql.raw(ageOf)}) * interval '1 second' + interval '10 minutes' end
          from generate_series(1, ${n}) i`);
      await rows(ROTATED_CLI, 'fam', 'rotated', `(i % 2500000)`);
      await rows(LIVE_CLI, 'fam', 'live', `(i * 600)`);
      await rows(ROTATED_CONSOLE, 'cfam', 'rotated', `(i % 2500000)`);
      // The first IDLE_CONSOLE live console tokens are past the idle deadline; the others are not.
      await rows(LIVE_CONSOLE, 'cfam', 'live', `case when i <= ${IDLE_CONSOLE} then ${idleAfter} + i * 60 else i end`);
    });

    const planOf = async () => {
      const res = await t.deps.db.execute(sql`explain (format json) ${idleConsoleTokens(t.deps.db, idleAfter)}`);
      const rows = (Array.isArray(res) ? res : (res as { rows: unknown[] }).rows) as Record<string, unknown>[];
      return rows.map((r) => Object.values(r)[0]);
    };

    it("reads refresh_tokens_console_live_idx without statistics", async () => {
      const plan = await planOf();
      assert.ok(indexesIn(plan).includes('refresh_tokens_console_live_idx'), `plan: ${JSON.stringify(plan)}`);
    });

    it('and with them', async () => {
      await t.deps.db.execute(sql`analyze refresh_tokens`);
      const plan = await planOf();
      assert.ok(indexesIn(plan).includes('refresh_tokens_console_live_idx'), `plan: ${JSON.stringify(plan)}`);
    });

    it('finds the idle console tokens, oldest first, and nothing else', async () => {
      const due = await idleConsoleTokens(t.deps.db, idleAfter);
      assert.equal(due.length, IDLE_CONSOLE);
      assert.deepEqual(
        due.map((r) => r.id),
        Array.from({ length: IDLE_CONSOLE }, (_, i) => `cfam_${IDLE_CONSOLE - i}_live`),
      );
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
