import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { AppError } from '../lib/errors.js';
import { duplicateJsonKey } from './json-duplicate-key.js';
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
 * API bodies must be JSON: a POST/PUT/PATCH with a body and another content type gets 415, and
 * so does one with a Content-Encoding (gzip: it is not decoded) or a charset other than UTF-8
 * (RFC 8259 §8.1), or a charset named twice: either was read as UTF-8 JSON. A body that does not
 * parse, starts with a byte order mark, or names a member twice in one object (duplicateJsonKey),
 * gets INVALID_JSON (before any validator runs).
 * The body is parsed once: validators and routes that call `c.req.json()` get that parse. A
 * request without a body and without a Content-Type is left to the route (some bodies are
 * optional), whether it says `Content-Length: 0` or sends no length at all; one that names a
 * Content-Type but sends no body is refused here with a detail saying so (it reached clients as
 * a bare "bad request", or an internal error on the token endpoint). A JSON type written in a
 * legal form the validators' gate does not know (`application/json ; charset=utf-8`,
 * `application/json;`) is read here and handed on as `application/json`, so every later reader
 * agrees with this one.
 * The OAuth endpoints' form bodies (RFC 6749 §3.2) get the same checks of their bytes (coding,
 * charset, UTF-8, byte order mark; INVALID_FORM where JSON gets INVALID_JSON), and their text is
 * handed on through `c.req.text()` to http/oauth.ts `oauthBody`, which reads the fields.
 */
export const requireJson: MiddlewareHandler<AppEnv> = async (c, next) => {
  const method = c.req.method;
  if (method !== 'POST' && method !== 'PUT' && method !== 'PATCH') return next();
  const type = c.req.header('content-type');
  const withBody = await hasBody(c);
  const encoding = c.req.header('content-encoding');
  if (withBody && encoding !== undefined && !/^\s*identity\s*$/i.test(encoding)) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Content-Encoding "${encoding.slice(0, 40)}" is not accepted: send the body uncompressed`, { headers: { 'accept-encoding': 'identity' } });
  }
  // OAuth endpoints also take forms (RFC 6749 §3.2); their own middleware reads the fields.
  const form = c.get('oauth') === true && isFormBody(type);
  if (!withBody) {
    if (type === undefined || form) return next();
    notJson(c, type);
    throw new AppError('INVALID_JSON', 'the request body is empty: send a JSON object (or, where the body is optional, no Content-Type)');
  }
  if (form) {
    assertUtf8Charset(type ?? '', 'the form');
    const text = await utf8Body(c, 'INVALID_FORM');
    c.req.text = () => Promise.resolve(text);
    return next();
  }
  notJson(c, type ?? '');
  assertUtf8Charset(type ?? '', 'JSON');
  if (!VALIDATOR_JSON_TYPE.test(type ?? '')) c.req.raw.headers.set('content-type', 'application/json');
  const text = await utf8Body(c, 'INVALID_JSON');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (cause) {
    throw new AppError('INVALID_JSON', 'request body is not valid JSON', { cause });
  }
  const twice = duplicateJsonKey(text);
  if (twice !== undefined) throw new AppError('INVALID_JSON', `the request body names "${twice.slice(0, 64)}" twice in one object: send each member once`);
  // Hono caches the body and parses it again on every c.req.json() (the validator's): later calls
  // get this parse. Nothing downstream mutates the body (zod builds its own output).
  const parsed = Promise.resolve(body);
  c.req.json = <T>() => parsed as Promise<T>;
  await next();
};

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * 415 unless the media type names no charset or UTF-8, once (RFC 8259 §8.1 for JSON; a form is
 * read as UTF-8 too). Named twice (`charset=utf-8; charset=latin1`), one reader takes the first
 * and another the last.
 */
function assertUtf8Charset(type: string, what: 'JSON' | 'the form'): void {
  const charsets = charsetsOf(type);
  if (charsets.length > 1) throw new AppError('UNSUPPORTED_MEDIA_TYPE', `the Content-Type names a charset more than once: name it once, as UTF-8 (send ${what} as UTF-8)`);
  const charset = charsets[0];
  if (charset !== undefined && charset.toLowerCase() !== 'utf-8' && charset.toLowerCase() !== 'utf8') {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', `charset "${charset.slice(0, 40)}" is not accepted: send ${what} as UTF-8`);
  }
}

/**
 * The body as text: bytes that are not UTF-8 are refused, not read as U+FFFD; so is a leading
 * byte order mark, which the decoder keeps: RFC 8259 §8.1 lets a reader ignore one or refuse it,
 * and readers do both (JSON.parse and Go refuse it, TextDecoder's default drops it), and a form
 * reader takes it into the first field's name.
 */
async function utf8Body(c: Context<AppEnv>, code: 'INVALID_JSON' | 'INVALID_FORM'): Promise<string> {
  let bytes: ArrayBuffer;
  try {
    bytes = await c.req.arrayBuffer();
  } catch (cause) {
    if (cause instanceof AppError || cause instanceof HTTPException) throw cause;
    throw new AppError(code, 'the request body could not be read', { cause });
  }
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch (cause) {
    throw new AppError(code, 'request body is not UTF-8', { cause });
  }
  if (text.charCodeAt(0) === 0xfeff) throw new AppError(code, 'the request body starts with a byte order mark: send the body without one');
  return text;
}

/** 415 unless `type` is a JSON media type. */
function notJson(c: Context<AppEnv>, type: string): void {
  if (JSON_TYPE.test(type)) return;
  throw new AppError('UNSUPPORTED_MEDIA_TYPE', c.get('oauth') ? 'send the body as application/x-www-form-urlencoded or application/json' : 'send the body as application/json');
}

/**
 * The values of every charset parameter of a media type (`charset*`, RFC 2231's form, counts as
 * one), a quoted one without its quotes; a value with anything after its closing quote is taken
 * whole (so it is no UTF-8).
 */
function charsetsOf(type: string): string[] {
  return [...type.matchAll(/;\s*charset\*?\s*=\s*("([^"]*)"(?=\s*(?:;|$))|[^;]*)/gi)].map((m) => (m[2] ?? m[1]!).trim());
}

/** Whether the request carries body bytes (reads a length-less body, already capped by limitBody). */
async function hasBody(c: Context<AppEnv>): Promise<boolean> {
  const length = c.req.header('content-length');
  if (length !== undefined) return length !== '0';
  if (c.req.raw.body === null) return false;
  return (await c.req.arrayBuffer()).byteLength > 0;
}
