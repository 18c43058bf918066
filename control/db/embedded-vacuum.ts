import { sql } from 'drizzle-orm';
import type { Db } from './client.js';
import type { Logger } from '../../shared/logger.js';

/**
 * The autovacuum the embedded database lacks. PGlite runs Postgres in single-user mode, where no
 * autovacuum worker runs (`autovacuum` reads `on`, nothing acts on it), so on the embedded
 * default no table was ever vacuumed or analyzed:
 * - Space of deleted rows is never reused: the history prune deletes expired leases, feed entries
 *   and old audit events, yet every row ever written kept its place in the files (measured on
 *   PGlite: inserting and deleting 50,000 rows four times grew a table to 57 MB; with a VACUUM
 *   between rounds it stays at one round's 14 MB). A relay host's disk filled with history
 *   that the prune had already deleted.
 * - The planner never had statistics (a table's first rows decide its plans for good).
 * - Nothing froze old rows: after about 2 billion transactions Postgres stops accepting writes
 *   to avoid transaction id wraparound.
 *
 * `vacuumEmbedded` does what autovacuum would with its default settings, table by table, for the
 * tables that need it (pg_stat_user_tables' counters, which PGlite keeps): VACUUM (ANALYZE) after
 * dead rows past 50 + 20% of the table, or inserts past 1,000 + 20% (which sets the visibility map
 * so later vacuums skip those pages), or a relfrozenxid older than 150 million transactions
 * (vacuum_freeze_table_age: that vacuum freezes); ANALYZE alone after changes past 50 + 10%. The
 * control plane runs it every `EMBEDDED_VACUUM_EVERY_MS` on PGlite only (control/server.ts); a
 * Postgres server has its own autovacuum. PGlite has one connection: requests wait while a table
 * is vacuumed (about 90 ms for 50,000 dead rows here; a table whose pages are all visible is
 * skipped by the visibility map).
 */
export const EMBEDDED_VACUUM_EVERY_MS = 600_000;

export interface TableStats {
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

export type Work = { table: string; vacuum: boolean };

/** Which tables need a VACUUM (ANALYZE), and which an ANALYZE alone: autovacuum's rule. */
export function tablesDue(stats: readonly TableStats[]): Work[] {
  const due: Work[] = [];
  for (const s of stats) {
    const vacuum =
      s.dead > VACUUM_BASE + VACUUM_SCALE * s.live || s.insertedSinceVacuum > INSERT_BASE + INSERT_SCALE * s.live || s.xidAge > FREEZE_AGE;
    if (vacuum || s.modifiedSinceAnalyze > ANALYZE_BASE + ANALYZE_SCALE * s.live) due.push({ table: s.table, vacuum });
  }
  return due;
}

export async function readTableStats(db: Pick<Db, 'execute'>): Promise<TableStats[]> {
  const res = await db.execute(sql`
    select s.relname as "table", s.n_live_tup as live, s.n_dead_tup as dead, s.n_mod_since_analyze as modified,
           s.n_ins_since_vacuum as inserted, age(c.relfrozenxid) as xid_age
    from pg_stat_user_tables s join pg_class c on c.oid = s.relid
    where s.schemaname = 'public' order by s.relname`);
  const rows = (res as unknown as { rows: Record<string, unknown>[] }).rows;
  return rows.map((r) => ({
    table: String(r.table),
    live: Number(r.live),
    dead: Number(r.dead),
    modifiedSinceAnalyze: Number(r.modified),
    insertedSinceVacuum: Number(r.inserted),
    xidAge: Number(r.xid_age),
  }));
}

/** Vacuums and analyzes, one table at a time, the tables `tablesDue` picks; returns what it did. */
export async function vacuumEmbedded(db: Pick<Db, 'execute'>): Promise<Work[]> {
  const due = tablesDue(await readTableStats(db));
  for (const w of due) {
    // The names come from pg_stat_user_tables (this schema's own tables), quoted all the same.
    const name = sql.identifier(w.table);
    await db.execute(w.vacuum ? sql`vacuum (analyze) ${name}` : sql`analyze ${name}`);
  }
  return due;
}

/**
 * Runs `vacuumEmbedded` every `everyMs` (timer unref'd) until `stop`, which waits for a run in
 * progress (closing PGlite under a VACUUM would fail it). A failure is logged, never thrown: a
 * table vacuumed at the next turn instead costs only disk for a while.
 */
export function scheduleEmbeddedVacuum(
  db: Pick<Db, 'execute'>,
  logger: Logger,
  everyMs = EMBEDDED_VACUUM_EVERY_MS,
): { stop(): Promise<void>; runNow(): Promise<void> } {
  let running: Promise<void> | undefined;
  const turn = (): Promise<void> => {
    if (running) return running;
    running = vacuumEmbedded(db)
      .then((done) => {
        if (done.length > 0) logger.info('embedded database vacuumed', { vacuumed: done.filter((w) => w.vacuum).map((w) => w.table), analyzed: done.filter((w) => !w.vacuum).map((w) => w.table) });
      })
      .catch((err: unknown) => logger.error('vacuuming the embedded database failed', { err }))
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
