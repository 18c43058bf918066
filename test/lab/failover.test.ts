/**
 * Issue 10, must-show 3, in the lab with the real binaries: two relays and two control-plane
 * replicas on one real Postgres (test/harness/lab-failover.ts). Clients find the replicas by a
 * comma-separated server list (TUNNEL_SERVER for the CLI, --control-url for the relays), one pin.
 *
 * - SIGKILL the relay holding X's exposure: `tunnel expose` moves to the other relay and Y's next
 *   `tunnel open` reaches X; the time is printed (no timing assertion; the bound is generous).
 * - SIGKILL one control replica: the CLI and the relays keep working through the other, no restart.
 * - Restart Postgres under a load of lease issuance and other API calls: every answer is a
 *   success or a 503 problem+json DATABASE_UNAVAILABLE with Retry-After (never a 500); the leases
 *   in the database are exactly those the clients got, once each; the CLI keeps working; the
 *   replicas recover on their own (same processes).
 * - A relay that was killed and comes back closes the connection rows its earlier run left open.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { labSkipReason } from '../harness/lab.js';
import { postgresUnavailableReason } from '../harness/postgres.js';
import { follow, labTempDir, lineClient, passwordUser, type Followed, type LabCli } from '../harness/lab-cli.js';
import { controlKillRun, currentRelay, openOnce, relayKillRun, startFailoverLab, type FailoverLab } from '../harness/lab-failover.js';
import { expectStatus, passwordLogin } from '../harness/control.js';
import { waitForLine } from '../harness/streams.js';

const skip = labSkipReason() ?? postgresUnavailableReason() ?? false;
const ECHO_PORT = 7100;
const EXPOSURE = 'x-echo';
/** A bound on how long a failover may take before the test gives up (the figure is printed). */
const LIMIT_MS = 60_000;

// Runs in hosty: CONCURRENCY loops of POST /v1/leases (open), GET /v1/me and GET /v1/exposures
// against one replica until stdin closes; one JSON line per answer.
const LOAD_SCRIPT = `
const crypto = require('node:crypto');
const [base, token, exposure, concurrency] = [process.argv[1], process.argv[2], process.argv[3], Number(process.argv[4])];
const raw = crypto.generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
const str = (b) => { const l = Buffer.alloc(4); l.writeUInt32BE(b.length); return Buffer.concat([l, b]); };
const publicKey = 'ssh-ed25519 ' + Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]).toString('base64');
let stop = false;
process.stdin.on('data', () => {}).on('end', () => { stop = true; });
const ops = [
  ['lease', 'POST', '/v1/leases', { kind: 'open', exposure, public_key: publicKey }],
  ['me', 'GET', '/v1/me'],
  ['lease', 'POST', '/v1/leases', { kind: 'open', exposure, public_key: publicKey }],
  ['exposures', 'GET', '/v1/exposures'],
];
async function loop(n) {
  for (let i = n; !stop; i++) {
    const [op, method, path, body] = ops[i % ops.length];
    const t = Date.now();
    const line = { op, t };
    try {
      const res = await fetch(base + path, {
        method, body: body && JSON.stringify(body), signal: AbortSignal.timeout(20000),
        headers: { authorization: 'Bearer ' + token, ...(body ? { 'content-type': 'application/json' } : {}) },
      });
      const text = await res.text();
      Object.assign(line, { status: res.status, ctype: res.headers.get('content-type'), retry_after: res.headers.get('retry-after') });
      try {
        const j = JSON.parse(text);
        if (res.status >= 400) line.code = j.code;
        if (op === 'lease' && res.status === 201) line.lease = j.lease.id;
      } catch { line.body = text.slice(0, 200); }
    } catch (err) {
      Object.assign(line, { status: 0, error: String(err) });
    }
    line.ms = Date.now() - t;
    process.stdout.write(JSON.stringify(line) + '\\n');
  }
}
Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i))).then(() => process.exit(0));
`;

interface LoadLine {
  op: string;
  t: number;
  ms: number;
  status: number;
  ctype?: string | null;
  retry_after?: string | null;
  code?: string;
  lease?: string;
  error?: string;
  body?: string;
}

describe('failover in the lab: two relays, two control replicas, one Postgres (real binaries)', { skip, timeout: 600_000 }, () => {
  let fl: FailoverLab;
  let dir: string;
  let xavier: LabCli;
  let bob: LabCli;
  let x: Followed;
  const spawned: Followed[] = [];
  const keep = (p: Followed) => (spawned.push(p), p);
  const report: string[] = [];

  before(async () => {
    // The load below issues leases far beyond the per-user default of 120 a minute.
    fl = await startFailoverLab({ controlArgs: ['--lease-rate-limit', '100000'] });
    dir = labTempDir('failover');
    xavier = await passwordUser(fl, 'xavier', 'hostx', dir);
    bob = await passwordUser(fl, 'bob', 'hosty', dir);
    x = keep(xavier.spawn(['expose', String(ECHO_PORT), '--name', EXPOSURE, '--allow', 'bob', '--json']));
    await waitForLine(x, /"event":"connected"/, 30_000);
    // Y reaches X once X's relay has reported it (bounded).
    const start = Date.now();
    while (!(await openOnce(bob, EXPOSURE))) {
      if (Date.now() - start > 30_000) throw new Error(`Y cannot reach X at the start: ${JSON.stringify(x.output())}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  after(async () => {
    for (const p of spawned) p.kill('SIGKILL');
    await Promise.all(spawned.map((p) => p.exited));
    await fl?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (report.length) console.log(`failover figures (this machine, now; not a benchmark):\n  ${report.join('\n  ')}`);
  });

  it('the CLI stored the replica list and the pin at login, and both replicas answer with one certificate', async () => {
    const cfg = JSON.parse((await bob.exec('cat', [`${bob.home}/.config/tunnel/config.json`])).stdout) as { server: string; servers: Record<string, { ca_pin?: string }> };
    assert.equal(cfg.server, fl.controlUrl);
    assert.equal(cfg.servers[fl.controlUrl]?.ca_pin, fl.caPin);
    for (let i = 0; i < 2; i++) expectStatus(await fl.callOn(i)('GET', '/v1/me', { token: fl.adminToken }), 200, `replica ${i}`);
  });

  it('SIGKILL of the relay holding X: tunnel expose moves to the other relay and Y reaches X again', async () => {
    const before = x.output().stdout.length;
    const run = await relayKillRun(fl, () => x.output().stdout, bob, EXPOSURE, LIMIT_MS);
    // X named the lost relay in its next lease request, so it went straight to the other one:
    // one disconnect (the kill), no attempts at the dead relay while it still looked online.
    const afterKill = x.output().stdout.slice(before).split('\n').filter(Boolean);
    const firstConnected = afterKill.findIndex((l) => l.includes('"event":"connected"'));
    assert.ok(firstConnected > 0, afterKill.join('\n'));
    const disconnects = afterKill.slice(0, firstConnected).filter((l) => l.includes('"event":"disconnected"'));
    assert.equal(disconnects.length, 1, `X retried the dead relay:\n${afterKill.join('\n')}`);
    report.push(`relay ${run.from} SIGKILLed -> Y reached X through ${run.to} after ${run.ms} ms (${run.attempts} tunnel open attempts)`);
    assert.notEqual(run.to, run.from, `X should have moved off the killed relay: ${x.output().stdout}`);
    assert.equal(currentRelay(x.output().stdout), run.to);
    assert.equal(x.exitCode, null, 'tunnel expose kept running');
  });

  it('a relay killed and started again closes the connection rows its earlier run left open', async () => {
    // Hold a connection through X's relay, kill that relay, start it again: the row must not look live.
    const holder = fl.relays.find((r) => r.name === currentRelay(x.output().stdout))!;
    const y = keep(bob.spawn(['open', EXPOSURE, '--listen', '127.0.0.1:7301', '--json']));
    await waitForLine(y, /"event":"listening"/, 20_000);
    const client = keep(lineClient(fl.lab, 'hosty', '127.0.0.1', 7301));
    await waitForLine(client, /^connected$/, 10_000);
    client.stdin!.write('hello\n');
    await waitForLine(client, /^got hello$/, 10_000);
    const liveOn = async (node: string) => {
      const r = expectStatus(await fl.call('GET', '/v1/connections', { token: fl.adminToken }), 200, 'connections');
      return (r.body.connections as { node: string; live: boolean; kind: string }[]).filter((c) => c.node === node && c.live);
    };
    const deadline = Date.now() + 20_000;
    while ((await liveOn(holder.name)).length === 0) {
      if (Date.now() > deadline) throw new Error('the relay never reported the open connections');
      await new Promise((r) => setTimeout(r, 250));
    }
    const i = fl.relays.indexOf(holder);
    await holder.process.stop('SIGKILL');
    await fl.startRelay(i);
    // The restarted relay's first heartbeat carries its start time; what the old run held is closed.
    const closedBy = Date.now() + 30_000;
    let left = await liveOn(holder.name);
    while (left.some((c) => c.kind === 'open')) {
      if (Date.now() > closedBy) assert.fail(`connections of the killed run still look live: ${JSON.stringify(left)}`);
      await new Promise((r) => setTimeout(r, 250));
      left = await liveOn(holder.name);
    }
    y.kill('SIGTERM');
    client.kill('SIGKILL');
    // X is back somewhere and Y reaches it (before the next case).
    const back = Date.now();
    while (!(await openOnce(bob, EXPOSURE))) {
      if (Date.now() - back > LIMIT_MS) throw new Error('Y cannot reach X after the relay restart');
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  it('SIGKILL of a control replica: the CLI and both relays keep working through the other, without a restart', async () => {
    const killedAt = new Date();
    const run = await controlKillRun(fl, 0, bob, EXPOSURE, LIMIT_MS, false);
    report.push(`control ${run.from} SIGKILLed -> Y reached X (CLI on ${run.to}) after ${run.ms} ms (${run.attempts} attempts)`);
    // A new exposure now: X's lease from the surviving replica, the relay reports it online
    // (events through the other replica), Y's open lease needs that report.
    const second = keep(xavier.spawn(['expose', String(ECHO_PORT), '--name', 'x-echo-2', '--allow', 'bob', '--json']));
    await waitForLine(second, /"event":"connected"/, 30_000);
    const start = Date.now();
    while (!(await openOnce(bob, 'x-echo-2'))) {
      if (Date.now() - start > LIMIT_MS) throw new Error(`Y cannot reach x-echo-2 with one replica down: ${JSON.stringify(second.output())}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    // Both relays heartbeat through the surviving replica (15 s interval).
    const hbBy = Date.now() + 45_000;
    for (;;) {
      const nodes = expectStatus(await fl.callOn(1)('GET', '/v1/nodes', { token: fl.adminToken }), 200, 'nodes').body.nodes as { name: string; online: boolean; last_seen_at: string | null }[];
      const fresh = nodes.filter((n) => n.online && n.last_seen_at && new Date(n.last_seen_at) > killedAt);
      if (fresh.length === 2) break;
      if (Date.now() > hbBy) assert.fail(`relays did not heartbeat through the other replica: ${JSON.stringify(nodes)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    // Revocation through the surviving replica reaches the relay (its feed is polled there too).
    const y = keep(bob.spawn(['open', 'x-echo-2', '--listen', '127.0.0.1:7302', '--json']));
    const connected = JSON.parse(await waitForLine(y, /"event":"connected"/, 20_000)) as { lease: string };
    expectStatus(await fl.callOn(1)('DELETE', `/v1/leases/${connected.lease}`, { token: fl.adminToken }), 200, 'revoke');
    const ended = await Promise.race([y.exited, new Promise<null>((r) => setTimeout(() => r(null), 30_000))]);
    assert.ok(ended, 'the revoked tunnel open ended');
    assert.equal(ended.code, 4, JSON.stringify(y.output()));
    second.kill('SIGTERM');
    assert.equal(x.exitCode, null, 'X kept exposing');
    await fl.startReplica(0);
  });

  it('Postgres restarted under load: 503 DATABASE_UNAVAILABLE with Retry-After or success, no lease lost or duplicated, recovery without a restart', async () => {
    await passwordUser(fl, 'loady', 'hosty', dir);
    expectStatus(await fl.call('PUT', `/v1/exposures/${EXPOSURE}`, { token: fl.adminToken, body: { allow: ['bob', 'loady'] } }), 200, 'allow loady');
    const token = await passwordLogin(fl.call, 'loady', 'loady-password-123');
    const pids = fl.replicas.map((r) => r.child.pid);
    const env = ['env', `NODE_EXTRA_CA_CERTS=${fl.caFile}`, process.execPath, '-e', LOAD_SCRIPT];
    const loads = fl.replicas.map((r) =>
      keep(follow(fl.lab.spawn('hosty', env[0]!, [...env.slice(1), r.url, token, EXPOSURE, '3'], { stdio: ['pipe', 'pipe', 'pipe'] }))),
    );
    const outputs = loads.map((l) => ({ get: () => l.output().stdout, err: () => l.output().stderr, exited: l.exited }));
    const parse = (s: string): LoadLine[] => s.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LoadLine);
    const okCount = () => outputs.reduce((n, o) => n + parse(o.get()).filter((l) => l.status >= 200 && l.status < 300).length, 0);
    // Some load before the restart.
    const warm = Date.now();
    while (okCount() < 20) {
      if (Date.now() - warm > 60_000) throw new Error(`the load got no answers: ${outputs.map((o) => o.err()).join('\n')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    // The CLI during the restart: one command after another, each ends 0 or with one line.
    let cliRunning = true;
    const cliResults: { code: number | null; stderr: string }[] = [];
    const cliLoop = (async () => {
      while (cliRunning) cliResults.push(await bob.run(['leases'], { timeoutMs: 60_000 }));
    })();

    const restartAt = Date.now();
    await fl.postgres.restart('fast');
    const restartedAt = Date.now();
    // Recovery: successes on both replicas after the restart.
    const recovered = (o: (typeof outputs)[number]) => parse(o.get()).some((l) => l.t > restartedAt && l.status >= 200 && l.status < 300);
    while (!outputs.every(recovered)) {
      if (Date.now() - restartedAt > LIMIT_MS) assert.fail(`a replica did not recover after the Postgres restart: ${outputs.map((o) => o.get().slice(-2000)).join('\n')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 1000));
    cliRunning = false;
    await cliLoop;
    for (const l of loads) l.stdin!.end();
    await Promise.all(outputs.map((o) => o.exited));

    const lines = outputs.flatMap((o) => parse(o.get()));
    const bad = lines.filter((l) => !((l.status >= 200 && l.status < 300) || l.status === 503));
    assert.deepEqual(bad, [], 'every answer is a success or a 503');
    const unavailable = lines.filter((l) => l.status === 503);
    for (const l of unavailable) {
      assert.equal(l.code, 'DATABASE_UNAVAILABLE', JSON.stringify(l));
      assert.match(l.ctype ?? '', /^application\/problem\+json/, JSON.stringify(l));
      assert.match(l.retry_after ?? '', /^\d+$/, JSON.stringify(l));
    }
    // The replicas are the same processes: they recovered by themselves.
    assert.deepEqual(fl.replicas.map((r) => r.child.pid), pids);
    assert.ok(fl.replicas.every((r) => r.child.exitCode === null));

    // What the clients got is exactly what the database holds: no lease lost, none twice.
    const got = lines.filter((l) => l.lease).map((l) => l.lease!);
    assert.equal(new Set(got).size, got.length, 'no lease id was handed out twice');
    const inDb = (await fl.postgres.psql(`select l.id from leases l join users u on u.id = l.user_id where u.name = 'loady' order by l.id`)).trim().split('\n').filter(Boolean);
    assert.deepEqual([...got].sort(), inDb, 'the leases in the database are those the clients got');

    // The CLI: every run succeeded (it retries 503 DATABASE_UNAVAILABLE) or said why in one line.
    for (const r of cliResults) {
      if (r.code === 0) continue;
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
    // A CLI command started while the database is down waits it out (503 DATABASE_UNAVAILABLE,
    // retried after Retry-After, said once in one line) and succeeds once it is back.
    await fl.postgres.pause();
    const down = await fl.callOn(1)('GET', '/v1/me', { token });
    assert.equal(down.status, 503, JSON.stringify(down.body));
    assert.equal(down.body.code, 'DATABASE_UNAVAILABLE');
    const during = keep(bob.spawn(['leases']));
    await waitForLine(during, /cannot reach its database; retrying/, 30_000);
    await fl.postgres.resume();
    const ended = await during.exited;
    assert.equal(ended.code, 0, JSON.stringify(during.output()));
    const said = during.output().stderr.split('\n').filter((l) => /database/.test(l));
    assert.deepEqual(said, ['tunnel: the control plane cannot reach its database; retrying for up to 30 s']);
    assert.doesNotMatch(during.output().stderr, /\n\s+at /);

    const firstFail = lines.filter((l) => l.status === 503).sort((a, b) => a.t - b.t)[0];
    const firstOkAfter = lines.filter((l) => l.t > restartAt && l.status < 300 && (!firstFail || l.t >= firstFail.t)).sort((a, b) => a.t - b.t)[0];
    report.push(
      `Postgres restart (pg_ctl restart -m fast, ${restartedAt - restartAt} ms): ${lines.length} requests on 2 replicas, ${got.length} leases issued and all in the DB, ` +
        `${unavailable.length} answered 503 DATABASE_UNAVAILABLE, 0 other errors; first success after the outage ${firstOkAfter && firstFail ? firstOkAfter.t - firstFail.t : 0} ms after the first 503; ` +
        `CLI: ${cliResults.length} runs of tunnel leases, ${cliResults.filter((r) => r.code === 0).length} exit 0`,
    );
  });
});
