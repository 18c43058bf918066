import { setTimeout as delay } from 'node:timers/promises';
import { Agent, type Dispatcher } from 'undici';
import type { z } from 'zod';
import { readProblem } from '../protocol/problem.js';
import { AnswerTooLargeError, MAX_ANSWER_BYTES, type JsonAnswer } from '../shared/json-http.js';
import { requestJsonUndici } from '../shared/json-http-undici.js';
import { requestSignal } from '../shared/request-signal.js';
import type { Context } from './context.js';
import { CliError, EXIT, STOPPED, type ExitCode } from './errors.js';
import { resolveTrust, serverUrls } from './settings.js';
import { checkServerUrl, describeTrustFailure, TrustError, type TrustSettings } from '../protocol/tls-trust.js';
import { trustConnector } from '../protocol/tls-trust-undici.js';
import { peerHeaders } from '../protocol/api-level.js';

const TIMEOUT_MS = 15_000;
/**
 * The longest one replica has for a whole answer: TIMEOUT_MS bounds the wait for the headers and
 * between two chunks of the body, and a server sending a byte every 14 s held a request for as
 * long as it liked.
 */
const ANSWER_TIMEOUT_MS = 60_000;
/** How long a request keeps retrying while the control plane answers 503 DATABASE_UNAVAILABLE. */
const UNAVAILABLE_BUDGET_MS = 30_000;
/** The longest single wait between those retries, whatever Retry-After says. */
const MAX_RETRY_AFTER_MS = 5_000;
/** Sent with every request: what this CLI is (protocol/api-level.ts). */
const PEER_HEADERS = peerHeaders('cli');

/** Exit code for an API error code (protocol/error-codes.ts). */
export function exitCodeFor(code: string | undefined, status: number): ExitCode {
  switch (code) {
    case 'UNAUTHENTICATED':
    case 'TOKEN_EXPIRED':
    case 'TOKEN_INVALID':
    case 'INVALID_GRANT':
      return EXIT.NOT_LOGGED_IN;
    case 'FORBIDDEN':
    case 'NOT_IN_ACL':
    case 'SCOPE_DENIED':
    case 'ACCESS_DENIED':
      return EXIT.NOT_PERMITTED;
    case 'NO_NODE_AVAILABLE':
      return EXIT.UNREACHABLE;
    case 'EXPOSURE_OFFLINE':
      return EXIT.EXPOSURE_OFFLINE;
    default:
      return status >= 500 ? EXIT.UNREACHABLE : EXIT.ERROR;
  }
}

export class ApiError extends CliError {
  readonly status: number;
  constructor(status: number, code: string | undefined, message: string) {
    super(exitCodeFor(code, status), message, { code });
    this.status = status;
  }
}

export interface RawResponse {
  status: number;
  body: unknown;
}

/**
 * A request's options. `signal`: a stop (Ctrl-C, a supervisor stopping); once aborted the request
 * in flight is cancelled and fails at once (a CliError, exit 130, code STOPPED), without trying
 * another replica or waiting out a 503. It may live long: each request removes what it added to it.
 */
export interface RequestOptions {
  token?: string;
  body?: unknown;
  signal?: AbortSignal;
}

/**
 * JSON over HTTP to the control plane with undici; the one place the CLI talks HTTP.
 *
 * `server` is one URL or a comma-separated list of replicas (all serving one database, with the
 * same --public-url and certificate; the trust settings apply to each). A request goes to the
 * replica that last answered (the first at start); when it cannot be reached (refused, reset,
 * timed out) the same request goes to the next one, so a dead replica costs one failed connect.
 * A replica whose certificate fails verification is never skipped over: that is an error.
 * While the control plane answers 503 DATABASE_UNAVAILABLE (its database restarting) the request
 * is retried after Retry-After, for up to 30 s (saying so once, in one line), then reported as an
 * error in one line. A request whose `signal` aborts fails at once (RequestOptions).
 */
export class ApiClient {
  readonly server: string;
  readonly urls: readonly string[];
  readonly #dispatcher: Dispatcher | undefined;
  #preferred = 0;
  /** Told once per outage that requests are being retried (the CLI prints it as one line). */
  readonly #notice: ((line: string) => void) | undefined;
  #noticed = false;

  /** How this client verifies the server (what forServer resolved; empty for a bare client). */
  readonly trust: TrustSettings;

  /** How long one replica has for a whole answer (ANSWER_TIMEOUT_MS; tests make it short). */
  readonly #answerTimeoutMs: number;

  constructor(server: string, dispatcher?: Dispatcher, trust: TrustSettings = {}, notice?: (line: string) => void, opts: { answerTimeoutMs?: number } = {}) {
    this.#answerTimeoutMs = opts.answerTimeoutMs ?? ANSWER_TIMEOUT_MS;
    this.server = server;
    this.urls = serverUrls(server);
    this.#dispatcher = dispatcher;
    this.trust = trust;
    this.#notice = notice;
  }

  /** The replica requests go to first now. */
  get activeUrl(): string {
    return this.urls[this.#preferred] ?? this.server;
  }

  /**
   * The client for `server` with its trust settings (flags, environment, or what login stored).
   * A plain http:// URL to a non-loopback host is refused here, before any connection, unless
   * insecure HTTP was asked for (then a warning goes to stderr).
   */
  static forServer(ctx: Context, server: string, flags: TrustSettings = {}): ApiClient {
    const trust = resolveTrust(ctx, server, flags);
    try {
      for (const url of serverUrls(server)) {
        const { warning } = checkServerUrl(url, trust);
        if (warning) ctx.stderr.write(`tunnel: ${warning}\n`);
      }
      const notice = (line: string) => void ctx.stderr.write(`tunnel: ${line}\n`);
      return new ApiClient(server, ctx.dispatcher ?? new Agent({ connect: trustConnector(trust, TIMEOUT_MS) }), trust, notice);
    } catch (err) {
      if (err instanceof TrustError) throw new CliError(EXIT.USAGE, err.message, { code: err.code });
      throw err;
    }
  }

  async raw(method: Dispatcher.HttpMethod, path: string, opts: RequestOptions = {}): Promise<RawResponse> {
    const { signal: stop, ...req } = opts;
    // One listener on the (maybe long-lived) stop signal for the whole request, removed at its end;
    // undici and the retry wait get a signal of this request's own.
    const joined = requestSignal(stop);
    try {
      const deadline = Date.now() + UNAVAILABLE_BUDGET_MS;
      for (;;) {
        const res = await this.#once(method, path, req, joined.signal);
        if (res.status !== 503 || readProblem(res.status, res.body).code !== 'DATABASE_UNAVAILABLE') {
          this.#noticed = false;
          return res;
        }
        const wait = Math.min(MAX_RETRY_AFTER_MS, Math.max(250, (Number(res.retryAfter) || 1) * 1000));
        if (Date.now() + wait > deadline) return res;
        if (!this.#noticed) this.#notice?.(`the control plane cannot reach its database; retrying for up to ${UNAVAILABLE_BUDGET_MS / 1000} s`);
        this.#noticed = true;
        try {
          await delay(wait, undefined, joined.signal ? { signal: joined.signal } : {});
        } catch (cause) {
          throw stopped(this.activeUrl, cause);
        }
      }
    } finally {
      joined.done();
    }
  }

  /** One request, to each replica in turn from the preferred one until one answers (or `signal` aborts). */
  async #once(
    method: Dispatcher.HttpMethod,
    path: string,
    opts: { token?: string; body?: unknown },
    signal: AbortSignal | undefined,
  ): Promise<RawResponse & { retryAfter?: string }> {
    const failures: string[] = [];
    let lastCause: unknown;
    for (let i = 0; i < this.urls.length; i++) {
      const index = (this.#preferred + i) % this.urls.length;
      const base = this.urls[index]!;
      if (signal?.aborted) throw stopped(base, signal.reason);
      let res: JsonAnswer;
      // This attempt's signal: the stop, and the deadline for its whole answer.
      const attempt = requestSignal(signal, this.#answerTimeoutMs);
      try {
        res = await requestJsonUndici(`${base}${path}`, { method, ...opts, headers: PEER_HEADERS, dispatcher: this.#dispatcher, timeoutMs: TIMEOUT_MS, signal: attempt.signal });
      } catch (cause) {
        // Stopped: not the replica's fault, and no other is tried.
        if (signal?.aborted) throw stopped(base, cause);
        if (attempt.signal.aborted) {
          failures.push(`${base} (no whole answer within ${this.#answerTimeoutMs / 1000} s)`);
          lastCause = cause;
          continue;
        }
        const untrusted = describeTrustFailure(cause);
        if (untrusted) throw new CliError(EXIT.ERROR, `${base}: ${untrusted}`, { code: 'TLS_UNTRUSTED', cause });
        if (cause instanceof AnswerTooLargeError) {
          throw new CliError(EXIT.ERROR, `${base}: the answer is over ${MAX_ANSWER_BYTES / 2 ** 20} MiB; is the server a Tunnel control plane?`, { code: cause.code, cause });
        }
        failures.push(`${base} (${(cause as { code?: string }).code ?? (cause as Error).message})`);
        lastCause = cause;
        continue;
      } finally {
        attempt.done();
      }
      this.#preferred = index;
      const retryAfter = res.headers['retry-after'];
      return { status: res.status, body: res.body, ...(typeof retryAfter === 'string' ? { retryAfter } : {}) };
    }
    const where = failures.length === 1 ? `at ${failures[0]}` : `at any of ${failures.join(', ')}`;
    throw new CliError(EXIT.UNREACHABLE, `cannot reach the control plane ${where}`, { cause: lastCause });
  }

  /** Calls the API and parses the answer; a problem+json answer becomes an ApiError. */
  async call<T extends z.ZodType>(
    method: Dispatcher.HttpMethod,
    path: string,
    schema: T | null,
    opts: RequestOptions = {},
  ): Promise<z.infer<T>> {
    const res = await this.raw(method, path, opts);
    if (res.status >= 400) throw problemToError(res);
    if (!schema) return undefined as z.infer<T>;
    const parsed = schema.safeParse(res.body);
    if (!parsed.success) {
      throw new CliError(EXIT.ERROR, `unexpected answer from ${this.activeUrl}${path}; is the server a Tunnel control plane of this version?`);
    }
    return parsed.data;
  }
}

/** A request (or a wait between requests) ended by its stop signal: one line, exit 130 (EXIT.STOPPED). */
export function stopped(base: string, cause: unknown): CliError {
  return new CliError(EXIT.STOPPED, `stopped while waiting for the control plane at ${base}`, { code: STOPPED, cause });
}

export function problemToError(res: RawResponse): ApiError {
  const p = readProblem(res.status, res.body);
  return new ApiError(res.status, p.code, p.detail);
}
