import { createIdleCollection } from './idle-collection.js';
import { serve, type ServerType } from '@hono/node-server';
import type { Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createApp } from './app.js';
import { ConfigError, type ControlConfig } from './config.js';
import { DEFAULT_SETTINGS, type Deps } from './deps.js';
import { openDatabase, type OpenedDb } from './db/client.js';
import { DbKeyStore } from './keys/db-key-store.js';
import { keyPolicyFor } from './keys/key-policy.js';
import { resolveMasterKey } from './keys/master-key.js';
import { SealedBoxError } from './keys/sealed-box.js';
import { systemClock } from '../shared/clock.js';
import { randomIds } from './lib/ids.js';
import type { Logger } from '../shared/logger.js';
import { Metrics } from './http/metrics.js';
import { MissThrottle } from './http/miss-throttle.js';
import { answerMalformedRequests } from './http/malformed-request.js';
import { serveMetrics, type MetricsServer } from './http/metrics-server.js';
import { scryptHasher } from './auth/passwords.js';
import { prepareSetupCode } from './auth/setup-code.js';
import { reclaimFutureAuditIds } from './services/audit.js';
import { scheduleEmbeddedMaintenance } from './db/embedded-maintenance.js';
import { followRevocations } from './services/revocation-listen.js';
import { RevocationHub } from './services/revocation-hub.js';
import { DatabaseOutages } from './services/database-outages.js';
import { loadTls, readTlsFiles, type TlsMaterial } from './tls/server-tls.js';

export interface RunningControl {
  url: string;
  port: number;
  /** The port /metrics is served on (--metrics-listen), or null when it is not served. */
  metricsPort: number | null;
  deps: Deps;
  /** The one-time setup code when no user exists yet (print it once). */
  setupCode: string | null;
  /** The certificate served now (undefined for plain HTTP). */
  tls(): TlsMaterial | undefined;
  /**
   * Reads the certificate and key files again and serves them to new connections. A broken pair
   * is reported (thrown) and the current one stays. Plain HTTP: nothing to do.
   */
  reloadTls(): TlsMaterial | undefined;
  close(): Promise<void>;
}

const KEY_CHECK_MS = 3600_000;

/**
 * Opens the active signing keys once before serving. A replica given another master key than the
 * one its database's keys were sealed with otherwise started, said it was ready, passed /healthz,
 * and answered every login and lease with a 500 (behind a load balancer: one request in N).
 */
async function assertKeysOpen(deps: Deps): Promise<void> {
  for (const use of ['sig', 'ssh-ca'] as const) {
    try {
      await deps.keys.signing(use);
    } catch (err) {
      if (err instanceof SealedBoxError) {
        throw new ConfigError(`cannot open the signing keys in the database with this master key; start with the master key they were created with (${err.message})`);
      }
      throw err;
    }
  }
}

/** Builds deps from config, migrates, ensures keys, and serves the app. */
export async function startControl(cfg: ControlConfig, logger: Logger): Promise<RunningControl> {
  const opened = await openDb(cfg);
  const deps = buildDeps(cfg, opened, logger);
  // Other replicas' revocations (Postgres NOTIFY): wake this replica's long polls.
  const following = await followRevocations(opened, deps.revocationHub, logger);
  await deps.keys.ensure();
  await assertKeysOpen(deps);
  const moved = await reclaimFutureAuditIds(deps.db);
  if (moved > 0) logger.warn('audit events carried transaction ids ahead of this database (restored from another cluster?); renumbered so that oldest-first paging shows them', { events: moved });
  const setupCode = await prepareSetupCode(deps);
  const app = createApp(deps);
  let tls = loadTls(cfg, logger);

  const server: ServerType = await new Promise((resolve, reject) => {
    const s = tls
      ? serve(
          {
            fetch: app.fetch,
            hostname: cfg.listenHost,
            port: cfg.listenPort,
            createServer: createHttpsServer,
            serverOptions: { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' },
          },
          () => resolve(s),
        )
      : serve({ fetch: app.fetch, hostname: cfg.listenHost, port: cfg.listenPort }, () => resolve(s));
    s.once('error', reject);
  });
  answerMalformedRequests(server as HttpServer, () => deps.ids.id('req'));
  // What a burst of requests grew V8's young generation to is given back once it is quiet (control/idle-collection.ts).
  const idleCollection = createIdleCollection({ onError: (err) => logger.error('idle collection failed', { err }) });
  server.on('request', () => idleCollection.request());
  const port = (server.address() as AddressInfo).port;
  let metrics: MetricsServer | undefined;
  if (cfg.metricsListen) {
    try {
      metrics = await serveMetrics(deps, cfg.metricsListen.host, cfg.metricsListen.port, logger);
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await opened.close();
      throw err;
    }
    logger.info('metrics listening', { listen: `${cfg.metricsListen.host}:${metrics.port}` });
  }
  const keyTimer = setInterval(() => {
    deps.keys.ensure().catch((err) => logger.error('key rotation check failed', { err }));
  }, KEY_CHECK_MS);
  keyTimer.unref();
  // Postgres servers run autovacuum and a checkpointer; PGlite (single-user mode) neither (embedded-maintenance.ts).
  const upkeep = opened.driver === 'pglite' ? scheduleEmbeddedMaintenance(deps.db, logger) : undefined;
  logger.info('control plane listening', {
    listen: `${cfg.listenHost}:${port}`,
    public_url: cfg.publicUrl,
    database: opened.driver,
    tls: tls ? { pin: tls.pin, cert: tls.certFile, not_after: tls.notAfter } : 'off',
  });
  return {
    url: `${tls ? 'https' : 'http'}://${cfg.listenHost.includes(':') ? `[${cfg.listenHost}]` : cfg.listenHost}:${port}`,
    port,
    metricsPort: metrics?.port ?? null,
    deps,
    setupCode,
    tls: () => tls,
    reloadTls() {
      if (!tls) return undefined;
      const next = readTlsFiles(tls.certFile, tls.keyFile);
      (server as HttpsServer).setSecureContext({ cert: next.cert, key: next.key, minVersion: 'TLSv1.2' });
      const changed = next.pin !== tls.pin;
      tls = next;
      logger.info('TLS certificate reloaded', { pin: next.pin, cert: next.certFile, not_after: next.notAfter, key_changed: changed });
      return next;
    },
    async close() {
      clearInterval(keyTimer);
      idleCollection.stop();
      await upkeep?.stop();
      following.stop();
      deps.revocationHub.close();
      await metrics?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
      });
      await opened.close();
    },
  };
}

async function openDb(cfg: ControlConfig): Promise<OpenedDb> {
  return openDatabase({ url: cfg.databaseUrl, dataDir: join(cfg.dataDir, 'db') });
}

export function buildDeps(cfg: ControlConfig, opened: OpenedDb, logger: Logger): Deps {
  const masterKey = resolveMasterKey(cfg, logger);
  const settings = {
    ...DEFAULT_SETTINGS,
    issuer: cfg.publicUrl,
    maxLeaseTtl: cfg.maxLeaseTtl,
    leaseRateLimit: cfg.leaseRateLimit,
    auditRetentionDays: cfg.auditRetentionDays,
    relayEventBatchLimit: cfg.relayEventBatchLimit,
    relayEventLimit: cfg.relayEventLimit,
    trustProxy: cfg.trustProxy,
    consoleIdleTimeout: cfg.consoleIdleTimeout,
  };
  return {
    db: opened.db,
    clock: systemClock,
    ids: randomIds,
    keys: new DbKeyStore({ db: opened.db, clock: systemClock, ids: randomIds, masterKey, policy: keyPolicyFor(cfg.maxLeaseTtl) }),
    logger,
    metrics: new Metrics(),
    passwords: scryptHasher(),
    revocationHub: new RevocationHub(),
    credentialMisses: new MissThrottle(settings.credentialMissLimit),
    databaseOutages: new DatabaseOutages(),
    settings,
  };
}

export { openDb };
