/**
 * Issue 5, item 2, in the lab with the real binaries: X (behind NAT) runs its real sshd and
 * `tunnel expose 22 --name hostx-ssh`, logged in with a service token scoped to its exposures;
 * Y (behind another NAT) runs the real OpenSSH client through `tunnel open` (as ProxyCommand
 * with `tunnel` on PATH, and through `--listen`) with strict host key checking against X's
 * sshd, and pushes 50 MiB each way byte-exactly through `tunnel open` to X's echo service.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { labSkipReason, type Lab } from '../harness/lab.js';
import { startLabStack, type LabStack } from '../harness/lab-stack.js';
import { labCli, labTempDir, passwordUser, pushThrough, serviceTokenLogin, type Followed, type LabCli } from '../harness/lab-cli.js';
import { ADMIN } from '../harness/stack.js';
import { waitForLine } from '../harness/streams.js';

const skip = labSkipReason() ?? false;
const PAYLOAD = 50 * 1024 * 1024;
const LISTEN_SSH = 2200;
const LISTEN_ECHO = 7200;

describe('ssh from Y to X through tunnel expose / tunnel open in the lab (real binaries, real OpenSSH)', { skip }, () => {
  let stack: LabStack;
  let lab: Lab;
  let dir: string;
  let admin: LabCli;
  let x: LabCli;
  let bob: LabCli;
  let yKey: string;
  let knownHosts: string;
  let exposeSsh: Followed;
  let exposeEcho: Followed;
  const spawned: Followed[] = [];
  const keep = (p: Followed) => (spawned.push(p), p);

  before(async () => {
    stack = await startLabStack();
    lab = stack.lab;
    dir = labTempDir('cli-ssh');

    admin = labCli(stack, 'admin', 'ctl', dir);
    const adminLogin = await admin.run(['login', '--password', '--user', ADMIN.name], { input: `${ADMIN.password}\n` });
    assert.equal(adminLogin.code, 0, adminLogin.stderr);
    const add = await admin.run(['admin', 'users', 'add', 'xavier']);
    assert.equal(add.code, 0, add.stderr);
    bob = await passwordUser(stack, 'bob', 'hosty', dir);

    // Y's own key, trusted by X's sshd; X's sshd host key pinned for the alias hostx-ssh.
    yKey = join(dir, 'y_ed25519');
    await lab.exec('hosty', 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bob@hosty', '-f', yKey]);
    appendFileSync(lab.hosts.hostx.authorizedKeysFile, readFileSync(`${yKey}.pub`, 'utf8'));
    knownHosts = join(dir, 'known_hosts');
    writeFileSync(knownHosts, `hostx-ssh ${lab.hosts.hostx.sshHostKey.split(' ').slice(0, 2).join(' ')}\n`);
  });

  after(async () => {
    for (const p of spawned) p.kill('SIGTERM');
    await Promise.all(spawned.map((p) => p.exited));
    await stack?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const ssh = (extra: string[], dest: string, command: string, hosts = knownHosts) =>
    bob.exec('ssh', [
      '-F', 'none', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10',
      '-i', yKey, '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none',
      '-o', 'HostKeyAlias=hostx-ssh', '-o', `UserKnownHostsFile=${hosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
      ...extra, dest, command,
    ], { timeoutMs: 30_000 });

  it('X logs in with a service token the admin created, scoped to expose its two names', async () => {
    const created = await admin.run([
      'admin', 'service-tokens', 'create', 'hostx', '--user', 'xavier', '--scope', 'expose:hostx-ssh', '--scope', 'expose:hostx-echo', '--json',
    ]);
    assert.equal(created.code, 0, created.stderr);
    const { token } = JSON.parse(created.stdout) as { token: string };
    x = labCli(stack, 'xavier', 'hostx', dir);
    const login = await serviceTokenLogin(x, token);
    assert.equal(login.code, 0, login.stderr);
    const me = JSON.parse((await x.run(['whoami', '--json'])).stdout) as { name: string; scopes?: string[] };
    assert.equal(me.name, 'xavier');
    assert.deepEqual(me.scopes, ['expose:hostx-echo', 'expose:hostx-ssh']);
    // The scope holds: another name is refused (4), and so is opening anything.
    const other = await x.run(['expose', '22', '--name', 'other-name'], { timeoutMs: 20_000 });
    assert.equal(other.code, 4, other.stderr);
    const open = await x.run(['open', 'hostx-ssh', '--stdio'], { timeoutMs: 20_000 });
    assert.equal(open.code, 4, open.stderr);

    exposeSsh = keep(x.spawn(['expose', '22', '--name', 'hostx-ssh', '--allow', 'bob', '--json']));
    exposeEcho = keep(x.spawn(['expose', '7100', '--name', 'hostx-echo', '--allow', 'bob', '--json']));
    await waitForLine(exposeSsh, /"event":"connected"/, 30_000);
    await waitForLine(exposeEcho, /"event":"connected"/, 30_000);
  });

  it("Y's ssh with ProxyCommand 'tunnel open --stdio %h' prints X's hostname, host key checked strictly", async () => {
    const direct = (await lab.exec('hostx', 'hostname')).stdout.trim();
    assert.ok(direct.length > 0);
    const proxy = ['-o', 'ProxyCommand=tunnel open --stdio %h'];
    const r = await ssh(proxy, 'root@hostx-ssh', 'hostname');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), direct);
    // The namespaces share the machine's hostname, so also show the shell runs in hostx's network namespace.
    const addrs = await ssh(proxy, 'root@hostx-ssh', 'ip -o -4 addr show');
    assert.equal(addrs.code, 0, addrs.stderr);
    assert.match(addrs.stdout, new RegExp(` ${lab.hosts.hostx.addr.replace(/\./g, '\\.')}/`));
    assert.doesNotMatch(addrs.stdout, new RegExp(` ${lab.hosts.hosty.addr.replace(/\./g, '\\.')}/`));
  });

  it("ssh refuses when X's host key does not match the pinned one (strict checking is in force)", async () => {
    const wrong = join(dir, 'known_hosts_wrong');
    await lab.exec('hosty', 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'not_hostx')]);
    writeFileSync(wrong, `hostx-ssh ${readFileSync(join(dir, 'not_hostx.pub'), 'utf8').split(' ').slice(0, 2).join(' ')}\n`);
    const r = await ssh(['-o', 'ProxyCommand=tunnel open --stdio %h'], 'root@hostx-ssh', 'hostname', wrong);
    assert.equal(r.code, 255);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /Host key verification failed/);
  });

  it(`the same through tunnel open hostx-ssh --listen 127.0.0.1:${LISTEN_SSH} and ssh -p ${LISTEN_SSH}`, async () => {
    const y = keep(bob.spawn(['open', 'hostx-ssh', '--listen', `127.0.0.1:${LISTEN_SSH}`, '--json']));
    await waitForLine(y, /"event":"listening"/, 20_000);
    const r = await ssh(['-p', String(LISTEN_SSH)], 'root@127.0.0.1', 'hostname');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), (await lab.exec('hostx', 'hostname')).stdout.trim());
    y.kill('SIGTERM');
    assert.equal((await y.exited).code, 0);
  });

  it('50 MiB each way through tunnel open arrive byte-exact (SHA-256) at X and back', async () => {
    const y = keep(bob.spawn(['open', 'hostx-echo', '--listen', `127.0.0.1:${LISTEN_ECHO}`, '--json']));
    await waitForLine(y, /"event":"listening"/, 20_000);
    const r = await pushThrough(lab, 'hosty', '127.0.0.1', LISTEN_ECHO, PAYLOAD);
    assert.equal(r.sent, PAYLOAD);
    assert.equal(r.received, PAYLOAD);
    assert.equal(r.receivedSha, r.sentSha);
    // X's side counted the same bytes into and out of its echo service.
    const closed = JSON.parse(await waitForLine(exposeEcho, /"event":"channel_close"/, 20_000)) as { bytes_to_service: number; bytes_from_service: number };
    assert.equal(closed.bytes_to_service, PAYLOAD);
    assert.equal(closed.bytes_from_service, PAYLOAD);
    y.kill('SIGTERM');
    assert.equal((await y.exited).code, 0);
  });
});
