import type { MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { AppError } from '../lib/errors.js';
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
 * is cached by Hono, so validators reuse it.
 */
export const requireJson: MiddlewareHandler<AppEnv> = async (c, next) => {
  const method = c.req.method;
  if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
    const type = c.req.header('content-type') ?? '';
    const hasBody = c.req.header('content-length') !== '0' && (c.req.raw.body !== null || type !== '');
    if (hasBody) {
      if (!/^application\/(.+\+)?json(\s*;|$)/i.test(type)) {
        throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
      }
      try {
        await c.req.json();
      } catch (cause) {
        if (cause instanceof AppError) throw cause;
        throw new AppError('INVALID_JSON', 'request body is not valid JSON', { cause });
      }
    }
  }
  await next();
};
