/**
 * Operator commands with the real binaries (issue 10): `tunnel admin enroll-token` prints a token
 * and a tunnel-node command that enrolls a relay as printed; `tunnel exposures` creates, lists,
 * allows, denies and deletes exposures, so plain OpenSSH on X (`tunnel cert --expose`) needs no
 * hand-written API call; `tunnel cert` prints lines for the port X really exposes; `tunnel nodes rm`
 * removes a relay, which fails closed at once.
 */
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RELAY_NODE_FLAGS } from '../../node/node-flags.js';
import { freePort } from '../harness/net.js';
import { relayNodeArgv } from '../harness/relay-process.js';
import { cliFixture, type CliResult } from '../harness/stack.js';
import { eventually, waitForLine } from '../harness/streams.js';

const dirs: string[] = [];
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) killGroup(c, 'SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** Signals the process group of a `shell()` child (sh may not exec its last command). */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // already gone
  }
}

/** Runs `sh -c script` (a command line as the CLI printed it) in the background, in its own process group. */
function shell(script: string, env: Record<string, string>) {
  const child = spawn('/bin/sh', ['-c', script], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return Object.assign(child, { output: () => ({ stdout, stderr }) });
}

async function shellRun(script: string, env: Record<string, string>, input: string): Promise<CliResult> {
  const child = shell(script, env);
  child.stdin.end(input);
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, ...child.output() };
}

const ok = (r: CliResult, what: string) => {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  return r;
};

describe('operator commands (real binaries)', () => {
  const f = cliFixture();
  before(async () => {
    // Allow lists name existing users.
    await f.stack.user('carol');
    await f.stack.user('dave');
  });

  it('exposures create/allow/deny/ls/show/rm, each with one line and its exit code', async () => {
    // An allow list names existing users (a typo is refused: UNKNOWN_USER, exit 1, one line).
    const typo = await f.admin.run(['exposures', 'create', 'ops-db', '--allow', 'bobb']);
    assert.equal(typo.code, 1, typo.stderr);
    assert.equal(typo.stderr.trim().split('\n').length, 1, typo.stderr);
    assert.match(typo.stderr, /bobb/);
    ok(await f.admin.run(['exposures', 'create', 'ops-db', '--allow', 'bob']), 'create');
    const shown = JSON.parse(ok(await f.bob.run(['exposures', 'show', 'ops-db', '--json']), 'show').stdout) as { owner: string; allow: string[] };
    assert.deepEqual([shown.owner, shown.allow], ['admin', ['bob']]);
    ok(await f.admin.run(['exposures', 'allow', 'ops-db', 'carol', 'dave']), 'allow');
    const ls = JSON.parse(ok(await f.admin.run(['exposures', 'ls', '--json']), 'ls').stdout) as { exposures: { name: string; allow: string[] }[] };
    assert.deepEqual(ls.exposures.find((e) => e.name === 'ops-db')?.allow, ['bob', 'carol', 'dave']);
    ok(await f.admin.run(['exposures', 'deny', 'ops-db', 'bob', 'dave']), 'deny');
    const after = await f.bob.run(['exposures', 'show', 'ops-db']);
    assert.equal(after.code, 1, 'bob no longer sees it');
    assert.equal(after.stderr.trim().split('\n').length, 1, after.stderr);
    const denied = await f.bob.run(['exposures', 'rm', 'ops-db']);
    assert.equal(denied.code, 1, denied.stderr);
    const usage = await f.admin.run(['exposures', 'allow', 'ops-db']);
    assert.equal(usage.code, 2, usage.stderr);
    ok(await f.admin.run(['exposures', 'rm', 'ops-db']), 'rm');
    assert.equal((await f.admin.run(['exposures', 'show', 'ops-db'])).code, 1);
  });

  it("tunnel expose --allow keeps an existing exposure's allow list (an admin's edit survives X's restart) unless --replace-allow", async () => {
    ok(await f.admin.run(['exposures', 'create', 'keep-x', '--allow', 'bob']), 'create');
    ok(await f.admin.run(['exposures', 'allow', 'keep-x', 'carol']), 'the admin edits the list');
    const allowOf = async () => (JSON.parse(ok(await f.admin.run(['exposures', 'show', 'keep-x', '--json']), 'show').stdout) as { allow: string[] }).allow;

    // X restarts with the --allow it was first started with: the admin's edit stays.
    const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'keep-x', '--allow', 'bob', '--json']);
    await waitForLine(x, /"event":"connected"/);
    assert.match(x.output().stderr, /keep-x exists; keeping its allow list \(bob, carol\); --replace-allow replaces it/);
    assert.deepEqual(await allowOf(), ['bob', 'carol']);
    x.kill('SIGTERM');
    await once(x, 'exit');

    // --replace-allow says so: the list becomes exactly --allow.
    const y = f.admin.spawn(['expose', String(f.echo.port), '--name', 'keep-x', '--allow', 'bob', '--replace-allow', '--json']);
    await waitForLine(y, /"event":"connected"/);
    assert.deepEqual(await allowOf(), ['bob']);
    y.kill('SIGTERM');
    await once(y, 'exit');

    const usage = await f.admin.run(['expose', String(f.echo.port), '--name', 'keep-x', '--replace-allow']);
    assert.equal(usage.code, 2, usage.stderr);
    assert.match(usage.stderr, /--replace-allow needs --allow/);
  });

  it('plain OpenSSH on X: exposures create + cert --expose, then Y opens it; cert prints the real port', async () => {
    const port = f.echo.port;
    ok(await f.admin.run(['exposures', 'create', 'plain-x', '--allow', 'bob']), 'create');
    const xdir = tmp('tunnel-certx-');
    const x = JSON.parse(ok(await f.admin.run(['cert', 'plain-x', '--expose', '--port', String(port), '--out', xdir, '--json']), 'cert --expose').stdout) as {
      commands: { expose: string };
    };
    assert.match(x.commands.expose, new RegExp(`-R plain-x:${port}:localhost:${port} `));
    const sshX = shell(x.commands.expose.replace(/^ssh /, 'ssh -o BatchMode=yes -o ExitOnForwardFailure=yes '), { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: xdir });
    await eventually(async () => {
      const e = JSON.parse(ok(await f.bob.run(['exposures', 'show', 'plain-x', '--json']), 'show').stdout) as { online: boolean; port: number };
      assert.deepEqual([e.online, e.port], [true, port]);
    }, 15_000);

    const viaCli = ok(await f.bob.run(['open', 'plain-x', '--stdio'], { input: 'hello plain\n' }), 'open --stdio');
    assert.equal(viaCli.stdout, 'hello plain\nbye\n');

    const ydir = tmp('tunnel-certy-');
    const y = JSON.parse(ok(await f.bob.run(['cert', 'plain-x', '--out', ydir, '--json']), 'cert').stdout) as {
      commands: { forward: string; proxy_command: string };
    };
    assert.ok(y.commands.proxy_command.includes(`-W plain-x:${port} `), y.commands.proxy_command);
    assert.ok(y.commands.forward.includes(`:plain-x:${port} `), y.commands.forward);
    // The ProxyCommand's inner ssh, run as printed, reaches X's service.
    const inner = /ProxyCommand='([^']+)'/.exec(y.commands.proxy_command)![1]!;
    const r = await shellRun(inner.replace(/^ssh /, 'ssh -o BatchMode=yes '), { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: ydir }, 'through -W\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'through -W\nbye\n');
    const exited = once(sshX, 'exit');
    killGroup(sshX, 'SIGTERM');
    await exited;
  });

  it('admin enroll-token prints a token and a tunnel-node command that enrolls a relay as printed', async () => {
    const sshPort = await freePort();
    const r = ok(await f.admin.run(['admin', 'enroll-token', 'relay-2', '--advertise', `127.0.0.1:${sshPort}`]), 'enroll-token');
    const token = r.stdout.trim();
    assert.match(token, /^\S{20,}$/);
    const command = /^ {2}(TUNNEL_ENROLL_TOKEN=.*tunnel-node .*)$/m.exec(r.stderr)?.[1];
    assert.ok(command, r.stderr);
    assert.ok(command.includes(token) && command.includes(`--control-url ${f.stack.control.url}`), command);

    // tunnel-node on PATH, as an installed package provides it: node with the relay's node flags.
    const bin = tmp('tunnel-bin-');
    writeFileSync(join(bin, 'tunnel-node'), `#!/bin/sh\nexec ${[process.execPath, ...relayNodeArgv()].map((a) => `"${a}"`).join(' ')} "$@"\n`);
    chmodSync(join(bin, 'tunnel-node'), 0o755);
    const data = tmp('tunnel-node2-');
    // Preloaded (NODE_OPTIONS is not in execArgv): the relay says which node flags it runs with.
    const probe = join(bin, 'exec-argv.mjs');
    writeFileSync(probe, 'process.stderr.write(`execArgv ${JSON.stringify(process.execArgv)}\\n`);\n');
    const relay = shell(`${command} --data-dir ${data} --listen 127.0.0.1:${sshPort} --metrics-listen 127.0.0.1:${await freePort()}`, {
      PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: data,
      TUNNEL_EGRESS_DRIVER: 'off',
      NODE_OPTIONS: `--import=${probe}`,
    });
    await waitForLine(relay, /"ready":true/, 30_000);
    assert.equal(await waitForLine(relay, /^execArgv /), `execArgv ${JSON.stringify(RELAY_NODE_FLAGS)}`, 'the relay runs with the node flags tunnel-node runs with');
    const nodes = ok(await f.admin.run(['nodes', 'ls', '--json']), 'nodes ls');
    const n = (JSON.parse(nodes.stdout) as { nodes: { name: string; address: string }[] }).nodes.find((x) => x.name === 'relay-2');
    assert.deepEqual(n?.address, `127.0.0.1:${sshPort}`);
    // The token works once.
    const again = await f.stack.call('POST', '/v1/nodes/enroll', { body: { token, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl', address: '127.0.0.1:1' } });
    assert.equal(again.status >= 400, true, JSON.stringify(again.body));

    // tunnel nodes rm: the relay is refused at once (the poll it holds ends 401) and fails closed.
    const rm = ok(await f.admin.run(['nodes', 'rm', 'relay-2']), 'nodes rm');
    assert.equal(rm.stderr.trim(), 'Removed relay relay-2; it closes its connections and admits none.');
    await waitForLine(relay, /refuses this relay's node credential/, 30_000);
    const left = ok(await f.admin.run(['nodes', 'ls', '--json']), 'nodes ls after rm');
    assert.equal((JSON.parse(left.stdout) as { nodes: { name: string }[] }).nodes.some((x) => x.name === 'relay-2'), false);
    const twice = await f.admin.run(['nodes', 'rm', 'relay-2']);
    assert.equal(twice.code, 1, twice.stderr);
    assert.match(twice.stderr.trim(), /^tunnel nodes: relay "relay-2" not found$/);
    assert.equal(twice.stderr.trim().split('\n').length, 1, twice.stderr);
    const exited = once(relay, 'exit');
    killGroup(relay, 'SIGTERM');
    await exited;
  });
});
