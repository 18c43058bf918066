import { sql } from 'drizzle-orm';
import type { Logger } from '../../shared/logger.js';
import type { Db } from './client.js';

/**
 * The autovacuum and the checkpointer the embedded database lacks. PGlite runs Postgres in
 * single-user mode, where neither runs (`autovacuum` reads `on`, nothing acts on it; a standalone
 * backend requests no checkpoint when its WAL passes `max_wal_size`), so on the embedded default:
 * - No table was ever vacuumed: the space of deleted rows was never reused. The history prune
 *   deletes expired leases, feed entries and old audit events, yet every row ever written kept its
 *   place in the files (measured on PGlite: inserting and deleting 50,000 rows four times grew a
 *   table to 57 MB; with a VACUUM between rounds it stays at one round's 14 MB). The planner never
 *   had statistics, and nothing froze old rows: after about 2 billion transactions Postgres stops
 *   accepting writes to avoid transaction id wraparound.
 * - No checkpoint ran until the process stopped, so WAL was never recycled: pg_wal grew by every
 *   byte written for as long as the control plane ran (800 MB after 20 rounds of 100,000 rows,
 *   1 GB kept after a restart at the default `max_wal_size`), and a crash replayed all of it at
 *   the next start.
 *
 * `vacuumEmbedded` does what autovacuum would with its default settings, table by table, for the
 * tables that need it, the catalogs too (pg_stat_all_tables' counters, which PGlite keeps): VACUUM (ANALYZE) after
 * dead rows past 50 + 20% of the table, or inserts past 1,000 + 20% (which sets the visibility map
 * so later vacuums skip those pages), or a relfrozenxid older than 150 million transactions
 * (vacuum_freeze_table_age: that vacuum freezes); ANALYZE alone after changes past 50 + 10%.
 * `checkpointEmbedded` runs CHECKPOINT once `CHECKPOINT_WAL_BYTES` of WAL were written since the
 * last (or, with `force`, any WAL at all); with PGlite started at `max_wal_size` 64MB
 * (control/db/pglite.ts) pg_wal then stays at about 64 MB (measured: 65 MB through the same 20
 * rounds). The control plane runs both on PGlite only (control/server.ts,
 * `scheduleEmbeddedMaintenance`): a checkpoint check every `MAINTENANCE_EVERY_MS`, vacuums and a
 * checkpoint of whatever was written every `VACUUM_EVERY_TURNS` turns. PGlite has one connection:
 * requests wait meanwhile (a vacuum of 50,000 dead rows about 90 ms here, a checkpoint 40-160 ms;
 * a table whose pages are all visible is skipped by the visibility map). A Postgres server has its
 * own autovacuum and checkpointer.
 */
export const MAINTENANCE_EVERY_MS = 60_000;
/** Every tenth turn (10 minutes) vacuums. */
export const VACUUM_EVERY_TURNS = 10;
/** WAL since the last checkpoint that makes a turn checkpoint (a quarter of PGlite's max_wal_size). */
export const CHECKPOINT_WAL_BYTES = 16 * 1024 * 1024;
/** WAL below this since the last checkpoint is that checkpoint's own record: nothing to do. */
const IDLE_WAL_BYTES = 1024;

export interface TableStats {
  /** Outside `public` only (the catalogs `pg_catalog`, drizzle's migrations table, ...). */
  schema?: string;
  table: string;
  live: number;
  dead: number;
  modifiedSinceAnalyze: number;
  insertedSinceVacuum: number;
  xidAge: number;
}

/** autovacuum's defaults (postgresql.conf): thresholds and scale factors. */
const VACUUM_BASE = 50;
const VACUUM_SCALE = 0.2;
const INSERT_BASE = 1000;
const INSERT_SCALE = 0.2;
const ANALYZE_BASE = 50;
const ANALYZE_SCALE = 0.1;
/** vacuum_freeze_table_age: a VACUUM of an older table scans it whole and freezes. */
export const FREEZE_AGE = 150_000_000;

export type Work = { schema?: string; table: string; vacuum: boolean };

/** Which tables need a VACUUM (ANALYZE), and which an ANALYZE alone: autovacuum's rule. */
export function tablesDue(stats: readonly TableStats[], freezeAge = FREEZE_AGE): Work[] {
  const due: Work[] = [];
  for (const s of stats) {
    const vacuum =
      s.dead > VACUUM_BASE + VACUUM_SCALE * s.live || s.insertedSinceVacuum > INSERT_BASE + INSERT_SCALE * s.live || s.xidAge > freezeAge;
    if (vacuum || s.modifiedSinceAnalyze > ANALYZE_BASE + ANALYZE_SCALE * s.live) due.push({ ...(s.schema ? { schema: s.schema } : {}), table: s.table, vacuum });
  }
  return due;
}

/**
 * Every table of this database, the system catalogs and drizzle's migrations table too, as
 * autovacuum takes them (a TOAST table goes with its own). Their rows need freezing as much as
 * this schema's: with `public` alone, the catalogs' rows written by the migrations (pg_class,
 * pg_attribute: the tables themselves) and by every ANALYZE were never frozen, and a VACUUM
 * cannot move the database's oldest transaction id past theirs; in single-user mode Postgres does
 * not stop at the wraparound limit, so after about 2 billion transactions those rows would read
 * as written in the future, and the tables would be gone. Except pg_statistic for an ANALYZE
 * alone, as autovacuum: Postgres skips it (it holds the statistics), and every ANALYZE's writes
 * to it made it due again at every turn.
 */
export async function readTableStats(db: Pick<Db, 'execute'>): Promise<TableStats[]> {
  const res = await db.execute(sql`
    select s.schemaname as "schema", s.relname as "table", s.n_live_tup as live, s.n_dead_tup as dead,
           case when c.oid = 'pg_catalog.pg_statistic'::regclass then 0 else s.n_mod_since_analyze end as modified, s.n_ins_since_vacuum as inserted, age(c.relfrozenxid) as xid_age
    from pg_stat_all_tables s join pg_class c on c.oid = s.relid
    where c.relkind in ('r', 'm') and s.schemaname <> 'pg_toast' order by s.schemaname <> 'public', s.schemaname, s.relname`);
  const rows = rowsOf(res);
  return rows.map((r) => ({
    ...(r.schema === 'public' ? {} : { schema: String(r.schema) }),
    table: String(r.table),
    live: Number(r.live),
    dead: Number(r.dead),
    modifiedSinceAnalyze: Number(r.modified),
    insertedSinceVacuum: Number(r.inserted),
    xidAge: Number(r.xid_age),
  }));
}

/**
 * Vacuums and analyzes, one table at a time, the tables `tablesDue` picks; returns what it did.
 * `freezeAge`: for tests, which cannot age a table by 150 million transactions.
 */
export async function vacuumEmbedded(db: Pick<Db, 'execute'>, freezeAge = FREEZE_AGE): Promise<Work[]> {
  // A backend flushes its table counters at most once a second: without this, the writes of the
  // last second (a prune just before) were not counted yet, and their table waited a turn.
  await db.execute(sql`select pg_stat_force_next_flush()`);
  const due = tablesDue(await readTableStats(db), freezeAge);
  for (const w of due) {
    // The names come from pg_stat_all_tables (this database's own tables), quoted all the same.
    const name = w.schema ? sql`${sql.identifier(w.schema)}.${sql.identifier(w.table)}` : sql.identifier(w.table);
    await db.execute(w.vacuum ? sql`vacuum (analyze) ${name}` : sql`analyze ${name}`);
  }
  return due;
}

/** The rows of `db.execute`: an array on postgres-js, `{ rows }` on PGlite. */
function rowsOf(res: unknown): Record<string, unknown>[] {
  return (Array.isArray(res) ? res : (res as { rows: Record<string, unknown>[] }).rows) as Record<string, unknown>[];
}

/** WAL written since the last checkpoint's redo point, in bytes. */
export async function walSinceCheckpoint(db: Pick<Db, 'execute'>): Promise<number> {
  const res = await db.execute(sql`select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), redo_lsn)::bigint as since from pg_control_checkpoint()`);
  return Number(rowsOf(res)[0]?.since ?? 0);
}

/** CHECKPOINT when `CHECKPOINT_WAL_BYTES` were written since the last, or with `force` anything at all; whether it did. */
export async function checkpointEmbedded(db: Pick<Db, 'execute'>, force: boolean): Promise<boolean> {
  const since = await walSinceCheckpoint(db);
  if (since < (force ? IDLE_WAL_BYTES : CHECKPOINT_WAL_BYTES)) return false;
  await db.execute(sql`checkpoint`);
  return true;
}

/**
 * Runs the embedded database's upkeep every `everyMs` (timer unref'd) until `stop`, which waits
 * for a turn in progress (closing PGlite under a VACUUM would fail it). A failure is logged, never
 * thrown: what waits for the next turn costs only disk for a while.
 */
export function scheduleEmbeddedMaintenance(
  db: Pick<Db, 'execute'>,
  logger: Logger,
  everyMs = MAINTENANCE_EVERY_MS,
): { stop(): Promise<void>; runNow(): Promise<void> } {
  let running: Promise<void> | undefined;
  let turns = 0;
  const turn = (): Promise<void> => {
    if (running) return running;
    const full = turns++ % VACUUM_EVERY_TURNS === VACUUM_EVERY_TURNS - 1;
    running = (async () => {
      const done = full ? await vacuumEmbedded(db) : [];
      const names = (vacuum: boolean) => done.filter((w) => w.vacuum === vacuum).map((w) => (w.schema ? `${w.schema}.${w.table}` : w.table));
      if (done.length > 0) logger.info('embedded database vacuumed', { vacuumed: names(true), analyzed: names(false) });
      await checkpointEmbedded(db, full);
    })()
      .catch((err: unknown) => logger.error('maintaining the embedded database (vacuum, checkpoint) failed', { err }))
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(() => void turn(), everyMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
    /** A turn now (or the one in progress): for tests. */
    runNow: turn,
  };
}
