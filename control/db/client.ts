import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { sql } from 'drizzle-orm';
import * as schema from './schema/index.js';
import { buildPgliteTemplate, loadPglite, pgliteOptions, seedFromTemplate } from './pglite.js';

/** The database handle every component uses: Postgres or the embedded PGlite, same schema. */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
export type DbDriver = 'postgres' | 'pglite';

export interface OpenedDb {
  db: Db;
  driver: DbDriver;
  close(): Promise<void>;
  /**
   * Postgres only: calls `onPayload` for every NOTIFY on `channel` from any replica (a
   * connection of its own, re-established by the driver). `onListening` runs after every LISTEN
   * that took, the first one and each one after the driver re-established the connection:
   * notifications sent while it was down are lost, so a caller catches up there. PGlite has one
   * process, no other replica to hear from.
   */
  listen?(channel: string, onPayload: (payload: string) => void, onListening?: () => void): Promise<void>;
}

export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');
// Arbitrary constant for pg_advisory_lock so concurrent replicas migrate one at a time.
const MIGRATION_LOCK_ID = 0x74756e6e;

/**
 * Opens the database and applies the committed migrations.
 * `url` set: Postgres via the `postgres` driver; otherwise PGlite in `dataDir` (or in memory
 * when `dataDir` is `memory://`).
 */
export async function openDatabase(opts: { url?: string | undefined; dataDir?: string; poolSize?: number }): Promise<OpenedDb> {
  if (opts.url) return openPostgres(opts.url, opts.poolSize ?? 10);
  return openPglite(opts.dataDir ?? 'memory://');
}

async function openPostgres(url: string, poolSize: number): Promise<OpenedDb> {
  const { default: postgres } = await import('postgres');
  const { drizzle } = await import('drizzle-orm/postgres-js');
  const { migrate } = await import('drizzle-orm/postgres-js/migrator');

  const migrator = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const mdb = drizzle(migrator);
    await mdb.execute(sql`select pg_advisory_lock(${MIGRATION_LOCK_ID})`);
    try {
      await migrate(mdb, { migrationsFolder: MIGRATIONS_DIR });
    } finally {
      await mdb.execute(sql`select pg_advisory_unlock(${MIGRATION_LOCK_ID})`);
    }
  } finally {
    await migrator.end({ timeout: 5 });
  }

  const client = postgres(url, { max: poolSize, onnotice: () => {} });
  const db = drizzle(client, { schema }) as unknown as Db;
  return {
    db,
    driver: 'postgres',
    close: () => client.end({ timeout: 5 }),
    listen: async (channel, onPayload, onListening) => {
      const safely = (fn: () => void) => {
        try {
          fn();
        } catch {
          // a listener's fault must not break the driver's notification loop
        }
      };
      await client.listen(
        channel,
        (payload) => safely(() => onPayload(payload)),
        onListening && (() => safely(onListening)),
      );
    },
  };
}

async function openPglite(dataDir: string): Promise<OpenedDb> {
  const PGlite = await loadPglite();
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');
  if (!dataDir.startsWith('memory://') && !seedFromTemplate(dataDir, MIGRATIONS_DIR)) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const client = await PGlite.create(dataDir, pgliteOptions());
  const db = drizzle(client, { schema });
  await migrate(db, { migrationsFolder: MIGRATIONS_DIR });
  return { db: db as unknown as Db, driver: 'pglite', close: () => client.close() };
}

/** The build's template cluster for the embedded database (control/db/pglite.ts), migrated. */
export async function buildEmbeddedTemplate(): Promise<'built' | 'current'> {
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');
  return buildPgliteTemplate(MIGRATIONS_DIR, (pg) => migrate(drizzle(pg), { migrationsFolder: MIGRATIONS_DIR }));
}
