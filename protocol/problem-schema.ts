import { z } from 'zod';

/**
 * The RFC 9457 problem+json body of every API error: the one definition. The control plane
 * documents it (OpenAPI component `Problem`) and renders it; the CLI, the relay and the web
 * console read error answers through problem.ts's `readProblem` (a plain check with these rules,
 * without zod for the relay: issue 11; protocol/relay-checks.test compares the two).
 */
export const ProblemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  code: z.string().describe('Stable error code (see protocol/error-codes.ts)'),
  detail: z.string().optional(),
  request_id: z.string(),
  error: z.string().optional().describe('RFC 6749/8628 error, on token endpoint errors'),
});
