import { sql, type SQL } from 'drizzle-orm';
import type { TestApp } from './test-app.js';

/**
 * Row locks held from a connection of a test's own, for tests that make a race deterministic on
 * a real Postgres: hold a row, start the statements that must wait on it, see them wait
 * (`lockWaiters`), then let go.
 */

/** Backends of this database waiting for a lock (a row lock, another transaction's end). */
export async function lockWaiters(t: TestApp): Promise<number> {
  const rows = (await t.deps.db.execute(
    sql`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
  )) as unknown as { n: number }[];
  return Number(rows[0]?.n ?? 0);
}

/** Polls `done` until it holds (each poll is a query or a settled flag: an event, not a duration). */
export async function until(what: string, done: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`never: ${what}`);
}

/**
 * Runs `statement` (one that locks rows: `select … for update`, an upsert) in a transaction on a
 * pool connection of its own and keeps that transaction open, with its locks, until `release()`.
 */
export async function holdRows(t: TestApp, statement: SQL): Promise<{ release(): Promise<void> }> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let held!: () => void;
  const holding = new Promise<void>((r) => (held = r));
  const tx = t.deps.db.transaction(async (tx) => {
    await tx.execute(statement);
    held();
    await released;
  });
  await Promise.race([holding, tx]);
  return {
    release: async () => {
      release();
      await tx;
    },
  };
}
