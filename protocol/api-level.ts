/**
 * What a relay or a CLI tells the control plane it is, on every request, and which of them a
 * control plane serves: the one definition of both (docs/deploy.md, "Upgrading to a new version").
 *
 * - `User-Agent: tunnel-node/0.1.0` (or `tunnel-cli/...`): the release, for people and logs.
 * - `Tunnel-Api: 1`: the API level, the number that decides. A build raises API_LEVEL when it
 *   changes what it sends or expects so that a peer of the previous level cannot work with it.
 *
 * A control plane serves peers of API_LEVEL_MIN to API_LEVEL and refuses any other with 400
 * API_LEVEL_UNSUPPORTED before reading the request (so a newer peer's new fields never end in an
 * UNKNOWN_FIELD). The documented upgrade order (control plane first, then relays, then CLIs) works
 * as long as API_LEVEL_MIN stays at or below the previous release's API_LEVEL. A request without
 * the header comes from a peer older than the header, which is level 1 (API_LEVEL_UNSTATED): it is
 * served while API_LEVEL_MIN is 1. Browsers (the console) and curl send none.
 */

/** This build's release: package.json's `version` (protocol/api-level.test.ts keeps them equal). */
export const TUNNEL_VERSION = '0.1.0';
/**
 * This build's API level.
 * - 2: `PUT /v1/exposures/{name}` takes `expect_allow` (the allow list as read), which `tunnel
 *   exposures allow/deny` send; a level-1 control plane refused it as UNKNOWN_FIELD.
 */
export const API_LEVEL = 2;
/** The oldest API level a control plane of this build serves. */
export const API_LEVEL_MIN = 1;
/** The level of a request without the header (every relay and CLI from before it). */
export const API_LEVEL_UNSTATED = 1;

export const API_LEVEL_HEADER = 'tunnel-api';

export type PeerKind = 'node' | 'cli';

/** The headers a relay (`node`) or the CLI sends with every request to the control plane. */
export function peerHeaders(kind: PeerKind, level: number = API_LEVEL, version: string = TUNNEL_VERSION): Record<string, string> {
  return { 'user-agent': `tunnel-${kind}/${version}`, [API_LEVEL_HEADER]: String(level) };
}

/** The level a request states: API_LEVEL_UNSTATED without the header, undefined when it is not a number. */
export function readApiLevel(header: string | undefined): number | undefined {
  if (header === undefined) return API_LEVEL_UNSTATED;
  const v = header.trim();
  return /^\d{1,6}$/.test(v) ? Number(v) : undefined;
}

/** Whether a control plane of this build serves a peer of `level`. */
export function servesApiLevel(level: number | undefined): boolean {
  return level !== undefined && level >= API_LEVEL_MIN && level <= API_LEVEL;
}

/** `tunnel-node/0.1.0` or `tunnel-cli/0.1.0` from a User-Agent, else undefined (the client's text is not echoed). */
export function peerOf(userAgent: string | undefined): string | undefined {
  const m = userAgent === undefined ? null : /^tunnel-(node|cli)\/[0-9A-Za-z.+-]{1,32}$/.exec(userAgent.trim());
  return m ? m[0] : undefined;
}

/** Why a control plane of this build refuses a peer of `level` (a malformed header: undefined), and what to do. */
export function unsupportedLevelDetail(level: number | undefined, peer: string | undefined): string {
  const who = peer ?? 'this client';
  const served = `this control plane (${TUNNEL_VERSION}) serves API levels ${API_LEVEL_MIN} to ${API_LEVEL}`;
  if (level === undefined) return `the ${API_LEVEL_HEADER} header is not a number; ${served}`;
  const fix = level > API_LEVEL ? 'upgrade the control plane first' : `upgrade ${who} to a release of API level ${API_LEVEL_MIN} or later`;
  return `${who} states API level ${level}; ${served}: ${fix}`;
}
