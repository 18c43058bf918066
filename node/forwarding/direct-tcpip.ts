import type { Duplex } from 'node:stream';
import type { LeaseClaims } from '../../protocol/lease-claims.js';

/**
 * Where a `direct-tcpip` channel may go, decided from the lease alone. Kind `open` reaches
 * the virtual listener of its exposure. Kind `egress` reaches a real host behind the relay,
 * only when (host, port) is exactly one of the lease's targets (the admin-defined targets the
 * control plane signed; no normalisation, so `127.0.0.1`, `localhost` or `169.254.169.254`
 * pass only if a target names them that way). The kernel enforces the same set (node/egress).
 * Everything else is refused.
 */
export type DirectTcpipRoute =
  | { kind: 'exposure'; exposure: string; port: number }
  | { kind: 'egress'; target: { host: string; port: number } }
  | { kind: 'refuse'; reason: 'not_in_lease' | 'wrong_lease_kind' };

export function routeDirectTcpip(claims: LeaseClaims, dest: { host: string; port: number }): DirectTcpipRoute {
  switch (claims.kind) {
    case 'open':
      return dest.host === claims.exposure ? { kind: 'exposure', exposure: claims.exposure, port: dest.port } : { kind: 'refuse', reason: 'not_in_lease' };
    case 'egress': {
      const t = claims.targets.find((x) => x.host === dest.host && x.port === dest.port);
      return t ? { kind: 'egress', target: { host: t.host, port: t.port } } : { kind: 'refuse', reason: 'not_in_lease' };
    }
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
 * after the deadline is handed to `onLate` (which closes it) instead of leaking. `open`'s signal
 * aborts at the deadline.
 */
export function openWithTimeout(open: (abandoned: AbortSignal) => Promise<Duplex>, ms: number, onLate: (ch: Duplex) => void): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const abandon = new AbortController();
    const timer = setTimeout(() => {
      settled = true;
      abandon.abort();
      reject(new OpenTimeoutError(`channel open took longer than ${ms} ms`));
    }, ms);
    open(abandon.signal).then(
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
