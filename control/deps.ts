import type { Db } from './db/client.js';
import type { KeyStore } from './keys/key-store.js';
import type { Clock } from '../shared/clock.js';
import type { Ids } from './lib/ids.js';
import type { Logger } from '../shared/logger.js';
import type { Metrics } from './http/metrics.js';
import type { PasswordHasher } from './auth/passwords.js';
import type { TrustProxy } from './http/client-address.js';
import type { RevocationHub } from './services/revocation-hub.js';
import type { MissThrottle } from './http/miss-throttle.js';
import type { DatabaseOutages } from './services/database-outages.js';

/** Settings the app needs at request time (from config.ts, or chosen by a test). */
export interface AppSettings {
  /** Issuer of tokens and leases, and the base of verification URLs: the public URL of the API. */
  issuer: string;
  accessTokenTtl: number;
  /** A login session's absolute life (seconds): its refresh tokens expire this long after it started. */
  refreshTokenTtl: number;
  /**
   * A console session (auth/sessions.ts `CONSOLE_CLIENT_ID`) that made no request for this long
   * (seconds: its last token renewed this plus `accessTokenTtl` ago) is ended at its next
   * refresh, or by the sweep of abandoned sessions (auth/idle-sessions.ts), whichever comes
   * first; 0: never.
   */
  consoleIdleTimeout: number;
  deviceCodeTtl: number;
  devicePollInterval: number;
  leaseTtl: { expose: number; open: number; egress: number };
  /** Admin-set cap on any lease's life (seconds). */
  maxLeaseTtl: number;
  /**
   * A node is online when it sent a heartbeat this recently (seconds), not counting time in which
   * this replica could not reach its database (services/database-outages.ts).
   */
  nodeOnlineWindow: number;
  /** Login and token attempts per source per minute. */
  authRateLimit: number;
  /** Leases one user may be issued per minute (all their tokens together). */
  leaseRateLimit: number;
  /**
   * Event batches (POST /v1/nodes/self/events) one relay may send per minute, and events in
   * them (services/relay-event-limit.ts); over either, 429 with Retry-After.
   */
  relayEventBatchLimit: number;
  relayEventLimit: number;
  /** Days audit events are kept (services/history-prune.ts); 0: for good. */
  auditRetentionDays: number;
  /**
   * Unknown node credentials, refresh tokens and device codes one source may send per minute,
   * per replica, before it is refused without a database lookup (http/miss-throttle.ts).
   */
  credentialMissLimit: number;
  /**
   * Seconds after a refresh token's rotation during which presenting it again returns the same
   * successor (a retry after a lost answer) instead of revoking the family as reuse.
   */
  refreshReuseGrace: number;
  maxBodyBytes: number;
  /** Longest a relay's long poll of the revocation feed is held (seconds; its `wait` is capped to this, 0: never held). */
  revocationFeedMaxWait: number;
  /** Which proxies may name the client in `X-Forwarded-For` (hops or networks; 0 = none). */
  trustProxy: TrustProxy;
  /** Exposures one member may own (admins: no cap; services/member-limits.ts). */
  maxExposuresPerMember: number;
  /** Live (unrevoked, unexpired) service tokens one member may have (admins: no cap). */
  maxServiceTokensPerMember: number;
}

export const DEFAULT_SETTINGS: Omit<AppSettings, 'issuer'> = {
  accessTokenTtl: 600,
  refreshTokenTtl: 30 * 86400,
  consoleIdleTimeout: 12 * 3600,
  deviceCodeTtl: 600,
  devicePollInterval: 5,
  leaseTtl: { expose: 3600, open: 600, egress: 600 },
  maxLeaseTtl: 24 * 3600,
  nodeOnlineWindow: 30,
  authRateLimit: 30,
  leaseRateLimit: 120,
  relayEventBatchLimit: 600,
  relayEventLimit: 60_000,
  auditRetentionDays: 365,
  credentialMissLimit: 30,
  refreshReuseGrace: 30,
  maxBodyBytes: 64 * 1024,
  revocationFeedMaxWait: 25,
  trustProxy: 0,
  maxExposuresPerMember: 1_000,
  maxServiceTokensPerMember: 100,
};

export interface Deps {
  db: Db;
  clock: Clock;
  ids: Ids;
  keys: KeyStore;
  logger: Logger;
  metrics: Metrics;
  passwords: PasswordHasher;
  settings: AppSettings;
  /** Wakes relays' long polls of the revocation feed (this replica's revocations, and other replicas' via NOTIFY). */
  revocationHub: RevocationHub;
  /** Misses of credentials only the database can tell wrong, per source (http/miss-throttle.ts). */
  credentialMisses: MissThrottle;
  /** When this replica could not reach its database: not counted against relays' heartbeats. */
  databaseOutages: DatabaseOutages;
}
