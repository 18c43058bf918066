import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ZodError } from 'zod';
import { httpStatusFor, PROBLEM_CONTENT_TYPE, type ErrorCode } from '../../protocol/error-codes.js';
import type { Problem } from '../../protocol/problem.js';
import { AppError } from '../lib/errors.js';
import { DATABASE_RETRY_AFTER_SECONDS, isConcurrentConflict, isDatabaseUnavailable } from '../db/unavailable.js';
import type { AppEnv } from './env.js';
import type { Deps } from '../deps.js';

const TITLES: Partial<Record<ErrorCode, string>> = {
  VALIDATION_FAILED: 'The request does not match the schema',
  UNKNOWN_FIELD: 'The request has a field this API does not know',
  API_LEVEL_UNSUPPORTED: 'This control plane does not serve the API level of this client',
  INVALID_JSON: 'The request body is not valid JSON',
  INVALID_FORM: 'The request body is not a valid form',
  UNAUTHENTICATED: 'Authentication required',
  NOT_FOUND: 'Not found',
  LEASE_TOO_LARGE: 'The lease would not fit in its certificate',
  INTERNAL: 'Internal error',
  DATABASE_UNAVAILABLE: 'Database unavailable',
};

/** Renders any error as RFC 9457 problem+json with a stable `code` and the request id. */
export function problemResponse(c: Context<AppEnv>, err: unknown): Response {
  const requestId = c.get('requestId') ?? 'unknown';
  let appErr: AppError;
  if (err instanceof AppError) appErr = err;
  else if (err instanceof HTTPException && err.status === 413) appErr = new AppError('PAYLOAD_TOO_LARGE', 'request body too large');
  else if (err instanceof HTTPException && err.status < 500) appErr = new AppError('BAD_REQUEST', 'bad request');
  else if (isConcurrentConflict(err)) {
    c.get('logger')?.warn('database deadlock, serialization failure or a row deleted meanwhile', { err, requestId });
    appErr = new AppError('CONFLICT', 'the request ran into a concurrent change (a database deadlock, a serialization failure, or a row it refers to deleted meanwhile); nothing was written, retry', {
      retryable: true,
    });
  } else if (isDatabaseUnavailable(err)) {
    // A database restart or failover, not a bug: a warning without the stack, and a retryable 503.
    c.get('logger')?.warn('database unavailable', { err, requestId });
    const deps = c.get('deps') as Deps | undefined;
    deps?.databaseOutages.noteUnreachable(deps.clock.now());
    appErr = new AppError('DATABASE_UNAVAILABLE', 'the control plane cannot reach its database; retry shortly', {
      retryable: true,
      headers: { 'retry-after': String(DATABASE_RETRY_AFTER_SECONDS) },
    });
  } else {
    c.get('logger')?.error('unhandled error', { err, requestId });
    appErr = new AppError('INTERNAL', 'internal error; the request id identifies it in the logs');
  }
  const oauth = c.get('oauth') === true;
  // RFC 6749 §5.2: token endpoint errors are 400 (invalid_client aside), whatever this API's code.
  const status = oauth && httpStatusFor(appErr.code) === 401 ? 400 : httpStatusFor(appErr.code);
  const body: Problem & { error_description?: string } = {
    ...problemBody(appErr.code, appErr.message, requestId, status),
    ...(appErr.oauthError ? { error: appErr.oauthError } : {}),
  };
  if (oauth) {
    body.error = appErr.oauthError ?? oauthErrorFor(appErr.code);
    body.error_description = appErr.message;
  }
  const headers: Record<string, string> = {
    'content-type': oauth ? 'application/json' : PROBLEM_CONTENT_TYPE,
    'x-request-id': requestId,
    ...appErr.headers,
  };
  if (oauth) Object.assign(headers, { 'cache-control': 'no-store', pragma: 'no-cache' });
  if (status === 401 && !headers['www-authenticate']) headers['www-authenticate'] = 'Bearer';
  return new Response(JSON.stringify(body), { status, headers });
}

/** The problem+json body of `code` (its status unless `status` says otherwise: the OAuth endpoints' 400s). */
export function problemBody(code: ErrorCode, detail: string, requestId: string, status = httpStatusFor(code)): Problem {
  return {
    type: `urn:tunnel:problem:${code.toLowerCase().replaceAll('_', '-')}`,
    title: TITLES[code] ?? code.replaceAll('_', ' ').toLowerCase(),
    status,
    code,
    detail,
    request_id: requestId,
  };
}

/** How many unknown fields a problem's detail names. */
const UNKNOWN_FIELDS_NAMED = 5;

/** Maps a zod validation failure to an AppError; unknown fields get their own code. */
export function validationError(target: string, error: ZodError): AppError {
  const unknown = error.issues.find((i) => i.code === 'unrecognized_keys');
  if (unknown) {
    const where = unknown.path.length ? unknown.path.join('.') : target;
    // The names are the client's: a few, each cut short (a body may name thousands, or one of 60 KB).
    const named = unknown.keys.slice(0, UNKNOWN_FIELDS_NAMED).map((k) => `"${k.slice(0, 64)}"`);
    const more = unknown.keys.length > UNKNOWN_FIELDS_NAMED ? ` and ${unknown.keys.length - UNKNOWN_FIELDS_NAMED} more` : '';
    return new AppError('UNKNOWN_FIELD', `unknown field ${named.join(', ')}${more} in ${where}`);
  }
  const issue = error.issues[0];
  const path = issue?.path.length ? issue.path.join('.') : target;
  return new AppError('VALIDATION_FAILED', `${path}: ${issue?.message ?? 'invalid'}`);
}

/** The RFC 6749 §5.2 / RFC 8628 §3.5 `error` for an error without one of its own. */
export function oauthErrorFor(code: ErrorCode): string {
  switch (code) {
    case 'INTERNAL':
      return 'server_error';
    case 'RATE_LIMITED':
    case 'DATABASE_UNAVAILABLE':
      return 'temporarily_unavailable';
    case 'INVALID_CREDENTIALS':
      return 'invalid_grant';
    default:
      return 'invalid_request';
  }
}
