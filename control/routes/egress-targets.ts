import { createRoute, z } from '@hono/zod-openapi';
import { EgressTargetListSchema, EgressTargetPutSchema, EgressTargetSchema, TargetNameSchema } from '../../protocol/api-types.js';
import type { App } from '../http/env.js';
import { deleteEgressTarget, listEgressTargets, putEgressTarget } from '../services/egress-targets.js';
import { allowListErrorResponses, bearerSecurity, errorResponses, guarded, json, jsonBody } from './common.js';

const NameParam = z.object({ name: TargetNameSchema });

export function registerEgressTargets(app: App): void {
  app.openapi(
    createRoute(
      guarded('egress_target.put', {
        method: 'put',
        path: '/v1/egress-targets/{name}',
        tags: ['admin'],
        summary: 'Define a host:port on a relay\'s own network that egress leases may reach (admin)',
        description:
          'Moving a target or taking users off its allow list revokes the egress leases that no longer hold. ' +
          'A name the allow list adds that no user has is 400 UNKNOWN_USER.',
        security: bearerSecurity,
        request: { params: NameParam, body: jsonBody(EgressTargetPutSchema) },
        responses: { 200: json(EgressTargetSchema, 'Saved'), ...allowListErrorResponses },
      }),
    ),
    async (c) => c.json(await putEgressTarget(c.get('deps'), c.get('user'), c.req.valid('param').name, c.req.valid('json')), 200),
  );

  app.openapi(
    createRoute(
      guarded('egress_target.list', {
        method: 'get',
        path: '/v1/egress-targets',
        tags: ['admin'],
        summary: 'Egress targets you may use (admins: all)',
        security: bearerSecurity,
        responses: { 200: json(EgressTargetListSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json({ targets: await listEgressTargets(c.get('deps'), c.get('user')) }, 200),
  );

  app.openapi(
    createRoute(
      guarded('egress_target.delete', {
        method: 'delete',
        path: '/v1/egress-targets/{name}',
        tags: ['admin'],
        summary: 'Delete an egress target and revoke the egress leases that reach it (admin)',
        security: bearerSecurity,
        request: { params: NameParam },
        responses: { 204: { description: 'Deleted' }, ...errorResponses },
      }),
    ),
    async (c) => {
      await deleteEgressTarget(c.get('deps'), c.get('user'), c.req.valid('param').name);
      return c.body(null, 204);
    },
  );
}
