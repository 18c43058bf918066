import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { SignJWT } from 'jose';
import { ed25519Pair } from '../../shared/testing/ed25519-pair.js';
import { ACCESS_TOKEN_TYP } from '../../protocol/lease-claims.js';
import { encodePublicKeyBlob, fingerprintSha256, formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { apiAudience, mintAccessToken } from '../auth/access-tokens.js';
import { unixSeconds } from '../../shared/clock.js';
import { assertOk } from './problem.js';
import type { TestApp } from './test-app.js';

let counter = 0;
/** A name unique in this process, valid as a user, node, exposure or target name. */
export function uniq(prefix = 'n'): string {
  counter += 1;
  return `${prefix}${counter}`;
}

/**
 * The database's clock, in ms: what judges lease expiry where a replica's own clock must not
 * (tests move their replica's clock ahead of it, the database's is the real one).
 */
export async function databaseNow(t: TestApp): Promise<number> {
  const res = await t.deps.db.execute(sql`select (extract(epoch from now()) * 1000)::float8 as ms`);
  const rows = (Array.isArray(res) ? res : (res as { rows: unknown[] }).rows) as { ms: number | string }[];
  return Number(rows[0]!.ms);
}

/** A fresh access token for an existing user (tests that move the clock outlive older ones). */
export async function tokenFor(t: TestApp, user: { id: string; name: string }, role: 'admin' | 'member' = 'admin'): Promise<string> {
  return (await mintAccessToken(t.deps, { id: user.id, name: user.name, role })).token;
}

export interface ClientKey {
  /** `ssh-ed25519 AAAA...` line to send as `public_key`. */
  line: string;
  /** `SHA256:...`, as in the lease's `ssh_key`. */
  fingerprint: string;
  privateKey: KeyObject;
}

/** A fresh Ed25519 client key, as the CLI makes one per lease. */
export function newClientKey(): ClientKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = rawPublicKey(publicKey);
  return { line: formatPublicKeyLine(raw, 'test'), fingerprint: fingerprintSha256(encodePublicKeyBlob(raw)), privateKey };
}

export interface TestNode {
  id: string;
  name: string;
  /** The node's bearer credential for /v1/nodes/self/*. */
  token: string;
  hostKey: string;
  address: string;
}

/** Creates an enrollment token as `adminToken` and enrolls a relay node with it. */
export async function enrollNode(t: TestApp, adminToken: string, name = uniq('node')): Promise<TestNode> {
  const enr = await t.call('POST', '/v1/nodes/enrollment-tokens', { token: adminToken, body: { name } });
  assertOk(enr, 201);
  const hostKey = newClientKey().line;
  const address = `${name}.relay.test:2222`;
  const res = await t.call('POST', '/v1/nodes/enroll', { body: { token: enr.body.token, host_key: hostKey, address } });
  assertOk(res, 201);
  return { id: res.body.node_id, name, token: res.body.node_token, hostKey, address };
}

/** A relay heartbeat: the node is online from now and holds exactly `exposures`. */
export async function heartbeat(t: TestApp, node: TestNode, exposures: { name: string; port: number }[] = []): Promise<void> {
  const res = await t.call('POST', '/v1/nodes/self/heartbeat', {
    token: node.token,
    body: { version: 'test', native_crypto: true, egress_driver: 'iptables', connections: 0, exposures },
  });
  assertOk(res, 200);
}

/** Creates a service token for the caller of `userToken` and exchanges it for an access token. */
export async function serviceAccess(
  t: TestApp,
  userToken: string,
  scopes: string[],
): Promise<{ id: string; serviceToken: string; accessToken: string }> {
  const created = await t.call('POST', '/v1/service-tokens', { token: userToken, body: { name: uniq('st'), scopes } });
  assertOk(created, 201);
  const res = await t.call('POST', '/v1/auth/token', {
    body: { grant_type: 'urn:tunnel:params:oauth:grant-type:service-token', service_token: created.body.token },
  });
  assertOk(res, 200);
  return { id: created.body.id, serviceToken: created.body.token, accessToken: res.body.access_token };
}

/** Creates an exposure owned by the caller of `ownerToken`. */
export async function putExposure(t: TestApp, ownerToken: string, name: string, allow: string[] = []): Promise<void> {
  const res = await t.call('PUT', `/v1/exposures/${name}`, { token: ownerToken, body: { allow } });
  assert.ok(res.status === 200 || res.status === 201, `PUT exposure: ${res.status} ${JSON.stringify(res.body)}`);
}

/**
 * An access-token-shaped JWT that must be refused: signed by the control plane's own key with
 * another audience or type, or by a key it never published (`key: 'foreign'`, same kid).
 */
export async function forgeAccessToken(
  t: TestApp,
  user: { id: string; name: string },
  o: { aud?: string; typ?: string; key?: 'own' | 'foreign'; role?: 'admin' | 'member' } = {},
): Promise<string> {
  const own = await t.deps.keys.signing('sig');
  const signWith = o.key === 'foreign' ? ed25519Pair().privateKey : own.privateKey;
  const now = unixSeconds(t.clock.now());
  return new SignJWT({ name: user.name, role: o.role ?? 'admin' })
    .setProtectedHeader({ alg: 'EdDSA', kid: own.kid, typ: o.typ ?? ACCESS_TOKEN_TYP })
    .setIssuer(t.deps.settings.issuer)
    .setAudience(o.aud ?? apiAudience(t.deps.settings.issuer))
    .setSubject(user.id)
    .setJti(uniq('at_forged'))
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .sign(signWith);
}

/** Issues a lease through the API and returns the response body (lease, token, certificate, relay). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
export async function issueLease(t: TestApp, token: string, body: Record<string, unknown>): Promise<any> {
  const res = await t.call('POST', '/v1/leases', { token, body: { public_key: newClientKey().line, ...body } });
  assertOk(res, 201);
  return res.body;
}

/**
 * A new exposure of the owner's (`uniq('svc-')`) that allows `allow`, placed on `node` by the
 * admin, exposed by the owner and reported online by the node's heartbeat; returns its name.
 */
export async function onlineExposure(t: TestApp, node: TestNode, adminToken: string, ownerToken: string, allow: string[]): Promise<string> {
  const name = uniq('svc-');
  await putExposure(t, ownerToken, name, allow);
  await exposeOn(t, adminToken, node, ownerToken, name);
  await heartbeat(t, node, [{ name, port: 22 }]);
  return name;
}

/**
 * Makes `node` the holder of an expose lease for `exposure` (pinned there by an admin), as a relay
 * is after X connected to it: only then may the node report the exposure online.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read arbitrary JSON
export async function exposeOn(t: TestApp, adminToken: string, node: TestNode, ownerToken: string, exposure: string): Promise<any> {
  const cur = await t.call('GET', `/v1/exposures/${exposure}`, { token: adminToken });
  assertOk(cur);
  assertOk(await t.call('PUT', `/v1/exposures/${exposure}`, { token: adminToken, body: { allow: cur.body.allow, node: node.name } }));
  return issueLease(t, ownerToken, { kind: 'expose', exposure });
}
