/**
 * The egress lock across the relay's life, in the lab: per-lease source-port blocks
 * (--egress-source-ports), SIGKILL (the chain stays closed), restart (rebuilt from scratch,
 * only active leases), SIGTERM (lease rules removed, REJECT stays), no privilege (refuses to
 * start), and --egress-driver off (reported loudly).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { expectStatus } from '../harness/control.js';
import { LabCommandError, labSkipReason, type ConnectResult, type Lab } from '../harness/lab.js';
import { defineTargetOk, labCaller, labSsh, pollUntil, startLabStack, type LabCliUser, type LabStack } from '../harness/lab-stack.js';
import { relayNodeArgv, startRelayProcess } from '../harness/relay-process.js';

const skip = labSkipReason() ?? false;
const BLOCK = { first: 61000, last: 61063 };

interface EgressCert {
  lease: { id: string; expires_at: string };
  local_ports: number[];
  commands: { forward: string };
}

/** One TCP attempt from the relay host as root, from a fixed local port (as the relay dials for a lease). */
const FROM_PORT_PROBE = `
const net = require('node:net');
const [host, port, localPort] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), localPort: Number(localPort) });
let data = '';
const done = (result, code) => { process.stdout.write(JSON.stringify(code ? { result, data, code } : { result, data })); process.exit(0); };
setTimeout(() => done('timeout'), 2000);
s.setEncoding('utf8');
s.on('data', (d) => { data += d; if (data.includes('\\n')) done('reachable'); });
s.on('end', () => done('reachable'));
s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : 'error', e.code));
`;

async function connectFromPort(lab: Lab, addr: string, port: number, localPort: number): Promise<ConnectResult> {
  const { stdout } = await lab.exec('relay', process.execPath, ['-e', FROM_PORT_PROBE, addr, String(port), String(localPort)]);
  return JSON.parse(stdout) as ConnectResult;
}

describe('egress lock across relay restarts and crashes (lab)', { skip }, () => {
  let stack: LabStack;
  let lab: Lab;
  let bob: LabCliUser;
  let dir: string;
  let c: EgressCert;

  before(async () => {
    stack = await startLabStack({ relayArgs: ['--egress-source-ports', `${BLOCK.first}-${BLOCK.first + 255}`, '--egress-ports-per-lease', '64'] });
    lab = stack.lab;
    bob = await stack.user('bob', 'hosty');
    await defineTargetOk(stack, ['bob']); // after bob exists: an allow list names existing users
    dir = mkdtempSync(join(tmpdir(), 'tunnel-lab-egress-life-'));
    const r = await bob.run(['cert', '--egress', 'target-ok', '--out', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    c = JSON.parse(r.stdout) as EgressCert;
  });

  after(async () => {
    await stack?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const sshArgs = () => {
    const printed = c.commands.forward.split(' ');
    return printed.slice(1);
  };
  const chain = async () => (await stack.relayIptables()).split('\n').filter((l) => l.startsWith('-A TUNNEL-EGRESS'));
  const hook = async () => (await stack.relayIptables()).split('\n').filter((l) => l.startsWith('-A OUTPUT') && l.includes('TUNNEL-EGRESS'));
  const baseChain = () => [
    '-A TUNNEL-EGRESS -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    `-A TUNNEL-EGRESS -d ${lab.hosts.ctl.addr}/32 -p tcp -m tcp --dport 8080 -m comment --comment tunnel-control -j ACCEPT`,
    '-A TUNNEL-EGRESS -j REJECT --reject-with icmp-port-unreachable',
  ];
  const leaseRule = async () => (await chain()).filter((l) => l.includes(`tunnel-lease=${c.lease.id}`));
  const refused = (r: ConnectResult) => r.result !== 'reachable';

  it("with source-port blocks a lease's rule matches its own block only; the kernel keeps everyone else out", async () => {
    const { targetOk, targetBad } = lab.hosts;
    const ssh = await labSsh(lab, 'hosty', sshArgs());
    try {
      const [rule] = await pollUntil('lease rule appears', async () => {
        const l = await leaseRule();
        return l.length > 0 ? l : undefined;
      });
      assert.match(rule!, new RegExp(` --sport ${BLOCK.first}:${BLOCK.last} --dport ${targetOk.port} `));
      assert.deepEqual(await lab.connect('hosty', '127.0.0.1', c.local_ports[0]!), { result: 'reachable', data: `${targetOk.banner}\n` });
      // uid 0 from an ephemeral port (any other process, any other lease) is refused by the chain ...
      assert.ok(refused(await lab.connect('relay', targetOk.addr, targetOk.port)), 'ephemeral source port refused');
      // ... from the lease's block it reaches the lease's target, and still nothing else.
      assert.deepEqual(await connectFromPort(lab, targetOk.addr, targetOk.port, BLOCK.first + 40), { result: 'reachable', data: `${targetOk.banner}\n` });
      assert.ok(refused(await connectFromPort(lab, targetBad.addr, targetBad.port, BLOCK.first + 41)), 'target-bad refused from the block');
    } finally {
      ssh.child.kill();
    }
    await pollUntil('lease rule gone after the connection ended', async () => ((await leaseRule()).length === 0 ? true : undefined));
  });

  it('SIGKILL: the chain stays closed; restarted, the chain is rebuilt with only active leases', async () => {
    const { targetOk, targetBad } = lab.hosts;
    const ssh = await labSsh(lab, 'hosty', sshArgs());
    await pollUntil('lease rule appears', async () => ((await leaseRule()).length > 0 ? true : undefined));
    const killed = await stack.stopRelay('SIGKILL');
    assert.equal(killed.signal, 'SIGKILL');
    await pollUntil('ssh notices the relay is gone', async () => (ssh.child.exitCode !== null || ssh.child.signalCode !== null ? true : undefined), 20_000);

    // Dead relay: hook and REJECT are still there, so the host has no egress for uid 0.
    assert.deepEqual(await hook(), ['-A OUTPUT -m owner --uid-owner 0 -j TUNNEL-EGRESS']);
    const dead = await chain();
    assert.equal(dead.at(-1), '-A TUNNEL-EGRESS -j REJECT --reject-with icmp-port-unreachable');
    // The dead relay's lease rule may remain until restart, bound to its source-port block and
    // to the lease's expiry (--datestop), so it opens nothing to anyone else:
    const stale = dead.filter((x) => x.includes('tunnel-lease='));
    assert.equal(stale.length, 1, 'a SIGKILLed relay had no chance to remove its lease rule');
    assert.match(stale[0]!, / --sport \d+:\d+ .* -m time --datestop /);
    assert.ok(refused(await lab.connect('relay', targetOk.addr, targetOk.port)), 'target-ok refused after SIGKILL');
    assert.ok(refused(await lab.connect('relay', targetBad.addr, targetBad.port)), 'target-bad refused after SIGKILL');

    await stack.startRelay();
    assert.deepEqual(await chain(), baseChain(), 'rebuilt from scratch: no lease is active before anyone connected');
    assert.deepEqual(await hook(), ['-A OUTPUT -m owner --uid-owner 0 -j TUNNEL-EGRESS'], 'the hook is not duplicated');
    assert.ok(refused(await lab.connect('relay', targetOk.addr, targetOk.port)));

    // The lease is still valid: Y reconnects and only its rule comes back.
    const again = await labSsh(lab, 'hosty', sshArgs());
    try {
      const lines = await pollUntil('lease rule back after reconnect', async () => {
        const l = await leaseRule();
        return l.length > 0 ? l : undefined;
      });
      assert.deepEqual(await chain(), [...baseChain().slice(0, -1), ...lines, baseChain().at(-1)!]);
      assert.deepEqual(await lab.connect('hosty', '127.0.0.1', c.local_ports[0]!), { result: 'reachable', data: `${targetOk.banner}\n` });
    } finally {
      again.child.kill();
    }
  });

  it('SIGTERM: lease rules are removed, the chain and its REJECT stay', async () => {
    const ssh = await labSsh(lab, 'hosty', sshArgs());
    await pollUntil('lease rule appears', async () => ((await leaseRule()).length > 0 ? true : undefined));
    const stopped = await stack.stopRelay('SIGTERM');
    assert.equal(stopped.code, 0, stack.relay.process.stderr().slice(-2000));
    ssh.child.kill();
    assert.deepEqual(await chain(), baseChain());
    assert.deepEqual(await hook(), ['-A OUTPUT -m owner --uid-owner 0 -j TUNNEL-EGRESS']);
    assert.ok(refused(await lab.connect('relay', lab.hosts.targetOk.addr, lab.hosts.targetOk.port)));
    await stack.startRelay();
  });

  it('without the privilege to manage iptables the relay refuses to start, with one line that says what to do', async () => {
    const before = await stack.relayIptables();
    const data = mkdtempSync(join(tmpdir(), 'tunnel-lab-noperm-'));
    try {
      const err = await lab
        .exec('relay', 'setpriv', [
          '--bounding-set=-net_admin', process.execPath, ...relayNodeArgv(),
          '--control-url', stack.controlUrl, '--data-dir', data, '--listen', `${lab.hosts.relay.wanAddr}:2299`,
          '--metrics-listen', `${lab.hosts.relay.wanAddr}:9099`, '--egress-driver', 'iptables', '--egress-uid', '0',
        ], { timeoutMs: 30_000 })
        .then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof LabCommandError, 'tunnel-node must fail');
      assert.equal(err.exitCode, 1);
      const human = err.stderr.split('\n').filter((l) => l.startsWith('tunnel-node:'));
      assert.equal(human.length, 1, err.stderr);
      assert.match(human[0]!, /cannot set up the egress lock .*root or with CAP_NET_ADMIN.*--egress-driver off/);
      assert.doesNotMatch(err.stderr, /internal error/);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
    assert.equal(await stack.relayIptables().then((s) => s.replace(/^#.*$/gm, '')), before.replace(/^#.*$/gm, ''), 'nothing changed');
  });

  it('--egress-driver off is reported loudly at start and in /healthz', async () => {
    const token = expectStatus(await stack.call('POST', '/v1/nodes/enrollment-tokens', { token: stack.adminToken, body: { name: 'relay-off' } }), 201, 'enrollment token').body.token as string;
    const off = await startRelayProcess({
      controlUrl: stack.controlUrl,
      enrollToken: token,
      host: lab.hosts.relay.wanAddr,
      sshPort: 2223,
      metricsPort: 9091,
      wrap: ['ip', 'netns', 'exec', lab.hosts.relay.ns],
      args: ['--egress-driver', 'off', '--ca-pin', stack.caPin],
    });
    try {
      assert.match(off.stderr(), /"level":"warn","msg":"EGRESS LOCK OFF/);
      const h = await labCaller(lab, 'ctl', `http://${lab.hosts.relay.wanAddr}:9091`)('GET', '/healthz');
      assert.equal(h.body.egress_driver, 'off');
      assert.equal(h.body.egress.driver, 'off');
      assert.deepEqual(await chain(), baseChain(), 'the off driver touches no rule');
    } finally {
      await off.stop('SIGKILL');
      off.cleanup();
    }
  });
});
