import { z } from 'zod';
import { EgressDriverSchema, ExposureNameSchema, LeaseIdSchema, LeaseKindSchema, LeaseTargetSchema, PortSchema } from './lease-claims.js';
import { AddressSchema, NodeNameSchema, PublicKeyLineSchema, TimestampSchema } from './api-fields.js';
import { HostSchema, newPassword, opaqueToken, password, text } from './primitives.js';

export { AddressSchema } from './api-fields.js';
export { HostSchema, INT32_MAX, SAFE_TEXT_RE, instant, int32, newPassword, opaqueToken, password, safeCount, text } from './primitives.js';
export { NodeNameSchema, PublicKeyLineSchema, TimestampSchema } from './api-fields.js';
export * from './node-api.js';

/**
 * Request and response bodies of the control plane API (`/v1`). The control plane validates
 * with these schemas and generates its OpenAPI document from them; the relay and the CLI parse
 * responses with them. Request objects are strict: unknown fields are an error, and every field
 * is built from the primitives in primitives.ts (no control characters, integers that fit their
 * column, timestamps Postgres can hold), so bad input is a 400 at the edge, never a 500 deeper in.
 */

export const API_PREFIX = '/v1';

/** The longest user name. */
export const USER_NAME_MAX = 64;
/** The most names an allow list (an exposure's, an egress target's) holds. */
export const ALLOW_LIST_MAX = 256;

export const UserNameSchema = z.string().regex(new RegExp(`^[a-z][a-z0-9._-]{0,${USER_NAME_MAX - 1}}$`), `must match [a-z][a-z0-9._-]{0,${USER_NAME_MAX - 1}}`);
export const RoleSchema = z.enum(['admin', 'member']);
export const TargetNameSchema = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must match [a-z0-9][a-z0-9-]{0,62}');

// ---- auth ----

/** RFC 6749 §2.2: standard (public) clients name themselves; the name is not checked. */
const ClientIdSchema = text(128).optional();
/** RFC 6749 §3.3: accepted for interoperability; what a token may do comes from its user. */
const OAuthScopeSchema = text(1024).optional();

export const DeviceAuthorizationRequestSchema = z.strictObject({
  client_name: text(64).optional(),
  client_id: ClientIdSchema,
  scope: OAuthScopeSchema,
});
export const DeviceAuthorizationResponseSchema = z.object({
  device_code: z.string(),
  user_code: z.string(),
  verification_uri: z.string(),
  verification_uri_complete: z.string(),
  expires_in: z.number().int(),
  interval: z.number().int(),
});

export const GRANT_DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
export const GRANT_SERVICE_TOKEN = 'urn:tunnel:params:oauth:grant-type:service-token';

/** The token endpoint's request, as JSON or as an RFC 6749 §3.2 form (every field a string). */
export const TokenRequestSchema = z.discriminatedUnion('grant_type', [
  z.strictObject({ grant_type: z.literal(GRANT_DEVICE_CODE), device_code: opaqueToken(), client_id: ClientIdSchema }),
  z.strictObject({ grant_type: z.literal('refresh_token'), refresh_token: opaqueToken(), client_id: ClientIdSchema, scope: OAuthScopeSchema }),
  z.strictObject({ grant_type: z.literal('password'), username: UserNameSchema, password: password(), client_id: ClientIdSchema, scope: OAuthScopeSchema }),
  z.strictObject({ grant_type: z.literal(GRANT_SERVICE_TOKEN), service_token: opaqueToken(), client_id: ClientIdSchema }),
]);
export type TokenRequest = z.infer<typeof TokenRequestSchema>;

export const TokenResponseSchema = z.object({
  access_token: z.string(),
  token_type: z.literal('Bearer'),
  expires_in: z.number().int(),
  refresh_token: z.string().optional(),
  scope: z.string().optional(),
});
export type TokenResponse = z.infer<typeof TokenResponseSchema>;

/** RFC 8414 authorization server metadata, at AUTHORIZATION_SERVER_METADATA_PATH. */
export const AUTHORIZATION_SERVER_METADATA_PATH = '/.well-known/oauth-authorization-server';
export const AuthorizationServerMetadataSchema = z.object({
  issuer: z.string(),
  token_endpoint: z.string(),
  device_authorization_endpoint: z.string(),
  jwks_uri: z.string(),
  grant_types_supported: z.array(z.string()),
  token_endpoint_auth_methods_supported: z.array(z.string()),
  response_types_supported: z.array(z.string()),
  service_documentation: z.string(),
});
export type AuthorizationServerMetadata = z.infer<typeof AuthorizationServerMetadataSchema>;

export const LogoutRequestSchema = z.strictObject({ refresh_token: opaqueToken().optional() });

export const SetupRequestSchema = z.strictObject({
  setup_code: opaqueToken(128),
  name: UserNameSchema,
  password: newPassword(12),
});

export const MeSchema = z.object({
  id: z.string(),
  name: UserNameSchema,
  role: RoleSchema,
  /** Present when the caller authenticated with a service token: what it may do. */
  scopes: z.array(z.string()).optional(),
});

// ---- users and service tokens (admin) ----

export const UserCreateSchema = z.strictObject({
  name: UserNameSchema,
  password: newPassword(12).optional(),
  role: RoleSchema.default('member'),
});
/** Change a user: enable or disable, promote or demote. Disabling ends every session, token and lease. */
export const UserPatchSchema = z
  .strictObject({ disabled: z.boolean().optional(), role: RoleSchema.optional() })
  .refine((v) => v.disabled !== undefined || v.role !== undefined, 'give disabled, role or both');
export const UserSchema = z.object({
  id: z.string(),
  name: UserNameSchema,
  role: RoleSchema,
  disabled: z.boolean(),
  created_at: TimestampSchema,
});
export const UserListSchema = z.object({ users: z.array(UserSchema) });

/**
 * Scope strings (control/services/authz.ts has the policy): `expose:NAME` (see, create if
 * missing, expose), `open:NAME` (see, open), `manage:NAME` (see, change the allow list, delete),
 * `egress:TARGET` (see, egress); NAME may be `*`.
 */
export const ScopeSchema = z
  .string()
  .regex(/^(expose|open|manage|egress):([a-z0-9-]{1,63}|\*)$/, 'must be expose:NAME, open:NAME, manage:NAME or egress:TARGET (NAME may be *)');
export const ServiceTokenCreateSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
  /** The user the token acts for; defaults to the caller. */
  user: UserNameSchema.optional(),
  scopes: z.array(ScopeSchema).min(1).max(64),
  ttl_seconds: z.number().int().min(60).max(366 * 86400).optional(),
});
export const ServiceTokenUpdateSchema = z.strictObject({
  /** Replaces the token's scopes; leases it issued that the new scopes do not cover are revoked. */
  scopes: z.array(ScopeSchema).min(1).max(64),
});
export const ServiceTokenSchema = z.object({
  id: z.string(),
  name: z.string(),
  user: UserNameSchema,
  scopes: z.array(z.string()),
  created_at: TimestampSchema,
  expires_at: TimestampSchema.nullable(),
  revoked: z.boolean(),
});
export const ServiceTokenCreatedSchema = ServiceTokenSchema.extend({ token: z.string() });
export const ServiceTokenListSchema = z.object({ service_tokens: z.array(ServiceTokenSchema) });

// ---- nodes ----

export const EnrollmentTokenCreateSchema = z.strictObject({
  name: NodeNameSchema,
  ttl_seconds: z.number().int().min(60).max(7 * 86400).optional(),
});
export const EnrollmentTokenCreatedSchema = z.object({ name: NodeNameSchema, token: z.string(), expires_at: TimestampSchema });

export const NodeSchema = z.object({
  id: z.string(),
  name: NodeNameSchema,
  address: AddressSchema,
  host_key: z.string(),
  online: z.boolean(),
  last_seen_at: TimestampSchema.nullable(),
  enrolled_at: TimestampSchema,
  active_exposures: z.number().int(),
  /** As the node last reported: `off` means egress targets are not enforced by the kernel. */
  egress_driver: EgressDriverSchema.nullable(),
  /** Whether ssh2's native crypto binding is loaded (without it throughput drops by a third). */
  native_crypto: z.boolean().nullable(),
  version: z.string().nullable(),
});
export const NodeListSchema = z.object({ nodes: z.array(NodeSchema) });

// ---- exposures ----

export const ExposurePutSchema = z.strictObject({
  /** Users allowed to open it, besides the owner and admins. */
  allow: z.array(UserNameSchema).max(ALLOW_LIST_MAX).default([]),
  /** Pin the exposure to one relay node (by name). */
  node: NodeNameSchema.nullable().optional(),
  /**
   * The allow list as the caller read it, for an edit of that list: if the exposure's is another
   * by now, or the exposure is gone, nothing changes and the answer is 409 CONFLICT (so an edit
   * made on an old read cannot give a user taken off the list meanwhile the grant back, nor make
   * a deleted exposure again). Order and repeats do not matter.
   */
  expect_allow: z.array(UserNameSchema).max(ALLOW_LIST_MAX).optional(),
});
export const ExposureSchema = z.object({
  name: ExposureNameSchema,
  owner: UserNameSchema,
  allow: z.array(UserNameSchema),
  pinned_node: NodeNameSchema.nullable(),
  /** The node holding it now, when X is connected. */
  node: NodeNameSchema.nullable(),
  online: z.boolean(),
  /** The virtual port X bound, while online. */
  port: PortSchema.nullable(),
  created_at: TimestampSchema,
});
export const ExposureListSchema = z.object({ exposures: z.array(ExposureSchema) });

// ---- egress targets (admin) ----

export const EgressTargetPutSchema = z.strictObject({
  node: NodeNameSchema,
  host: HostSchema,
  port: PortSchema,
  allow: z.array(UserNameSchema).max(ALLOW_LIST_MAX).default([]),
});
export const EgressTargetSchema = z.object({
  name: TargetNameSchema,
  node: NodeNameSchema,
  host: z.string(),
  port: PortSchema,
  allow: z.array(UserNameSchema),
  created_at: TimestampSchema,
});
export const EgressTargetListSchema = z.object({ targets: z.array(EgressTargetSchema) });

// ---- leases ----

export const LeaseCreateSchema = z.strictObject({
  kind: LeaseKindSchema,
  /** expose and open: the exposure name. */
  exposure: ExposureNameSchema.optional(),
  /** expose: the virtual port to bind (default 22). */
  port: PortSchema.optional(),
  /** egress: names of admin-defined egress targets. */
  targets: z.array(TargetNameSchema).min(1).max(32).optional(),
  public_key: PublicKeyLineSchema,
  ttl_seconds: z.number().int().min(30).max(31 * 86400).optional(),
  /**
   * expose: relays (node ids) this client just failed to reach. The control plane places the
   * exposure on another online relay when there is one, so X moves off a crashed relay at once
   * instead of waiting for its heartbeat to go stale. A hint only: a pinned exposure stays put.
   */
  avoid_nodes: z.array(z.string().regex(/^[a-z]{2,8}_[A-Za-z0-9]{1,64}$/)).max(8).optional(),
});
export type LeaseCreate = z.infer<typeof LeaseCreateSchema>;

export const LeaseSchema = z.object({
  id: LeaseIdSchema,
  kind: LeaseKindSchema,
  user: UserNameSchema,
  node: NodeNameSchema,
  exposure: ExposureNameSchema.nullable(),
  port: PortSchema.nullable(),
  targets: z.array(LeaseTargetSchema).nullable(),
  ssh_key: z.string(),
  serial: z.string(),
  not_before: TimestampSchema,
  expires_at: TimestampSchema,
  revoked_at: TimestampSchema.nullable(),
  created_at: TimestampSchema,
});
export type Lease = z.infer<typeof LeaseSchema>;

export const RelayInfoSchema = z.object({
  node_id: z.string(),
  name: NodeNameSchema,
  address: AddressSchema,
  /** The relay's SSH host key line, to pin (no trust on first use). */
  host_key: z.string(),
});
export const LeaseIssuedSchema = z.object({
  lease: LeaseSchema,
  token: z.string(),
  /** OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA...`). */
  certificate: z.string(),
  relay: RelayInfoSchema,
});
export type LeaseIssued = z.infer<typeof LeaseIssuedSchema>;
export const LeaseListSchema = z.object({ leases: z.array(LeaseSchema) });

// ---- audit ----

export const ConnectionSchema = z.object({
  node: NodeNameSchema,
  session_id: z.string(),
  lease_id: z.string().nullable(),
  kind: LeaseKindSchema.nullable(),
  user: UserNameSchema.nullable(),
  exposure: ExposureNameSchema.nullable(),
  targets: z.array(LeaseTargetSchema).nullable(),
  /** The client's address as the relay saw it. */
  remote: z.string().nullable(),
  opened_at: TimestampSchema,
  closed_at: TimestampSchema.nullable(),
  /** Reported by the relay when the connection closes. */
  bytes_in: z.number().int().nullable(),
  bytes_out: z.number().int().nullable(),
  /**
   * The lease it holds now: the newest valid one of its user for its key on its relay (a
   * connection renews in band, unreported), its own while that is the newest; null when none is.
   * Absent from control planes before it (read `lease_id` then).
   */
  current_lease_id: z.string().nullable().optional(),
  /** Open as last reported, on a relay that is online, under a lease that is still valid (or renewed in band by one). */
  live: z.boolean(),
});
export const ConnectionListSchema = z.object({ connections: z.array(ConnectionSchema) });

export const AuditEventSchema = z.object({
  id: z.string(),
  at: TimestampSchema,
  type: z.string(),
  actor: z.string().nullable(),
  subject: z.string().nullable(),
  data: z.record(z.string(), z.unknown()),
});
export const AuditListSchema = z.object({ events: z.array(AuditEventSchema), next_cursor: z.string().nullable() });
