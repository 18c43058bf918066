import { createRoute, z } from '@hono/zod-openapi';
import {
  ConnectionEventSchema,
  EVENT_BATCH_MAX_EVENTS,
  EventBatchResultSchema,
  NodeHeartbeatRequestSchema,
  NodeHeartbeatResponseSchema,
  RevocationFeedSchema,
  type ConnectionEvent,
} from '../../protocol/api-types.js';
import type { App, AppEnv } from '../http/env.js';
import type { Context } from 'hono';
import type { NodePrincipal } from '../services/authz.js';
import { heartbeat, MAX_FEED_WAIT, recordEvents, revocationFeed, type EventRejection } from '../services/nodes.js';
import { countEventBatch } from '../services/relay-event-limit.js';
import { errorResponses, guarded, json, jsonBody, registerRequestComponent } from './common.js';

const nodeSecurity = [{ nodeToken: [] }];

/**
 * The events body: the envelope is validated as a whole (400 when it is malformed), each event
 * by readEvents, on its own; /openapi.json documents the events as the ConnectionEvent component.
 */
const EventBatchBody = z.strictObject({
  events: z
    .array(z.unknown().openapi({ allOf: [{ $ref: '#/components/schemas/ConnectionEvent' }] }))
    .min(1)
    .max(EVENT_BATCH_MAX_EVENTS),
});

const EVENT_FIELDS: ReadonlySet<string> = new Set(Object.keys(ConnectionEventSchema.shape));

/**
 * A batch's events that follow ConnectionEventSchema, and why each other one was refused. The
 * field named is the schema's own, never a key the relay made up (its text goes nowhere).
 */
export function readEvents(raw: readonly unknown[]): { events: ConnectionEvent[]; rejected: EventRejection[] } {
  const events: ConnectionEvent[] = [];
  const rejected: EventRejection[] = [];
  raw.forEach((item, index) => {
    const r = ConnectionEventSchema.safeParse(item);
    if (r.success) {
      events.push(r.data);
      return;
    }
    if (r.error.issues.some((i) => i.code === 'unrecognized_keys')) {
      rejected.push({ index, code: 'UNKNOWN_FIELD' });
      return;
    }
    const field = r.error.issues[0]?.path[0];
    rejected.push({ index, code: 'VALIDATION_FAILED', ...(typeof field === 'string' && EVENT_FIELDS.has(field) ? { field } : {}) });
  });
  return { events, rejected };
}
const nodeOf = (c: Context<AppEnv>) => c.get('principal') as NodePrincipal;

export function registerNodeSelf(app: App): void {
  // Not openAPIRegistry.register: zod 4 gives .openapi() only to schemas made after
  // @hono/zod-openapi is loaded, and protocol/ may be loaded first.
  registerRequestComponent(app, 'ConnectionEvent', ConnectionEventSchema);
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
        description:
          'Each event is read on its own: one that does not follow ConnectionEvent is refused alone (listed in `rejected` with its index and a stable code, VALIDATION_FAILED or UNKNOWN_FIELD, counted and audited as relay.events_rejected) and the others are recorded. A malformed envelope (not an object with 1 to 1000 events) is a 400. Each relay may send a bounded number of batches and events a minute (600 and 60,000 by default); over either, 429 RATE_LIMITED with Retry-After, and the batch is not read: send it again after that.',
        security: nodeSecurity,
        request: { body: jsonBody(EventBatchBody) },
        responses: { 202: json(EventBatchResultSchema, 'Accepted: the valid events are recorded'), ...errorResponses },
      }),
    ),
    async (c) => {
      const raw = c.req.valid('json').events;
      await countEventBatch(c.get('deps'), nodeOf(c), raw.length);
      const { events, rejected } = readEvents(raw);
      await recordEvents(c.get('deps'), nodeOf(c), events, rejected);
      return c.json({ accepted: events.length, rejected }, 202);
    },
  );
}
