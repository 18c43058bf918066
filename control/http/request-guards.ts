import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { AppError } from '../lib/errors.js';
import { isFormBody } from './oauth.js';
import type { AppEnv } from './env.js';

/**
 * Caps request bodies (the header and the actual stream). A body with a Content-Length and no
 * Transfer-Encoding is judged by the header alone, as Hono's bodyLimit does (Node's HTTP parser
 * delivers exactly that many bytes), but without touching `c.req.raw.body` first: on
 * @hono/node-server that getter turns the request into a full web Request with a ReadableStream
 * over the socket and an AbortController (about 4% of the CPU of a lease issuance, issue 11),
 * where `c.req.json()` otherwise reads the body straight from the socket. Every other body
 * (chunked, or no length) goes through Hono's bodyLimit, which counts while reading.
 */
export function limitBody(maxSize: number): MiddlewareHandler<AppEnv> {
  const tooLarge = (): never => {
    throw new AppError('PAYLOAD_TOO_LARGE', `request body exceeds ${maxSize} bytes`);
  };
  const counting = bodyLimit({ maxSize, onError: tooLarge });
  return async (c, next) => {
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD') return next();
    const length = c.req.header('content-length');
    if (length !== undefined && c.req.header('transfer-encoding') === undefined) {
      if (parseInt(length, 10) > maxSize) tooLarge();
      return next();
    }
    return counting(c, next);
  };
}

/**
 * A JSON media type as RFC 9110 §8.3.1 writes one: `application/json` or `application/X+json`
 * (X a token), then any parameters, with optional whitespace around each `;`.
 */
const JSON_TYPE = /^application\/([!#$%&'*+.^_`|~0-9a-z-]+\+)?json[ \t]*(;.*)?$/i;
/**
 * What @hono/zod-openapi's gate in front of a route's JSON body validator takes (its
 * `jsonRequestRegex`): stricter than RFC 9110 (no whitespace before `;`, no empty parameter, no
 * `_` in the suffix), and anything else is an HTTPException(415) that reached clients as a bare
 * BAD_REQUEST "bad request".
 */
const VALIDATOR_JSON_TYPE = /^application\/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9-]+=([^;]+))*$/i;

/**
 * API bodies must be JSON: a POST/PUT/PATCH with a body and another content type gets 415,
 * and a body that does not parse gets INVALID_JSON (before any validator runs). The parsed body
 * is parsed once: validators and routes that call `c.req.json()` get that parse. A request without a body is left to the route
 * (some bodies are optional), whether it says `Content-Length: 0` or sends no length at all.
 * A JSON type written in a legal form the validators' gate does not know (`application/json ;
 * charset=utf-8`, `application/json;`) is read here and handed on as `application/json`, so
 * every later reader agrees with this one.
 */
export const requireJson: MiddlewareHandler<AppEnv> = async (c, next) => {
  const method = c.req.method;
  if ((method === 'POST' || method === 'PUT' || method === 'PATCH') && (await hasBody(c))) {
    const type = c.req.header('content-type') ?? '';
    // OAuth endpoints also take forms (RFC 6749 §3.2); their own middleware reads them.
    if (c.get('oauth') && isFormBody(type)) return next();
    if (!JSON_TYPE.test(type)) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', c.get('oauth') ? 'send the body as application/x-www-form-urlencoded or application/json' : 'send the body as application/json');
    }
    if (!VALIDATOR_JSON_TYPE.test(type)) c.req.raw.headers.set('content-type', 'application/json');
    let body: unknown;
    try {
      body = await c.req.json();
    } catch (cause) {
      if (cause instanceof AppError) throw cause;
      throw new AppError('INVALID_JSON', 'request body is not valid JSON', { cause });
    }
    // Hono caches the body's text and parses it again on every c.req.json() (the guard's, the
    // validator's): later calls get this parse. Nothing downstream mutates the body (zod builds
    // its own output).
    const parsed = Promise.resolve(body);
    c.req.json = <T>() => parsed as Promise<T>;
  }
  await next();
};

/** Whether the request carries body bytes (reads a length-less body, already capped by limitBody). */
async function hasBody(c: Context<AppEnv>): Promise<boolean> {
  const length = c.req.header('content-length');
  if (length !== undefined) return length !== '0';
  if (c.req.raw.body === null) return false;
  return (await c.req.arrayBuffer()).byteLength > 0;
}
