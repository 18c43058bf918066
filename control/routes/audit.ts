import { createRoute, z } from '@hono/zod-openapi';
import { AuditListSchema, instant } from '../../protocol/api-types.js';
import type { App } from '../http/env.js';
import { listAudit } from '../services/audit.js';
import { bearerSecurity, errorResponses, guarded, json, queryInt } from './common.js';

const Cursor = z.string().regex(/^\d{1,15}$/);
/** primitives.ts's instant: a bound the database can compare with (a year-0 one was a 500). */
const Instant = instant().describe('RFC 3339 timestamp, years 1970 to 9999');

const AuditQuery = z.strictObject({
  after: Cursor.optional().describe('oldest first: events after this cursor (the `id` of the last event read, or `next_cursor`)'),
  before: Cursor.optional().describe('newest first (`order=desc`): events with a smaller `id`'),
  order: z.enum(['asc', 'desc']).default('asc'),
  limit: queryInt(1, 1000, 100),
  actor: z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/).optional().describe('user or node id'),
  type: z
    .string()
    .regex(/^[a-z_]+(\.[a-z_]*)?$/)
    .max(64)
    .optional()
    .describe('an event type, or a prefix ending in a dot (`lease.`)'),
  subject: z.string().regex(/^[A-Za-z0-9_.:@-]{1,128}$/).optional(),
  since: Instant.optional(),
  until: Instant.optional(),
});

export function registerAudit(app: App): void {
  app.openapi(
    createRoute(
      guarded('audit.read', {
        method: 'get',
        path: '/v1/audit',
        tags: ['admin'],
        summary: 'Audit events, filtered and paged by cursor: oldest first (`after`) or newest first (`order=desc`, `before`) (admin)',
        description: [
          'Oldest first (the default) is for tailing the log: resume with `after` set to the `id` of the last event read',
          '(or to `next_cursor`, present when a page is full). It never pages past an event that commits later: it returns only',
          'events whose transaction ended before the oldest transaction still writing began, in the order their transactions',
          'began writing (`id`s are drawn at insert, not at commit, so within a page they may be slightly out of order).',
          'A long transaction therefore holds events back: a page may end early, even empty, while more exist; poll again from',
          'the same cursor. The log is pruned from its oldest event in this order, so a cursor whose event is gone (pruned)',
          'resumes at the oldest event kept, and returns none it returned before; one above every `id` drawn, at the events with a greater `id`.',
          'Newest first (`order=desc`, `before`) is for browsing: every committed event by `id`, newest at once; an event that',
          'commits late may appear below the top of a list already read.',
        ].join(' '),
        security: bearerSecurity,
        request: { query: AuditQuery },
        responses: { 200: json(AuditListSchema), ...errorResponses },
      }),
    ),
    async (c) => {
      const q = c.req.valid('query');
      return c.json(
        await listAudit(c.get('deps').db, {
          ...q,
          after: q.after === undefined ? undefined : Number(q.after),
          before: q.before === undefined ? undefined : Number(q.before),
          since: q.since === undefined ? undefined : new Date(q.since),
          until: q.until === undefined ? undefined : new Date(q.until),
        }),
        200,
      );
    },
  );
}
