/**
 * Issue 5, item 3, in the lab with the real binaries: the CLI keeps tunnels up. A connection
 * through `tunnel open` stays up across in-band lease renewal at both ends (--ttl 30, data
 * exchanged after the first lease's end); revoking Y's lease ends its connection within 5 s and
 * the CLI says why (exit 4); the relay killed with SIGKILL and started again is used again, by
 * X's `tunnel expose` and for Y's next connection, within 10 s of its return.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { labSkipReason, type Lab } from '../harness/lab.js';
import { startLabStack, type LabStack } from '../harness/lab-stack.js';
import { labTempDir, lineClient, passwordUser, pushThrough, type Followed, type LabCli } from '../harness/lab-cli.js';
import { eventually, waitForLine } from '../harness/streams.js';

const skip = labSkipReason() ?? false;
const ECHO_PORT = 7100;

interface LeaseEvent {
  lease: string;
  expires_at: string;
}

const events = (p: Followed, name: string) => p.output().stdout.split('\n').filter((l) => l.includes(`"event":"${name}"`));

/** Resolves when `p` exits; rejects once `deadline` (ms since epoch) has passed. */
function exitBy(p: Followed, deadline: number, what: string): Promise<{ code: number | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not end in time:\n${JSON.stringify(p.output())}`)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([p.exited, late]).finally(() => clearTimeout(timer));
}

describe('tunnel CLI supervision in the lab (real binaries, relay killed, leases renewed and revoked)', { skip }, () => {
  let stack: LabStack;
  let lab: Lab;
  let dir: string;
  let xavier: LabCli;
  let bob: LabCli;
  const spawned: Followed[] = [];
  const keep = (p: Followed) => (spawned.push(p), p);

  before(async () => {
    stack = await startLabStack();
    lab = stack.lab;
    dir = labTempDir('cli-supervision');
    xavier = await passwordUser(stack, 'xavier', 'hostx', dir);
    bob = await passwordUser(stack, 'bob', 'hosty', dir);
  });

  after(async () => {
    for (const p of spawned) p.kill('SIGKILL');
    await Promise.all(spawned.map((p) => p.exited));
    await stack?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** X exposes its echo service as `name` and Y opens it on `listenPort` in hosty. */
  async function tunnelTo(name: string, listenPort: number, extra: string[] = []): Promise<{ x: Followed; y: Followed }> {
    const x = keep(xavier.spawn(['expose', String(ECHO_PORT), '--name', name, '--allow', 'bob', '--json', ...extra]));
    await waitForLine(x, /"event":"connected"/, 30_000);
    const y = keep(bob.spawn(['open', name, '--listen', `127.0.0.1:${listenPort}`, '--json', ...extra]));
    await waitForLine(y, /"event":"listening"/, 20_000);
    return { x, y };
  }

  it('a connection through tunnel open stays up across lease renewal at both ends (--ttl 30)', async () => {
    const { x, y } = await tunnelTo('renewing', 7201, ['--ttl', '30']);
    const client = keep(lineClient(lab, 'hosty', '127.0.0.1', 7201));
    await waitForLine(client, /^connected$/, 10_000);
    client.stdin!.write('before renewal\n');
    await waitForLine(client, /^got before renewal$/, 10_000);

    const firstY = JSON.parse(await waitForLine(y, /"event":"connected"/)) as LeaseEvent;
    const firstX = JSON.parse(await waitForLine(x, /"event":"connected"/)) as LeaseEvent;
    const renewedY = JSON.parse(await waitForLine(y, /"event":"renewed"/, 40_000)) as LeaseEvent;
    const renewedX = JSON.parse(await waitForLine(x, /"event":"renewed"/, 40_000)) as LeaseEvent;
    assert.notEqual(renewedY.lease, firstY.lease);
    assert.notEqual(renewedX.lease, firstX.lease);
    // Waiting out the first leases is the point: without renewal the relay closes both connections then.
    const firstEnd = Math.max(Date.parse(firstY.expires_at), Date.parse(firstX.expires_at));
    const wait = firstEnd + 2_000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));

    client.stdin!.write('after renewal\n');
    await waitForLine(client, /^got after renewal$/, 10_000);
    assert.doesNotMatch(client.output().stdout, /^closed$/m);
    // Renewed in band: neither end ever dropped or re-made its relay connection.
    for (const p of [x, y]) {
      assert.equal(events(p, 'connected').length, 1, p.output().stdout);
      assert.equal(events(p, 'disconnected').length, 0, p.output().stdout);
    }
    client.stdin!.end();
    client.kill('SIGTERM');
    y.kill('SIGTERM');
    x.kill('SIGTERM');
    assert.equal((await y.exited).code, 0);
    assert.equal((await x.exited).code, 0);
  });

  it("revoking Y's lease ends its connection within 5 s; tunnel open says it was revoked and exits 4", async (t) => {
    const { x, y } = await tunnelTo('revoked', 7202);
    const client = keep(lineClient(lab, 'hosty', '127.0.0.1', 7202));
    await waitForLine(client, /^connected$/, 10_000);
    client.stdin!.write('hello\n');
    await waitForLine(client, /^got hello$/, 10_000);
    const { lease } = JSON.parse(await waitForLine(y, /"event":"connected"/)) as LeaseEvent;

    const r = await stack.call('DELETE', `/v1/leases/${lease}`, { token: stack.adminToken });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const revokedAt = Date.now();
    const deadline = revokedAt + 5_000;
    await waitForLine(client, /^closed$/, Math.max(0, deadline - Date.now()));
    t.diagnostic(`Y's connection closed ${Date.now() - revokedAt} ms after the revocation`);
    const { code } = await exitBy(y, deadline, 'tunnel open');
    assert.equal(code, 4);
    assert.match(y.output().stderr, /lease lse_[0-9a-f]+ was revoked/);
    assert.equal(y.output().stderr.trim().split('\n').length, 1, y.output().stderr);
    // X's exposure is untouched.
    assert.equal(events(x, 'disconnected').length, 0);
    x.kill('SIGTERM');
    assert.equal((await x.exited).code, 0);
  });

  it('the relay killed (SIGKILL) and restarted: expose reconnects and Y connects again within 10 s of its return', async (t) => {
    const { x, y } = await tunnelTo('restarting', 7203);
    const before = await pushThrough(lab, 'hosty', '127.0.0.1', 7203, 4096, 15_000);
    assert.equal(before.receivedSha, before.sentSha);

    await stack.stopRelay('SIGKILL');
    await waitForLine(x, /"event":"disconnected"/, 30_000);
    await stack.startRelay();
    const back = Date.now();

    // Y's next connection, both through the running `tunnel open --listen` and a fresh `tunnel open --stdio`.
    await eventually(async () => {
      const r = await pushThrough(lab, 'hosty', '127.0.0.1', 7203, 4096, 5_000);
      assert.equal(r.received, 4096);
      assert.equal(r.receivedSha, r.sentSha);
    }, 10_000);
    await eventually(async () => {
      const r = await bob.run(['open', 'restarting', '--stdio'], { input: 'again\n', timeoutMs: 5_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'again\n');
    }, Math.max(1, back + 10_000 - Date.now()));
    const took = Date.now() - back;
    t.diagnostic(`Y's next connection worked ${took} ms after the relay's return`);
    assert.ok(took <= 10_000, `Y's next connection worked ${took} ms after the relay's return (limit 10 s)`);
    assert.equal(events(x, 'connected').length, 2, x.output().stdout);
    y.kill('SIGTERM');
    x.kill('SIGTERM');
    assert.equal((await y.exited).code, 0);
    assert.equal((await x.exited).code, 0);
  });
});
