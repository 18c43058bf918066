import type { z } from 'zod';
import type { ConnectionEvent, NodeEnrollRequestSchema, NodeHeartbeatRequestSchema } from '../protocol/node-api.js';
import {
  checkEventBatchResult,
  checkNodeEnrollResponse,
  checkNodeHeartbeatResponse,
  checkRevocationFeed,
  type EventBatchResult,
  type NodeEnrollResponse,
  type NodeHeartbeatResponse,
  type Reader,
  type RevocationFeed,
} from '../protocol/node-api-check.js';
import type { ErrorCode } from '../protocol/error-codes.js';
import { readProblem } from '../protocol/problem.js';
import { AnswerTooLargeError, requestJson, type JsonAnswer } from '../shared/json-http.js';
import { checkJwks, JWKS_PATH } from '../protocol/jwks-check.js';
import type { Jwks } from '../protocol/jwks.js';
import { describeTrustFailure, type TrustSettings } from '../protocol/tls-trust.js';
import { trustAgents } from '../protocol/tls-trust-https.js';
import { requestSignal } from '../shared/request-signal.js';
import { API_LEVEL, peerHeaders, TUNNEL_VERSION } from '../protocol/api-level.js';

export type NodeEnrollRequest = z.infer<typeof NodeEnrollRequestSchema>;
export type NodeHeartbeatRequest = z.infer<typeof NodeHeartbeatRequestSchema>;
export type { EventBatchResult, NodeEnrollResponse, NodeHeartbeatResponse, RevocationFeed };

export type ControlErrorCode = 'CONTROL_UNREACHABLE' | 'CONTROL_UNTRUSTED' | 'CONTROL_REJECTED' | 'CONTROL_BAD_RESPONSE';

/** A failed call to the control plane. `problemCode` is the API's stable `code` when it sent one. */
export class ControlError extends Error {
  override readonly name = 'ControlError';
  constructor(
    readonly code: ControlErrorCode,
    message: string,
    readonly opts: { status?: number; problemCode?: ErrorCode; retryable: boolean; cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, { cause: opts.cause });
  }
  get retryable(): boolean {
    return this.opts.retryable;
  }
}

/** The longest Retry-After taken from the control plane (longer ones are read as this). */
export const MAX_RETRY_AFTER_MS = 300_000;

/** An IMF-fixdate (RFC 9110 5.6.7), the HTTP-date form senders use: `Sun, 06 Nov 1994 08:49:37 GMT`. */
const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** An IMF-fixdate in ms since the epoch; undefined for anything else. */
function readHttpDate(v: string | string[] | undefined): number | undefined {
  if (typeof v !== 'string' || !IMF_FIXDATE.test(v.trim())) return undefined;
  const ms = Date.parse(v.trim());
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * A Retry-After in ms from now, at most MAX_RETRY_AFTER_MS; undefined for anything else. Either
 * delay-seconds (the form the control plane sends) or an HTTP-date (what a proxy or load balancer
 * in front of it may send): a date is measured from the answer's `date` header when it has one
 * (the server's clock against the server's clock, whatever this host's says), else from `now`; a
 * date already past is 0.
 */
export function readRetryAfter(v: string | string[] | undefined, date?: string | string[], now: number = Date.now()): number | undefined {
  if (typeof v !== 'string') return undefined;
  if (/^\d{1,9}$/.test(v.trim())) return Math.min(MAX_RETRY_AFTER_MS, Number(v.trim()) * 1000);
  const at = readHttpDate(v);
  if (at === undefined) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, at - (readHttpDate(date) ?? now)));
}

/** What the relay needs from the control plane; a fake implements it in tests. */
export interface ControlClient {
  enroll(req: NodeEnrollRequest): Promise<NodeEnrollResponse>;
  /** Resolves with the answer: its server_time is the control plane's clock (node/clock-offset.ts). */
  heartbeat(req: NodeHeartbeatRequest): Promise<NodeHeartbeatResponse>;
  /**
   * Revocations after `cursor` (from the start when undefined). With `waitMs`, the control
   * plane may hold the request until there is news or that time passed (a long poll).
   */
  revocations(cursor: string | undefined, waitMs?: number, signal?: AbortSignal): Promise<RevocationFeed>;
  /**
   * Sends a batch; resolves with the events control refused one by one (the others are
   * recorded). An answer without that list (an older control plane) accepted them all.
   */
  sendEvents(events: ConnectionEvent[]): Promise<EventBatchResult>;
  fetchJwks(): Promise<Jwks>;
}

export interface ControlClientOptions {
  /**
   * The control plane: one URL, or several replicas comma-separated. Calls go to the replica that
   * last answered (the first at start) and move on to the next when one cannot be reached
   * (refused, reset, timed out), so a dead replica costs one failed connect per call at most.
   * A certificate that fails verification is never skipped over.
   */
  baseUrl: string;
  /** The node credential, once enrolled. */
  nodeToken: () => string | undefined;
  /** How to verify the control plane's certificate (system CAs when empty). */
  trust?: TrustSettings;
  timeoutMs?: number;
  /** The largest answer read (shared/json-http.ts's MAX_ANSWER_BYTES by default). */
  maxAnswerBytes?: number;
  /** What the relay states on every request (protocol/api-level.ts): this build's by default; tests state others. */
  version?: string;
  apiLevel?: number;
}

export function createControlClient(opts: ControlClientOptions): ControlClient & { close(): Promise<void> } {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  // node:https, not undici: the relay's idle footprint (protocol/tls-trust-https.ts).
  const agents = trustAgents(opts.trust ?? {}, timeoutMs);
  const baseUrls = opts.baseUrl.split(',').filter((u) => u.length > 0);
  const agentFor = baseUrls.map((u) => agents.for(new URL(u)));
  let preferred = 0;
  const headers = peerHeaders('node', opts.apiLevel ?? API_LEVEL, opts.version ?? TUNNEL_VERSION);

  async function call<T>(
    method: 'GET' | 'POST',
    path: string,
    /** The answer's check (protocol/node-api-check.ts: the API's schemas, read without zod); null: not read. */
    check: Reader<T> | null,
    body?: unknown,
    auth = true,
    /** Added to the timeouts for a request the server may hold (a long poll). */
    holdMs = 0,
    /** Ends the request early (a relay stopping while its long poll is held). */
    abort?: AbortSignal,
  ): Promise<T> {
    let res: JsonAnswer | undefined;
    let lastErr: unknown;
    for (let i = 0; i < baseUrls.length && res === undefined; i++) {
      const index = (preferred + i) % baseUrls.length;
      const signal = requestSignal(abort, timeoutMs + holdMs);
      try {
        res = await requestJson(`${baseUrls[index]}${path}`, {
          method,
          token: auth ? opts.nodeToken() : undefined,
          body,
          headers,
          agent: agentFor[index]!,
          ...(opts.maxAnswerBytes ? { maxBytes: opts.maxAnswerBytes } : {}),
          timeoutMs: timeoutMs + holdMs,
          signal: signal.signal,
        });
        preferred = index;
      } catch (err) {
        const untrusted = describeTrustFailure(err);
        if (untrusted) throw new ControlError('CONTROL_UNTRUSTED', `control plane not trusted: ${untrusted}`, { retryable: true, cause: err });
        if (err instanceof AnswerTooLargeError) throw new ControlError('CONTROL_BAD_RESPONSE', `${err.message}: ${method} ${path}`, { retryable: true, cause: err });
        lastErr = err;
      } finally {
        signal.done();
      }
    }
    if (res === undefined) {
      throw new ControlError('CONTROL_UNREACHABLE', `control plane unreachable: ${method} ${path}`, { retryable: true, cause: lastErr });
    }
    if (res.unreadable !== undefined) {
      throw new ControlError('CONTROL_BAD_RESPONSE', `unreadable response: ${method} ${path}`, { status: res.status, retryable: true, cause: res.unreadable });
    }
    const json = res.body;
    if (res.status >= 400) {
      const problem = readProblem(res.status, json);
      const retryAfterMs = readRetryAfter(res.headers['retry-after'], res.headers['date']);
      throw new ControlError('CONTROL_REJECTED', `control plane answered ${res.status}: ${method} ${path}: ${problem.detail}`, {
        status: res.status,
        problemCode: problem.knownCode,
        retryable: res.status >= 500 || res.status === 429,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
    }
    if (check === null) return undefined as T;
    const read = check(json);
    if (read === undefined) {
      throw new ControlError('CONTROL_BAD_RESPONSE', `unexpected response shape: ${method} ${path}`, { status: res.status, retryable: false });
    }
    return read;
  }

  return {
    enroll: (req) => call('POST', '/v1/nodes/enroll', checkNodeEnrollResponse, req, false),
    heartbeat: (req) => call('POST', '/v1/nodes/self/heartbeat', checkNodeHeartbeatResponse, req),
    revocations: (cursor, waitMs = 0, signal) => {
      const q = new URLSearchParams();
      if (cursor !== undefined) q.set('after', cursor);
      const wait = Math.floor(waitMs / 1000);
      if (wait > 0) q.set('wait', String(wait));
      const qs = q.toString();
      return call('GET', `/v1/nodes/self/revocations${qs ? `?${qs}` : ''}`, checkRevocationFeed, undefined, true, wait * 1000, signal);
    },
    sendEvents: (events) =>
      call('POST', '/v1/nodes/self/events', (v) => checkEventBatchResult(v) ?? { accepted: events.length, rejected: [] }, { events }),
    fetchJwks: () => call('GET', JWKS_PATH, checkJwks, undefined, false),
    close: async () => {
      agents.destroy();
    },
  };
}
