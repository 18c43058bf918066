import { createRoute, z } from '@hono/zod-openapi';
import { and, asc, eq, gt, notInArray } from 'drizzle-orm';
import {
  ConnectionEventBatchSchema,
  NodeHeartbeatRequestSchema,
  NodeHeartbeatResponseSchema,
  RevocationFeedSchema,
} from '../../protocol/api-types.js';
import { exposures, nodes, revocations } from '../db/schema/index.js';
import type { App } from '../http/env.js';
import { requireNode } from '../http/authenticate.js';
import { audit, type AuditType } from '../services/audit.js';
import { pruneConnections, recordConnectionEvent } from '../services/connections.js';
import { errorResponses, json, jsonBody } from './common.js';

const nodeSecurity = [{ nodeToken: [] }];
const FEED_PAGE = 1000;

export function registerNodeSelf(app: App): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/nodes/self/heartbeat',
      tags: ['nodes'],
      summary: 'Relay heartbeat with the exposures it holds now',
      security: nodeSecurity,
      middleware: [requireNode] as const,
      request: { body: jsonBody(NodeHeartbeatRequestSchema) },
      responses: { 200: json(NodeHeartbeatResponseSchema), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const node = c.get('node');
      const body = c.req.valid('json');
      const now = deps.clock.now();
      await deps.db
        .update(nodes)
        .set({
          lastSeenAt: now,
          version: body.version,
          nativeCrypto: body.native_crypto,
          egressDriver: body.egress_driver,
          connections: body.connections,
        })
        .where(eq(nodes.id, node.id));
      // The heartbeat's list is the truth for this node: online what it holds, offline the rest.
      const names = [...new Set(body.exposures.map((e) => e.name))];
      if (names.length) {
        for (const e of body.exposures) {
          await deps.db
            .update(exposures)
            .set({ online: true, currentNodeId: node.id, onlinePort: e.port, statusAt: now })
            .where(eq(exposures.name, e.name));
        }
      }
      await deps.db
        .update(exposures)
        .set({ online: false, statusAt: now })
        .where(
          and(eq(exposures.currentNodeId, node.id), eq(exposures.online, true), ...(names.length ? [notInArray(exposures.name, names)] : [])),
        );
      return c.json({ server_time: now.toISOString() }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/nodes/self/revocations',
      tags: ['nodes'],
      summary: 'Revocation feed of this node, after a cursor (omit it to start)',
      security: nodeSecurity,
      middleware: [requireNode] as const,
      request: { query: z.strictObject({ after: z.string().regex(/^\d{1,15}$/).optional() }) },
      responses: { 200: json(RevocationFeedSchema), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const node = c.get('node');
      const after = Number(c.req.valid('query').after ?? '0');
      const now = deps.clock.now();
      const rows = await deps.db
        .select()
        .from(revocations)
        .where(and(eq(revocations.nodeId, node.id), gt(revocations.seq, after)))
        .orderBy(asc(revocations.seq))
        .limit(FEED_PAGE);
      const cursor = rows.length ? rows[rows.length - 1]!.seq : after;
      return c.json(
        {
          cursor: String(cursor),
          revocations: rows
            .filter((r) => r.expiresAt > now)
            .map((r) => ({ lease_id: r.leaseId, exp: Math.floor(r.expiresAt.getTime() / 1000) })),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/nodes/self/events',
      tags: ['nodes'],
      summary: 'Connection and exposure events, in batches',
      security: nodeSecurity,
      middleware: [requireNode] as const,
      request: { body: jsonBody(ConnectionEventBatchSchema) },
      responses: { 202: { description: 'Accepted' }, ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const node = c.get('node');
      const { events } = c.req.valid('json');
      const now = deps.clock.now();
      await deps.db.transaction(async (tx) => {
        for (const e of events) {
          const at = new Date(e.at);
          await audit(tx, Number.isNaN(at.getTime()) ? now : at, {
            type: `relay.${e.type}` as AuditType,
            actor: node.id,
            subject: e.lease_id ?? e.exposure ?? null,
            data: { ...e, node: node.name },
          });
          await recordConnectionEvent(tx, node.id, e, Number.isNaN(at.getTime()) ? now : at);
          if (e.exposure && (e.type === 'exposure_online' || e.type === 'exposure_offline')) {
            const online = e.type === 'exposure_online';
            await tx
              .update(exposures)
              .set(online ? { online, currentNodeId: node.id, onlinePort: e.port ?? null, statusAt: now } : { online, statusAt: now })
              .where(online ? eq(exposures.name, e.exposure) : and(eq(exposures.name, e.exposure), eq(exposures.currentNodeId, node.id)));
          }
        }
        await pruneConnections(tx, now);
      });
      return c.body(null, 202);
    },
  );
}
