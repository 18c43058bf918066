/**
 * The embedded database is vacuumed, analyzed and checkpointed (embedded-maintenance.ts): PGlite
 * runs no autovacuum and no checkpointer, so rows the history prune deleted kept their space for
 * good, the planner had no statistics, and WAL was never recycled. On a real PGlite with the
 * migrations: audit events inserted and deleted round after round grow the table each round
 * without a vacuum, and stop growing with one between rounds; pg_wal grows by every round without
 * a checkpoint and stays near max_wal_size with the maintenance turns.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite } from '../testing/databases.js';
import { createMemoryLogger } from '../../shared/logger.js';
import type { Db } from './client.js';
import { CHECKPOINT_WAL_BYTES, FREEZE_AGE, VACUUM_EVERY_TURNS, checkpointEmbedded, scheduleEmbeddedMaintenance, tablesDue, vacuumEmbedded, walSinceCheckpoint, type TableStats } from './embedded-maintenance.js';

const quiet: TableStats = { table: 't', live: 10_000, dead: 0, modifiedSinceAnalyze: 0, insertedSinceVacuum: 0, xidAge: 1000 };

describe('tablesDue: autovacuum defaults', () => {
  it('leaves a quiet table alone', () => {
    assert.deepEqual(tablesDue([quiet]), []);
  });
  it('vacuums past 50 + 20% dead rows, and not at it', () => {
    assert.deepEqual(tablesDue([{ ...quiet, dead: 2050 }]), []);
    assert.deepEqual(tablesDue([{ ...quiet, dead: 2051 }]), [{ table: 't', vacuum: true }]);
  });
  it('vacuums past 1,000 + 20% inserts (the visibility map), an insert-only table too', () => {
    assert.deepEqual(tablesDue([{ ...quiet, insertedSinceVacuum: 3000 }]), []);
    assert.deepEqual(tablesDue([{ ...quiet, insertedSinceVacuum: 3001 }]), [{ table: 't', vacuum: true }]);
  });
  it('vacuums (freezes) a table whose oldest unfrozen id is past 150 million transactions, however quiet', () => {
    assert.deepEqual(tablesDue([{ ...quiet, xidAge: FREEZE_AGE + 1 }]), [{ table: 't', vacuum: true }]);
  });
  it('analyzes alone past 50 + 10% changed rows', () => {
    assert.deepEqual(tablesDue([{ ...quiet, modifiedSinceAnalyze: 1050 }]), []);
    assert.deepEqual(tablesDue([{ ...quiet, modifiedSinceAnalyze: 1051 }]), [{ table: 't', vacuum: false }]);
  });
  it('counts an empty table from its base thresholds', () => {
    const empty = { ...quiet, live: 0 };
    assert.deepEqual(tablesDue([{ ...empty, dead: 50 }, { ...empty, table: 'u', dead: 51 }]), [{ table: 'u', vacuum: true }]);
  });
});

const pglite = usePglite();

describe('vacuumEmbedded on PGlite', () => {
  let t: TestApp;
  before(async () => {
    t = await pglite();
  });

  const auditBytes = async () => {
    const res = await t.deps.db.execute(sql`select pg_total_relation_size('audit_events')::bigint as size`);
    return Number((res as unknown as { rows: { size: string | number }[] }).rows[0]!.size);
  };
  /** 20,000 audit events written, then deleted (what a year's prune does to a year of events). */
  const churn = async () => {
    await t.deps.db.execute(sql`
      insert into audit_events (at, type, actor, subject, data)
      select now(), 'lease.issued', 'usr_' || (i % 200), 'exp_' || (i % 200), '{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'::jsonb
      from generate_series(1, 20000) as i`);
    await t.deps.db.execute(sql`delete from audit_events where type = 'lease.issued'`);
  };

  it('without it, deleted rows keep their space: every round grows the table', async () => {
    const start = await auditBytes();
    await churn();
    const one = await auditBytes();
    await churn();
    const two = await auditBytes();
    assert.ok(one > start + 1_000_000, `one round of 20,000 events grows audit_events (${start} -> ${one})`);
    assert.ok(two > one + 1_000_000, `a second round grows it again: nothing reused the deleted rows' space (${one} -> ${two})`);
  });

  it('with it between rounds, the table stops growing and gets statistics', async () => {
    const done = await vacuumEmbedded(t.deps.db);
    assert.ok(
      done.some((w) => w.table === 'audit_events' && w.vacuum),
      `audit_events is vacuumed: ${JSON.stringify(done)}`,
    );
    // A deleted index page is reused only after a second vacuum has seen it gone: settle first.
    for (let round = 0; round < 2; round++) {
      await churn();
      await vacuumEmbedded(t.deps.db);
    }
    const settled = await auditBytes();
    for (let round = 0; round < 3; round++) {
      await churn();
      await vacuumEmbedded(t.deps.db);
    }
    const after = await auditBytes();
    assert.ok(after <= settled + 1_000_000, `three more rounds, each vacuumed, reuse the space: ${settled} -> ${after} bytes`);
    const res = await t.deps.db.execute(sql`select last_vacuum, last_analyze from pg_stat_user_tables where relname = 'audit_events'`);
    const row = (res as unknown as { rows: { last_vacuum: unknown; last_analyze: unknown }[] }).rows[0]!;
    assert.ok(row.last_vacuum && row.last_analyze, 'vacuumed and analyzed');
  });

  it('freezes the system catalogs and the migrations table too, not only the tables of public', async () => {
    // Tests cannot age a table by 150 million transactions: every table is "old" here.
    const done = await vacuumEmbedded(t.deps.db, 0);
    const vacuumed = new Set(done.filter((w) => w.vacuum).map((w) => (w.schema ? `${w.schema}.${w.table}` : w.table)));
    // pg_class and pg_attribute hold the migrations' tables; only public's were vacuumed on the old code.
    for (const table of ['pg_catalog.pg_class', 'pg_catalog.pg_attribute', 'pg_catalog.pg_statistic', 'drizzle.__drizzle_migrations', 'audit_events']) {
      assert.ok(vacuumed.has(table), `${table} is vacuumed (frozen): ${[...vacuumed].join(' ')}`);
    }
    assert.ok(![...vacuumed].some((n) => n.startsWith('pg_toast.')), 'a TOAST table goes with its own table');
    const res = await t.deps.db.execute(sql`select count(*)::int as n from pg_stat_all_tables where schemaname = 'pg_catalog' and relname = 'pg_class' and last_vacuum is not null`);
    assert.equal((res as unknown as { rows: { n: number }[] }).rows[0]!.n, 1, 'pg_class was vacuumed');
  });

  it('counts the writes made just before it', async () => {
    await vacuumEmbedded(t.deps.db);
    // Deleted at once after the last run: within the second in which a backend keeps its counters.
    await t.deps.db.execute(sql`insert into audit_events (at, type, data) select now(), 'lease.issued', '{}'::jsonb from generate_series(1, 5000)`);
    await t.deps.db.execute(sql`delete from audit_events where type = 'lease.issued'`);
    const done = await vacuumEmbedded(t.deps.db);
    // Not seen on the old code until a later turn: the counters read lagged one flush behind.
    assert.ok(done.some((w) => w.table === 'audit_events' && w.vacuum), `audit_events is vacuumed: ${JSON.stringify(done)}`);
  });

  it('never takes pg_statistic for an ANALYZE (Postgres skips it, as autovacuum does), so a quiet turn does nothing', async () => {
    await vacuumEmbedded(t.deps.db);
    await vacuumEmbedded(t.deps.db);
    // Every ANALYZE writes pg_statistic and none resets its count: it was due at every turn, logged and skipped.
    assert.deepEqual(await vacuumEmbedded(t.deps.db), []);
  });

  it('a second run right after finds nothing to do', async () => {
    await vacuumEmbedded(t.deps.db);
    assert.deepEqual(
      (await vacuumEmbedded(t.deps.db)).filter((w) => w.vacuum),
      [],
    );
  });
});

describe('checkpoints on PGlite', () => {
  let t: TestApp;
  before(async () => {
    t = await pglite();
  });
  const walBytes = async () => {
    const res = await t.deps.db.execute(sql`select coalesce(sum(size), 0)::bigint as size from pg_ls_waldir()`);
    return Number((res as unknown as { rows: { size: string | number }[] }).rows[0]!.size);
  };
  /** About 40 MB of WAL: 100,000 rows written and deleted. */
  const write = async () => {
    await t.deps.db.execute(sql`create table if not exists wal_churn (id bigserial primary key, pad text)`);
    await t.deps.db.execute(sql`insert into wal_churn (pad) select repeat('x', 200) from generate_series(1, 100000)`);
    await t.deps.db.execute(sql`delete from wal_churn`);
  };

  it('without checkpoints pg_wal keeps every byte written', async () => {
    await checkpointEmbedded(t.deps.db, true);
    const start = await walBytes();
    for (let i = 0; i < 3; i++) await write();
    assert.ok(await walSinceCheckpoint(t.deps.db) > 3 * CHECKPOINT_WAL_BYTES);
    assert.ok((await walBytes()) > start + 96 * 1024 * 1024, `pg_wal grew by what was written: ${start} -> ${await walBytes()}`);
  });

  it('a turn after 16 MiB of WAL checkpoints, and pg_wal stays near max_wal_size (64MB)', async () => {
    const logger = createMemoryLogger();
    const upkeep = scheduleEmbeddedMaintenance(t.deps.db, logger, 3600_000);
    await upkeep.runNow();
    const settled = await walBytes();
    for (let i = 0; i < 6; i++) {
      await write();
      await upkeep.runNow();
      assert.ok(await walSinceCheckpoint(t.deps.db) < 1024, 'the turn checkpointed');
    }
    const after = await walBytes();
    assert.ok(after <= 96 * 1024 * 1024, `pg_wal after 6 rounds of about 40 MB each: ${after} bytes (${settled} after the first turn)`);
    await upkeep.stop();
    assert.deepEqual(logger.lines.filter((l) => l.level === 'error'), []);
  });

  it('a turn with little WAL leaves the checkpoint alone; the vacuum turn takes anything', async () => {
    await t.deps.db.execute(sql`insert into wal_churn (pad) values ('x')`);
    assert.equal(await checkpointEmbedded(t.deps.db, false), false);
    assert.equal(await checkpointEmbedded(t.deps.db, true), true);
    assert.equal(await checkpointEmbedded(t.deps.db, true), false, 'nothing written since');
  });
});

describe('scheduleEmbeddedMaintenance', () => {
  it('logs a failure instead of throwing, and stop waits for the turn in progress', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let calls = 0;
    const db = {
      execute: async () => {
        calls++;
        await held;
        throw new Error('database went away');
      },
    } as unknown as Pick<Db, 'execute'>;
    const logger = createMemoryLogger();
    const s = scheduleEmbeddedMaintenance(db, logger, 3600_000);
    const turn = s.runNow();
    assert.equal(s.runNow(), turn, 'a turn while one runs is the same turn');
    let stopped = false;
    const stop = s.stop().then(() => (stopped = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(stopped, false, 'stop waits for the turn in progress');
    release();
    await stop;
    await turn;
    assert.equal(calls, 1);
    assert.deepEqual(
      logger.lines.map((l) => [l.level, l.msg]),
      [['error', 'maintaining the embedded database (vacuum, checkpoint) failed']],
    );
  });

  it('vacuums every tenth turn', async () => {
    const seen: string[] = [];
    const db = {
      execute: async (q: { queryChunks?: unknown[] }) => {
        const text = JSON.stringify(q);
        if (text.includes('pg_stat_force_next_flush')) return { rows: [] };
        seen.push(text.includes('pg_stat_all_tables') ? 'stats' : text.includes('pg_control_checkpoint') ? 'wal' : 'other');
        return { rows: text.includes('pg_control_checkpoint') ? [{ since: 0 }] : [] };
      },
    } as unknown as Pick<Db, 'execute'>;
    const s = scheduleEmbeddedMaintenance(db, createMemoryLogger(), 3600_000);
    for (let i = 0; i < VACUUM_EVERY_TURNS * 2; i++) await s.runNow();
    await s.stop();
    assert.equal(seen.filter((x) => x === 'stats').length, 2);
    assert.equal(seen.filter((x) => x === 'wal').length, VACUUM_EVERY_TURNS * 2);
  });
});
