import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Firewall } from './firewall.js';
import { chainRules, type BaseRules, type Family, type LeaseRule } from './rules.js';

/** What one implementation under contract provides. */
export interface FirewallUnderTest {
  /** A new instance over the same (kernel or in-memory) tables, as after a restart. */
  make(): Firewall;
  /** The chain as `-A TUNNEL-EGRESS ...` lines, read back from where the implementation writes. */
  chain(family: Family): Promise<string[]>;
  cleanup(): Promise<void>;
}

const base: BaseRules = { control: [{ address: '10.77.0.10', port: 8080 }], dns: [] };
const exp = new Date(Date.now() + 10 * 60_000);
const ruleA: LeaseRule[] = [{ address: '10.77.1.10', port: 7000 }];
const ruleB: LeaseRule[] = [
  { address: '10.77.1.10', port: 7001, sourcePorts: { first: 61000, last: 61063 } },
  { address: 'fd00::10', port: 7001, sourcePorts: { first: 61000, last: 61063 } },
];
const want = (family: Family, leases: { id: string; rules: LeaseRule[] }[]) =>
  chainRules(family, base, leases.map((l) => ({ leaseId: l.id, rules: l.rules, expiresAt: exp })));

/** One contract for every Firewall: run against the fake and against real iptables in a throwaway namespace. */
export function firewallContract(name: string, setup: () => Promise<FirewallUnderTest>, opts: { skip?: string | false } = {}): void {
  describe(`Firewall contract: ${name}`, { skip: opts.skip }, () => {
    let t: FirewallUnderTest;
    let fw: Firewall;
    before(async () => {
      t = await setup();
      fw = t.make();
    });
    after(async () => t?.cleanup());

    it('init rebuilds the chain with the base rules only, ending in REJECT', async () => {
      await fw.init(base);
      assert.deepEqual(await t.chain('ipv4'), want('ipv4', []));
      assert.deepEqual(await t.chain('ipv6'), want('ipv6', []));
      assert.deepEqual(fw.leases(), []);
    });

    it('setLease adds the lease rules tagged with the lease id; a second lease adds its own', async () => {
      await fw.setLease('lse_a', ruleA, exp);
      assert.deepEqual(await t.chain('ipv4'), want('ipv4', [{ id: 'lse_a', rules: ruleA }]));
      await fw.setLease('lse_b', ruleB, exp);
      const both = [{ id: 'lse_a', rules: ruleA }, { id: 'lse_b', rules: ruleB }];
      assert.deepEqual(await t.chain('ipv4'), want('ipv4', both));
      assert.deepEqual(await t.chain('ipv6'), want('ipv6', both));
      assert.deepEqual(fw.leases(), ['lse_a', 'lse_b']);
    });

    it('an invalid rule changes nothing', async () => {
      await assert.rejects(fw.setLease('lse_c', [{ address: 'not-an-ip', port: 1 }], exp));
      assert.deepEqual(fw.leases(), ['lse_a', 'lse_b']);
      assert.equal((await t.chain('ipv4')).filter((l) => l.includes('lse_c')).length, 0);
    });

    it('removeLease removes only that lease; removing an unknown lease is a no-op', async () => {
      await fw.removeLease('lse_a');
      await fw.removeLease('lse_zz');
      assert.deepEqual(await t.chain('ipv4'), want('ipv4', [{ id: 'lse_b', rules: ruleB }]));
    });

    it('reconcile makes the lease rules exactly the active set', async () => {
      await fw.reconcile([{ leaseId: 'lse_a', rules: ruleA, expiresAt: exp }]);
      assert.deepEqual(await t.chain('ipv4'), want('ipv4', [{ id: 'lse_a', rules: ruleA }]));
      assert.deepEqual(fw.leases(), ['lse_a']);
    });

    it('close removes lease rules and keeps the chain closed (REJECT stays)', async () => {
      await fw.setLease('lse_b', ruleB, exp);
      await fw.close();
      assert.deepEqual(await t.chain('ipv4'), want('ipv4', []));
      assert.deepEqual(await t.chain('ipv6'), want('ipv6', []));
    });

    it('a restarted instance rebuilds from scratch: leftover lease rules are gone', async () => {
      await fw.init(base);
      await fw.setLease('lse_a', ruleA, exp);
      const again = t.make(); // the old one "died" without close()
      await again.init(base);
      assert.deepEqual(await t.chain('ipv4'), want('ipv4', []));
      fw = again;
    });
  });
}
