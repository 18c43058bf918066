import { createRoute, z } from '@hono/zod-openapi';
import { ConnectionListSchema, NodeNameSchema, UserNameSchema } from '../../protocol/api-types.js';
import { ExposureNameSchema, LeaseKindSchema } from '../../protocol/lease-claims.js';
import type { App } from '../http/env.js';
import { listConnections } from '../services/connections.js';
import { bearerSecurity, errorResponses, guarded, json, queryInt } from './common.js';

const ListQuery = z.strictObject({
  state: z.enum(['open', 'all']).default('open').describe('open: not closed as last reported; all: also recently closed'),
  user: UserNameSchema.optional(),
  exposure: ExposureNameSchema.optional(),
  node: NodeNameSchema.optional(),
  kind: LeaseKindSchema.optional(),
  limit: queryInt(1, 1000, 200),
});

export function registerConnections(app: App): void {
  app.openapi(
    createRoute(
      guarded('connection.list', {
        method: 'get',
        path: '/v1/connections',
        tags: ['leases'],
        summary:
          'SSH connections to relays as the relays report them, newest first (under your leases and to exposures you own; admins: everyone\'s)',
        security: bearerSecurity,
        request: { query: ListQuery },
        responses: { 200: json(ConnectionListSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json({ connections: await listConnections(c.get('deps'), c.get('user'), c.req.valid('query')) }, 200),
  );
}
