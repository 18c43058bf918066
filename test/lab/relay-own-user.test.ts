/**
 * The relay as the systemd unit runs it: its own user (here uid 65534) with CAP_NET_ADMIN as its
 * only capability. Its egress chain then filters that uid by default (no --egress-uid), the lease
 * rules are written without root, and root's own traffic on the host is never locked, neither
 * while the relay runs nor after it stopped. Started as root without --egress-uid, it refuses.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LabCommandError, labSkipReason, repoRoot, type ConnectResult, type Lab } from '../harness/lab.js';
import { defineTargetOk, labSsh, pollUntil, startLabStack, type LabCliUser, type LabStack } from '../harness/lab-stack.js';
import { relayNodeArgv } from '../harness/relay-process.js';

const skip = labSkipReason() ?? false;
const RELAY_UID = 65534;

async function connectAs(lab: Lab, uid: number, addr: string, port: number): Promise<ConnectResult> {
  const { stdout } = await lab.exec('relay', 'setpriv', [
    `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups',
    process.execPath, join(repoRoot(), 'infra/lab/probe.mjs'), addr, String(port), '2000',
  ]);
  return JSON.parse(stdout) as ConnectResult;
}

describe('the relay as its own user with only CAP_NET_ADMIN (lab)', { skip }, () => {
  let stack: LabStack;
  let lab: Lab;
  let bob: LabCliUser;
  let dir: string;

  before(async () => {
    stack = await startLabStack({ relayUid: RELAY_UID });
    lab = stack.lab;
    bob = await stack.user('bob', 'hosty');
    await defineTargetOk(stack, ['bob']); // after bob exists: an allow list names existing users
    dir = mkdtempSync(join(tmpdir(), 'tunnel-lab-own-user-'));
  });
  after(async () => {
    await stack?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the chain filters the relay's uid (its default), not root's", async () => {
    const save = await stack.relayIptables();
    assert.match(save, new RegExp(`^-A OUTPUT -m owner --uid-owner ${RELAY_UID} -j TUNNEL-EGRESS$`, 'm'));
    assert.doesNotMatch(save, /--uid-owner 0 /);
    const { targetOk, targetBad } = lab.hosts;
    assert.notEqual((await connectAs(lab, RELAY_UID, targetBad.addr, targetBad.port)).result, 'reachable', "the relay's uid is locked");
    assert.equal((await lab.connect('relay', targetBad.addr, targetBad.port)).result, 'reachable', 'root is not');
    assert.equal((await lab.connect('relay', targetOk.addr, targetOk.port)).result, 'reachable', 'root is not');
  });

  it('writes lease rules without root: Y reaches the permitted target through it', async () => {
    const r = await bob.run(['cert', '--egress', 'target-ok', '--out', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const c = JSON.parse(r.stdout) as { lease: { id: string }; local_ports: number[]; commands: { forward: string } };
    const printed = c.commands.forward.split(' ');
    const ssh = await labSsh(lab, 'hosty', [...printed.slice(1, -1), printed.at(-1)!]);
    try {
      await pollUntil('lease rules in the chain', async () => ((await stack.relayIptables()).includes(`tunnel-lease=${c.lease.id}`) ? true : undefined));
      const { targetOk } = lab.hosts;
      assert.deepEqual(await lab.connect('hosty', '127.0.0.1', c.local_ports[0]!), { result: 'reachable', data: `${targetOk.banner}\n` });
    } finally {
      ssh.child.kill();
    }
  });

  it("after the relay stops, root's egress is untouched", async () => {
    const stopped = await stack.stopRelay('SIGTERM');
    assert.equal(stopped.code, 0);
    const { targetBad } = lab.hosts;
    assert.equal((await lab.connect('relay', targetBad.addr, targetBad.port)).result, 'reachable');
    // Its own uid stays closed (fail closed), harmless: nothing else runs as that user.
    assert.notEqual((await connectAs(lab, RELAY_UID, targetBad.addr, targetBad.port)).result, 'reachable');
  });

  it('as root without --egress-uid it refuses to start, with one line that says what to do', async () => {
    const data = mkdtempSync(join(tmpdir(), 'tunnel-lab-root-'));
    try {
      const err = await lab
        .exec('relay', process.execPath, [
          ...relayNodeArgv(), '--control-url', stack.controlUrl, '--ca-pin', stack.caPin, '--data-dir', data,
          '--listen', `${lab.hosts.relay.wanAddr}:2298`, '--metrics-listen', '127.0.0.1:9098', '--egress-driver', 'iptables',
        ], { timeoutMs: 30_000 })
        .then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof LabCommandError, 'tunnel-node must fail');
      assert.equal(err.exitCode, 1);
      const human = err.stderr.split('\n').filter((l) => l.startsWith('tunnel-node:'));
      assert.equal(human.length, 1, err.stderr);
      assert.match(human[0]!, /runs as root, so the egress chain would filter all of root's outbound traffic.*its own user with CAP_NET_ADMIN.*--egress-uid 0/);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
    assert.doesNotMatch(await stack.relayIptables(), /--uid-owner 0 /);
  });
});
