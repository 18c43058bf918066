/**
 * The seed's scenario in the lab with plain OpenSSH and control-issued certificates only:
 * X (hostx, behind NAT) keeps `ssh -N -R hostx-ssh:22:127.0.0.1:22` to the relay; Y (hosty,
 * behind NAT) runs `ssh -N -L 127.0.0.1:2222:hostx-ssh:22` through the relay and logs in to
 * X's sshd over it, running a command there. X and Y cannot reach each other directly.
 */
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { passwordLogin } from '../harness/control.js';
import { labSkipReason, type Lab } from '../harness/lab.js';
import { labSsh, pollUntil, startLabStack, type LabCliUser, type LabStack } from '../harness/lab-stack.js';

const skip = labSkipReason() ?? false;

interface CertJson {
  lease: { id: string };
  private_key: string;
  certificate: string;
  known_hosts: string;
  commands: Record<string, string>;
}

describe('seed scenario: ssh -R on X, ssh -L on Y, through the relay (lab, plain OpenSSH)', { skip }, () => {
  let stack: LabStack;
  let lab: Lab;
  let alice: LabCliUser;
  let bob: LabCliUser;
  let dir: string;

  before(async () => {
    stack = await startLabStack();
    lab = stack.lab;
    alice = await stack.user('alice', 'hostx');
    bob = await stack.user('bob', 'hosty');
    const aliceToken = await passwordLogin(stack.call, 'alice', 'alice-password-123');
    const put = await stack.call('PUT', '/v1/exposures/hostx-ssh', { token: aliceToken, body: { allow: ['bob'] } });
    assert.ok(put.status === 200 || put.status === 201, JSON.stringify(put.body));
    dir = await mkdtemp(join(tmpdir(), 'tunnel-lab-seed-'));
  });

  after(async () => {
    await stack?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("Y logs in to X's sshd through the relay and runs a command there", async () => {
    const { hostx } = lab.hosts;
    // Y cannot reach X directly.
    assert.notEqual((await lab.connect('hosty', hostx.addr, hostx.sshPort, { timeoutMs: 1000 })).result, 'reachable');

    // X: an expose certificate and the printed ssh -R, pointed at X's own sshd on 127.0.0.1:22.
    const xr = await alice.run(['cert', 'hostx-ssh', '--expose', '--port', '22', '--ttl', '3600', '--out', join(dir, 'x'), '--json']);
    assert.equal(xr.code, 0, xr.stderr);
    const xc = JSON.parse(xr.stdout) as CertJson;
    const expose = xc.commands.expose!.split(' ');
    assert.equal(expose[0], 'ssh');
    const r = expose.indexOf('-R');
    assert.equal(expose[r + 1], 'hostx-ssh:22:localhost:22');
    expose[r + 1] = 'hostx-ssh:22:127.0.0.1:22';
    const x = await labSsh(lab, 'hostx', expose.slice(1));

    // Y: an open certificate, issued once the exposure is online on the relay.
    const yc = await pollUntil('open lease for hostx-ssh (exposure online)', async () => {
      const res = await bob.run(['cert', 'hostx-ssh', '--out', join(dir, 'y'), '--json']);
      return res.code === 0 ? (JSON.parse(res.stdout) as CertJson) : undefined;
    }, 30_000, 500);
    const forward = yc.commands.forward!.split(' ');
    assert.ok(forward.includes('127.0.0.1:2222:hostx-ssh:22'), yc.commands.forward);
    const y = await labSsh(lab, 'hosty', forward.slice(1));

    // Y's own login key, trusted by X's sshd; X's host key pinned on Y.
    const yKey = join(dir, 'y-login');
    await lab.exec('hosty', 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bob@hosty', '-f', yKey]);
    await appendFile(hostx.authorizedKeysFile, await readFile(`${yKey}.pub`, 'utf8'));
    const kh = join(dir, 'y-known-hosts');
    await writeFile(kh, `[127.0.0.1]:2222 ${hostx.sshHostKey}\n`);

    try {
      const { stdout } = await lab.exec('hosty', 'ssh', [
        '-F', 'none', '-p', '2222', '-i', yKey, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${kh}`,
        '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10',
        'root@127.0.0.1', 'echo seed-ok; ip -4 -o addr show scope global',
      ], { timeoutMs: 30_000 });
      assert.match(stdout, /^seed-ok$/m);
      // The command ran on X: X's LAN address, which Y cannot reach directly.
      assert.match(stdout, new RegExp(`inet ${hostx.addr.replaceAll('.', '\\.')}/24`));
    } finally {
      y.child.kill();
      x.child.kill();
    }
  });
});
