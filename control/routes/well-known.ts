import { createRoute } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { JWKS_PATH, JwksSchema } from '../../protocol/jwks.js';
import { buildJwks } from '../ca/lease-issuer.js';
import type { App } from '../http/env.js';
import { json, serverErrorResponses } from './common.js';

export function registerWellKnown(app: App): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: JWKS_PATH,
      tags: ['trust'],
      summary: 'Published lease-signing (use "sig") and SSH user-CA (use "ssh-ca") keys',
      responses: { 200: json(JwksSchema), ...serverErrorResponses },
    }),
    async (c) => {
      const keys = await c.get('deps').keys.published();
      c.header('cache-control', 'public, max-age=60');
      return c.json(buildJwks(keys), 200);
    },
  );

  app.get('/healthz', async (c) => {
    const { db } = c.get('deps');
    try {
      await db.execute(sql`select 1`);
      return c.json({ status: 'ok', database: 'ok' });
    } catch {
      return c.json({ status: 'unavailable', database: 'unreachable' }, 503);
    }
  });

  app.get('/metrics', (c) => {
    c.header('content-type', 'text/plain; version=0.0.4; charset=utf-8');
    return c.body(c.get('deps').metrics.render());
  });
}
