import type { MiddlewareHandler } from 'hono';
import type { ZodType } from 'zod';
import { AppError } from '../lib/errors.js';
import type { AppEnv } from './env.js';
import { validationError } from './problem.js';

/**
 * The OAuth endpoints (token, RFC 6749 §3.2; device authorization, RFC 8628 §3.1) speak what
 * standard clients send and expect (issue 9, finding 8): request bodies as
 * application/x-www-form-urlencoded (JSON is accepted too, as the CLI sends it), and errors as
 * RFC 6749 §5.2 application/json with `error` and `error_description` (plus this API's problem
 * members, so one parser reads both).
 */
export const OAUTH_PATHS = ['/v1/auth/token', '/v1/auth/device'] as const;

const FORM_RE = /^application\/x-www-form-urlencoded(\s*;|$)/i;

/** Marks the request as an OAuth endpoint's: form bodies allowed, errors in the RFC 6749 shape. */
export const oauthEndpoint: MiddlewareHandler<AppEnv> = async (c, next) => {
  c.set('oauth', true);
  await next();
};

export function isFormBody(contentType: string | undefined): boolean {
  return FORM_RE.test(contentType ?? '');
}

/**
 * Reads the body (form or JSON; none counts as `{}`), runs `precheck` on the raw fields, then
 * validates with `schema` and leaves the result in `c.get('oauthRequest')`. A form parameter sent
 * twice is invalid_request (RFC 6749 §3.2).
 */
export function oauthBody(schema: ZodType, precheck?: (raw: Record<string, unknown>) => void): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    let raw: Record<string, unknown> = {};
    const type = c.req.header('content-type');
    if (isFormBody(type)) {
      // The text as http/request-guards.ts `requireJson` checked it (UTF-8, no byte order mark).
      for (const [k, v] of formFields(await c.req.text())) {
        if (Object.hasOwn(raw, k)) throw new AppError('VALIDATION_FAILED', `parameter "${k.slice(0, 64)}" is repeated`);
        raw[k] = v;
      }
    } else if (type) {
      const parsed: unknown = await c.req.json();
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new AppError('VALIDATION_FAILED', 'body must be an object');
      raw = parsed as Record<string, unknown>;
    }
    precheck?.(raw);
    const result = schema.safeParse(raw);
    if (!result.success) throw validationError('body', result.error);
    c.set('oauthRequest', result.data);
    await next();
  };
}

/**
 * The fields of an application/x-www-form-urlencoded body (WHATWG URL's parser: `&`-separated,
 * `+` a space, percent escapes), except that an escape that is not percent-encoded UTF-8 (`%FF`,
 * `%zz`) is INVALID_FORM: URLSearchParams reads the first as U+FFFD and keeps the second as
 * written, so two different values would reach the grant as one, or as what another reader of
 * the body does not read.
 */
export function formFields(text: string): [string, string][] {
  const fields: [string, string][] = [];
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    fields.push([decodeFormPart(eq < 0 ? pair : pair.slice(0, eq)), decodeFormPart(eq < 0 ? '' : pair.slice(eq + 1))]);
  }
  return fields;
}

function decodeFormPart(s: string): string {
  const spaced = s.replaceAll('+', ' ');
  try {
    return decodeURIComponent(spaced);
  } catch (cause) {
    throw new AppError('INVALID_FORM', 'a form field has an escape that is not percent-encoded UTF-8', { cause });
  }
}
