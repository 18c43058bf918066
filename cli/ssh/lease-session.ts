import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Client } from 'ssh2';
import { LeaseIssuedSchema, LeaseSchema, type LeaseCreate, type LeaseIssued } from '../../protocol/api-types.js';
import { formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { ApiError } from '../api-client.js';
import type { Session } from '../session.js';
import { CliError, EXIT } from '../errors.js';
import { clientSocket } from '../../node/ssh2-internals.js';
import { connectRelay, DEFAULT_TIMINGS, renewOnConnection, type RelayError, type RelayTimings } from './relay-connection.js';
import { peerText } from '../terminal-text.js';
import { backoff, renewalDelayMs } from './lease-timing.js';
import { AbandonedLeases } from './abandoned-leases.js';

export type LeaseRequest = Omit<LeaseCreate, 'public_key'>;

export interface Connected {
  client: Client;
  lease: LeaseIssued;
  /** Every lease this connection presented (the first and its in-band renewals). */
  leaseIds?: string[];
}

const REVOKE_ON_STOP_MS = 3_000;
/** Callers waiting at once for a connection (next()); beyond, they are refused at once. */
export const MAX_WAITING = 1024;

/** A caller of next() waiting for a connection; `done()` takes it off the list, with its timer and abort listener. */
interface Waiter {
  resolve: (c: Connected) => void;
  reject: (err: unknown) => void;
  done: () => void;
}

export interface SupervisorEvents {
  connected: [Connected];
  renewed: [LeaseIssued];
  disconnected: [{ reason: string; retryInMs: number | null }];
}

export interface SupervisorOptions {
  request: LeaseRequest;
  timings?: RelayTimings;
  /** Called on each new connection before it counts as up (expose registers its forward here). */
  setup?: (c: Connected) => Promise<void>;
  /** Renew when this fraction of the lease's life has passed. */
  renewAt?: number;
  maxBackoffMs?: number;
  /** One connection only: stop (instead of reconnecting) when it closes or fails. */
  once?: boolean;
}

/**
 * The control plane's client errors (4xx) that asking again can mend: X comes online, a rate
 * limit or a concurrent change passes. Every other 4xx, including a code this CLI does not know
 * (a newer control plane) or none (a proxy's page), ends the session: the same request would get
 * the same answer for ever.
 */
const TRANSIENT_4XX = new Set(['EXPOSURE_OFFLINE', 'RATE_LIMITED', 'CONFLICT']);

/**
 * Keeps one relay connection alive for a lease request: a fresh key and lease per connection,
 * in-band renewal before expiry (live channels untouched), and reconnect with exponential
 * backoff and full jitter on any failure. Stops for good on permanent errors (not logged in,
 * not permitted, unknown exposure) and when the lease is revoked. The leases of a connection
 * that ended or never came up, and those of the last one on stop, are revoked (retried
 * with the next API call when the control plane is unreachable), so reconnects do not leave
 * a trail of active leases; so are those of lease requests stopped or cut off in flight, which
 * the control plane may have issued without the answer arriving (found by their key).
 */
export class LeaseSupervisor extends EventEmitter<SupervisorEvents> {
  readonly #session: Session;
  readonly #opts: Required<Omit<SupervisorOptions, 'setup'>> & Pick<SupervisorOptions, 'setup'>;
  #current: Connected | undefined;
  #stopped = false;
  /**
   * Aborted by stop(): cancels the lease and renewal requests in flight, so a control plane that
   * does not answer cannot hold a stop up. Not the revocations of abandoned leases: those are how
   * a stopped supervisor cleans up (run() bounds them by REVOKE_ON_STOP_MS).
   */
  readonly #halt = new AbortController();
  /**
   * run()'s signal (Ctrl-C): cancels the check whether a closed connection's lease was revoked. Not
   * stop(): a one-shot session stops when its channel ends, and then still asks why (see run()).
   */
  #userStop: AbortSignal | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  /** Leases left behind and keys of unanswered lease requests, revoked in rounds (abandoned-leases.ts). */
  readonly #leftovers: AbandonedLeases;
  /** expose: the relay whose connection just failed or dropped, steered around on the next lease. */
  #avoid: string | undefined;
  /** Why a renewal failed for good (its connection was ended for it): run() stops with it. */
  #fatal: CliError | undefined;
  /** Why the last connection closed, not told yet (see run()). */
  #dropped: string | undefined;
  /** The current connection while its client is open. */
  #live: Connected | undefined;
  /** Callers of next() waiting for a connection: one list, at most MAX_WAITING. */
  #waiting = new Set<Waiter>();

  constructor(session: Session, opts: SupervisorOptions) {
    super();
    this.#session = session;
    this.#leftovers = new AbandonedLeases(session);
    // Backoff tops out at 5 s so a returning relay is used again within seconds (jitter spreads the herd).
    this.#opts = { timings: DEFAULT_TIMINGS, renewAt: 2 / 3, maxBackoffMs: 5_000, once: false, ...opts };
  }

  /** Whether stop() was called: by the caller, or by run() ending (stopped, or a permanent error). */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** The connection while it is open (undefined from its close until the next one is up). */
  get current(): Connected | undefined {
    return this.#live;
  }

  /**
   * The connection while it is open, or the next one within `timeoutMs` (rejects with a
   * CliError, exit 5, when none comes, when MAX_WAITING callers already wait, or on stop()).
   * Waiters are kept in one list, not as listeners on this emitter (each `once(sup,
   * 'connected')` added two, and the 11th made Node warn of a leak). `signal` aborted: rejects
   * with its reason at once, and the place in the list is free for another caller (`tunnel open
   * --listen`: the local client went away while its connection waited).
   */
  next(timeoutMs: number, signal?: AbortSignal): Promise<Connected> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#live) return Promise.resolve(this.#live);
    if (this.#stopped) return Promise.reject(new CliError(EXIT.UNREACHABLE, 'no connection to the relay'));
    if (this.#waiting.size >= MAX_WAITING) return Promise.reject(new CliError(EXIT.UNREACHABLE, `no connection to the relay yet, and ${MAX_WAITING} connections already wait for one`));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        w.done();
        reject(signal!.reason);
      };
      const w: Waiter = {
        resolve,
        reject,
        done: () => {
          this.#waiting.delete(w);
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      const timer = setTimeout(() => {
        w.done();
        reject(new CliError(EXIT.UNREACHABLE, 'no connection to the relay'));
      }, timeoutMs);
      timer.unref();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.add(w);
    });
  }

  /** Callers of next() waiting now (for tests and diagnostics). */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** Hands `c` to every waiter (`c` undefined: refuses them, on stop). */
  #release(c: Connected | undefined): void {
    const waiting = [...this.#waiting];
    for (const w of waiting) {
      w.done();
      if (c) w.resolve(c);
      else w.reject(new CliError(EXIT.UNREACHABLE, 'no connection to the relay'));
    }
  }

  /** Runs until stop() or a permanent error (rejects with a CliError). */
  async run(signal: AbortSignal): Promise<void> {
    const onAbort = () => this.stop();
    signal.addEventListener('abort', onAbort, { once: true });
    this.#userStop = signal;
    let failures = 0;
    try {
      while (!this.#stopped) {
        let reason: string;
        let offline = false;
        try {
          const { c, closed: untilClosed } = await this.#connect();
          failures = 0;
          const closed = await untilClosed;
          reason = closed.reason;
          // A renewal was refused for good (the login ended, the grant went): stop with why.
          if (this.#fatal && !this.#stopped) throw this.#fatal;
          // Say why the relay hung up when it was a revocation (a one-shot session may have ended
          // its channel at the same moment, so it always asks).
          if ((this.#opts.once || !this.#stopped) && (await this.#revoked(c.lease.lease.id))) {
            throw new CliError(EXIT.NOT_PERMITTED, `the relay closed the connection: lease ${c.lease.lease.id} was revoked`);
          }
          this.#leftovers.add(c.leaseIds ?? [c.lease.lease.id]);
          // This side ended the connection for cause (the relay broke a channel limit): a
          // one-shot session fails with why; a long-lived one reconnects, like after any drop.
          if (this.#opts.once && closed.failure) throw closed.failure;
          // A one-shot session's connection that closed before this side ended it (the relay
          // crashed, restarted or dropped it; renewal failed) cut its channel short: fail with
          // why, so a ProxyCommand's ssh and scripts do not take the cut for a clean end.
          if (this.#opts.once && !closed.endedHere) throw new CliError(EXIT.UNREACHABLE, `the connection to the relay ended before the session did: ${closed.reason}`);
          if (this.#stopped || this.#opts.once) break;
          this.#avoid = c.lease.relay.node_id;
        } catch (err) {
          if (isPermanent(err) || this.#opts.once) throw err;
          if (this.#stopped) break;
          this.#tellDropped();
          reason = err instanceof Error ? err.message : String(err);
          // X offline (e.g. its relay just restarted): X comes back on its own schedule, so poll
          // about once a second instead of backing off, or Y would lag X by up to the cap.
          offline = err instanceof ApiError && err.code === 'EXPOSURE_OFFLINE';
          failures++;
        }
        const wait = failures === 0 ? 0 : offline ? Math.min(OFFLINE_POLL_MS, backoff(failures, this.#opts.maxBackoffMs)) : backoff(failures, this.#opts.maxBackoffMs);
        // A connection that just closed is reconnected at once; that it dropped is told once the
        // next lease came (or failed for a reason that is not final): when the login ended (a
        // logout, a service token revoked or expired) the lease is refused and run() stops with
        // why, without first saying it reconnects.
        if (wait === 0) this.#dropped = reason;
        else this.emit('disconnected', { reason, retryInMs: wait });
        if (wait) await this.#sleep(wait);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.stop();
      const c = this.#current;
      if (c) this.#leftovers.add(c.leaseIds ?? [c.lease.lease.id]);
      // Bounded: stopping must not hang on an unreachable control plane.
      await Promise.race([this.#leftovers.revoke(), new Promise((r) => setTimeout(r, REVOKE_ON_STOP_MS).unref())]);
    }
  }

  #tellDropped(): void {
    if (this.#dropped === undefined) return;
    this.emit('disconnected', { reason: this.#dropped, retryInMs: 0 });
    this.#dropped = undefined;
  }

  /** Lease ids not yet revoked (for tests and diagnostics). */
  get abandoned(): readonly string[] {
    return this.#leftovers.abandoned;
  }

  /** Keys of lease requests never answered, not yet looked up (for tests and diagnostics). */
  get unanswered(): readonly string[] {
    return this.#leftovers.unanswered;
  }

  stop(): void {
    this.#stopped = true;
    this.#halt.abort();
    clearTimeout(this.#renewTimer);
    this.#current?.client.end();
    this.#wake?.();
    this.#release(undefined);
  }

  /** A new connection, and why it closed once it has (see Closed). */
  async #connect(): Promise<{ c: Connected; closed: Promise<Closed> }> {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const lease = await this.#lease(publicKey);
    this.#tellDropped();
    // The control plane answered: a good moment to revoke what earlier attempts left behind.
    if (this.#leftovers.pending) void this.#leftovers.revoke();
    let client: Client;
    let error: RelayError | undefined;
    try {
      client = await connectRelay(lease, privateKey, this.#opts.timings, (err) => (error ??= err), this.#halt.signal);
    } catch (err) {
      this.#leftovers.add([lease.lease.id]);
      this.#avoid = lease.relay.node_id;
      throw err;
    }
    this.#avoid = undefined;
    const c: Connected = { client, lease, leaseIds: [lease.lease.id] };
    const closed = new Promise<Closed>((resolve) =>
      client.once('close', () => {
        if (this.#live === c) this.#live = undefined;
        resolve(closedBy(error, this.#stopped));
      }),
    );
    try {
      await this.#opts.setup?.(c);
    } catch (err) {
      client.end();
      this.#leftovers.add([lease.lease.id]);
      throw err;
    }
    if (this.#stopped) {
      client.end();
      return { c, closed };
    }
    const previous = this.#current;
    this.#current = c;
    // Make before break: the old connection (if any) goes only once the new one is up.
    previous?.client.end();
    this.#scheduleRenewal(c, publicKey, privateKey);
    // Live unless it already closed (during setup or the 'connected' listeners of an earlier one).
    this.#live = isOpen(client) ? c : undefined;
    this.emit('connected', c);
    if (this.#live === c) this.#release(c);
    return { c, closed };
  }

  async #lease(publicKey: KeyObject, avoid = this.#avoid): Promise<LeaseIssued> {
    // A relay that just failed still looks online to the control plane until its heartbeat goes
    // stale (up to the online window); naming it moves an exposure to another relay at once.
    const steer = avoid && this.#opts.request.kind === 'expose' ? { avoid_nodes: [avoid] } : {};
    const body = { ...this.#opts.request, ...steer, public_key: formatPublicKeyLine(rawPublicKey(publicKey), 'tunnel-cli') };
    try {
      return await this.#session.call('POST', '/v1/leases', LeaseIssuedSchema, body, this.#halt.signal);
    } catch (err) {
      // Stopped or cut off after it was sent: the control plane may have issued it all the same.
      this.#leftovers.requestFailed(publicKey, err);
      throw err;
    }
  }

  #scheduleRenewal(c: Connected, publicKey: KeyObject, privateKey: KeyObject): void {
    clearTimeout(this.#renewTimer);
    // The lease has just arrived (connected, or renewed in band): its wait counts from its issue.
    const wait = renewalDelayMs(c.lease.lease, this.#opts.renewAt);
    this.#renewTimer = setTimeout(() => void this.#renew(c, publicKey, privateKey), wait);
    this.#renewTimer.unref();
  }

  async #renew(c: Connected, publicKey: KeyObject, privateKey: KeyObject): Promise<void> {
    if (this.#stopped || this.#current !== c) return;
    let fresh: LeaseIssued | undefined;
    try {
      fresh = await this.#lease(publicKey, undefined);
      if (fresh.relay.node_id !== c.lease.relay.node_id) throw new Error('the exposure moved to another relay');
      if (!(await renewOnConnection(c.client, fresh.certificate))) throw new Error('the relay refused the renewal');
      c.lease = fresh;
      // The relay holds the connection under every lease it presented: revoke them together, later.
      c.leaseIds = presented(c.leaseIds, fresh.lease.id);
      this.emit('renewed', fresh);
      this.#scheduleRenewal(c, publicKey, privateKey);
    } catch (err) {
      // A renewal lease the relay never took is abandoned at once.
      if (fresh && !(c.leaseIds ?? []).includes(fresh.lease.id)) this.#leftovers.add([fresh.lease.id]);
      // Stopped meanwhile (its request cancelled, or not): stop() ends the connection; nothing to say.
      if (this.#stopped) return;
      if (isPermanent(err)) {
        this.#fatal = err as CliError;
        c.client.end();
        return;
      }
      // Renewal failed: reconnect now, while the old lease still has time left.
      this.emit('disconnected', { reason: `renewal failed: ${(err as Error).message}`, retryInMs: 0 });
      c.client.end();
    }
  }

  /**
   * Whether the lease was revoked. A login that ended (logged out, its service token revoked or
   * expired: the relay dropped the connection because that revoked its leases) throws why, so
   * run() stops at once instead of saying it reconnects.
   */
  async #revoked(leaseId: string): Promise<boolean> {
    try {
      const l = await this.#session.call('GET', `/v1/leases/${leaseId}`, LeaseSchema, undefined, this.#userStop);
      return l.revoked_at !== null;
    } catch (err) {
      if (err instanceof CliError && err.exitCode === EXIT.NOT_LOGGED_IN && !this.#stopped) throw err;
      return false;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

/**
 * Why a connection closed: `reason` from its first error, if any; `failure` when this side closed
 * it with a CliError (relay-connection.ts); `endedHere` when stop() had been called by the time it
 * closed.
 */
interface Closed {
  reason: string;
  failure?: CliError;
  endedHere: boolean;
}

export function closedBy(err: RelayError | undefined, endedHere: boolean): Closed {
  if (!err) return { reason: 'connection closed by the relay', endedHere };
  // err.message may be the relay's own DISCONNECT description: it reaches the user's terminal.
  const reason = err.level === 'client-timeout' ? 'the relay stopped answering keepalives' : `connection error: ${peerText(err.message)}`;
  return { reason, failure: err instanceof CliError ? err : undefined, endedHere };
}

/** Whether a Client's socket is still open for writing (ssh2 refuses new channels otherwise: "Not connected"). */
function isOpen(client: Client): boolean {
  const sock = clientSocket(client);
  return sock.writable && !sock.destroyed;
}

function isPermanent(err: unknown): boolean {
  if (!(err instanceof CliError)) return false;
  if (err.exitCode === EXIT.NOT_LOGGED_IN || err.exitCode === EXIT.NOT_PERMITTED || err.exitCode === EXIT.USAGE) return true;
  if (!(err instanceof ApiError) || err.status < 400 || err.status >= 500) return false;
  return err.status !== 408 && err.status !== 429 && !(err.code !== undefined && TRANSIENT_4XX.has(err.code));
}

/**
 * The leases a connection presented that are kept to revoke when it ends: the newest
 * PRESENTED_KEPT. A renewal comes at two thirds of a lease's life, so at most two are live at
 * once; the list grew by one a renewal for the connection's life (days or months of them).
 */
const PRESENTED_KEPT = 8;

/** `ids` with `id`, the newest PRESENTED_KEPT. */
export function presented(ids: readonly string[] | undefined, id: string): string[] {
  return [...(ids ?? []), id].slice(-PRESENTED_KEPT);
}

/** How often a session polls for an exposure that is offline. */
const OFFLINE_POLL_MS = 1000;
