import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LeaseClaims } from '../../protocol/lease-claims.js';
import { routeDirectTcpip } from './direct-tcpip.js';

const common = { iss: 'i', sub: 'u', aud: 'n', jti: 'lse_1', iat: 0, nbf: 0, exp: 1, ssh_key: `SHA256:${'A'.repeat(43)}`, name: 'bob' };
const egress: LeaseClaims = { ...common, kind: 'egress', targets: [{ host: '10.77.1.10', port: 7000 }, { host: 'db.lan', port: 5432 }] };

describe('routeDirectTcpip: egress leases', () => {
  it('routes exactly the lease targets', () => {
    assert.deepEqual(routeDirectTcpip(egress, { host: '10.77.1.10', port: 7000 }), { kind: 'egress', target: { host: '10.77.1.10', port: 7000 } });
    assert.deepEqual(routeDirectTcpip(egress, { host: 'db.lan', port: 5432 }), { kind: 'egress', target: { host: 'db.lan', port: 5432 } });
  });

  it('refuses every other host or port: other LAN hosts, loopback, link-local metadata, look-alikes', () => {
    for (const dest of [
      { host: '10.77.1.10', port: 7001 },
      { host: '10.77.1.20', port: 7000 },
      { host: '127.0.0.1', port: 7000 },
      { host: 'localhost', port: 7000 },
      { host: '169.254.169.254', port: 80 },
      { host: '010.77.1.10', port: 7000 },
      { host: '10.77.1.10 ', port: 7000 },
      { host: 'DB.LAN', port: 5432 },
      { host: '::ffff:10.77.1.10', port: 7000 },
    ]) {
      assert.deepEqual(routeDirectTcpip(egress, dest), { kind: 'refuse', reason: 'not_in_lease' }, JSON.stringify(dest));
    }
  });

  it('a loopback or metadata address is reachable only when a target names it', () => {
    const named: LeaseClaims = { ...egress, targets: [{ host: '127.0.0.1', port: 5432 }] };
    assert.equal(routeDirectTcpip(named, { host: '127.0.0.1', port: 5432 }).kind, 'egress');
    assert.equal(routeDirectTcpip(named, { host: '127.0.0.1', port: 5433 }).kind, 'refuse');
  });

  it('open and expose leases never reach real hosts', () => {
    const open: LeaseClaims = { ...common, kind: 'open', exposure: 'hostx-ssh' };
    const expose: LeaseClaims = { ...common, kind: 'expose', exposure: 'hostx-ssh', port: 22 };
    assert.deepEqual(routeDirectTcpip(open, { host: '10.77.1.10', port: 7000 }), { kind: 'refuse', reason: 'not_in_lease' });
    assert.equal(routeDirectTcpip(open, { host: 'hostx-ssh', port: 22 }).kind, 'exposure');
    assert.deepEqual(routeDirectTcpip(expose, { host: '10.77.1.10', port: 7000 }), { kind: 'refuse', reason: 'wrong_lease_kind' });
  });
});
