/**
 * The egress lock end to end in the lab: control plane in ctl, tunnel-node in the relay host
 * with --egress-driver iptables --egress-uid 0 (iptables inside the relay's namespace), the
 * CLI and the real OpenSSH client in hosty behind its NAT.
 *
 * Y holds an egress lease for target-ok:7000 only. Through the relay it reaches that and
 * nothing else; and on the relay's host the kernel itself holds the relay's uid to the same
 * set (a process there under uid 0 reaches target-ok only while the lease is active).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { expectStatus, passwordLogin } from '../harness/control.js';
import { labSkipReason, repoRoot, waitForOutput, type ConnectResult, type Lab } from '../harness/lab.js';
import { defineTargetOk, labSsh, pollUntil, startLabStack, type LabCliUser, type LabStack } from '../harness/lab-stack.js';

const skip = labSkipReason() ?? false;
const METADATA = { addr: '169.254.169.254', port: 80 };
const LOOPBACK_PORT = 7300;

interface EgressCert {
  lease: { id: string; expires_at: string; targets: { host: string; port: number }[] };
  private_key: string;
  certificate: string;
  known_hosts: string;
  local_ports: number[];
  commands: { forward: string };
}

/** A connection attempt from the relay host under a uid the chain does not apply to. */
async function connectAsNobody(lab: Lab, addr: string, port: number): Promise<ConnectResult> {
  const { stdout } = await lab.exec('relay', 'setpriv', [
    '--reuid=65534', '--regid=65534', '--clear-groups',
    process.execPath, join(repoRoot(), 'infra/lab/probe.mjs'), addr, String(port), '2000',
  ]);
  return JSON.parse(stdout) as ConnectResult;
}

const refusedByKernel = (r: ConnectResult) => r.result !== 'reachable';

describe('egress lock in the lab (real binaries, OpenSSH, iptables in the relay namespace)', { skip }, () => {
  let stack: LabStack;
  let lab: Lab;
  let bob: LabCliUser;
  let dir: string;

  before(async () => {
    stack = await startLabStack();
    lab = stack.lab;
    const { relay } = lab.hosts;
    // A stand-in for cloud metadata on the relay's LAN, and a service on the relay's own loopback.
    await lab.exec('target-ok', 'ip', ['addr', 'add', `${METADATA.addr}/32`, 'dev', `${lab.prefix}eth0`]);
    await lab.exec('relay', 'ip', ['route', 'add', `${METADATA.addr}/32`, 'dev', `${lab.prefix}lan`, 'src', relay.lanAddr]);
    const svc = join(repoRoot(), 'infra/lab/service.mjs');
    await waitForOutput(lab.spawn('target-ok', process.execPath, [svc, 'banner', METADATA.addr, String(METADATA.port), 'metadata']), /^listening /m);
    await waitForOutput(lab.spawn('relay', process.execPath, [svc, 'banner', '127.0.0.1', String(LOOPBACK_PORT), 'relay-loopback']), /^listening /m);
    bob = await stack.user('bob', 'hosty');

    await defineTargetOk(stack, ['bob']); // after bob exists: an allow list names existing users
    dir = mkdtempSync(join(tmpdir(), 'tunnel-lab-egress-'));
  });

  after(async () => {
    await stack?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function cert(name: string, extra: string[] = []): Promise<EgressCert> {
    const r = await bob.run(['cert', '--egress', 'target-ok', '--out', join(dir, name), '--json', ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as EgressCert;
  }

  /** `ssh -N` with the cert and the printed -L, plus any extra forwards. */
  function sshArgs(c: EgressCert, extra: string[] = []): string[] {
    const printed = c.commands.forward.split(' ');
    assert.equal(printed[0], 'ssh');
    return [...printed.slice(1, -1), ...extra, printed.at(-1)!];
  }

  const leaseLines = async (leaseId: string) => (await stack.relayIptables()).split('\n').filter((l) => l.includes(`tunnel-lease=${leaseId}`));

  it('at start the chain holds base rules only, the hook sends uid 0 into it, and uid 0 has no egress', async () => {
    const save = await stack.relayIptables();
    assert.match(save, /^-A OUTPUT -m owner --uid-owner 0 -j TUNNEL-EGRESS$/m);
    const chain = save.split('\n').filter((l) => l.startsWith('-A TUNNEL-EGRESS'));
    assert.deepEqual(chain, [
      '-A TUNNEL-EGRESS -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      `-A TUNNEL-EGRESS -d ${lab.hosts.ctl.addr}/32 -p tcp -m tcp --dport 8080 -m comment --comment tunnel-control -j ACCEPT`,
      '-A TUNNEL-EGRESS -j REJECT --reject-with icmp-port-unreachable',
    ]);
    const { targetOk, targetBad } = lab.hosts;
    for (const [addr, port] of [[targetOk.addr, targetOk.port], [targetBad.addr, targetBad.port], ['127.0.0.1', LOOPBACK_PORT], [METADATA.addr, METADATA.port]] as const) {
      assert.ok(refusedByKernel(await lab.connect('relay', addr, port)), `uid 0 -> ${addr}:${port} must be refused`);
      // The services are there: a uid outside the chain reaches them.
      assert.equal((await connectAsNobody(lab, addr, port)).result, 'reachable', `nobody -> ${addr}:${port}`);
    }
    const health = await stack.relayHealth();
    assert.equal(health.body.egress_driver, 'iptables');
    assert.equal(health.body.egress.active_leases, 0);
  });

  it('Y reaches the permitted target through the relay with ssh -L, and nothing else', async () => {
    const { targetOk, targetBad } = lab.hosts;
    const c = await cert('main');
    assert.deepEqual(c.lease.targets, [{ host: targetOk.addr, port: targetOk.port }]);
    assert.match(c.commands.forward, new RegExp(` -L 127\\.0\\.0\\.1:${targetOk.port}:${targetOk.addr.replaceAll('.', '\\.')}:${targetOk.port} `));
    const from = stack.relay.process.stderr().length;
    const forbidden = [
      { local: 17001, dest: `${targetBad.addr}:${targetBad.port}` },
      { local: 17002, dest: `127.0.0.1:${LOOPBACK_PORT}` },
      { local: 17003, dest: `${METADATA.addr}:${METADATA.port}` },
      { local: 17004, dest: `${targetOk.addr}:${targetOk.otherPort}` },
      { local: 17005, dest: `localhost:${LOOPBACK_PORT}` },
    ];
    const ssh = await labSsh(lab, 'hosty', sshArgs(c, forbidden.flatMap((f) => ['-L', `127.0.0.1:${f.local}:${f.dest}`])));
    try {
      const ok = await lab.connect('hosty', '127.0.0.1', c.local_ports[0]!);
      assert.deepEqual(ok, { result: 'reachable', data: `${targetOk.banner}\n` });

      for (const f of forbidden) {
        const got = await lab.connect('hosty', '127.0.0.1', f.local);
        // ssh accepted locally, the relay refused the channel: no byte of any banner arrives.
        assert.equal(got.data, '', `${f.dest} through the relay: ${JSON.stringify(got)}`);
        const [host, port] = [f.dest.slice(0, f.dest.lastIndexOf(':')), f.dest.slice(f.dest.lastIndexOf(':') + 1)];
        await stack.relay.process.waitForStderr(new RegExp(`"msg":"request refused".*"reason":"not_in_lease".*"destIP":"${host.replaceAll('.', '\\.')}","destPort":${port}`), from, 5000);
      }
    } finally {
      ssh.child.kill();
    }
  });

  it('Y uses the grant with the CLI: tunnel open --egress, with --stdio and with --listen (issue 10)', async () => {
    const { targetOk } = lab.hosts;
    const viaStdio = await bob.run(['open', '--egress', 'target-ok', '--stdio'], { timeoutMs: 30_000 });
    assert.equal(viaStdio.code, 0, viaStdio.stderr);
    assert.equal(viaStdio.stdout, `${targetOk.banner}\n`);

    const y = bob.spawn(['open', '--egress', 'target-ok', '--listen', '127.0.0.1:17020', '--json']);
    try {
      await waitForOutput(y, /"event":"listening"/);
      assert.deepEqual(await lab.connect('hosty', '127.0.0.1', 17020), { result: 'reachable', data: `${targetOk.banner}\n` });
    } finally {
      y.kill('SIGTERM');
    }
  });

  it('the kernel enforces the lease: uid 0 on the relay reaches target-ok only while the lease is active', async () => {
    const { targetOk, targetBad } = lab.hosts;
    const c = await cert('kernel');
    const ssh = await labSsh(lab, 'hosty', sshArgs(c));
    try {
      await pollUntil('lease rules in the chain', async () => ((await leaseLines(c.lease.id)).length > 0 ? true : undefined));
      assert.deepEqual(await lab.connect('relay', targetOk.addr, targetOk.port), { result: 'reachable', data: `${targetOk.banner}\n` });
      assert.ok(refusedByKernel(await lab.connect('relay', targetBad.addr, targetBad.port)), 'target-bad refused by the chain');
      assert.ok(refusedByKernel(await lab.connect('relay', targetOk.addr, targetOk.otherPort)), 'target-ok:7001 refused by the chain');
      assert.ok(refusedByKernel(await lab.connect('relay', '127.0.0.1', LOOPBACK_PORT)), 'relay loopback refused by the chain');
      assert.ok(refusedByKernel(await lab.connect('relay', METADATA.addr, METADATA.port)), 'metadata refused by the chain');
      const health = await stack.relayHealth();
      assert.equal(health.body.egress.active_leases, 1);
      assert.deepEqual(health.body.egress.lease_ids, [c.lease.id]);
    } finally {
      ssh.child.kill();
    }
    // The last connection of the lease ended: its rules go, and uid 0 loses target-ok again.
    await pollUntil('lease rules gone after the connection ended', async () => ((await leaseLines(c.lease.id)).length === 0 ? true : undefined));
    assert.ok(refusedByKernel(await lab.connect('relay', targetOk.addr, targetOk.port)));
  });

  it('SIGKILL without source-port blocks: the dead relay\'s lease rules lapse within 30 s and uid 0 has no egress', async () => {
    const { targetOk } = lab.hosts;
    const c = await cert('deadman');
    const ssh = await labSsh(lab, 'hosty', sshArgs(c));
    try {
      await pollUntil('lease rules in the chain', async () => ((await leaseLines(c.lease.id)).length > 0 ? true : undefined));
      assert.deepEqual(await lab.connect('relay', targetOk.addr, targetOk.port), { result: 'reachable', data: `${targetOk.banner}\n` });
      await stack.stopRelay('SIGKILL');
      // Nobody removed the rule, but nobody pushes its kernel deadline either.
      assert.equal((await leaseLines(c.lease.id)).length, 1);
      await pollUntil(
        'uid 0 refused by the chain once the rule lapsed',
        async () => (refusedByKernel(await lab.connect('relay', targetOk.addr, targetOk.port)) ? true : undefined),
        35_000,
        500,
      );
    } finally {
      ssh.child.kill();
    }
    await stack.startRelay();
    await pollUntil('restarted relay rebuilt the chain without the lease', async () => ((await leaseLines(c.lease.id)).length === 0 ? true : undefined));
  });

  it("a lease's rule appears when it becomes active and is gone within 5 s of its revocation", async (t) => {
    const { targetOk } = lab.hosts;
    const c = await cert('revoke');
    const ssh = await labSsh(lab, 'hosty', sshArgs(c));
    try {
      const lines = await pollUntil('lease rule appears', async () => {
        const l = await leaseLines(c.lease.id);
        return l.length > 0 ? l : undefined;
      });
      assert.equal(lines.length, 1);
      const m = new RegExp(
        `^-A TUNNEL-EGRESS -d ${targetOk.addr.replaceAll('.', '\\.')}/32 -p tcp -m tcp --dport ${targetOk.port} -m time --datestop (\\S+) -m comment --comment "tunnel-lease=${c.lease.id}" -j ACCEPT$`,
      ).exec(lines[0]!);
      assert.ok(m, lines[0]);
      // The kernel deadline: the lease's expiry, or sooner (the dead man's switch, 30 s ahead).
      const stop = Date.parse(`${m[1]}Z`);
      assert.ok(stop <= Math.ceil(Date.parse(c.lease.expires_at) / 1000) * 1000 && stop <= Date.now() + 31_000, m[1]);
      t.diagnostic('iptables-save -t filter in the relay namespace with one active lease:');
      for (const l of (await stack.relayIptables()).split('\n').filter((x) => x.startsWith('-A') || x.startsWith(':'))) t.diagnostic(`  ${l}`);
      expectStatus(await stack.call('DELETE', `/v1/leases/${c.lease.id}`, { token: stack.adminToken }), 200, 'revoke');
      await pollUntil('lease rule removed after revocation', async () => ((await leaseLines(c.lease.id)).length === 0 ? true : undefined), 5000);
      // The revoked lease's connection is closed by the relay too.
      await pollUntil('ssh -N exits once the relay closed the revoked connection', async () => (ssh.child.exitCode !== null || ssh.child.signalCode !== null ? true : undefined), 5000);
    } finally {
      ssh.child.kill();
    }
  });

  it("a lease's rule is gone within 5 s of its expiry", async () => {
    const c = await cert('expiry', ['--ttl', '30']);
    const ssh = await labSsh(lab, 'hosty', sshArgs(c));
    try {
      await pollUntil('lease rule appears', async () => ((await leaseLines(c.lease.id)).length > 0 ? true : undefined));
      const expiresAt = Date.parse(c.lease.expires_at);
      // Bounded by the lease's own expiry plus 5 s; fails the test when exceeded.
      await pollUntil('lease rule removed after expiry', async () => ((await leaseLines(c.lease.id)).length === 0 ? true : undefined), expiresAt + 5000 - Date.now(), 250);
      assert.ok(Date.now() >= expiresAt - 1000, 'the rule went at expiry, not before');
    } finally {
      ssh.child.kill();
    }
  });

  it('an open or expose lease cannot reach any egress target', async () => {
    const { targetOk } = lab.hosts;
    const bobToken = await passwordLogin(stack.call, 'bob', 'bob-password-123');
    const put = await stack.call('PUT', '/v1/exposures/svc-y', { token: bobToken, body: { allow: [] } });
    assert.ok(put.status === 200 || put.status === 201, JSON.stringify(put.body));
    const r = await bob.run(['cert', 'svc-y', '--expose', '--port', '22', '--out', join(dir, 'expose'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const c = JSON.parse(r.stdout) as { commands: { expose: string } };
    const parts = c.commands.expose.split(' ');
    const args = [...parts.slice(1, -1).filter((_, i, a) => !(a[i] === '-R' || a[i - 1] === '-R')), '-L', `127.0.0.1:17010:${targetOk.addr}:${targetOk.port}`, parts.at(-1)!];
    const from = stack.relay.process.stderr().length;
    const ssh = await labSsh(lab, 'hosty', args);
    try {
      assert.equal((await lab.connect('hosty', '127.0.0.1', 17010)).data, '');
      await stack.relay.process.waitForStderr(/"msg":"request refused".*"reason":"wrong_lease_kind"/, from, 5000);
    } finally {
      ssh.child.kill();
    }
  });
});
