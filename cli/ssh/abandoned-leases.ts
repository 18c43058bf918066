import type { KeyObject } from 'node:crypto';
import { ApiError } from '../api-client.js';
import type { Session } from '../session.js';
import { keyFingerprint, leasesOfKeys, mayHaveIssued } from './unanswered-lease.js';

/** Abandoned leases (and unanswered keys) waiting to be revoked: the control plane may be unreachable for a while. */
const MAX_ABANDONED = 64;

/**
 * The leases a LeaseSupervisor no longer uses (of a connection that ended or never came up, or a
 * renewal the relay never took) and the keys of its lease requests whose answer never came (the
 * control plane may have issued their leases all the same), revoked in rounds: at the
 * supervisor's next answer from the control plane and on stop. Each set keeps its newest
 * MAX_ABANDONED: the oldest leases expire anyway.
 */
export class AbandonedLeases {
  readonly #session: Pick<Session, 'call'>;
  #abandoned = new Set<string>();
  /**
   * Keys (fingerprints) of lease requests whose answer never came (stopped or cut off in flight):
   * the control plane may have issued their leases. Looked up and revoked with the abandoned ones.
   */
  #unanswered = new Set<string>();
  #revoking: Promise<void> | undefined;

  constructor(session: Pick<Session, 'call'>) {
    this.#session = session;
  }

  /** Lease ids not yet revoked. */
  get abandoned(): readonly string[] {
    return [...this.#abandoned];
  }

  /** Keys of lease requests never answered, not yet looked up. */
  get unanswered(): readonly string[] {
    return [...this.#unanswered];
  }

  /** Whether there is anything to revoke or look up. */
  get pending(): boolean {
    return this.#abandoned.size > 0 || this.#unanswered.size > 0;
  }

  /** Leases to revoke. */
  add(ids: readonly string[]): void {
    for (const id of ids) this.#abandoned.add(id);
    bound(this.#abandoned);
  }

  /**
   * A lease request for `publicKey` failed with `err`: when it was stopped or cut off after it
   * was sent (mayHaveIssued), its key is kept, since the control plane may have issued it.
   */
  requestFailed(publicKey: KeyObject, err: unknown): void {
    if (!mayHaveIssued(err)) return;
    this.#unanswered.add(keyFingerprint(publicKey));
    bound(this.#unanswered);
  }

  /**
   * Revokes abandoned leases, one call at a time; stops at the first failure (tried again later).
   * First, the leases issued for keys whose lease request was never answered are looked up among
   * the caller's active leases and abandoned too (a lease committed only after that lookup stays
   * until it expires; nobody holds its key). One round at a time: a call meanwhile joins it.
   */
  revoke(): Promise<void> {
    this.#revoking ??= (async () => {
      if (this.#unanswered.size) {
        const keys = new Set(this.#unanswered);
        try {
          this.add(await leasesOfKeys(this.#session, keys));
        } catch (err) {
          // Refused (not ours to list): nothing more to do. Anything else: try later.
          if (!refusedForGood(err)) return;
        }
        for (const k of keys) this.#unanswered.delete(k);
      }
      // Ids added meanwhile are taken too; each success removes one, a failure ends the round.
      for (let id = first(this.#abandoned); id !== undefined; id = first(this.#abandoned)) {
        try {
          await this.#session.call('DELETE', `/v1/leases/${id}`, null);
        } catch (err) {
          // Gone or not ours to revoke: nothing more to do. Anything else: try later.
          if (!refusedForGood(err)) return;
        }
        this.#abandoned.delete(id);
      }
    })().finally(() => {
      this.#revoking = undefined;
    });
    return this.#revoking;
  }
}

/** A client error other than a rate limit: asking again gets the same answer. */
function refusedForGood(err: unknown): boolean {
  return err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 429;
}

/** Oldest first out when the control plane has been unreachable for long: their leases expire anyway. */
function bound(set: Set<string>): void {
  for (const x of set) {
    if (set.size <= MAX_ABANDONED) break;
    set.delete(x);
  }
}

function first(set: Set<string>): string | undefined {
  for (const x of set) return x;
  return undefined;
}
