import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import postgres from 'postgres';
import { postgresUnavailableReason, startPostgres, type PostgresInstance } from '../../test/harness/postgres.js';
import { createTestApp, type TestApp, type TestAppOptions } from './test-app.js';

/**
 * Makes a control plane on a fresh, empty database. Apps made through it are closed in the
 * `after` hook of the level that created the factory.
 */
export interface MakeApp {
  (opts?: Omit<TestAppOptions, 'databaseUrl'>): Promise<TestApp>;
  /** Why this database cannot be used here (a suite is then skipped, visibly). */
  readonly unavailable?: string;
}

/** Apps on PGlite in memory (the embedded default). Call at the top level of a test file. */
export function usePglite(): MakeApp {
  const apps: TestApp[] = [];
  after(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
  });
  return async (opts = {}) => {
    const app = await createTestApp(opts);
    apps.push(app);
    return app;
  };
}

/**
 * Apps on a real Postgres cluster that this file starts in `before` and stops in `after`; every
 * app gets its own fresh database (`CREATE DATABASE t_<random>`). Call at the top level of a file.
 */
export function usePostgres(): MakeApp {
  const unavailable = postgresUnavailableReason();
  const apps: TestApp[] = [];
  let pg: PostgresInstance | undefined;
  if (!unavailable) {
    before(async () => {
      pg = await startPostgres();
    });
    after(async () => {
      await Promise.all(apps.splice(0).map((a) => a.close()));
      await pg?.stop();
    });
  }
  const make = async (opts: Omit<TestAppOptions, 'databaseUrl'> = {}) => {
    if (!pg) throw new Error(unavailable ?? 'usePostgres(): the cluster is not started (call it at the top level of the file)');
    const app = await createTestApp({ ...opts, databaseUrl: await freshDatabase(pg.url) });
    apps.push(app);
    return app;
  };
  return Object.assign(make, { unavailable });
}

async function freshDatabase(clusterUrl: string): Promise<string> {
  const name = `t_${randomBytes(8).toString('hex')}`;
  const sql = postgres(clusterUrl, { max: 1, onnotice: () => undefined });
  try {
    await sql.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
  const url = new URL(clusterUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
