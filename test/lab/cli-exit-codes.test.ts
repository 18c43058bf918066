/**
 * Issue 5, item 4, in the lab with the real binaries: bad input and bad states give one line on
 * stderr and the documented exit code (0 ok, 1 error, 2 usage, 3 not logged in, 4 not permitted,
 * 5 control plane or relay unreachable; and for tunnel open, issue 10: 6 exposure offline, 7 X's
 * service down, 8 a port X does not expose). "Unreachable" is made the way a user behind NAT meets it:
 * a wrong --server, or Y's NAT router refusing the way to the control plane or to the relay (a TCP
 * reset, exactly what a stopped process answers).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { labSkipReason, type Lab } from '../harness/lab.js';
import { LAB_CONTROL_PORT, LAB_RELAY_SSH_PORT, startLabStack, type LabStack } from '../harness/lab-stack.js';
import { blockAtRouter, labCli, labTempDir, passwordUser, type Followed, type LabCli } from '../harness/lab-cli.js';
import type { CliResult } from '../harness/stack.js';
import { waitForLine } from '../harness/streams.js';

const skip = labSkipReason() ?? false;
const EXPOSURE = 'codes-echo';

function assertOneLine(r: CliResult, code: number, pattern?: RegExp): void {
  assert.equal(r.code, code, `exit ${r.code}, want ${code}; stderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `want one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^tunnel[: ]/);
  if (pattern) assert.match(lines[0]!, pattern);
  assert.equal(r.stdout, '');
}

describe('tunnel exit codes and one-line messages in the lab (real binaries)', { skip }, () => {
  let stack: LabStack;
  let lab: Lab;
  let dir: string;
  let bob: LabCli;
  let carol: LabCli;
  let nobody: LabCli;
  let xavier: LabCli;
  let expose: Followed | undefined;

  before(async () => {
    stack = await startLabStack();
    lab = stack.lab;
    dir = labTempDir('cli-exit-codes');
    xavier = await passwordUser(stack, 'xavier', 'hostx', dir);
    bob = await passwordUser(stack, 'bob', 'hosty', dir);
    carol = await passwordUser(stack, 'carol', 'hosty', dir);
    nobody = labCli(stack, 'nobody', 'hosty', dir);
    expose = xavier.spawn(['expose', '7100', '--name', EXPOSURE, '--allow', 'bob', '--json']);
    await waitForLine(expose, /"event":"connected"/, 30_000);
  });

  after(async () => {
    expose?.kill('SIGTERM');
    await expose?.exited;
    await stack?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('0: the happy path (Y in the ACL, everything reachable)', async () => {
    const r = await bob.run(['open', EXPOSURE, '--stdio'], { input: 'ok\n', timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ok\n');
  });

  it('1: an unknown exposure', async () => {
    assertOneLine(await bob.run(['open', 'no-such-exposure', '--stdio'], { timeoutMs: 20_000 }), 1, /no-such-exposure/);
  });

  it('6: X offline (an exposure nobody exposes now): no lease, one line', async () => {
    const r = await xavier.run(['exposures', 'create', 'codes-offline', '--allow', 'bob'], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    assertOneLine(await bob.run(['open', 'codes-offline', '--stdio'], { timeoutMs: 20_000 }), 6, /codes-offline.* not online/);
  });

  it("7: X online but its service down", async () => {
    const down = xavier.spawn(['expose', '7199', '--name', 'codes-down', '--allow', 'bob', '--json']);
    try {
      await waitForLine(down, /"event":"connected"/, 30_000);
      assertOneLine(await bob.run(['open', 'codes-down', '--stdio'], { input: 'x', timeoutMs: 20_000 }), 7, /could not connect to its service/);
    } finally {
      down.kill('SIGTERM');
      await down.exited;
    }
  });

  it('8: a port X does not expose', async () => {
    assertOneLine(await bob.run(['open', `${EXPOSURE}:7101`, '--stdio'], { input: 'x', timeoutMs: 20_000 }), 8, /exposed on port 7100/);
  });

  it('4: Y not in the ACL', async () => {
    assertOneLine(await carol.run(['open', EXPOSURE, '--stdio'], { timeoutMs: 20_000 }), 4, /not in the allow list/);
  });

  it('3: not logged in (open, expose, whoami)', async () => {
    for (const args of [['open', EXPOSURE, '--stdio'], ['expose', '7100', '--name', 'anything'], ['whoami']]) {
      assertOneLine(await nobody.run(args, { timeoutMs: 20_000 }), 3, /tunnel login/);
    }
  });

  it('5: the control plane unreachable: a wrong --server', async () => {
    const wrong = `https://${lab.hosts.ctl.addr}:1`;
    assertOneLine(await nobody.run(['login', '--server', wrong, '--token', 'tnl_st_whatever'], { timeoutMs: 30_000 }), 5, /cannot reach the control plane/);
  });

  it("5: the control plane unreachable from Y (refused at Y's router)", async () => {
    const unblock = await blockAtRouter(lab, 'naty', lab.hosts.ctl.addr, LAB_CONTROL_PORT);
    try {
      assertOneLine(await bob.run(['open', EXPOSURE, '--stdio'], { timeoutMs: 30_000 }), 5, /cannot reach the control plane/);
      assertOneLine(await bob.run(['ls'], { timeoutMs: 30_000 }), 5, /cannot reach the control plane/);
    } finally {
      await unblock();
    }
    // And back once the way is open again.
    const r = await bob.run(['open', EXPOSURE, '--stdio'], { input: 'back\n', timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
  });

  it("5: the relay unreachable from Y (refused at Y's router) while the control plane answers", async () => {
    const unblock = await blockAtRouter(lab, 'naty', lab.hosts.relay.wanAddr, LAB_RELAY_SSH_PORT);
    try {
      assertOneLine(await bob.run(['open', EXPOSURE, '--stdio'], { timeoutMs: 30_000 }), 5, /cannot reach relay/);
    } finally {
      await unblock();
    }
  });

  const usage: [string, string[]][] = [
    ['an unknown command', ['frobnicate']],
    ['open without a name', ['open']],
    ['open with an unknown flag', ['open', EXPOSURE, '--bogus']],
    ['open --listen with a bad port', ['open', EXPOSURE, '--listen', '127.0.0.1:99999']],
    ['open --stdio with --listen', ['open', EXPOSURE, '--stdio', '--listen', '127.0.0.1:7300']],
    ['open --ttl too short', ['open', EXPOSURE, '--ttl', '5']],
    ['open a malformed name', ['open', 'Not_A_Name', '--stdio']],
    ['expose without --name', ['expose', '22']],
    ['expose with a malformed --name', ['expose', '22', '--name', 'Bad_Name']],
    ['expose with a non-numeric port', ['expose', 'ssh', '--name', 'x']],
    ['expose --allow without a value', ['expose', '22', '--name', 'x', '--allow']],
    ['login --token-file that does not exist', ['login', '--token-file', '/nonexistent/token']],
  ];
  for (const [what, args] of usage) {
    it(`2: ${what} (tunnel ${args.join(' ')})`, async () => {
      assertOneLine(await bob.run(args, { timeoutMs: 20_000 }), 2);
    });
  }
});
