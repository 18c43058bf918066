import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chainFromSave,
  chainRules,
  datestop,
  hookCheckArgs,
  hookInsertArgs,
  hostCidr,
  leaseComment,
  restoreInput,
  RuleError,
  staleHookDeletes,
  type BaseRules,
  type LeaseRules,
} from './rules.js';

const base: BaseRules = { control: [{ address: '10.77.0.10', port: 8080 }, { address: 'fd00::10', port: 8080 }], dns: ['10.0.0.53', 'fd00::53'] };
const leases: LeaseRules[] = [
  {
    leaseId: 'lse_b',
    rules: [
      { address: '10.77.1.10', port: 7001, sourcePorts: { first: 61064, last: 61127 } },
      { address: '2001:db8:0:0::1', port: 5432, sourcePorts: { first: 61064, last: 61127 } },
    ],
    expiresAt: new Date('2026-11-24T15:00:00.250Z'),
  },
  { leaseId: 'lse_a', rules: [{ address: '10.77.1.10', port: 7000 }], expiresAt: new Date('2026-11-24T14:10:00.000Z') },
];

describe('egress rule builders', () => {
  it('IPv4 chain: established, control, DNS, one ACCEPT per lease target (by lease id), REJECT (golden)', () => {
    assert.equal(
      restoreInput('ipv4', base, leases),
      `*filter
:TUNNEL-EGRESS - [0:0]
-A TUNNEL-EGRESS -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A TUNNEL-EGRESS -d 10.77.0.10/32 -p tcp -m tcp --dport 8080 -m comment --comment tunnel-control -j ACCEPT
-A TUNNEL-EGRESS -d 10.0.0.53/32 -p udp -m udp --dport 53 -m comment --comment tunnel-dns -j ACCEPT
-A TUNNEL-EGRESS -d 10.0.0.53/32 -p tcp -m tcp --dport 53 -m comment --comment tunnel-dns -j ACCEPT
-A TUNNEL-EGRESS -d 10.77.1.10/32 -p tcp -m tcp --dport 7000 -m time --datestop 2026-11-24T14:10:00 -m comment --comment "tunnel-lease=lse_a" -j ACCEPT
-A TUNNEL-EGRESS -d 10.77.1.10/32 -p tcp -m tcp --sport 61064:61127 --dport 7001 -m time --datestop 2026-11-24T15:00:01 -m comment --comment "tunnel-lease=lse_b" -j ACCEPT
-A TUNNEL-EGRESS -j REJECT --reject-with icmp-port-unreachable
COMMIT
`,
    );
  });

  it('IPv6 chain holds only IPv6 addresses, compressed as ip6tables-save prints them (golden)', () => {
    assert.deepEqual(chainRules('ipv6', base, leases), [
      '-A TUNNEL-EGRESS -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A TUNNEL-EGRESS -d fd00::10/128 -p tcp -m tcp --dport 8080 -m comment --comment tunnel-control -j ACCEPT',
      '-A TUNNEL-EGRESS -d fd00::53/128 -p udp -m udp --dport 53 -m comment --comment tunnel-dns -j ACCEPT',
      '-A TUNNEL-EGRESS -d fd00::53/128 -p tcp -m tcp --dport 53 -m comment --comment tunnel-dns -j ACCEPT',
      '-A TUNNEL-EGRESS -d 2001:db8::1/128 -p tcp -m tcp --sport 61064:61127 --dport 5432 -m time --datestop 2026-11-24T15:00:01 -m comment --comment "tunnel-lease=lse_b" -j ACCEPT',
      '-A TUNNEL-EGRESS -j REJECT --reject-with icmp6-port-unreachable',
    ]);
  });

  it('base rules only: nothing but established, control and REJECT (no lease is active at start)', () => {
    assert.deepEqual(chainRules('ipv4', { control: [{ address: '127.0.0.1', port: 8080 }], dns: [] }, []), [
      '-A TUNNEL-EGRESS -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A TUNNEL-EGRESS -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -m comment --comment tunnel-control -j ACCEPT',
      '-A TUNNEL-EGRESS -j REJECT --reject-with icmp-port-unreachable',
    ]);
  });

  it('OUTPUT hook arguments match by owner uid and insert first', () => {
    assert.deepEqual(hookCheckArgs(0), ['-w', '-C', 'OUTPUT', '-m', 'owner', '--uid-owner', '0', '-j', 'TUNNEL-EGRESS']);
    assert.deepEqual(hookInsertArgs(998), ['-w', '-I', 'OUTPUT', '1', '-m', 'owner', '--uid-owner', '998', '-j', 'TUNNEL-EGRESS']);
  });

  it('finds hooks for another uid left by an earlier run, and only those', () => {
    const listing = [
      '-P OUTPUT ACCEPT',
      '-A OUTPUT -m owner --uid-owner 998 -j TUNNEL-EGRESS',
      '-A OUTPUT -m owner --uid-owner 0 -j TUNNEL-EGRESS',
      '-A OUTPUT -d 10.0.0.1/32 -j ACCEPT',
    ].join('\n');
    assert.deepEqual(staleHookDeletes(listing, 0), [['-w', '-D', 'OUTPUT', '-m', 'owner', '--uid-owner', '998', '-j', 'TUNNEL-EGRESS']]);
    assert.deepEqual(staleHookDeletes(listing.replace('998', '0'), 0), []);
  });

  it('refuses anything that is not an IP literal, a bad port or a lease id unfit for a comment', () => {
    const bad = (rules: LeaseRules['rules'], leaseId = 'lse_x') => () => chainRules('ipv4', base, [{ leaseId, rules, expiresAt: new Date() }]);
    assert.throws(bad([{ address: 'target.example', port: 80 }]), RuleError);
    assert.throws(bad([{ address: '10.0.0.1 -j ACCEPT', port: 80 }]), RuleError);
    assert.throws(bad([{ address: '10.0.0.1', port: 0 }]), RuleError);
    assert.throws(bad([{ address: '10.0.0.1', port: 80 }], 'lse" -j ACCEPT'), RuleError);
    assert.throws(bad([{ address: '10.0.0.1', port: 80, sourcePorts: { first: 9, last: 8 } }]), RuleError);
    assert.throws(() => leaseComment(''), RuleError);
    assert.throws(() => datestop(new Date(NaN)), RuleError);
  });

  it('helpers: CIDR forms, datestop rounding, chain extraction from iptables-save', () => {
    assert.equal(hostCidr('169.254.169.254'), '169.254.169.254/32');
    assert.equal(hostCidr('::ffff:10.0.0.1'), '::ffff:a00:1/128');
    assert.equal(datestop(new Date('2026-01-02T03:04:05.000Z')), '2026-01-02T03:04:05');
    assert.equal(datestop(new Date('2026-01-02T03:04:05.001Z')), '2026-01-02T03:04:06');
    const save = ['*filter', ':TUNNEL-EGRESS - [0:0]', '-A OUTPUT -m owner --uid-owner 0 -j TUNNEL-EGRESS', '-A TUNNEL-EGRESS -j REJECT --reject-with icmp-port-unreachable', 'COMMIT'].join('\n');
    assert.deepEqual(chainFromSave(save), ['-A TUNNEL-EGRESS -j REJECT --reject-with icmp-port-unreachable']);
  });
});
