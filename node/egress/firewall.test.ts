/**
 * The Firewall contract against the fake and against the real iptables driver. The driver runs
 * inside a network namespace this file creates and deletes (`ip netns exec`), never against
 * the host's own tables.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { FakeFirewall } from './fake-firewall.js';
import { firewallContract } from './firewall-contract.js';
import { FirewallError } from './firewall.js';
import { IptablesFirewall } from './iptables-firewall.js';
import { execFileRunner } from './iptables-runner.js';
import { chainFromSave, type Family } from './rules.js';

function iptablesSkipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root to create a network namespace';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    execFileSync('iptables-restore', ['--version'], { stdio: 'ignore' });
    execFileSync('ip6tables-restore', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2 and iptables (ip, iptables-restore, ip6tables-restore)';
  }
  return false;
}

/** A throwaway namespace; every command of the driver runs inside it. */
function throwawayNamespace() {
  const ns = `tunnel-egress-${process.pid}-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const inNs = (cmd: string, args: string[]) => execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' });
  return {
    ns,
    inNs,
    prefix: ['ip', 'netns', 'exec', ns],
    chain: async (family: Family) => chainFromSave(inNs(family === 'ipv4' ? 'iptables-save' : 'ip6tables-save', ['-t', 'filter'])),
    remove: () => void execFileSync('ip', ['netns', 'del', ns]),
  };
}

firewallContract('fake', async () => {
  let current = new FakeFirewall();
  return {
    make: () => (current = new FakeFirewall()),
    chain: async (family) => current.rules(family),
    cleanup: async () => undefined,
  };
});

const skip = iptablesSkipReason();

firewallContract(
  'iptables (throwaway namespace)',
  async () => {
    const n = throwawayNamespace();
    return {
      make: () => new IptablesFirewall({ runner: execFileRunner({ prefix: n.prefix }), uid: 0 }),
      chain: n.chain,
      cleanup: async () => n.remove(),
    };
  },
  { skip },
);

describe('iptables driver specifics (throwaway namespace)', { skip }, () => {
  let n: ReturnType<typeof throwawayNamespace>;
  before(() => {
    n = throwawayNamespace();
  });
  after(() => n?.remove());
  const base = { control: [{ address: '10.77.0.10', port: 8080 }], dns: [] };
  const hooks = (bin: string) => n.inNs(bin, ['-S', 'OUTPUT']).split('\n').filter((l) => l.includes('TUNNEL-EGRESS'));

  it('inserts the OUTPUT hook once (check, then insert), for both families', async () => {
    const fw = () => new IptablesFirewall({ runner: execFileRunner({ prefix: n.prefix }), uid: 0 });
    await fw().init(base);
    await fw().init(base);
    for (const bin of ['iptables', 'ip6tables']) assert.deepEqual(hooks(bin), ['-A OUTPUT -m owner --uid-owner 0 -j TUNNEL-EGRESS']);
  });

  it('moves the hook when the uid changes (no stale hook keeps another uid locked or unlocked)', async () => {
    await new IptablesFirewall({ runner: execFileRunner({ prefix: n.prefix }), uid: 998 }).init(base);
    assert.deepEqual(hooks('iptables'), ['-A OUTPUT -m owner --uid-owner 998 -j TUNNEL-EGRESS']);
    assert.deepEqual(hooks('ip6tables'), ['-A OUTPUT -m owner --uid-owner 998 -j TUNNEL-EGRESS']);
  });

  it('without the privilege to manage iptables, init fails with FirewallError', async () => {
    const unprivileged = execFileRunner({ prefix: [...n.prefix, 'setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups'] });
    await assert.rejects(new IptablesFirewall({ runner: unprivileged, uid: 65534 }).init(base), FirewallError);
  });

  it('a missing iptables binary is a FirewallError, not a crash', async () => {
    const runner = execFileRunner({ prefix: [...n.prefix, 'env', 'PATH=/nonexistent'] });
    await assert.rejects(new IptablesFirewall({ runner, uid: 0 }).init(base), FirewallError);
  });
});
