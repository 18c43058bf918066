import { sql, type SQL } from 'drizzle-orm';
import type { TestApp } from './test-app.js';

/**
 * Ages rows in the database. The history prune and the other cutoffs a replica's clock must not
 * decide go by the database's clock (now()), which a test cannot move: a test that needs a row
 * old dates it back instead of moving its replica's clock past it.
 */

async function dateColumns(t: TestApp, table: string): Promise<string[]> {
  const res = await t.deps.db.execute(
    sql`select column_name as name from information_schema.columns
        where table_schema = current_schema() and table_name = ${table} and data_type = 'timestamp with time zone' order by ordinal_position`,
  );
  const rows = (Array.isArray(res) ? res : (res as { rows: unknown[] }).rows) as { name: string }[];
  if (rows.length === 0) throw new Error(`dateBack: no dated column in ${table}`);
  return rows.map((r) => r.name);
}

/** Moves every date of the rows of `table` that `where` selects (SQL on its columns) `ms` back. */
export async function dateBack(t: TestApp, table: string, where: SQL, ms: number): Promise<void> {
  const by = sql`${`${Math.round(ms)} milliseconds`}::interval`;
  const sets = (await dateColumns(t, table)).map((c) => sql`${sql.identifier(c)} = ${sql.identifier(c)} - ${by}`);
  await t.deps.db.execute(sql`update ${sql.identifier(table)} set ${sql.join(sets, sql`, `)} where ${where}`);
}

/**
 * Moves every date of the rows of `table` that `where` selects back by one amount, so that the
 * latest `column` among them is `agoMs` before the database's clock (their dates keep their
 * distances from each other).
 */
export async function dateBackUntil(t: TestApp, table: string, where: SQL, column: string, agoMs: number): Promise<void> {
  const res = await t.deps.db.execute(
    sql`select (extract(epoch from max(${sql.identifier(column)}) - (now() - ${`${agoMs} milliseconds`}::interval)) * 1000)::float8 as ms
        from ${sql.identifier(table)} where ${where}`,
  );
  const rows = (Array.isArray(res) ? res : (res as { rows: unknown[] }).rows) as { ms: number | string | null }[];
  const ms = rows[0]?.ms;
  if (ms === null || ms === undefined) throw new Error(`dateBackUntil: no row of ${table} with a ${column}`);
  await dateBack(t, table, where, Number(ms));
}
