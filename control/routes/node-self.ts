import { createRoute, z } from '@hono/zod-openapi';
import {
  ConnectionEventBatchSchema,
  NodeHeartbeatRequestSchema,
  NodeHeartbeatResponseSchema,
  RevocationFeedSchema,
} from '../../protocol/api-types.js';
import type { App, AppEnv } from '../http/env.js';
import type { Context } from 'hono';
import type { NodePrincipal } from '../services/authz.js';
import { heartbeat, recordEvents, revocationFeed } from '../services/nodes.js';
import { errorResponses, guarded, json, jsonBody } from './common.js';

const nodeSecurity = [{ nodeToken: [] }];
const nodeOf = (c: Context<AppEnv>) => c.get('principal') as NodePrincipal;

export function registerNodeSelf(app: App): void {
  app.openapi(
    createRoute(
      guarded('node.heartbeat', {
        method: 'post',
        path: '/v1/nodes/self/heartbeat',
        tags: ['nodes'],
        summary: 'Relay heartbeat with the exposures it holds now',
        description: 'Exposures the node holds no active expose lease for are ignored (it cannot bring them online).',
        security: nodeSecurity,
        request: { body: jsonBody(NodeHeartbeatRequestSchema) },
        responses: { 200: json(NodeHeartbeatResponseSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json(await heartbeat(c.get('deps'), nodeOf(c), c.req.valid('json')), 200),
  );

  app.openapi(
    createRoute(
      guarded('node.revocations', {
        method: 'get',
        path: '/v1/nodes/self/revocations',
        tags: ['nodes'],
        summary: 'Revocation feed of this node, after a cursor (omit it to start)',
        security: nodeSecurity,
        request: { query: z.strictObject({ after: z.string().regex(/^\d{1,15}$/).optional() }) },
        responses: { 200: json(RevocationFeedSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json(await revocationFeed(c.get('deps'), nodeOf(c), Number(c.req.valid('query').after ?? '0')), 200),
  );

  app.openapi(
    createRoute(
      guarded('node.events', {
        method: 'post',
        path: '/v1/nodes/self/events',
        tags: ['nodes'],
        summary: 'Connection and exposure events, in batches',
        security: nodeSecurity,
        request: { body: jsonBody(ConnectionEventBatchSchema) },
        responses: { 202: { description: 'Accepted' }, ...errorResponses },
      }),
    ),
    async (c) => {
      await recordEvents(c.get('deps'), nodeOf(c), c.req.valid('json').events);
      return c.body(null, 202);
    },
  );
}
