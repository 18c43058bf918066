import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { AppError } from '../lib/errors.js';
import { isFormBody } from './oauth.js';
import type { AppEnv } from './env.js';

/** Caps request bodies (the header and the actual stream). */
export function limitBody(maxSize: number): MiddlewareHandler<AppEnv> {
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new AppError('PAYLOAD_TOO_LARGE', `request body exceeds ${maxSize} bytes`);
    },
  });
}

/**
 * API bodies must be JSON: a POST/PUT/PATCH with a body and another content type gets 415,
 * and a body that does not parse gets INVALID_JSON (before any validator runs). The parsed body
 * is cached by Hono, so validators reuse it. A request without a body is left to the route
 * (some bodies are optional), whether it says `Content-Length: 0` or sends no length at all.
 */
export const requireJson: MiddlewareHandler<AppEnv> = async (c, next) => {
  const method = c.req.method;
  if ((method === 'POST' || method === 'PUT' || method === 'PATCH') && (await hasBody(c))) {
    const type = c.req.header('content-type') ?? '';
    // OAuth endpoints also take forms (RFC 6749 §3.2); their own middleware reads them.
    if (c.get('oauth') && isFormBody(type)) return next();
    if (!/^application\/(.+\+)?json(\s*;|$)/i.test(type)) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', c.get('oauth') ? 'send the body as application/x-www-form-urlencoded or application/json' : 'send the body as application/json');
    }
    try {
      await c.req.json();
    } catch (cause) {
      if (cause instanceof AppError) throw cause;
      throw new AppError('INVALID_JSON', 'request body is not valid JSON', { cause });
    }
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
