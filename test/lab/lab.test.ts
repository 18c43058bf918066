import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLab, LAB_HOSTS, labLeftovers, labSkipReason, repoRoot, waitForOutput, type ConnectResult, type Lab, type LabHost } from '../harness/lab.js';

const blocked = (r: ConnectResult) => r.result === 'unreachable' || r.result === 'timeout';

async function assertReaches(lab: Lab, from: LabHost, addr: string, port: number, data: string | RegExp, send?: string) {
  const got = await lab.connect(from, addr, port, { send });
  assert.equal(got.result, 'reachable', `${from} -> ${addr}:${port}: ${JSON.stringify(got)}`);
  if (typeof data === 'string') assert.equal(got.data, data, `${from} -> ${addr}:${port}`);
  else assert.match(got.data, data, `${from} -> ${addr}:${port}`);
}

async function assertBlocked(lab: Lab, from: LabHost, addr: string, port: number) {
  const got = await lab.connect(from, addr, port, { timeoutMs: 1500 });
  assert.ok(blocked(got), `${from} -> ${addr}:${port} should be blocked, got ${JSON.stringify(got)}`);
}

test('the lab builds, proves its shape and leaves nothing behind', async (t) => {
  const reason = labSkipReason();
  if (reason) {
    t.skip(reason);
    return;
  }
  const lab = await createLab({ check: false });
  const { ctl, relay, targetOk, targetBad, natx, hostx, naty, hosty } = lab.hosts;
  const probe = 7999;
  let sleeper: ReturnType<Lab['spawn']> | undefined;
  try {
    await t.test('every namespace and interface carries the lab prefix', async () => {
      assert.match(lab.prefix, /^tl[a-z0-9]{4}-$/);
      const names = LAB_HOSTS.map((h) => lab.ns(h));
      assert.deepEqual((await labLeftovers(lab.prefix)).filter((n) => names.includes(n)).sort(), [...names].sort());
      for (const host of LAB_HOSTS) {
        const { stdout } = await lab.exec(host, 'ip', ['-o', 'link', 'show']);
        const ifnames = stdout.trim().split('\n').map((l) => (l.split(': ')[1] ?? '').split('@')[0] ?? '');
        for (const name of ifnames.filter((n) => n !== 'lo')) {
          assert.ok(name.startsWith(lab.prefix) && name.length <= 15, `${host}: interface ${name}`);
        }
      }
    });

    await t.test('X and Y reach the relay and the control plane, seen as their NAT routers', async () => {
      await assertReaches(lab, 'hostx', relay.wanAddr, probe, `relay ${natx.wanAddr}\n`);
      await assertReaches(lab, 'hosty', relay.wanAddr, probe, `relay ${naty.wanAddr}\n`);
      await assertReaches(lab, 'hostx', ctl.addr, probe, `ctl ${natx.wanAddr}\n`);
      await assertReaches(lab, 'hosty', ctl.addr, probe, `ctl ${naty.wanAddr}\n`);
      await assertReaches(lab, 'relay', ctl.addr, probe, `ctl ${relay.wanAddr}\n`);
      await assertReaches(lab, 'ctl', relay.wanAddr, probe, `relay ${ctl.addr}\n`);
    });

    await t.test('the relay reaches both LAN targets, which answer with their banners', async () => {
      await assertReaches(lab, 'relay', targetOk.addr, targetOk.port, 'target-ok\n');
      await assertReaches(lab, 'relay', targetOk.addr, targetOk.otherPort, 'target-ok-7001\n');
      await assertReaches(lab, 'relay', targetBad.addr, targetBad.port, 'target-bad\n');
    });

    await t.test("X runs a real sshd and an echo service, on its LAN and its loopback", async () => {
      assert.match(hostx.sshHostKey, /^ssh-ed25519 AAAA\S+ hostx\.lab$/);
      for (const [from, addr] of [['natx', hostx.addr], ['hostx', '127.0.0.1']] as const) {
        await assertReaches(lab, from, addr, hostx.sshPort, /^SSH-2\.0-OpenSSH/);
        await assertReaches(lab, from, addr, hostx.echoPort, 'hello\n', 'hello\n');
      }
      // A real login, with the host key checked against the one the lab reports.
      const dir = await mkdtemp(join(tmpdir(), 'tunnel-lab-ssh-'));
      try {
        await lab.exec('natx', 'ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')]);
        await appendFile(hostx.authorizedKeysFile, await readFile(join(dir, 'id.pub'), 'utf8'));
        await writeFile(join(dir, 'known_hosts'), `${hostx.addr} ${hostx.sshHostKey}\n`);
        const { stdout } = await lab.exec('natx', 'ssh', [
          '-i', join(dir, 'id'), '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`, '-o', 'StrictHostKeyChecking=yes',
          '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', `root@${hostx.addr}`, 'ip', '-4', '-o', 'addr', 'show', 'scope', 'global',
        ]);
        assert.match(stdout, new RegExp(`inet ${hostx.addr.replaceAll('.', '\\.')}/24`));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    await t.test('Y cannot reach X directly, nor X Y', async () => {
      await assertBlocked(lab, 'hosty', hostx.addr, hostx.sshPort);
      await assertBlocked(lab, 'hosty', hostx.addr, hostx.echoPort);
      // X's router forwards no port: Y reaches the router itself, and nothing behind it.
      assert.equal((await lab.connect('hosty', natx.wanAddr, hostx.sshPort)).result, 'refused');
      assert.equal((await lab.connect('hosty', natx.wanAddr, hostx.echoPort)).result, 'refused');
      const yListener = lab.spawn('hosty', process.execPath, [join(repoRoot(), 'infra/lab/service.mjs'), 'banner', hosty.addr, '7200', 'hosty']);
      try {
        await waitForOutput(yListener, /^listening /m);
        await assertReaches(lab, 'naty', hosty.addr, 7200, 'hosty\n');
        await assertBlocked(lab, 'hostx', hosty.addr, 7200);
        await assertBlocked(lab, 'ctl', hosty.addr, 7200);
        await assertBlocked(lab, 'relay', hosty.addr, 7200);
      } finally {
        yListener.kill();
      }
    });

    await t.test('the wan cannot reach X, even with a route to X through its NAT router', async () => {
      await assertBlocked(lab, 'ctl', hostx.addr, hostx.sshPort);
      await assertBlocked(lab, 'relay', hostx.addr, hostx.sshPort);
      await assertBlocked(lab, 'relay', hostx.addr, hostx.echoPort);
      await lab.exec('ctl', 'ip', ['route', 'add', '10.77.2.0/24', 'via', natx.wanAddr]);
      try {
        const got = await lab.connect('ctl', hostx.addr, hostx.sshPort, { timeoutMs: 1000 });
        assert.equal(got.result, 'timeout', JSON.stringify(got)); // natx drops unsolicited inbound
      } finally {
        await lab.exec('ctl', 'ip', ['route', 'del', '10.77.2.0/24']);
      }
    });

    await t.test("the relay's LAN is private to the relay", async () => {
      for (const from of ['ctl', 'hostx', 'hosty'] as const) {
        await assertBlocked(lab, from, targetOk.addr, targetOk.port);
        await assertBlocked(lab, from, targetBad.addr, targetBad.port);
      }
    });

    await t.test('check() proves the whole shape', async () => {
      const facts = await lab.check();
      assert.ok(facts.length > 20);
      assert.ok(facts.every((f) => f.ok));
    });

    sleeper = lab.spawn('hosty', 'sleep', ['600']);
    await once(sleeper, 'spawn');
  } finally {
    await lab.destroy();
  }
  assert.ok(sleeper && (sleeper.exitCode !== null || sleeper.signalCode !== null), 'tracked process stopped');
  assert.deepEqual(await labLeftovers(lab.prefix), []);
  await lab.destroy();
});

test('createLab removes a stale lab left by a crashed run, processes included', async (t) => {
  const reason = labSkipReason();
  if (reason) {
    t.skip(reason);
    return;
  }
  const script = join(repoRoot(), 'infra/lab/lab.sh');
  const owner = spawn('sleep', ['600'], { stdio: 'ignore' });
  await once(owner, 'spawn');
  const env = { ...process.env, LAB_ID: 'zz' + String(process.pid % 100).padStart(2, '0'), LAB_SERVICES: '0', LAB_OWNER_PID: String(owner.pid) };
  const up = spawn(script, ['up'], { env, stdio: 'ignore' });
  assert.equal((await once(up, 'exit'))[0], 0);
  const stalePrefix = `tl${env.LAB_ID}-`;
  const orphan = spawn('ip', ['netns', 'exec', `${stalePrefix}hosty`, 'sleep', '600'], { stdio: 'ignore' });
  await once(orphan, 'spawn');
  owner.kill();
  await once(owner, 'exit');
  assert.ok((await labLeftovers(stalePrefix)).length > 0);

  const lab = await createLab({ services: false, check: false });
  try {
    assert.deepEqual(await labLeftovers(stalePrefix), []);
    if (orphan.exitCode === null && orphan.signalCode === null) await once(orphan, 'exit');
  } finally {
    await lab.destroy();
    orphan.kill('SIGKILL');
  }
  assert.deepEqual(await labLeftovers(lab.prefix), []);
});
