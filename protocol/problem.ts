import type { z } from 'zod';
import { num, obj, opt, read, str } from './check.js';
import { isErrorCode, type ErrorCode } from './error-codes.js';
import type { ProblemSchema } from './problem-schema.js';

/**
 * Reading the RFC 9457 problem+json body of API errors (its schema: problem-schema.ts). The CLI,
 * the relay and the web console read error answers through `readProblem`, never by picking
 * fields themselves. It checks the body with ProblemSchema's rules but without zod, which an
 * idle relay does not load (issue 11; protocol/relay-checks.test compares the two).
 */
const problem = obj({
  type: str(),
  title: str(),
  status: num({ int: true }),
  code: str(),
  detail: opt(str()),
  request_id: str(),
  error: opt(str()),
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

/** Reads an error answer (`status` >= 400, `body` parsed JSON or undefined) with ProblemSchema's rules. */
export function readProblem(status: number, body: unknown): ProblemSummary {
  const p = read(problem, body);
  if (!p.ok) return { status, code: undefined, knownCode: undefined, detail: `the server answered HTTP ${status}`, requestId: undefined };
  return {
    status,
    code: p.value.code,
    knownCode: isErrorCode(p.value.code) ? p.value.code : undefined,
    detail: p.value.detail ?? p.value.title,
    requestId: p.value.request_id,
  };
}

/** The body read with ProblemSchema's rules (unknown keys dropped), or undefined (for tests). */
export function checkProblem(body: unknown): z.infer<typeof ProblemSchema> | undefined {
  const p = read(problem, body);
  return p.ok ? p.value : undefined;
}
