import { createRoute, z } from '@hono/zod-openapi';
import { ExposureListSchema, ExposurePutSchema, ExposureSchema } from '../../protocol/api-types.js';
import { EXPOSURE_NAME_RE } from '../../protocol/lease-claims.js';
import type { App } from '../http/env.js';
import { deleteExposure, getExposure, listExposures, putExposure } from '../services/exposures.js';
import { allowListErrorResponses, bearerSecurity, errorResponses, guarded, json, jsonBody } from './common.js';

const NameParam = z.object({ name: z.string().regex(EXPOSURE_NAME_RE, 'must match [a-z0-9-]{1,63}') });

export function registerExposures(app: App): void {
  app.openapi(
    createRoute(
      guarded(['exposure.create', 'exposure.update', 'exposure.pin'], {
        method: 'put',
        path: '/v1/exposures/{name}',
        tags: ['exposures'],
        summary: 'Create or update an exposure (owner or admin)',
        description:
          'Creates the exposure (any user; a service token needs expose:NAME or manage:NAME) or replaces its allow list ' +
          '(owner or admin; a service token needs manage:NAME). Users taken off the allow list lose their open leases at once; ' +
          'a name it adds that no user has is 400 UNKNOWN_USER. ' +
          '`node` pins or unpins it (admins). A new exposure past the cap on what one member owns (1,000 by default; admins: none) is 409 CONFLICT. ' +
          '`expect_allow`: the allow list as you read it; if it changed since (or the exposure does not exist), nothing changes and the answer is 409 CONFLICT: read it again and redo the edit.',
        security: bearerSecurity,
        request: { params: NameParam, body: jsonBody(ExposurePutSchema) },
        responses: { 200: json(ExposureSchema, 'Updated'), 201: json(ExposureSchema, 'Created'), ...allowListErrorResponses },
      }),
    ),
    async (c) => {
      const { name } = c.req.valid('param');
      const { exposure, created } = await putExposure(c.get('deps'), c.get('user'), name, c.req.valid('json'));
      return created ? c.json(exposure, 201) : c.json(exposure, 200);
    },
  );

  app.openapi(
    createRoute(
      guarded('exposure.list', {
        method: 'get',
        path: '/v1/exposures',
        tags: ['exposures'],
        summary: 'Exposures you own or may open',
        security: bearerSecurity,
        responses: { 200: json(ExposureListSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json({ exposures: await listExposures(c.get('deps'), c.get('user')) }, 200),
  );

  app.openapi(
    createRoute(
      guarded('exposure.read', {
        method: 'get',
        path: '/v1/exposures/{name}',
        tags: ['exposures'],
        summary: 'One exposure',
        security: bearerSecurity,
        request: { params: NameParam },
        responses: { 200: json(ExposureSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json(await getExposure(c.get('deps'), c.get('user'), c.req.valid('param').name), 200),
  );

  app.openapi(
    createRoute(
      guarded('exposure.delete', {
        method: 'delete',
        path: '/v1/exposures/{name}',
        tags: ['exposures'],
        summary: 'Delete an exposure and revoke its leases (owner or admin)',
        security: bearerSecurity,
        request: { params: NameParam },
        responses: { 204: { description: 'Deleted' }, ...errorResponses },
      }),
    ),
    async (c) => {
      await deleteExposure(c.get('deps'), c.get('user'), c.req.valid('param').name);
      return c.body(null, 204);
    },
  );
}
