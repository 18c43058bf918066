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
import { heartbeat, MAX_FEED_WAIT, recordEvents, revocationFeed } from '../services/nodes.js';
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
        description: `With \`wait\` (seconds, at most ${MAX_FEED_WAIT}), a long poll: when there is nothing after the cursor, the answer comes as soon as a revocation for this node is committed, or after \`wait\` with nothing. Entries may come twice; a revocation handed over early comes with the cursor unchanged.`,
        request: {
          query: z.strictObject({
            after: z.string().regex(/^\d{1,15}$/).optional(),
            wait: z.string().regex(/^\d{1,2}$/).refine((s) => Number(s) <= MAX_FEED_WAIT, { message: `at most ${MAX_FEED_WAIT}` }).optional(),
          }),
        },
        responses: { 200: json(RevocationFeedSchema), ...errorResponses },
      }),
    ),
    async (c) => {
      const q = c.req.valid('query');
      const hub = c.get('deps').revocationHub;
      const feed = await revocationFeed(c.get('deps'), nodeOf(c), Number(q.after ?? '0'), Number(q.wait ?? '0') * 1000, c.get('node').tokenHash);
      // Shutting down: end the relay's keep-alive connection with this answer (it was busy, so
      // the server's close could not close it as idle, and the relay asks again at once).
      if (hub.closed) c.header('Connection', 'close');
      return c.json(feed, 200);
    },
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
