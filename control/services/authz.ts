/**
 * The one authorization policy of the control plane: may this principal do this action on this
 * resource? Every route names its action (see `http/guard.ts`), every service asks here before it
 * reads or changes a resource, and nothing else decides. Deny by default: an action needs a rule
 * to exist at all, and a rule that does not say yes says no.
 *
 * Service-token scopes (the vocabulary; NAME may be `*` for every name):
 *   expose:NAME   see exposure NAME, create it if it does not exist yet, get expose leases for it
 *   open:NAME     see exposure NAME, get open leases for it
 *   manage:NAME   see exposure NAME, change its allow list, delete it
 *   egress:TARGET see egress target TARGET, get egress leases to it
 * Besides what its scopes say, a scoped token may read `/v1/me` and see or revoke the leases it
 * was itself used to issue; nothing else (no users, service tokens, nodes, audit, pinning, other
 * leases, `?all=true`). A scope never adds to what the token's user may do: the user's own rights
 * (owner, admin, allow lists) still apply on top.
 */
import type { ErrorCode } from '../../protocol/error-codes.js';
import { AppError } from '../lib/errors.js';

export type Role = 'admin' | 'member';

/** A user, through an interactive login or through a service token (then `scopes` is set). */
export interface UserPrincipal {
  kind: 'user';
  userId: string;
  name: string;
  role: Role;
  /** What the service token behind this access token may do; null for interactive logins. */
  scopes: readonly Scope[] | null;
  serviceTokenId: string | null;
  /**
   * When the service token behind this access token expires (null: never, or not a service
   * token's access token), as the database has it: no lease outlives it (services/leases.ts signLease).
   */
  serviceTokenExpiresAt?: Date | null;
  /** The login session (refresh token family) of an interactive login's access token. */
  sessionId?: string | null;
  /**
   * When that session ends unless it is refreshed (the access token's `sxp`; null: not a
   * session's token, or one minted before tokens carried it): no lease outlives it (signLease).
   */
  sessionEndsAt?: Date | null;
}

/** An enrolled relay node, through its node credential. */
export interface NodePrincipal {
  kind: 'node';
  nodeId: string;
  name: string;
}

export interface AnonymousPrincipal {
  kind: 'anonymous';
}

export type Principal = UserPrincipal | NodePrincipal | AnonymousPrincipal;
export const ANONYMOUS: AnonymousPrincipal = Object.freeze({ kind: 'anonymous' });

export const SCOPE_VERBS = ['expose', 'open', 'manage', 'egress'] as const;
export type ScopeVerb = (typeof SCOPE_VERBS)[number];
export interface Scope {
  verb: ScopeVerb;
  /** A name, or `*` for every name. */
  name: string;
}

/** Parses scope strings (`verb:NAME`); strings outside the vocabulary grant nothing. */
export function parseScopes(strings: readonly string[]): Scope[] {
  const out: Scope[] = [];
  for (const s of strings) {
    const i = s.indexOf(':');
    const verb = s.slice(0, i) as ScopeVerb;
    if (i > 0 && SCOPE_VERBS.includes(verb)) out.push({ verb, name: s.slice(i + 1) });
  }
  return out;
}

export const formatScope = (s: Scope): string => `${s.verb}:${s.name}`;

/** Whether a principal's scopes (if it has any) allow `verb` on `name`. */
export function scopeAllows(p: UserPrincipal, verb: ScopeVerb, name: string): boolean {
  return p.scopes === null || p.scopes.some((s) => s.verb === verb && (s.name === '*' || s.name === name));
}

// ---- resources (what the policy needs to know about each; `exists: false` for a missing one) ----

export interface ExposureResource {
  name: string;
  /** null: no exposure of this name exists. */
  ownerId: string | null;
  allow: readonly string[];
}
export interface EgressTargetResource {
  name: string;
  /** null: no target of this name exists. */
  allow: readonly string[] | null;
}
export interface LeaseResource {
  userId: string;
  serviceTokenId: string | null;
}
export interface OwnedResource {
  userId: string;
}
export interface UserResource {
  name: string;
}
export interface ConnectionResource {
  /** The user the connection's lease was issued to (null: the relay named no lease we know). */
  leaseUserId: string | null;
  /** The owner of the exposure the lease is for (null: egress, or no such exposure). */
  exposureOwnerId: string | null;
}
export interface OnlineClaim {
  exposure: string;
  /** The node holds an active (unrevoked, unexpired) expose lease for the exposure, issued for it. */
  holdsExposeLease: boolean;
}

// ---- decisions ----

export type Decision = { allow: true } | { allow: false; code: ErrorCode; detail: string };
const ALLOW: Decision = Object.freeze({ allow: true });
const deny = (code: ErrorCode, detail: string): Decision => ({ allow: false, code, detail });
/** The resource is not visible to this principal: it gets the same answer as for a missing one. */
const hide = (what: string): Decision => deny('NOT_FOUND', `${what} not found`);

/** Who may even ask: nobody in particular, a user's access token, or a node credential. */
export type Authn = 'none' | 'user' | 'node';

interface Rule<P extends Principal, R> {
  authn: Authn;
  /** True when the rule needs the resource; the route's guard then leaves the decision to the service. */
  onResource: boolean;
  decide(p: P, r: R): Decision;
}

const anyone = (): Rule<Principal, void> => ({ authn: 'none', onResource: false, decide: () => ALLOW });
const user = (decide: (p: UserPrincipal) => Decision): Rule<UserPrincipal, void> => ({ authn: 'user', onResource: false, decide });
const userOn = <R>(decide: (p: UserPrincipal, r: R) => Decision): Rule<UserPrincipal, R> => ({ authn: 'user', onResource: true, decide });
const node = (): Rule<NodePrincipal, void> => ({ authn: 'node', onResource: false, decide: () => ALLOW });
const nodeOn = <R>(decide: (p: NodePrincipal, r: R) => Decision): Rule<NodePrincipal, R> => ({ authn: 'node', onResource: true, decide });

export const isAdmin = (p: UserPrincipal): boolean => p.role === 'admin';

/** Admins through an interactive login only: no service token reaches operator actions. */
function adminOnly(p: UserPrincipal): Decision {
  if (!isAdmin(p)) return deny('FORBIDDEN', 'this needs the admin role');
  if (p.scopes) return deny('SCOPE_DENIED', 'service tokens cannot do admin actions');
  return ALLOW;
}

function unscoped(p: UserPrincipal, what: string): Decision {
  return p.scopes ? deny('SCOPE_DENIED', `a service token cannot ${what}`) : ALLOW;
}

/** Service tokens: their user's and admins' business, never another service token's. */
function ownOrAdmin(p: UserPrincipal, r: OwnedResource, what: string): Decision {
  if (p.scopes) return deny('SCOPE_DENIED', `a service token cannot ${what}s`);
  return r.userId === p.userId || isAdmin(p) ? ALLOW : hide('service token');
}

/** Owner, admins and users on the allow list may see and open an exposure. */
const mayOpen = (p: UserPrincipal, e: ExposureResource) => e.ownerId === p.userId || isAdmin(p) || e.allow.includes(p.name);
const mayManage = (p: UserPrincipal, e: ExposureResource) => e.ownerId === p.userId || isAdmin(p);
const anyExposureScope = (p: UserPrincipal, name: string) =>
  scopeAllows(p, 'expose', name) || scopeAllows(p, 'open', name) || scopeAllows(p, 'manage', name);

function exposureVisible(p: UserPrincipal, e: ExposureResource): Decision {
  if (e.ownerId === null || !mayOpen(p, e) || !anyExposureScope(p, e.name)) return hide(`exposure "${e.name}"`);
  return ALLOW;
}

/**
 * Changing or deleting an exposure: the owner or an admin, and a scoped token needs manage:NAME.
 * The name of an existing exposure is no secret to someone who tries to take it (PUT), so that
 * gets FORBIDDEN; a DELETE of one you cannot see gets the answer for a missing one.
 */
function manageExposure(p: UserPrincipal, e: ExposureResource, what: string, hideInvisible: boolean): Decision {
  if (hideInvisible) {
    const seen = exposureVisible(p, e);
    if (!seen.allow) return seen;
  } else if (e.ownerId === null) return hide(`exposure "${e.name}"`);
  if (!scopeAllows(p, 'manage', e.name)) return deny('SCOPE_DENIED', `this service token may not ${what} "${e.name}" (needs manage:${e.name})`);
  if (!mayManage(p, e)) return deny('FORBIDDEN', `"${e.name}" belongs to another user: only its owner or an admin may ${what} it`);
  return ALLOW;
}

function leaseVisible(p: UserPrincipal, l: LeaseResource, id = 'lease'): Decision {
  if (l.userId !== p.userId && !isAdmin(p)) return hide(id);
  // A scoped token sees only what it issued itself, even for an admin.
  if (p.scopes && l.serviceTokenId !== p.serviceTokenId) return hide(id);
  return ALLOW;
}

/**
 * Every action, with who may do it. The keys are the action names routes declare
 * (`x-tunnel-action` in /openapi.json).
 */
const RULES = {
  // Public endpoints: the credential is in the body (setup code, device code, enrollment token...).
  'public.read': anyone(),
  'auth.device.start': anyone(),
  'auth.token': anyone(),
  'setup.admin': anyone(),
  'node.enroll': anyone(),

  'self.read': user(() => ALLOW),
  // A login session is ended by a login of its user: the one the access token names, or any
  // other of theirs whose refresh token is presented (RFC 7009: holding it is the authority to
  // revoke it). A service token has no session, and no scope names one: it ends none.
  'self.logout': user((p) => unscoped(p, 'end a login session')),

  'user.create': user(adminOnly),
  'user.list': user(adminOnly),
  'user.disable': userOn<UserResource>((p, u) => {
    const d = adminOnly(p);
    if (!d.allow) return d;
    return u.name === p.name ? deny('CONFLICT', 'you cannot disable yourself') : ALLOW;
  }),
  'user.update': userOn<UserResource>((p, u) => {
    const d = adminOnly(p);
    if (!d.allow) return d;
    return u.name === p.name ? deny('CONFLICT', 'you cannot change your own role or state') : ALLOW;
  }),
  'audit.read': user(adminOnly),
  'node.enrollment_token.create': user(adminOnly),
  'node.list': user((p) => unscoped(p, 'list relay nodes')),
  'node.delete': user(adminOnly),

  'service_token.create': userOn<OwnedResource>((p, r) => {
    if (p.scopes) return deny('SCOPE_DENIED', 'a service token cannot create service tokens');
    return r.userId === p.userId || isAdmin(p) ? ALLOW : deny('FORBIDDEN', 'only admins create service tokens for other users');
  }),
  'service_token.list': user((p) => unscoped(p, 'list service tokens')),
  'service_token.read': userOn<OwnedResource>((p, r) => ownOrAdmin(p, r, 'see service token')),
  'service_token.revoke': userOn<OwnedResource>((p, r) => ownOrAdmin(p, r, 'revoke service token')),
  'service_token.update': userOn<OwnedResource>((p, r) => ownOrAdmin(p, r, 'change service token')),

  'exposure.list': user(() => ALLOW),
  'exposure.read': userOn<ExposureResource>(exposureVisible),
  'exposure.create': userOn<ExposureResource>((p, e) => {
    if (!scopeAllows(p, 'expose', e.name) && !scopeAllows(p, 'manage', e.name)) {
      return deny('SCOPE_DENIED', `this service token may not create "${e.name}" (needs expose:${e.name})`);
    }
    return ALLOW;
  }),
  'exposure.update': userOn<ExposureResource>((p, e) => manageExposure(p, e, 'change the allow list of', false)),
  'exposure.delete': userOn<ExposureResource>((p, e) => manageExposure(p, e, 'delete', true)),
  'exposure.pin': user((p) => (isAdmin(p) && !p.scopes ? ALLOW : deny('FORBIDDEN', 'only admins may pin or unpin an exposure'))),

  'egress_target.list': user(() => ALLOW),
  'egress_target.read': userOn<EgressTargetResource>((p, t) => {
    if (t.allow === null || !(isAdmin(p) || t.allow.includes(p.name)) || !scopeAllows(p, 'egress', t.name)) return hide(`egress target "${t.name}"`);
    return ALLOW;
  }),
  'egress_target.put': user(adminOnly),
  'egress_target.delete': user(adminOnly),

  'lease.issue.expose': userOn<ExposureResource>((p, e) => {
    if (!scopeAllows(p, 'expose', e.name)) return deny('SCOPE_DENIED', `this service token may not expose "${e.name}"`);
    if (e.ownerId === null) return hide(`exposure "${e.name}" (create it with PUT /v1/exposures/${e.name})`);
    if (!mayManage(p, e)) return deny('FORBIDDEN', `only the owner of "${e.name}" or an admin may expose it`);
    return ALLOW;
  }),
  'lease.issue.open': userOn<ExposureResource>((p, e) => {
    if (!scopeAllows(p, 'open', e.name)) return deny('SCOPE_DENIED', `this service token may not open "${e.name}"`);
    if (e.ownerId === null) return hide(`exposure "${e.name}"`);
    if (!mayOpen(p, e)) return deny('NOT_IN_ACL', `you are not in the allow list (ACL) of "${e.name}"`);
    return ALLOW;
  }),
  'lease.issue.egress': userOn<EgressTargetResource>((p, t) => {
    if (!scopeAllows(p, 'egress', t.name)) return deny('SCOPE_DENIED', `this service token may not use egress target "${t.name}"`);
    if (t.allow === null) return hide(`egress target "${t.name}"`);
    if (!isAdmin(p) && !t.allow.includes(p.name)) return deny('NOT_IN_ACL', `you may not use egress target "${t.name}"`);
    return ALLOW;
  }),
  'connection.list': user((p) => unscoped(p, 'list connections')),
  /** A member sees connections under their own leases and to exposures they own; admins all. */
  'connection.read': userOn<ConnectionResource>((p, c) => {
    if (p.scopes) return deny('SCOPE_DENIED', 'a service token cannot see connections');
    return isAdmin(p) || c.leaseUserId === p.userId || c.exposureOwnerId === p.userId ? ALLOW : hide('connection');
  }),
  'lease.list': user(() => ALLOW),
  'lease.list_all': user(adminOnly),
  'lease.read': userOn<LeaseResource>((p, l) => leaseVisible(p, l)),
  'lease.revoke': userOn<LeaseResource>((p, l) => leaseVisible(p, l)),

  'node.heartbeat': node(),
  'node.revocations': node(),
  'node.events': node(),
  /** Finding 2 of issue 9: a relay brings online only what it holds an expose lease for. */
  'exposure.set_online': nodeOn<OnlineClaim>((_p, c) =>
    c.holdsExposeLease ? ALLOW : deny('FORBIDDEN', `this node holds no active expose lease for "${c.exposure}"`),
  ),
} satisfies Record<string, Rule<never, never>>;

export type Action = keyof typeof RULES;
type RuleOf<A extends Action> = (typeof RULES)[A];
export type ResourceOf<A extends Action> = Parameters<RuleOf<A>['decide']>[1];
/** Actions decided without a resource (by the route's guard alone). */
export type GateAction = { [A in Action]: RuleOf<A>['onResource'] extends false ? A : never }[Action];

export const ACTIONS = Object.keys(RULES) as Action[];

export function isAction(s: unknown): s is Action {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(RULES, s);
}

export function authnOf(action: Action): Authn {
  return RULES[action].authn;
}

export function needsResource(action: Action): boolean {
  return RULES[action].onResource;
}

/** Wrong kind of credential for the action: 401 like any other credential that does not fit. */
function wrongPrincipal(p: Principal, authn: Authn): Decision | null {
  if (authn === 'none' || p.kind === authn) return null;
  if (p.kind === 'anonymous') return deny('UNAUTHENTICATED', 'send a credential: Authorization: Bearer <token>');
  return deny('TOKEN_INVALID', authn === 'node' ? 'this needs a node credential' : 'this needs a user access token');
}

/** May `p` do `action` (on `resource`)? */
export function authorize<A extends Action>(p: Principal, action: A, ...resource: ResourceOf<A> extends void ? [] : [ResourceOf<A>]): Decision {
  const rule = RULES[action] as Rule<Principal, unknown>;
  return wrongPrincipal(p, rule.authn) ?? rule.decide(p, resource[0]);
}

/** `authorize`, throwing the denial as an AppError. */
export function assertAllowed<A extends Action>(p: Principal, action: A, ...resource: ResourceOf<A> extends void ? [] : [ResourceOf<A>]): void {
  const d = authorize(p, action, ...resource);
  if (!d.allow) throw new AppError(d.code, d.detail);
}

/** `authorize` as a boolean, for filtering listings. */
export function can<A extends Action>(p: Principal, action: A, ...resource: ResourceOf<A> extends void ? [] : [ResourceOf<A>]): boolean {
  return authorize(p, action, ...resource).allow;
}
