/**
 * Whether an error means the database cannot be reached right now (a restart, a failover, a
 * network cut) rather than that the request or the code is wrong. Such a request is answered
 * 503 DATABASE_UNAVAILABLE with Retry-After, so clients retry instead of seeing a 500.
 *
 * postgres-js (the driver behind drizzle) reports a lost connection with its own codes
 * (CONNECTION_CLOSED, CONNECTION_DESTROYED, CONNECT_TIMEOUT, CONNECTION_ENDED) or the socket's
 * errno (ECONNREFUSED while the server is down), and a server that is shutting down or starting
 * with SQLSTATE 57P01-57P03 or class 08. It opens a fresh connection for the next query by
 * itself, so the control plane recovers without a restart. Drizzle wraps each of these in a
 * DrizzleQueryError whose `cause` is the driver's error, hence the walk down the cause chain.
 */
const DRIVER_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECTION_ENDED', 'CONNECT_TIMEOUT']);
const ERRNO_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);

export function isDatabaseUnavailable(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; depth < 6 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (DRIVER_CODES.has(code) || ERRNO_CODES.has(code) || SQLSTATES.has(code)) return true;
      // Class 08: connection exception (the server went away or refused the session).
      if (/^08[0-9A-Z]{3}$/.test(code)) return true;
    }
    e = e.cause;
  }
  return false;
}

/** Seconds a client should wait before retrying (a Postgres restart takes a few). */
export const DATABASE_RETRY_AFTER_SECONDS = 2;

/**
 * Whether an error is Postgres giving up on a statement because of concurrent ones: a deadlock
 * (40P01; lease issuance and the revocations share row locks, services/lease-insert.ts), a
 * serialization failure (40001), or a foreign key violation (23503): a row the statement refers
 * to was deleted after the request read it (a relay removed while a lease for it was issued,
 * services/node-removal.ts). Nothing was written; the same request again is decided on what is
 * there now, so it is answered 409 CONFLICT, retryable, rather than a 500.
 */
export function isConcurrentConflict(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; depth < 6 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === '40P01' || code === '40001' || code === '23503') return true;
    e = e.cause;
  }
  return false;
}
