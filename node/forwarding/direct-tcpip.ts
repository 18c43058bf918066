import type { Duplex } from 'node:stream';
import type { LeaseClaims } from '../../protocol/lease-claims.js';

/**
 * Where a `direct-tcpip` channel may go, decided from the lease alone. Kind `open` reaches
 * the virtual listener of its exposure; everything else is refused. Egress leases (real
 * hosts behind the relay, enforced by iptables too) plug in here as a route of kind 'egress'.
 */
export type DirectTcpipRoute =
  | { kind: 'exposure'; exposure: string; port: number }
  | { kind: 'refuse'; reason: 'not_in_lease' | 'egress_not_supported' | 'wrong_lease_kind' };

export function routeDirectTcpip(claims: LeaseClaims, dest: { host: string; port: number }): DirectTcpipRoute {
  switch (claims.kind) {
    case 'open':
      return dest.host === claims.exposure ? { kind: 'exposure', exposure: claims.exposure, port: dest.port } : { kind: 'refuse', reason: 'not_in_lease' };
    case 'egress':
      return { kind: 'refuse', reason: 'egress_not_supported' };
    case 'expose':
      return { kind: 'refuse', reason: 'wrong_lease_kind' };
  }
}

export class OpenTimeoutError extends Error {
  override readonly name = 'OpenTimeoutError';
  readonly code = 'OPEN_TIMEOUT';
}

/**
 * ssh2 has no timeout on channel opens. Races `open` against `ms`; a channel that arrives
 * after the deadline is handed to `onLate` (which closes it) instead of leaking.
 */
export function openWithTimeout(open: () => Promise<Duplex>, ms: number, onLate: (ch: Duplex) => void): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      reject(new OpenTimeoutError(`channel open took longer than ${ms} ms`));
    }, ms);
    open().then(
      (ch) => {
        if (settled) return onLate(ch);
        settled = true;
        clearTimeout(timer);
        resolve(ch);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
