/**
 * Stable error codes: the public contract of every API error (RFC 9457 problem+json `code`)
 * and of CLI exit handling. Messages are for humans; callers branch on these codes only.
 */
export const ERROR_CODES = {
  BAD_REQUEST: 400,
  INVALID_JSON: 400,
  /** A form body (the OAuth endpoints) that is not UTF-8, starts with a byte order mark, or has an escape that is not percent-encoded UTF-8. */
  INVALID_FORM: 400,
  VALIDATION_FAILED: 400,
  UNKNOWN_FIELD: 400,
  /** An allow list adds a name no user has (a typo would silently grant nothing); the detail names the first few. */
  UNKNOWN_USER: 400,
  /**
   * The request's Tunnel-Api level is one this control plane does not serve (protocol/api-level.ts):
   * a relay or CLI newer than the control plane, or too old for it. The detail names the levels served.
   */
  API_LEVEL_UNSUPPORTED: 400,
  UNAUTHENTICATED: 401,
  TOKEN_EXPIRED: 401,
  TOKEN_INVALID: 401,
  INVALID_CREDENTIALS: 401,
  FORBIDDEN: 403,
  NOT_IN_ACL: 403,
  SCOPE_DENIED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  /** Node's HTTP parser gave up waiting for the request's headers or body (its requestTimeout or headersTimeout). */
  REQUEST_TIMEOUT: 408,
  CONFLICT: 409,
  EXPOSURE_OFFLINE: 409,
  LEASE_KIND_MISMATCH: 400,
  /**
   * The lease would not fit in its OpenSSH certificate: an egress lease's targets take more than
   * protocol/lease-size.ts's EGRESS_TARGETS_MAX_BYTES. Asking again does not help; fewer targets per lease do.
   */
  LEASE_TOO_LARGE: 400,
  ALREADY_EXISTS: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  /** An Expect header other than 100-continue. */
  EXPECTATION_FAILED: 417,
  /** The request line and headers together exceed Node's --max-http-header-size (16 KiB by default). */
  HEADERS_TOO_LARGE: 431,
  RATE_LIMITED: 429,
  NO_NODE_AVAILABLE: 503,
  /** The control plane cannot reach its database right now; retry after Retry-After seconds. */
  DATABASE_UNAVAILABLE: 503,
  INTERNAL: 500,
  // RFC 8628 / RFC 6749 token endpoint errors keep their standard `error` member as well.
  AUTHORIZATION_PENDING: 400,
  SLOW_DOWN: 400,
  ACCESS_DENIED: 400,
  EXPIRED_TOKEN: 400,
  INVALID_GRANT: 400,
  UNSUPPORTED_GRANT_TYPE: 400,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function httpStatusFor(code: ErrorCode): number {
  return ERROR_CODES[code];
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
