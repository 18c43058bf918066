import { createRoute, z } from '@hono/zod-openapi';
import {
  EnrollmentTokenCreateSchema,
  EnrollmentTokenCreatedSchema,
  NodeEnrollRequestSchema,
  NodeEnrollResponseSchema,
  NodeListSchema,
  NodeNameSchema,
} from '../../protocol/api-types.js';
import type { App } from '../http/env.js';
import { clientSource } from '../http/client-address.js';
import { rateLimit } from '../services/rate-limit.js';
import { createEnrollmentToken } from '../services/enrollment.js';
import { enrollNode, listNodes } from '../services/nodes.js';
import { removeNode } from '../services/node-removal.js';
import { bearerSecurity, errorResponses, guarded, json, jsonBody } from './common.js';

export function registerNodes(app: App): void {
  app.openapi(
    createRoute(
      guarded('node.enrollment_token.create', {
        method: 'post',
        path: '/v1/nodes/enrollment-tokens',
        tags: ['nodes'],
        summary: 'Create a one-time enrollment token for a relay node (admin)',
        security: bearerSecurity,
        request: { body: jsonBody(EnrollmentTokenCreateSchema) },
        responses: { 201: json(EnrollmentTokenCreatedSchema, 'Created; the token is shown once'), ...errorResponses },
      }),
    ),
    async (c) => {
      const body = c.req.valid('json');
      const { token, expiresAt } = await createEnrollmentToken(c.get('deps'), c.get('user'), body.name, body.ttl_seconds ?? 3600);
      return c.json({ name: body.name, token, expires_at: expiresAt.toISOString() }, 201);
    },
  );

  app.openapi(
    createRoute(
      guarded('node.enroll', {
        method: 'post',
        path: '/v1/nodes/enroll',
        tags: ['nodes'],
        summary: 'Enroll a relay node with a one-time token; returns its node id and credential',
        description: 'Enrolling again under the same name (with a new token) replaces the host key, address and credential.',
        request: { body: jsonBody(NodeEnrollRequestSchema) },
        responses: { 201: json(NodeEnrollResponseSchema, 'Enrolled'), ...errorResponses },
      }),
    ),
    async (c) => {
      const deps = c.get('deps');
      await rateLimit(deps.db, deps.clock.now(), `enroll:${clientSource(c)}`, deps.settings.authRateLimit);
      return c.json(await enrollNode(deps, c.req.valid('json')), 201);
    },
  );

  app.openapi(
    createRoute(
      guarded('node.list', {
        method: 'get',
        path: '/v1/nodes',
        tags: ['nodes'],
        summary: 'Relay nodes with their address, host key and online status',
        security: bearerSecurity,
        responses: { 200: json(NodeListSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json(await listNodes(c.get('deps')), 200),
  );

  app.openapi(
    createRoute(
      guarded('node.delete', {
        method: 'delete',
        path: '/v1/nodes/{name}',
        tags: ['nodes'],
        summary: 'Remove a relay node (admin): its credential, leases and unused enrollment tokens go; it fails closed',
        description:
          'The relay is answered 401 from then on, so it closes every connection and admits none. ' +
          'Refused with 409 CONFLICT while an exposure is pinned to it or an egress target is on it.',
        security: bearerSecurity,
        request: { params: z.object({ name: NodeNameSchema }) },
        responses: { 204: { description: 'Removed' }, ...errorResponses },
      }),
    ),
    async (c) => {
      await removeNode(c.get('deps'), c.get('user'), c.req.valid('param').name);
      return c.body(null, 204);
    },
  );
}
