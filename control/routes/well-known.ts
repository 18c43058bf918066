import { createRoute } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { JWKS_PATH, JwksSchema } from '../../protocol/jwks.js';
import { buildJwks } from '../ca/lease-issuer.js';
import type { App } from '../http/env.js';
import { guarded, json, serverErrorResponses } from './common.js';
import { API_LEVEL, API_LEVEL_MIN, TUNNEL_VERSION } from '../../protocol/api-level.js';
import {
  AUTHORIZATION_SERVER_METADATA_PATH,
  AuthorizationServerMetadataSchema,
  GRANT_DEVICE_CODE,
  GRANT_SERVICE_TOKEN,
} from '../../protocol/api-types.js';

export function registerWellKnown(app: App): void {
  app.openapi(
    createRoute(
      guarded('public.read', {
        method: 'get',
        path: JWKS_PATH,
        tags: ['trust'],
        summary: 'Published lease-signing (use "sig") and SSH user-CA (use "ssh-ca") keys',
        responses: { 200: json(JwksSchema), ...serverErrorResponses },
      }),
    ),
    async (c) => {
      const keys = await c.get('deps').keys.published();
      c.header('cache-control', 'public, max-age=60');
      return c.json(buildJwks(keys), 200);
    },
  );

  app.openapi(
    createRoute(
      guarded('public.read', {
        method: 'get',
        path: AUTHORIZATION_SERVER_METADATA_PATH,
        tags: ['trust'],
        summary: 'OAuth 2.0 authorization server metadata (RFC 8414): where standard clients log in',
        responses: { 200: json(AuthorizationServerMetadataSchema), ...serverErrorResponses },
      }),
    ),
    (c) => {
      const issuer = c.get('deps').settings.issuer;
      c.header('cache-control', 'public, max-age=300');
      return c.json(
        {
          issuer,
          token_endpoint: `${issuer}/v1/auth/token`,
          device_authorization_endpoint: `${issuer}/v1/auth/device`,
          jwks_uri: `${issuer}${JWKS_PATH}`,
          grant_types_supported: [GRANT_DEVICE_CODE, 'refresh_token', 'password', GRANT_SERVICE_TOKEN],
          // Public clients: the CLI and any standard device-flow client, with no client secret.
          token_endpoint_auth_methods_supported: ['none'],
          // No authorization endpoint (no browser redirect flows).
          response_types_supported: [],
          service_documentation: `${issuer}/docs`,
        },
        200,
      );
    },
  );

  // With the release and the API levels served (protocol/api-level.ts): during a rolling upgrade
  // an operator sees which replicas run which release, as `tunnel nodes` shows the relays'.
  app.get('/healthz', async (c) => {
    const { db } = c.get('deps');
    const build = { version: TUNNEL_VERSION, api_levels: { min: API_LEVEL_MIN, max: API_LEVEL } };
    try {
      await db.execute(sql`select 1`);
      return c.json({ status: 'ok', database: 'ok', ...build });
    } catch {
      return c.json({ status: 'unavailable', database: 'unreachable', ...build }, 503);
    }
  });
}
