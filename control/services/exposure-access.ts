import type { exposures } from '../db/schema/index.js';
import type { Principal } from '../http/env.js';

type ExposureRow = typeof exposures.$inferSelect;

/** Owner, admins and users on the ACL may open an exposure (and see it). */
export function canOpen(exp: ExposureRow, p: Pick<Principal, 'userId' | 'name' | 'role'>): boolean {
  return exp.ownerId === p.userId || p.role === 'admin' || exp.allow.includes(p.name);
}

/** Only the owner and admins may change, expose or delete an exposure. */
export function canManage(exp: ExposureRow, p: Pick<Principal, 'userId' | 'role'>): boolean {
  return exp.ownerId === p.userId || p.role === 'admin';
}
