import { createRoute, z } from '@hono/zod-openapi';
import {
  ServiceTokenCreateSchema,
  ServiceTokenCreatedSchema,
  ServiceTokenListSchema,
  ServiceTokenSchema,
  ServiceTokenUpdateSchema,
} from '../../protocol/api-types.js';
import type { App } from '../http/env.js';
import { createServiceToken, listServiceTokens, revokeServiceToken, updateServiceTokenScopes } from '../services/service-tokens.js';
import { bearerSecurity, errorResponses, guarded, json, jsonBody } from './common.js';

const IdParam = z.object({ id: z.string().regex(/^st_[a-f0-9]{32}$/, 'must be a service token id (st_...)') });

export function registerServiceTokens(app: App): void {
  app.openapi(
    createRoute(
      guarded('service_token.create', {
        method: 'post',
        path: '/v1/service-tokens',
        tags: ['auth'],
        summary: 'Create a scoped service token for a headless host (e.g. scopes ["expose:hostx-ssh"])',
        description:
          'Members create tokens for themselves; admins may name another user. The token is shown once. Scopes: ' +
          'expose:NAME (see NAME, create it if missing, expose it), open:NAME (see and open NAME), manage:NAME (see NAME, ' +
          'change its allow list, delete it), egress:TARGET (see and use egress target TARGET); NAME may be *. A scoped ' +
          'token may also read /v1/me and see or revoke the leases it issued, and nothing else. A new token past the cap on ' +
          'live tokens per member (100 by default; admins: none) is 409 CONFLICT.',
        security: bearerSecurity,
        request: { body: jsonBody(ServiceTokenCreateSchema) },
        responses: { 201: json(ServiceTokenCreatedSchema, 'Created'), ...errorResponses },
      }),
    ),
    async (c) => c.json(await createServiceToken(c.get('deps'), c.get('user'), c.req.valid('json')), 201),
  );

  app.openapi(
    createRoute(
      guarded('service_token.list', {
        method: 'get',
        path: '/v1/service-tokens',
        tags: ['auth'],
        summary: 'Your service tokens (admins: everyone\'s)',
        security: bearerSecurity,
        responses: { 200: json(ServiceTokenListSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json({ service_tokens: await listServiceTokens(c.get('deps'), c.get('user')) }, 200),
  );

  app.openapi(
    createRoute(
      guarded('service_token.update', {
        method: 'patch',
        path: '/v1/service-tokens/{id}',
        tags: ['auth'],
        summary: 'Replace a service token\'s scopes; leases it issued that the new scopes do not cover are revoked',
        description: 'A revoked or expired token\'s scopes cannot change: 409 CONFLICT (create a new token).',
        security: bearerSecurity,
        request: { params: IdParam, body: jsonBody(ServiceTokenUpdateSchema) },
        responses: { 200: json(ServiceTokenSchema, 'Updated'), ...errorResponses },
      }),
    ),
    async (c) =>
      c.json(await updateServiceTokenScopes(c.get('deps'), c.get('user'), c.req.valid('param').id, c.req.valid('json').scopes), 200),
  );

  app.openapi(
    createRoute(
      guarded('service_token.revoke', {
        method: 'delete',
        path: '/v1/service-tokens/{id}',
        tags: ['auth'],
        summary: 'Revoke a service token and every lease issued through it',
        security: bearerSecurity,
        request: { params: IdParam },
        responses: { 200: json(ServiceTokenSchema, 'Revoked'), ...errorResponses },
      }),
    ),
    async (c) => c.json(await revokeServiceToken(c.get('deps'), c.get('user'), c.req.valid('param').id), 200),
  );
}
