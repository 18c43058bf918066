import { randomBytes } from 'node:crypto';
import { createApp } from '../app.js';
import { DEFAULT_SETTINGS, type AppSettings, type Deps } from '../deps.js';
import { openDatabase, type OpenedDb } from '../db/client.js';
import { DbKeyStore } from '../keys/db-key-store.js';
import { ManualClock, type Clock } from '../../shared/clock.js';
import { randomIds } from '../lib/ids.js';
import { noopLogger } from '../../shared/logger.js';
import { Metrics } from '../http/metrics.js';
import { MissThrottle } from '../http/miss-throttle.js';
import { scryptHasher } from '../auth/passwords.js';
import { REVOCATIONS_CHANNEL } from '../services/lease-revocation.js';
import { RevocationHub } from '../services/revocation-hub.js';
import { DatabaseOutages } from '../services/database-outages.js';
import { users } from '../db/schema/index.js';
import { mintAccessToken } from '../auth/access-tokens.js';

export const TEST_ISSUER = 'http://control.test';

export interface TestApp {
  app: ReturnType<typeof createApp>;
  deps: Deps;
  clock: ManualClock;
  opened: OpenedDb;
  /** Creates a user and returns an access token for it. */
  user(name: string, role?: 'admin' | 'member', password?: string): Promise<{ id: string; name: string; token: string }>;
  /** JSON request helper returning status and parsed body. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
  call(method: string, path: string, opts?: { token?: string; body?: unknown; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  databaseUrl?: string;
  settings?: Partial<AppSettings>;
  clock?: Clock;
  /** The key store's master key (random by default); tests that open the store twice pass one. */
  masterKey?: Buffer;
}

/**
 * An in-process control plane on a fresh database: PGlite in memory by default, or the Postgres at
 * `databaseUrl` (tests that share one cluster pass a fresh database per app).
 */
export async function createTestApp(opts: TestAppOptions = {}): Promise<TestApp> {
  const opened = await openDatabase({ url: opts.databaseUrl, dataDir: 'memory://' });
  const clock = (opts.clock as ManualClock | undefined) ?? new ManualClock(new Date());
  const keys = new DbKeyStore({ db: opened.db, clock, ids: randomIds, masterKey: opts.masterKey ?? randomBytes(32) });
  const settings = { ...DEFAULT_SETTINGS, issuer: TEST_ISSUER, ...opts.settings };
  const deps: Deps = {
    db: opened.db,
    clock,
    ids: randomIds,
    keys,
    logger: noopLogger,
    metrics: new Metrics(),
    passwords: scryptHasher(10),
    revocationHub: new RevocationHub(),
    settings,
    credentialMisses: new MissThrottle(settings.credentialMissLimit),
    databaseOutages: new DatabaseOutages(),
  };
  await keys.ensure();
  await opened.listen?.(REVOCATIONS_CHANNEL, (payload) => deps.revocationHub.poke(payload === '*' ? 'all' : payload.split(',')));
  const app = createApp(deps);
  const t: TestApp = {
    app,
    deps,
    clock,
    opened,
    async user(name, role = 'member', password) {
      const id = randomIds.id('usr');
      const passwordHash = password ? await deps.passwords.hash(password) : null;
      await opened.db.insert(users).values({ id, name, role, passwordHash, createdAt: clock.now() });
      const { token } = await mintAccessToken(deps, { id, name, role });
      return { id, name, token };
    },
    async call(method, path, o = {}) {
      const headers: Record<string, string> = { ...o.headers };
      if (o.token) headers.authorization = `Bearer ${o.token}`;
      let body: string | undefined;
      if (o.body !== undefined) {
        body = typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await app.request(path, { method, headers, body });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        /* not JSON */
      }
      return { status: res.status, body: parsed, headers: res.headers };
    },
    close: () => opened.close(),
  };
  return t;
}
