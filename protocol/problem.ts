import { z } from 'zod';
import { isErrorCode, type ErrorCode } from './error-codes.js';

/**
 * The RFC 9457 problem+json body of every API error: the one definition. The control plane
 * documents it (OpenAPI component `Problem`) and renders it; the CLI, the relay and the web
 * console read error answers through `readProblem`, never by picking fields themselves.
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

/** A problem as the control plane makes it: its code is one of ours. */
export type Problem = Omit<z.infer<typeof ProblemSchema>, 'code'> & { code: ErrorCode };

/** What a client learns from an error answer. */
export interface ProblemSummary {
  status: number;
  /** The body's `code` as sent (a newer server may send codes this client does not know). */
  code: string | undefined;
  /** `code`, when it is one this version knows. */
  knownCode: ErrorCode | undefined;
  /** For people: the problem's detail (or title), else a line naming the HTTP status. */
  detail: string;
  requestId: string | undefined;
}

/** Reads an error answer (`status` >= 400, `body` parsed JSON or undefined) through ProblemSchema. */
export function readProblem(status: number, body: unknown): ProblemSummary {
  const p = ProblemSchema.safeParse(body);
  if (!p.success) return { status, code: undefined, knownCode: undefined, detail: `the server answered HTTP ${status}`, requestId: undefined };
  return {
    status,
    code: p.data.code,
    knownCode: isErrorCode(p.data.code) ? p.data.code : undefined,
    detail: p.data.detail ?? p.data.title,
    requestId: p.data.request_id,
  };
}
