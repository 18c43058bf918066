import { createRoute, z } from '@hono/zod-openapi';
import { asc, gt } from 'drizzle-orm';
import { AuditListSchema } from '../../protocol/api-types.js';
import { auditEvents } from '../db/schema/index.js';
import type { App } from '../http/env.js';
import { requireAdmin, requireUser } from '../http/authenticate.js';
import { bearerSecurity, errorResponses, json } from './common.js';

export function registerAudit(app: App): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/audit',
      tags: ['admin'],
      summary: 'Audit events, oldest first, after a cursor (admin)',
      security: bearerSecurity,
      middleware: [requireUser, requireAdmin] as const,
      request: {
        query: z.strictObject({
          after: z.string().regex(/^\d{1,15}$/).optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
      },
      responses: { 200: json(AuditListSchema), ...errorResponses },
    }),
    async (c) => {
      const q = c.req.valid('query');
      const rows = await c
        .get('deps')
        .db.select()
        .from(auditEvents)
        .where(gt(auditEvents.seq, Number(q.after ?? '0')))
        .orderBy(asc(auditEvents.seq))
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
