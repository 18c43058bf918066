import type { Agent, IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { http } from './node-http.js';

/**
 * JSON over HTTP: sends `body` as JSON with a bearer token and reads the answer as JSON; what a
 * status or a failure means is the caller's business. `requestJson` speaks node:http(s) (the
 * relay's control-plane client: no undici in the relay, issue 11); the CLI's undici transport
 * (shared/json-http-undici.ts) shares the request and answer format below.
 */
export interface JsonRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  token?: string | undefined;
  body?: unknown;
  /** Sent as well: who is asking (protocol/api-level.ts's peerHeaders). */
  headers?: Readonly<Record<string, string>> | undefined;
  /** Bound on waiting for the headers and between body chunks. */
  timeoutMs: number;
  /** Aborts the whole exchange (e.g. `AbortSignal.timeout` for an overall deadline). */
  signal?: AbortSignal | undefined;
}

export interface JsonAnswer {
  status: number;
  /** The response headers (lower-case names), e.g. `retry-after`. */
  headers: Record<string, string | string[] | undefined>;
  /** The parsed body; undefined when it was empty or not JSON. */
  body: unknown;
  /** Set when there was a body but it was not JSON (the parse error). */
  unreadable?: unknown;
}

/** The headers and the encoded body of a request. */
export function encodeJsonRequest(o: Pick<JsonRequest, 'token' | 'body' | 'headers'>): { headers: Record<string, string>; body: string | undefined } {
  const headers: Record<string, string> = { ...o.headers, accept: 'application/json' };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  return { headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) };
}

/** The answer from its status, headers and whole body text. */
export function decodeJsonAnswer(status: number, headers: JsonAnswer['headers'], text: string): JsonAnswer {
  const head = { status, headers };
  if (text === '') return { ...head, body: undefined };
  try {
    return { ...head, body: JSON.parse(text) };
  } catch (err) {
    return { ...head, body: undefined, unreadable: err };
  }
}

/** The largest answer body `requestJson` reads by default (a revocation feed page, a JWKS). */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

export class AnswerTooLargeError extends Error {
  override readonly name = 'AnswerTooLargeError';
  readonly code = 'ANSWER_TOO_LARGE';
}

/**
 * Collects an answer body up to `maxBytes`, for both transports: `add` returns the error to fail
 * with once the body is over the bound (the caller drops the connection), and keeps nothing past it.
 */
export function answerBody(origin: string, maxBytes: number): { add(chunk: Buffer): AnswerTooLargeError | undefined; tooLarge(): AnswerTooLargeError; text(): string } {
  const chunks: Buffer[] = [];
  let size = 0;
  const tooLarge = () => new AnswerTooLargeError(`the answer from ${origin} is over ${maxBytes} bytes`);
  return {
    add(chunk) {
      size += chunk.length;
      if (size > maxBytes) return tooLarge();
      chunks.push(chunk);
      return undefined;
    },
    tooLarge,
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

/**
 * Sends the request with node:http(s) through `agent` and reads the whole answer (at most
 * `maxBytes`). Network, TLS, timeout and abort failures throw Node's error (with its `code`).
 */
export function requestJson(url: string, o: JsonRequest & { agent: Agent; maxBytes?: number }): Promise<JsonAnswer> {
  const { headers, body } = encodeJsonRequest(o);
  const maxBytes = o.maxBytes ?? MAX_ANSWER_BYTES;
  if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : http.request;
  return new Promise<JsonAnswer>((resolve, reject) => {
    const req = send(target, { method: o.method, headers, agent: o.agent, ...(o.signal ? { signal: o.signal } : {}) }, (res) => {
      const answer = answerBody(target.origin, maxBytes);
      res.on('data', (chunk: Buffer) => {
        const tooLarge = answer.add(chunk);
        if (tooLarge) req.destroy(tooLarge);
      });
      res.on('error', reject);
      res.on('end', () => resolve(decodeJsonAnswer(res.statusCode ?? 0, res.headers as IncomingHttpHeaders, answer.text())));
    });
    req.setTimeout(o.timeoutMs, () => req.destroy(Object.assign(new Error(`no answer from ${target.origin} within ${o.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}
