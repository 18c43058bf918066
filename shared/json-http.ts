import { request, type Dispatcher } from 'undici';

/**
 * JSON over HTTP with undici: the one request loop of the CLI's API client and the relay's
 * control-plane client. It sends `body` as JSON with a bearer token and reads the answer as
 * JSON; what a status or a failure means is the caller's business.
 */
export interface JsonRequest {
  method: Dispatcher.HttpMethod;
  token?: string | undefined;
  body?: unknown;
  dispatcher?: Dispatcher | undefined;
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

/** Sends the request and reads the whole answer. Network, TLS and timeout failures throw undici's error. */
export async function requestJson(url: string, o: JsonRequest): Promise<JsonAnswer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(url, {
    method: o.method,
    headers,
    body: o.body === undefined ? undefined : JSON.stringify(o.body),
    dispatcher: o.dispatcher,
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
    signal: o.signal,
  });
  const text = await res.body.text();
  const head = { status: res.statusCode, headers: res.headers };
  if (text === '') return { ...head, body: undefined };
  try {
    return { ...head, body: JSON.parse(text) };
  } catch (err) {
    return { ...head, body: undefined, unreadable: err };
  }
}
