import { z, type RouteConfig } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import type { ZodType } from 'zod';
import { PROBLEM_CONTENT_TYPE } from '../../protocol/error-codes.js';
import { ProblemSchema as ProtocolProblemSchema } from '../../protocol/problem-schema.js';
import { guard, type GuardOptions } from '../http/authenticate.js';
import type { App, AppEnv } from '../http/env.js';
import type { Action } from '../services/authz.js';

/** The problem envelope (protocol/problem.ts), as the OpenAPI component `Problem`. */
export const ProblemSchema = ProtocolProblemSchema.openapi('Problem');

export const problem = (description: string) => ({
  description,
  content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema } },
});

/** Error responses every authenticated JSON route may give. */
export const errorResponses = {
  400: problem('Invalid request (VALIDATION_FAILED, UNKNOWN_FIELD, INVALID_JSON)'),
  401: problem('Missing, expired or invalid token'),
  403: problem('Not permitted'),
  404: problem('Not found'),
  409: problem('Conflict'),
  413: problem('Body too large'),
  415: problem('Body is not JSON'),
  429: problem('Rate limited (RATE_LIMITED); Retry-After says when to try again'),
  500: problem('Internal error (INTERNAL); the request_id identifies it in the server log'),
  503: problem('The database cannot be reached right now (DATABASE_UNAVAILABLE); retry after Retry-After seconds'),
} as const;

/** Error responses of a route that takes an allow list of user names. */
export const allowListErrorResponses = {
  ...errorResponses,
  400: problem('Invalid request (VALIDATION_FAILED, UNKNOWN_FIELD, INVALID_JSON), or an allow list adds a name no user has (UNKNOWN_USER)'),
} as const;

/** RFC 6749 §5.2 error body of the OAuth endpoints: `error` and `error_description`, plus the problem members. */
export const OAuthErrorSchema = ProblemSchema.extend({
  error: z.string().describe('RFC 6749 §5.2 / RFC 8628 §3.5 error code'),
  error_description: z.string(),
}).openapi('OAuthError');

const oauthProblem = (description: string) => ({
  description,
  content: { 'application/json': { schema: OAuthErrorSchema } },
});

/** Error responses of the OAuth endpoints (token and device authorization). */
export const oauthErrorResponses = {
  400: oauthProblem('invalid_request, invalid_grant, unsupported_grant_type, authorization_pending, slow_down, access_denied, expired_token'),
  413: oauthProblem('Body too large (invalid_request)'),
  415: oauthProblem('Body is neither a form nor JSON (invalid_request)'),
  429: oauthProblem('Rate limited (temporarily_unavailable); Retry-After says when to try again'),
  500: oauthProblem('Internal error (server_error)'),
  503: oauthProblem('The database cannot be reached right now (temporarily_unavailable); retry after Retry-After seconds'),
} as const;

/**
 * Publishes a request schema as a component (for bodies that routes validate themselves, such as
 * the OAuth endpoints' form-or-JSON bodies, which would otherwise get zod-openapi's validators).
 */
export function registerRequestComponent(app: App, name: string, schema: ZodType): void {
  const { $schema: _drop, ...jsonSchema } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  app.openAPIRegistry.registerComponent('schemas', name, jsonSchema);
}

/** A request body of an OAuth endpoint: a form (RFC 6749 §3.2) or JSON, both with the component `name`. */
export const oauthRequestBody = (name: string) => ({
  required: true,
  content: {
    'application/x-www-form-urlencoded': { schema: { $ref: `#/components/schemas/${name}` } },
    'application/json': { schema: { $ref: `#/components/schemas/${name}` } },
  },
});

/** What a public route that reads the database can answer besides success. */
export const serverErrorResponses = {
  400: problem('A query parameter this route does not know (UNKNOWN_FIELD)'),
  500: errorResponses[500],
} as const;

export const json = <T extends z.ZodType>(schema: T, description = 'OK') => ({
  description,
  content: { 'application/json': { schema } },
});

export const jsonBody = <T extends z.ZodType>(schema: T) => ({
  required: true,
  content: { 'application/json': { schema } },
});

export const bearerSecurity = [{ bearer: [] }];

/**
 * A whole-number query parameter (a page size), written in decimal digits. z.coerce.number()
 * took whatever Number() takes (`0x10`, `1e3`, ` 5`, `+5`, `5.0`), so a proxy or client that
 * checks the documented integer read another value than this server did. Documented as the
 * integer it is.
 */
export const queryInt = (min: number, max: number, dflt: number) =>
  z
    .string()
    .regex(/^\d{1,10}$/, 'must be a whole number in decimal digits')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max))
    .default(dflt)
    .openapi({ type: 'integer', minimum: min, maximum: max, default: dflt });

export const iso = (d: Date) => d.toISOString();
export const isoOrNull = (d: Date | null | undefined) => (d ? d.toISOString() : null);

/**
 * A route config guarded by the policy: its middleware authenticates the credential its actions
 * need and, for a single action that needs no resource, asks the policy right there (the service
 * asks for the others, with the resource). The operation lists its actions as `x-tunnel-actions`
 * in /openapi.json; the authorization matrix test reads them. `rateLimit`: the guard counts each
 * authenticated caller's attempt against it (in the caller lookup) and refuses it over the limit;
 * `exposureOf`: the exposure the request names is read in the same lookup (http/authenticate.ts).
 * `extraMiddleware` runs after the guard.
 */
export function guarded<
  const C extends Omit<RouteConfig, 'middleware'> & { extraMiddleware?: MiddlewareHandler<AppEnv>[] } & GuardOptions,
>(
  actions: Action | readonly Action[],
  config: C,
): Omit<C, 'extraMiddleware' | keyof GuardOptions> & { middleware: MiddlewareHandler<AppEnv>[]; 'x-tunnel-actions': Action[] } {
  const list = typeof actions === 'string' ? [actions] : [...actions];
  const { extraMiddleware, rateLimit, exposureOf, lastSeenLease, ...rest } = config;
  // A route that names no query parameters takes none: one it does not know is UNKNOWN_FIELD, as
  // on the list routes (whose queries are strict objects), instead of being silently ignored.
  const request = rest.request?.query ? rest.request : { ...rest.request, query: NO_QUERY };
  return {
    ...rest,
    request,
    middleware: [guard(list, { rateLimit, exposureOf, lastSeenLease }), ...(extraMiddleware ?? [])],
    'x-tunnel-actions': list,
  };
}

/** The query of a route that takes no parameters (it adds none to /openapi.json). */
const NO_QUERY = z.strictObject({});
