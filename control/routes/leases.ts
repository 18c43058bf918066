import { createRoute, z } from '@hono/zod-openapi';
import { LeaseIdSchema } from '../../protocol/lease-claims.js';
import { LeaseCreateSchema, LeaseIssuedSchema, LeaseListSchema, LeaseSchema } from '../../protocol/api-types.js';
import type { Context } from 'hono';
import type { App, AppEnv } from '../http/env.js';
import { LEASE_ISSUANCE_LIMIT } from '../http/lease-rate-limit.js';
import { createLease, getLease, listLeases, revokeLease } from '../services/leases.js';
import { issueOnLastSeen, lastSeenRequest } from '../services/lease-last-seen.js';
import { AppError } from '../lib/errors.js';
import { bearerSecurity, errorResponses, guarded, json, jsonBody, problem, queryInt } from './common.js';

const IdParam = z.object({ id: LeaseIdSchema });
const ListQuery = z.strictObject({
  active: z.enum(['true', 'false']).optional(),
  all: z.enum(['true', 'false']).optional().describe('admins (not service tokens): every user\'s leases'),
  limit: queryInt(1, 500, 100),
});

/**
 * The exposure a lease request names, for the guard to read with the caller (one round trip
 * less per lease, issue 11): the body as requireJson parsed it, before validation, which still
 * decides what the request may be. Anything but a string is no name.
 */
async function requestedExposure(c: Context<AppEnv>): Promise<string | undefined> {
  const body: unknown = await c.req.json().catch(() => undefined);
  const name = typeof body === 'object' && body !== null ? (body as { exposure?: unknown }).exposure : undefined;
  return typeof name === 'string' ? name : undefined;
}

export function registerLeases(app: App): void {
  app.openapi(
    createRoute(
      guarded(['lease.issue.expose', 'lease.issue.open', 'lease.issue.egress'], {
        method: 'post',
        path: '/v1/leases',
        tags: ['leases'],
        summary: 'Issue a lease: token, OpenSSH certificate for your public key, and the relay to use',
        security: bearerSecurity,
        rateLimit: LEASE_ISSUANCE_LIMIT,
        exposureOf: requestedExposure,
        lastSeenLease: true,
        request: { body: jsonBody(LeaseCreateSchema) },
        responses: {
          201: json(LeaseIssuedSchema, 'Lease issued'),
          ...errorResponses,
          400: problem(
            'Invalid request (VALIDATION_FAILED, UNKNOWN_FIELD, INVALID_JSON), a field of another kind of lease (LEASE_KIND_MISMATCH), or egress targets too long together for one certificate (LEASE_TOO_LARGE)',
          ),
          503: problem('No relay node is online to carry it (NO_NODE_AVAILABLE), or the database cannot be reached (DATABASE_UNAVAILABLE); retryable'),
        },
      }),
    ),
    async (c) => {
      const deps = c.get('deps');
      const deferred = c.get('leaseLastSeen');
      const req = c.req.valid('json');
      const seen = deferred && lastSeenRequest(deferred, req);
      let issued = seen && (await issueOnLastSeen(deps, seen, LEASE_ISSUANCE_LIMIT));
      if (!issued) {
        await deferred?.usualPath();
        issued = await createLease(deps, c.get('user'), c.get('callerAsRead'), req, c.get('callerExposure'));
        if (!issued) {
          // What the decision read changed before the lease could be written (a revocation, or
          // another change, committed meanwhile): nothing was written; decide again on what is there now.
          await c.get('leaseCallerAgain')();
          issued = await createLease(deps, c.get('user'), c.get('callerAsRead'), req);
        }
        if (!issued) throw new AppError('CONFLICT', 'the caller or the exposure changed twice while the lease was issued; retry', { retryable: true });
      }
      c.header('cache-control', 'no-store');
      return c.json(issued, 201);
    },
  );

  app.openapi(
    createRoute(
      guarded(['lease.list', 'lease.list_all'], {
        method: 'get',
        path: '/v1/leases',
        tags: ['leases'],
        summary: 'List your leases (admins: `all=true` for everyone\'s; a service token: the ones it issued)',
        security: bearerSecurity,
        request: { query: ListQuery },
        responses: { 200: json(LeaseListSchema), ...errorResponses },
      }),
    ),
    async (c) => {
      const q = c.req.valid('query');
      const rows = await listLeases(c.get('deps'), c.get('user'), { all: q.all === 'true', active: q.active === 'true', limit: q.limit });
      return c.json({ leases: rows }, 200);
    },
  );

  app.openapi(
    createRoute(
      guarded('lease.read', {
        method: 'get',
        path: '/v1/leases/{id}',
        tags: ['leases'],
        summary: 'One lease',
        security: bearerSecurity,
        request: { params: IdParam },
        responses: { 200: json(LeaseSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json(await getLease(c.get('deps'), c.get('user'), c.req.valid('param').id), 200),
  );

  app.openapi(
    createRoute(
      guarded('lease.revoke', {
        method: 'delete',
        path: '/v1/leases/{id}',
        tags: ['leases'],
        summary: 'Revoke a lease; every relay closes its connections within 5 seconds',
        security: bearerSecurity,
        request: { params: IdParam },
        responses: { 200: json(LeaseSchema, 'Revoked (or already ended)'), ...errorResponses },
      }),
    ),
    async (c) => c.json(await revokeLease(c.get('deps'), c.get('user'), c.req.valid('param').id), 200),
  );
}
