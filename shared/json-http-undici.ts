import { request, type Dispatcher } from 'undici';
import { answerBody, decodeJsonAnswer, encodeJsonRequest, MAX_ANSWER_BYTES, type JsonAnswer, type JsonRequest } from './json-http.js';

/**
 * `requestJson` over undici, for the CLI's API client (its tests inject undici dispatchers). The
 * relay uses node:http(s) (shared/json-http.ts) and must not import this file. Reads at most
 * `maxBytes` of the answer (default MAX_ANSWER_BYTES, as the relay): a bigger answer throws
 * AnswerTooLargeError and the connection is dropped, whatever Content-Length said.
 */
export async function requestJsonUndici(
  url: string,
  o: Omit<JsonRequest, 'method'> & { method: Dispatcher.HttpMethod; dispatcher?: Dispatcher | undefined; maxBytes?: number },
): Promise<JsonAnswer> {
  const { headers, body } = encodeJsonRequest(o);
  const maxBytes = o.maxBytes ?? MAX_ANSWER_BYTES;
  const res = await request(url, {
    method: o.method,
    headers,
    body,
    dispatcher: o.dispatcher,
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.timeoutMs,
    signal: o.signal,
  });
  const answer = answerBody(new URL(url).origin, maxBytes);
  if (Number(res.headers['content-length']) > maxBytes) {
    res.body.destroy();
    throw answer.tooLarge();
  }
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    const tooLarge = answer.add(chunk);
    if (tooLarge) {
      res.body.destroy();
      throw tooLarge;
    }
  }
  return decodeJsonAnswer(res.statusCode, res.headers, answer.text());
}
