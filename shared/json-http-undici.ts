import { request, type Dispatcher } from 'undici';
import { decodeJsonAnswer, encodeJsonRequest, type JsonAnswer, type JsonRequest } from './json-http.js';

/**
 * `requestJson` over undici, for the CLI's API client (its tests inject undici dispatchers). The
 * relay uses node:http(s) (shared/json-http.ts) and must not import this file.
 */
export async function requestJsonUndici(url: string, o: Omit<JsonRequest, 'method'> & { method: Dispatcher.HttpMethod; dispatcher?: Dispatcher | undefined }): Promise<JsonAnswer> {
  const { headers, body } = encodeJsonRequest(o);
  const res = await request(url, {
    method: o.method,
    headers,
    body,
    dispatcher: o.dispatcher,
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
    signal: o.signal,
  });
  return decodeJsonAnswer(res.statusCode, res.headers, await res.body.text());
}
