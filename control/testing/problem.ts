import assert from 'node:assert/strict';
import { isErrorCode, PROBLEM_CONTENT_TYPE, type ErrorCode } from '../../protocol/error-codes.js';

/** What `TestApp.call` returns, and what `readResult` makes of a raw `Response`. */
export interface CallResult {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
  body: any;
  headers: Headers;
}

/** Reads a `Response` (e.g. from `app.fetch`) into the same shape `TestApp.call` returns. */
export async function readResult(res: Response): Promise<CallResult> {
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body, headers: res.headers };
}

/**
 * Asserts an RFC 9457 problem response: the HTTP status, `application/problem+json` (or, from the
 * OAuth endpoints, RFC 6749 §5.2 `application/json` with `error`), the stable
 * `code` (never the message text) and a `request_id` that matches the `x-request-id` header.
 */
export function assertProblem(res: CallResult, status: number, code: ErrorCode): void {
  const where = `${res.status} ${JSON.stringify(res.body)}`;
  assert.equal(res.status, status, `status: ${where}`);
  // The OAuth endpoints answer RFC 6749 §5.2 JSON (`error`, `error_description`) with the same members.
  const oauth = typeof res.body?.error === 'string' && typeof res.body?.error_description === 'string';
  const type = oauth ? 'application/json' : PROBLEM_CONTENT_TYPE;
  assert.match(res.headers.get('content-type') ?? '', new RegExp(`^${type.replace('+', '\\+')}`), `content type: ${where}`);
  assert.ok(res.body && typeof res.body === 'object', `problem body is JSON: ${where}`);
  assert.equal(res.body.code, code, `code: ${where}`);
  assert.ok(isErrorCode(res.body.code));
  assert.equal(res.body.status, status);
  assert.equal(typeof res.body.title, 'string');
  assert.match(res.body.type, /^urn:tunnel:problem:[a-z-]+$/);
  assert.equal(typeof res.body.request_id, 'string');
  assert.ok(res.body.request_id.length > 0, 'request_id is set');
  assert.equal(res.headers.get('x-request-id'), res.body.request_id, 'request_id matches x-request-id');
  if (status === 401) assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
}

/** Asserts a successful JSON response with the given status (shows the problem body otherwise). */
export function assertOk(res: CallResult, status = 200): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status} ${JSON.stringify(res.body)}`);
}

/** Asserts that none of `secrets` appears anywhere in `haystack` (a body, a log, serialized events). */
export function assertNoSecrets(haystack: unknown, secrets: string[], what = 'output'): void {
  const text = typeof haystack === 'string' ? haystack : JSON.stringify(haystack);
  for (const s of secrets) {
    assert.ok(s.length >= 8, 'secrets to look for must be long enough to be meaningful');
    assert.ok(!text.includes(s), `${what} contains a secret (${s.slice(0, 6)}...)`);
  }
}
