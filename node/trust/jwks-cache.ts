import { readFile } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { checkJwks, JWK_USE_LEASE, JWK_USE_SSH_CA, jwkPublicKeyBytes } from '../../protocol/jwks-check.js';
import type { Jwks } from '../../protocol/jwks.js';
import { encodePublicKeyBlob, publicKeyObject } from '../../protocol/ssh-key.js';
import { ControlError, type ControlClient } from '../control-client.js';
import type { Clock } from '../../shared/clock.js';
import { writeFileAtomic } from '../../shared/write-file-atomic.js';
import type { Logger } from '../../shared/logger.js';
import { drawShare } from '../retry-jitter.js';

/** The verification material derived from one JWKS document. */
export interface TrustSnapshot {
  jwks: Jwks;
  /** `ssh-ed25519` blobs of the keys with use "ssh-ca". */
  caBlobs: Buffer[];
  /** Lease-signing keys (use "sig") only, by kid, imported once per document (protocol/jws.ts). */
  leaseKeys: ReadonlyMap<string, KeyObject>;
  kids: ReadonlySet<string>;
}

export type JwksSource = 'none' | 'disk' | 'network';

export interface JwksCacheOptions {
  client: Pick<ControlClient, 'fetchJwks'>;
  /** Where the last good copy is kept. */
  file: string;
  clock: Clock;
  logger: Logger;
  /** Scheduled refresh interval. */
  refreshMs: number;
  /** Minimum time between refreshes triggered by an unknown key, and the least wait before retrying a failed refresh. */
  minRefreshMs: number;
  /** In [0, 1) (anything else counts as 0: drawShare): spreads retries after a failed refresh (RETRY_JITTER). Math.random unless a test fixes it. */
  random?: () => number;
  /** Called when a fetched document replaced the one in use (keys added or withdrawn). */
  onChange?(snapshot: TrustSnapshot): void;
}

function snapshot(jwks: Jwks): TrustSnapshot {
  const sig = jwks.keys.filter((k) => k.use === JWK_USE_LEASE);
  return {
    jwks,
    caBlobs: jwks.keys.filter((k) => k.use === JWK_USE_SSH_CA).map((k) => encodePublicKeyBlob(jwkPublicKeyBytes(k))),
    leaseKeys: new Map(sig.map((k) => [k.kid, publicKeyObject(jwkPublicKeyBytes(k))])),
    kids: new Set(jwks.keys.map((k) => k.kid)),
  };
}

/**
 * True when `jwks` can verify a lease: it holds a lease-signing key and an SSH CA key. A control
 * plane always publishes both (a key is withdrawn by publishing its successor without it), so a
 * document without either is never applied: it would withdraw every key at once.
 */
export function canVerify(jwks: Jwks): boolean {
  return jwks.keys.some((k) => k.use === JWK_USE_LEASE) && jwks.keys.some((k) => k.use === JWK_USE_SSH_CA);
}

/** The least time between scheduled tries while they fail (whatever `minRefreshMs` says): no busy loop. */
const RETRY_FLOOR_MS = 1000;
/**
 * A retry after a failed refresh waits up to this fraction more than it must (at random): the relays
 * of a control plane that was away (or that answered them all 503 with the same Retry-After) tried
 * again in the same second; 100 relays at the 10 s default now spread over 5 s.
 */
export const RETRY_JITTER = 0.5;

/**
 * The relay's only trust document. Loads the last good copy from disk, refreshes it on a
 * schedule (sooner while refreshes fail, #schedule) and when a client presents a key it does not know (rate limited), and keeps
 * serving the last good copy while the control plane is unreachable or publishes a document
 * that can verify nothing (canVerify).
 */
export class JwksCache {
  #opts: JwksCacheOptions;
  #snap: TrustSnapshot | undefined;
  #source: JwksSource = 'none';
  #fetchedAt: Date | undefined;
  #lastAttempt = -Infinity;
  #inflight: Promise<boolean> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #lastError: string | undefined;
  /** The Retry-After of the last refresh, when it failed with one (a 503 or 429). */
  #retryAfterMs: number | undefined;
  #random: () => number;

  constructor(opts: JwksCacheOptions) {
    this.#opts = opts;
    this.#random = opts.random ?? Math.random;
  }

  get snapshot(): TrustSnapshot | undefined {
    return this.#snap;
  }

  status(): { source: JwksSource; fetchedAt: string | null; keys: number; lastError: string | null } {
    return {
      source: this.#source,
      fetchedAt: this.#fetchedAt?.toISOString() ?? null,
      keys: this.#snap?.jwks.keys.length ?? 0,
      lastError: this.#lastError ?? null,
    };
  }

  /** Loads the disk copy, then tries the network once. Never throws: check `snapshot`. */
  async init(): Promise<void> {
    try {
      const stored = JSON.parse(await readFile(this.#opts.file, 'utf8')) as { fetched_at?: string; jwks?: unknown };
      const jwks = checkJwks(stored.jwks);
      if (jwks === undefined) throw new Error('the stored JWKS is not a JWKS');
      // A copy an older relay kept from a control plane that published no lease key or no CA key
      // (before canVerify): as good as none, and /healthz must say no_trust, not ok.
      if (!canVerify(jwks)) throw new Error('the stored JWKS has no lease-signing key or no SSH CA key');
      this.#snap = snapshot(jwks);
      this.#source = 'disk';
      this.#fetchedAt = stored.fetched_at ? new Date(stored.fetched_at) : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#opts.logger.warn('jwks cache file unreadable', { err });
    }
    await this.refresh();
  }

  /** Fetches now (coalescing concurrent calls). Returns true when a new copy is in use. */
  refresh(): Promise<boolean> {
    this.#inflight ??= this.#fetch().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  /**
   * Called when a certificate or token names a key we do not hold. Refreshes at most once
   * per `minRefreshMs`, and not before the Retry-After of a refresh that failed with one; returns
   * true when the trust document changed.
   */
  async refreshForUnknownKey(): Promise<boolean> {
    if (this.#inflight) return this.#inflight;
    const now = this.#opts.clock.now().getTime();
    if (now - this.#lastAttempt < Math.max(this.#opts.minRefreshMs, this.#retryAfterMs ?? 0)) return false;
    return this.refresh();
  }

  start(): void {
    this.#running = true;
    this.#schedule();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
  }

  /**
   * The next scheduled refresh: `refreshMs` after one that worked; after one that failed or was
   * refused, `minRefreshMs` (at least RETRY_FLOOR_MS), so that once the control plane answers well
   * again, /healthz's `lastError` clears and keys rotated meanwhile arrive within seconds, not at
   * the next refresh up to `refreshMs` later. A failure that came with a Retry-After waits that
   * long if it is longer. Either wait is then drawn from up to RETRY_JITTER more, so relays do not
   * all retry a recovering control plane at once; a retry never waits past `refreshMs`.
   */
  #schedule(): void {
    if (!this.#running) return;
    const failed = this.#lastError !== undefined;
    this.#timer = setTimeout(() => {
      this.refresh()
        .catch((err: unknown) => this.#opts.logger.error('jwks refresh: a callback failed', { err, stack: err instanceof Error ? err.stack : undefined }))
        .finally(() => this.#schedule());
    }, failed ? this.retryDelay() : this.#opts.refreshMs);
    this.#timer.unref();
  }

  /** The wait before the scheduled retry of a refresh that failed (#schedule): a new draw on each call. */
  retryDelay(): number {
    const least = Math.max(this.#opts.minRefreshMs, RETRY_FLOOR_MS, this.#retryAfterMs ?? 0);
    // A draw outside [0, 1), or one that is not a number, counts as 0 (drawShare): the least wait.
    return Math.min(this.#opts.refreshMs, Math.round(least * (1 + RETRY_JITTER * drawShare(this.#random))));
  }

  async #fetch(): Promise<boolean> {
    this.#lastAttempt = this.#opts.clock.now().getTime();
    this.#retryAfterMs = undefined;
    let jwks: Jwks;
    try {
      jwks = await this.#opts.client.fetchJwks();
    } catch (err) {
      if (err instanceof ControlError) this.#retryAfterMs = err.opts.retryAfterMs;
      // The control plane's own code when it answered with one (/healthz says why: a control plane
      // older than this relay answers API_LEVEL_UNSUPPORTED), else the client's (unreachable, ...).
      this.#lastError = (err instanceof ControlError ? err.opts.problemCode : undefined) ?? (err as { code?: string }).code ?? 'FETCH_FAILED';
      this.#opts.logger.warn('jwks refresh failed; keeping the last good copy', { err, source: this.#source, retryAfterMs: this.#retryAfterMs });
      return false;
    }
    if (!canVerify(jwks)) {
      // Applying it would close every connection and refuse every client: taken as a fault of
      // the control plane (or of what answered for it), not as a withdrawal of every key.
      this.#lastError = 'JWKS_UNUSABLE';
      this.#opts.logger.warn('jwks refresh refused: the control plane published no lease-signing key or no SSH CA key; keeping the last good copy', {
        keys: jwks.keys.length,
        source: this.#source,
      });
      return false;
    }
    const changed = JSON.stringify(jwks) !== JSON.stringify(this.#snap?.jwks);
    this.#snap = changed || !this.#snap ? snapshot(jwks) : this.#snap;
    this.#source = 'network';
    this.#fetchedAt = this.#opts.clock.now();
    this.#lastError = undefined;
    try {
      await writeFileAtomic(this.#opts.file, JSON.stringify({ fetched_at: this.#fetchedAt.toISOString(), jwks }, null, 2));
    } catch (err) {
      this.#opts.logger.warn('jwks cache file not written', { err });
    }
    if (changed) {
      this.#opts.logger.info('jwks updated', { kids: jwks.keys.map((k) => k.kid) });
      this.#opts.onChange?.(this.#snap);
    }
    return changed;
  }
}
