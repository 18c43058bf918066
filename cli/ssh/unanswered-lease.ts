import type { KeyObject } from 'node:crypto';
import { LeaseListSchema } from '../../protocol/api-types.js';
import { fingerprintSha256, publicKeyBlob } from '../../protocol/ssh-key.js';
import { ApiError } from '../api-client.js';
import type { Session } from '../session.js';
import { CliError, EXIT, STOPPED } from '../errors.js';

/**
 * How many of the caller's newest active leases are searched for a lease whose answer never came:
 * the lease was issued moments before, so it is among the newest unless this many were issued
 * since (by other processes of the same login).
 */
export const SEARCHED_LEASES = 100;

/** The fingerprint a lease records for the key it certifies (its `ssh_key`), of an ed25519 public key. */
export function keyFingerprint(publicKey: KeyObject): string {
  return fingerprintSha256(publicKeyBlob(publicKey));
}

/**
 * Whether a lease request that failed with `err` may have been issued all the same: it was sent
 * and its answer never came (stopped while in flight, or cut off: a timeout, a reset, no replica
 * answered). An answer (ApiError), or anything that failed before the request went out (the login
 * refused), issued nothing.
 */
export function mayHaveIssued(err: unknown): boolean {
  if (!(err instanceof CliError) || err instanceof ApiError) return false;
  return err.code === STOPPED || err.exitCode === EXIT.UNREACHABLE;
}

/**
 * The ids of the caller's active leases issued for one of `fingerprints` (keys of lease requests
 * whose answer never came, whose private halves never left this process), from its newest
 * SEARCHED_LEASES (GET /v1/leases?active=true lists the caller's own leases, a service token's
 * those it issued). Throws what the listing throws.
 */
export async function leasesOfKeys(session: Pick<Session, 'call'>, fingerprints: ReadonlySet<string>, signal?: AbortSignal): Promise<string[]> {
  if (!fingerprints.size) return [];
  const res = await session.call('GET', `/v1/leases?active=true&limit=${SEARCHED_LEASES}`, LeaseListSchema, undefined, signal);
  return res.leases.filter((l) => fingerprints.has(l.ssh_key)).map((l) => l.id);
}

/** How long a one-shot command that stops spends looking for and revoking a lease it may have got. */
export const REVOKE_UNANSWERED_MS = 3_000;

/**
 * For a one-shot command (tunnel cert) whose lease request for `publicKey` failed with `err`:
 * when the lease may have been issued all the same (mayHaveIssued), finds it among the caller's
 * active leases and revokes it, best effort, within REVOKE_UNANSWERED_MS (not cancelled by the
 * stop: it is how the stop cleans up). Resolves to the ids revoked.
 */
export async function revokeUnanswered(session: Pick<Session, 'call'>, publicKey: KeyObject, err: unknown): Promise<string[]> {
  if (!mayHaveIssued(err)) return [];
  const signal = AbortSignal.timeout(REVOKE_UNANSWERED_MS);
  const revoked: string[] = [];
  try {
    for (const id of await leasesOfKeys(session, new Set([keyFingerprint(publicKey)]), signal)) {
      await session.call('DELETE', `/v1/leases/${id}`, null, undefined, signal);
      revoked.push(id);
    }
  } catch {
    // Unreachable, or out of time: the lease expires by itself, and nobody holds its key.
  }
  return revoked;
}
