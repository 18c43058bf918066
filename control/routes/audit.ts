import { createRoute, z } from '@hono/zod-openapi';
import { and, asc, desc, eq, gt, gte, like, lt, lte, type SQL } from 'drizzle-orm';
import { AuditListSchema } from '../../protocol/api-types.js';
import { auditEvents } from '../db/schema/index.js';
import type { App } from '../http/env.js';
import { requireAdmin, requireUser } from '../http/authenticate.js';
import { bearerSecurity, errorResponses, json } from './common.js';

const Cursor = z.string().regex(/^\d{1,15}$/);
const Instant = z.iso.datetime({ offset: true }).describe('RFC 3339 timestamp');

const AuditQuery = z.strictObject({
  after: Cursor.optional().describe('oldest first: events after this cursor'),
  before: Cursor.optional().describe('newest first: events before this cursor'),
  order: z.enum(['asc', 'desc']).default('asc'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
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
    createRoute({
      method: 'get',
      path: '/v1/audit',
      tags: ['admin'],
      summary: 'Audit events, filtered and paged by cursor: oldest first (`after`) or newest first (`order=desc`, `before`) (admin)',
      security: bearerSecurity,
      middleware: [requireUser, requireAdmin] as const,
      request: { query: AuditQuery },
      responses: { 200: json(AuditListSchema), ...errorResponses },
    }),
    async (c) => {
      const q = c.req.valid('query');
      const conds: SQL[] = [];
      if (q.after) conds.push(gt(auditEvents.seq, Number(q.after)));
      if (q.before) conds.push(lt(auditEvents.seq, Number(q.before)));
      if (q.actor) conds.push(eq(auditEvents.actor, q.actor));
      if (q.type) conds.push(q.type.endsWith('.') ? like(auditEvents.type, `${q.type.replace(/_/g, '\\_')}%`) : eq(auditEvents.type, q.type));
      if (q.subject) conds.push(eq(auditEvents.subject, q.subject));
      if (q.since) conds.push(gte(auditEvents.at, new Date(q.since)));
      if (q.until) conds.push(lte(auditEvents.at, new Date(q.until)));
      const rows = await c
        .get('deps')
        .db.select()
        .from(auditEvents)
        .where(conds.length ? and(...conds) : undefined)
        .orderBy(q.order === 'desc' ? desc(auditEvents.seq) : asc(auditEvents.seq))
        .limit(q.limit);
      return c.json(
        {
          events: rows.map((r) => ({ id: String(r.seq), at: r.at.toISOString(), type: r.type, actor: r.actor, subject: r.subject, data: r.data })),
          next_cursor: rows.length === q.limit ? String(rows[rows.length - 1]!.seq) : null,
        },
        200,
      );
    },
  );
}
