/**
 * GET /v1/audit: oldest-first paging (`after`), the way an exporter tails the log, never pages
 * past an event that commits later. Runs on PGlite and on a real Postgres; the races, with
 * transactions held open, only on Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { holdRows } from '../testing/row-locks.js';
import { reclaimFutureAuditIds } from '../services/audit.js';
import { pruneHistory, PRUNE_EVERY_MS } from '../services/history-prune.js';
import { assertOk } from '../testing/problem.js';
import { databaseNow, tokenFor, uniq } from '../testing/fixtures.js';
import { dateBack } from '../testing/date-back.js';

type Event = { id: string; type: string; subject: string | null };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`audit paging (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let token: string;
    let admin: { id: string; name: string };
    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
      token = await tokenFor(t, admin);
    });

    /** An exporter: pages oldest first from its cursor (the last id it read) to a short page. */
    async function exporter(limit: number) {
      let cursor: string | undefined;
      const seen: Event[] = [];
      return {
        seen,
        async poll(): Promise<void> {
          for (;;) {
            const res = await t.call('GET', `/v1/audit?limit=${limit}${cursor ? `&after=${cursor}` : ''}`, { token });
            assertOk(res);
            const events = res.body.events as Event[];
            seen.push(...events);
            if (events.length) cursor = events[events.length - 1]!.id;
            if (res.body.next_cursor === null) return;
            assert.equal(res.body.next_cursor, cursor);
          }
        },
      };
    }
    const insert = (subject: string) =>
      sql`insert into audit_events (at, type, actor, subject, data) values (now(), 'user.created', 'test', ${subject}, '{}')`;

    it('pages every committed event exactly once, by small pages', async () => {
      for (let i = 0; i < 7; i++) await t.deps.db.execute(insert(uniq('ev')));
      const e = await exporter(2);
      await e.poll();
      const all = await t.call('GET', '/v1/audit?limit=1000&order=desc', { token });
      const ids = e.seen.map((x) => x.id);
      assert.equal(new Set(ids).size, ids.length, 'no event twice');
      assert.deepEqual([...ids].sort(), (all.body.events as Event[]).map((x) => x.id).sort());
    });

    it('events restored from another cluster, with transaction ids ahead of this one, are shown again once renumbered at start', async () => {
      const e = await exporter(1000);
      await e.poll();
      const moved = uniq('moved');
      await t.deps.db.execute(insert(moved));
      // What pg_dump and a restore into a younger cluster leave: an id far ahead of the current ones.
      await t.deps.db.execute(sql`update audit_events set tx = (pg_current_xact_id()::text::bigint + 1000000)::text::xid8 where subject = ${moved}`);
      const later = uniq('later');
      await t.deps.db.execute(insert(later));
      await e.poll();
      assert.deepEqual(
        e.seen.filter((x) => x.subject === moved || x.subject === later).map((x) => x.subject),
        [later],
        'the moved event is hidden (the reason for the renumbering)',
      );
      assert.equal(await reclaimFutureAuditIds(t.deps.db), 1);
      await e.poll();
      assert.deepEqual(
        e.seen.filter((x) => x.subject === moved || x.subject === later).map((x) => x.subject),
        [later, moved],
      );
      assert.equal(await reclaimFutureAuditIds(t.deps.db), 0, 'nothing left to move');
    });

    const insertAt = (subject: string, at: Date) =>
      sql`insert into audit_events (at, type, actor, subject, data) values (${at.toISOString()}::timestamptz, 'user.created', 'test', ${subject}, '{}')`;
    /** Moves the clock (a new token for it) and takes a prune turn. */
    const prune = async (advanceMs = 0) => {
      t.clock.advance(advanceMs + PRUNE_EVERY_MS);
      token = await tokenFor(t, admin);
      return pruneHistory(t.deps.db, t.clock.now(), { auditRetentionDays: 30 });
    };
    const DAY = 86400_000;

    it('a cursor past the retention is not pruned while a younger event before it stays, so no event is read twice', async () => {
      const e = await exporter(1000);
      await e.poll();
      const [old, young, later] = [uniq('old'), uniq('young'), uniq('later')];
      await t.deps.db.execute(insertAt(old, new Date(t.clock.now().getTime() - 40 * DAY)));
      await t.deps.db.execute(insertAt(young, t.clock.now()));
      // `young` took the transaction id just below `old`'s (it began first, inserted after): read
      // first, then `old`, whose id is the cursor.
      await t.deps.db.execute(
        sql`update audit_events set tx = ((select tx from audit_events where subject = ${old})::text::bigint - 1)::text::xid8 where subject = ${young}`,
      );
      await e.poll();
      const mine = () => e.seen.map((x) => x.subject).filter((x) => x === old || x === young || x === later);
      assert.deepEqual(mine(), [young, old]);
      await prune();
      await t.deps.db.execute(insert(later));
      await e.poll();
      assert.deepEqual(mine(), [young, old, later], 'no event twice');
    });

    it('a cursor pruned with everything before it resumes at the oldest event left; one above every id, at the next new one', async () => {
      const e = await exporter(1000);
      await e.poll();
      const cursor = e.seen[e.seen.length - 1]!.id;
      const kept = uniq('kept');
      await t.deps.db.execute(insertAt(kept, new Date(t.clock.now().getTime() + 31 * DAY)));
      // The turn is 31 days on by this replica's clock; the retention goes by the database's, so
      // the log is dated back as far as the turn is ahead of it.
      await dateBack(t, 'audit_events', sql`true`, t.clock.now().getTime() + 31 * DAY + PRUNE_EVERY_MS - (await databaseNow(t)));
      const turn = await prune(31 * DAY);
      assert.ok(turn && turn.audit > 0, JSON.stringify(turn));
      const gone = await t.call('GET', `/v1/audit?limit=1000&order=desc&before=${Number(cursor) + 1}`, { token });
      assert.ok(!(gone.body.events as Event[]).some((x) => x.id === cursor), 'the cursor event was pruned');
      await e.poll();
      const after = e.seen.slice(e.seen.findIndex((x) => x.id === cursor) + 1).filter((x) => x.type !== 'audit.pruned');
      assert.deepEqual(after.map((x) => x.subject), [kept]);
      const ahead = await t.call('GET', `/v1/audit?limit=1000&after=${Number(cursor) + 1_000_000}`, { token });
      assert.deepEqual(ahead.body.events, []);
    });

    if (name === 'postgres') {
      it('does not page past an event whose transaction is still open; once it commits, the next poll has it', async () => {
        const e = await exporter(1000);
        await e.poll();
        const held = uniq('held');
        const later = uniq('later');
        // `held` draws its seq first and stays uncommitted; `later` draws the next one and commits.
        const hold = await holdRows(t, insert(held));
        await t.deps.db.execute(insert(later));
        await e.poll();
        const subjects = () => e.seen.map((x) => x.subject);
        assert.ok(!subjects().includes(held), 'not committed yet');
        assert.ok(!subjects().includes(later), 'an event after one still uncommitted waits for it');
        await hold.release();
        await e.poll();
        assert.ok(subjects().includes(held), 'the event committed late is read');
        assert.ok(subjects().includes(later));
      });

      it('an older transaction that draws a later seq and commits first does not move the cursor past a younger open one', async () => {
        const e = await exporter(1000);
        await e.poll();
        const held = uniq('held');
        const older = uniq('older');
        // `older` takes its transaction id first, `held` then inserts (seq N, younger id) and stays
        // open, and `older` inserts (seq N+1) and commits: its id is below every running one.
        let go!: () => void;
        const going = new Promise<void>((r) => (go = r));
        let started!: () => void;
        const isStarted = new Promise<void>((r) => (started = r));
        const olderTx = t.deps.db.transaction(async (tx) => {
          await tx.execute(sql`select pg_current_xact_id()`);
          started();
          await going;
          await tx.execute(insert(older));
        });
        await isStarted;
        const hold = await holdRows(t, insert(held));
        go();
        await olderTx;
        await e.poll();
        const subjects = () => e.seen.map((x) => x.subject);
        assert.ok(!subjects().includes(held), 'not committed yet');
        await hold.release();
        await e.poll();
        assert.ok(subjects().includes(held), 'the event committed late is read');
        assert.ok(subjects().includes(older));
        const ids = e.seen.map((x) => x.id);
        assert.equal(new Set(ids).size, ids.length, 'no event twice');
      });
    }
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
