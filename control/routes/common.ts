import { z } from '@hono/zod-openapi';
import { PROBLEM_CONTENT_TYPE } from '../../protocol/error-codes.js';

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    code: z.string().describe('Stable error code (see protocol/error-codes.ts)'),
    detail: z.string().optional(),
    request_id: z.string(),
    error: z.string().optional().describe('RFC 6749/8628 error, on token endpoint errors'),
  })
  .openapi('Problem');

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
} as const;

/** What a public route that reads the database can answer besides success. */
export const serverErrorResponses = {
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

export const iso = (d: Date) => d.toISOString();
export const isoOrNull = (d: Date | null | undefined) => (d ? d.toISOString() : null);
