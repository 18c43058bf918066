import { createRoute, z } from '@hono/zod-openapi';
import { UserCreateSchema, UserListSchema, UserNameSchema, UserPatchSchema, UserSchema } from '../../protocol/api-types.js';
import type { App } from '../http/env.js';
import { createUserAs, disableUser, listUsers, updateUser, userView } from '../services/users.js';
import { bearerSecurity, errorResponses, guarded, json, jsonBody } from './common.js';

export function registerUsers(app: App): void {
  app.openapi(
    createRoute(
      guarded('user.create', {
        method: 'post',
        path: '/v1/users',
        tags: ['admin'],
        summary: 'Create a user (admin)',
        security: bearerSecurity,
        request: { body: jsonBody(UserCreateSchema) },
        responses: { 201: json(UserSchema, 'Created'), ...errorResponses },
      }),
    ),
    async (c) => {
      const row = await createUserAs(c.get('deps'), c.get('user'), c.req.valid('json'));
      return c.json(userView(row), 201);
    },
  );

  app.openapi(
    createRoute(
      guarded('user.list', {
        method: 'get',
        path: '/v1/users',
        tags: ['admin'],
        summary: 'List users (admin)',
        security: bearerSecurity,
        responses: { 200: json(UserListSchema), ...errorResponses },
      }),
    ),
    async (c) => c.json({ users: await listUsers(c.get('deps')) }, 200),
  );

  app.openapi(
    createRoute(
      guarded('user.disable', {
        method: 'delete',
        path: '/v1/users/{name}',
        tags: ['admin'],
        summary: 'Disable a user: revokes their sessions, service tokens and leases (admin)',
        security: bearerSecurity,
        request: { params: z.object({ name: UserNameSchema }) },
        responses: { 200: json(UserSchema, 'Disabled'), ...errorResponses },
      }),
    ),
    async (c) => c.json(await disableUser(c.get('deps'), c.get('user'), c.req.valid('param').name), 200),
  );

  app.openapi(
    createRoute(
      guarded('user.update', {
        method: 'patch',
        path: '/v1/users/{name}',
        tags: ['admin'],
        summary: 'Enable or disable a user, or change their role (admin); takes effect on their next request',
        security: bearerSecurity,
        request: { params: z.object({ name: UserNameSchema }), body: jsonBody(UserPatchSchema) },
        responses: { 200: json(UserSchema, 'Updated'), ...errorResponses },
      }),
    ),
    async (c) => c.json(await updateUser(c.get('deps'), c.get('user'), c.req.valid('param').name, c.req.valid('json')), 200),
  );
}
