import { createRoute } from '@hono/zod-openapi';
import { and, eq, gt, isNull } from 'drizzle-orm';
import {
  EnrollmentTokenCreateSchema,
  EnrollmentTokenCreatedSchema,
  NodeEnrollRequestSchema,
  NodeEnrollResponseSchema,
  NodeListSchema,
} from '../../protocol/api-types.js';
import { parsePublicKeyLine } from '../../protocol/ssh-key.js';
import { enrollmentTokens, nodes } from '../db/schema/index.js';
import type { App } from '../http/env.js';
import { requireAdmin, requireUser } from '../http/authenticate.js';
import { clientAddress } from '../http/client-address.js';
import { AppError } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { audit } from '../services/audit.js';
import { rateLimit } from '../services/rate-limit.js';
import { createEnrollmentToken } from '../services/enrollment.js';
import { activeExposuresByNode, isOnline } from '../services/node-selection.js';
import { bearerSecurity, errorResponses, json, jsonBody } from './common.js';

export function registerNodes(app: App): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/nodes/enrollment-tokens',
      tags: ['nodes'],
      summary: 'Create a one-time enrollment token for a relay node (admin)',
      security: bearerSecurity,
      middleware: [requireUser, requireAdmin] as const,
      request: { body: jsonBody(EnrollmentTokenCreateSchema) },
      responses: { 201: json(EnrollmentTokenCreatedSchema, 'Created; the token is shown once'), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const body = c.req.valid('json');
      const { token, expiresAt } = await createEnrollmentToken(deps, body.name, body.ttl_seconds ?? 3600, c.get('principal').userId);
      return c.json({ name: body.name, token, expires_at: expiresAt.toISOString() }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/nodes/enroll',
      tags: ['nodes'],
      summary: 'Enroll a relay node with a one-time token; returns its node id and credential',
      description: 'Enrolling again under the same name (with a new token) replaces the host key, address and credential.',
      request: { body: jsonBody(NodeEnrollRequestSchema) },
      responses: { 201: json(NodeEnrollResponseSchema, 'Enrolled'), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const now = deps.clock.now();
      await rateLimit(deps.db, now, `enroll:${clientAddress(c)}`, deps.settings.authRateLimit);
      const body = c.req.valid('json');
      try {
        parsePublicKeyLine(body.host_key);
      } catch (cause) {
        throw new AppError('VALIDATION_FAILED', 'host_key: not a valid ssh-ed25519 public key', { cause });
      }
      const nodeToken = deps.ids.secret('tnl_node');
      const node = await deps.db.transaction(async (tx) => {
        const [tok] = await tx
          .update(enrollmentTokens)
          .set({ usedAt: now })
          .where(
            and(
              eq(enrollmentTokens.tokenHash, hashSecret(body.token)),
              isNull(enrollmentTokens.usedAt),
              gt(enrollmentTokens.expiresAt, now),
            ),
          )
          .returning();
        if (!tok) throw new AppError('INVALID_CREDENTIALS', 'enrollment token is unknown, used or expired; ask an admin for a new one');
        const values = { address: body.address, hostKey: body.host_key, tokenHash: hashSecret(nodeToken), enrolledAt: now };
        const [row] = await tx
          .insert(nodes)
          .values({ id: deps.ids.id('nod'), name: tok.name, ...values })
          .onConflictDoUpdate({ target: nodes.name, set: values })
          .returning();
        await audit(tx, now, { type: 'node.enrolled', actor: tok.createdBy, subject: row!.id, data: { name: tok.name, address: body.address } });
        return row!;
      });
      return c.json({ node_id: node.id, name: node.name, node_token: nodeToken, issuer: deps.settings.issuer }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/nodes',
      tags: ['nodes'],
      summary: 'Relay nodes with their address, host key and online status',
      security: bearerSecurity,
      middleware: [requireUser] as const,
      responses: { 200: json(NodeListSchema), ...errorResponses },
    }),
    async (c) => {
      const deps = c.get('deps');
      const now = deps.clock.now();
      const [rows, load] = await Promise.all([deps.db.select().from(nodes).orderBy(nodes.name), activeExposuresByNode(deps.db, now)]);
      return c.json(
        {
          nodes: rows.map((n) => ({
            id: n.id,
            name: n.name,
            address: n.address,
            host_key: n.hostKey,
            online: isOnline(n, now, deps.settings.nodeOnlineWindow),
            last_seen_at: n.lastSeenAt ? n.lastSeenAt.toISOString() : null,
            enrolled_at: n.enrolledAt.toISOString(),
            active_exposures: load.get(n.id) ?? 0,
            egress_driver: n.egressDriver === 'iptables' ? ('iptables' as const) : n.egressDriver === 'off' ? ('off' as const) : null,
            native_crypto: n.nativeCrypto,
            version: n.version,
          })),
        },
        200,
      );
    },
  );
}
