/**
 * `tunnel cert --out DIR` writes the lease's private key with mode 0600 whatever was in DIR
 * before (an older key file with a looser mode, a symlink planted in a shared directory), and a
 * DIR it cannot write into is one line, with the lease it issued revoked rather than left active.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { MockAgent } from 'undici';
import { EXIT } from '../errors.js';
import { run } from '../run.js';
import { writeCredentials } from '../settings.js';
import { tempDir } from '../../shared/testing/temp-dir.js';
import { testContext } from '../testing/test-context.js';

const SERVER = 'https://control.test';
const LEASE_ID = 'lse_0123456789abcdef0123456789abcdef';

const issued = {
  lease: {
    id: LEASE_ID,
    kind: 'open',
    user: 'bob',
    node: 'relay-1',
    exposure: 'hostx-ssh',
    port: 22,
    targets: null,
    ssh_key: 'ssh-ed25519 AAAA',
    serial: '1',
    not_before: '2026-01-01T00:00:00Z',
    expires_at: '2026-01-01T00:10:00Z',
    revoked_at: null,
    created_at: '2026-01-01T00:00:00Z',
  },
  token: 'jwt',
  certificate: 'ssh-ed25519-cert-v01@openssh.com AAAA',
  relay: { node_id: 'nod_1', name: 'relay-1', address: '127.0.0.1:2222', host_key: 'ssh-ed25519 AAAAhost' },
};

function setup() {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get(SERVER);
  pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(201, JSON.stringify(issued), { headers: { 'content-type': 'application/json' } });
  const ctx = testContext({ dispatcher: agent });
  writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
  return { agent, pool, ctx };
}

describe('tunnel cert --out', () => {
  it('an existing key file with mode 0644 is replaced by one with mode 0600', async () => {
    const { ctx } = setup();
    const dir = tempDir('tunnel-cert-');
    writeFileSync(join(dir, 'hostx-ssh'), 'old\n', { mode: 0o644 });
    assert.equal(await run(['cert', 'hostx-ssh', '--out', dir], ctx), 0, ctx.err());
    assert.equal(statSync(join(dir, 'hostx-ssh')).mode & 0o777, 0o600);
    assert.match(readFileSync(join(dir, 'hostx-ssh'), 'utf8'), /BEGIN OPENSSH PRIVATE KEY/);
  });

  it('a symlink at the key path is replaced, not followed', async () => {
    const { ctx } = setup();
    const dir = tempDir('tunnel-cert-');
    const elsewhere = join(dir, 'elsewhere');
    writeFileSync(elsewhere, 'theirs\n', { mode: 0o666 });
    symlinkSync(elsewhere, join(dir, 'hostx-ssh'));
    assert.equal(await run(['cert', 'hostx-ssh', '--out', dir], ctx), 0, ctx.err());
    assert.equal(readFileSync(elsewhere, 'utf8'), 'theirs\n');
    assert.ok(lstatSync(join(dir, 'hostx-ssh')).isFile());
    assert.equal(statSync(join(dir, 'hostx-ssh')).mode & 0o777, 0o600);
  });

  it('an --out that is a file is one line, and the lease it was for is revoked', async () => {
    const { pool, ctx } = setup();
    pool.intercept({ path: `/v1/leases/${LEASE_ID}`, method: 'DELETE' }).reply(200, JSON.stringify({ ...issued.lease, revoked_at: '2026-01-01T00:01:00Z' }), { headers: { 'content-type': 'application/json' } });
    const file = join(tempDir('tunnel-cert-'), 'a-file');
    writeFileSync(file, '');
    assert.equal(await run(['cert', 'hostx-ssh', '--out', file], ctx), EXIT.ERROR);
    assert.match(ctx.err(), new RegExp(`^tunnel cert: cannot write "[^"]+a-file" \\(ENOTDIR\\); the lease ${LEASE_ID} was revoked\\n$`));
  });

  it('a file that cannot be written is one line, and the lease it was for is revoked', async () => {
    const { pool, ctx } = setup();
    let revoked = false;
    pool.intercept({ path: `/v1/leases/${LEASE_ID}`, method: 'DELETE' }).reply(() => {
      revoked = true;
      return { statusCode: 200, data: JSON.stringify({ ...issued.lease, revoked_at: '2026-01-01T00:01:00Z' }), responseOptions: { headers: { 'content-type': 'application/json' } } };
    });
    const dir = tempDir('tunnel-cert-');
    mkdirSync(join(dir, 'hostx-ssh-known_hosts')); // a directory where the file goes: rename fails
    assert.equal(await run(['cert', 'hostx-ssh', '--out', dir], ctx), EXIT.ERROR);
    assert.equal(ctx.err().split('\n').length, 2, ctx.err());
    assert.match(ctx.err(), new RegExp(`^tunnel cert: cannot write ".*hostx-ssh-known_hosts" \\(\\w+\\); the lease ${LEASE_ID} was revoked\\n$`));
    assert.ok(revoked);
  });

  it('a relay host key or certificate with a line break or tab (extra known_hosts lines) is refused, nothing written, the lease revoked', async () => {
    for (const [field, value] of [
      ['host_key', 'ssh-ed25519 AAAAhost\n*\tssh-ed25519\tAAAAevil'],
      ['host_key', 'ssh-ed25519 AAAAhost\r\n@cert-authority * ssh-ed25519 AAAAevil'],
      ['certificate', 'ssh-ed25519-cert-v01@openssh.com AAAA\nmore'],
    ] as const) {
      const agent = new MockAgent();
      agent.disableNetConnect();
      const pool = agent.get(SERVER);
      const hostile = field === 'host_key' ? { ...issued, relay: { ...issued.relay, host_key: value } } : { ...issued, certificate: value };
      pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(201, JSON.stringify(hostile), { headers: { 'content-type': 'application/json' } });
      let revoked = false;
      pool.intercept({ path: `/v1/leases/${LEASE_ID}`, method: 'DELETE' }).reply(() => {
        revoked = true;
        return { statusCode: 200, data: JSON.stringify({ ...issued.lease, revoked_at: '2026-01-01T00:01:00Z' }), responseOptions: { headers: { 'content-type': 'application/json' } } };
      });
      const ctx = testContext({ dispatcher: agent });
      writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
      const dir = join(tempDir('tunnel-cert-'), 'out');
      assert.equal(await run(['cert', 'hostx-ssh', '--out', dir], ctx), EXIT.ERROR, `${field}: ${ctx.err()}`);
      assert.equal(ctx.err().split('\n').length, 2, ctx.err());
      assert.match(ctx.err(), /not as one OpenSSH key line/);
      assert.equal(existsSync(dir), false, 'nothing written');
      assert.ok(revoked, field);
    }
  });

  // DIR may be ~/.ssh, or hold another lease's files: its known_hosts, and another lease's pin
  // of another relay, stay as they were (each lease's file has the lease's name).
  it("leaves DIR's known_hosts and another lease's pin alone", async () => {
    const dir = tempDir('tunnel-cert-');
    writeFileSync(join(dir, 'known_hosts'), 'mine.example ssh-ed25519 AAAAmine\n');
    writeFileSync(join(dir, 'other-known_hosts'), '[10.0.0.9]:2222 ssh-ed25519 AAAAother\n');
    const { ctx } = setup();
    assert.equal(await run(['cert', 'hostx-ssh', '--out', dir, '--json'], ctx), 0, ctx.err());
    const result = JSON.parse(ctx.out()) as { known_hosts: string };
    assert.equal(result.known_hosts, join(dir, 'hostx-ssh-known_hosts'));
    assert.equal(readFileSync(result.known_hosts, 'utf8'), '[127.0.0.1]:2222 ssh-ed25519 AAAAhost\n');
    assert.equal(readFileSync(join(dir, 'known_hosts'), 'utf8'), 'mine.example ssh-ed25519 AAAAmine\n');
    assert.equal(readFileSync(join(dir, 'other-known_hosts'), 'utf8'), '[10.0.0.9]:2222 ssh-ed25519 AAAAother\n');
  });

  // The printed lines are pasted into a shell: a DIR with a space, a quote or $( ) is one word in
  // them, and the ProxyCommand (run by ssh through /bin/sh) quotes it again inside.
  it('prints lines whose paths are one shell word each, whatever DIR holds', async () => {
    const dir = join(tempDir('tunnel-cert-'), "it's $(touch pwned) a dir");
    const { ctx } = setup();
    assert.equal(await run(['cert', 'hostx-ssh', '--out', dir, '--json'], ctx), 0, ctx.err());
    const { commands, private_key } = JSON.parse(ctx.out()) as { commands: { forward: string; proxy_command: string }; private_key: string };
    // The shell's words for each line, with ssh replaced by printf (one word per line).
    const words = (line: string) => execFileSync('/bin/sh', ['-c', `ssh() { printf '%s\\n' "$@"; }; ${line}`], { encoding: 'utf8', cwd: dir }).split('\n').slice(0, -1);
    const forward = words(commands.forward);
    assert.deepEqual(forward.slice(0, 3), ['-N', '-i', private_key]);
    // The -o words: CertificateFile=PATH and UserKnownHostsFile=PATH, PATH quoted for ssh (the next case).
    assert.deepEqual([forward[3], forward[5], forward[6], forward[7]], ['-o', '-o', 'IdentitiesOnly=yes', '-o']);
    assert.ok(forward[4]!.startsWith('CertificateFile=') && forward[8]!.startsWith('UserKnownHostsFile='), forward.join('\n'));
    const proxy = words(commands.proxy_command);
    const inner = proxy[1]!.replace(/^ProxyCommand=/, '');
    assert.deepEqual(words(inner).slice(0, 3), ['-i', private_key, '-o']);
    assert.equal(existsSync(join(dir, 'pwned')), false);
  });

  // ssh splits an -o option's value at whitespace and reads quotes and backslashes in it, as a
  // line of ssh_config: a path with a space was two files (UserKnownHostsFile) or "extra
  // arguments at end of line" (CertificateFile), so the printed lines failed. ssh -G prints the
  // configuration a command line makes, connecting nowhere.
  it('prints lines whose -o paths ssh reads as one file each, whatever DIR holds', async () => {
    const dir = join(tempDir('tunnel-cert-'), `it's a "dir" \\ #1`);
    const { ctx } = setup();
    assert.equal(await run(['cert', 'hostx-ssh', '--out', dir, '--json'], ctx), 0, ctx.err());
    const { commands, certificate, known_hosts } = JSON.parse(ctx.out()) as { commands: { forward: string; proxy_command: string }; certificate: string; known_hosts: string };
    const config = (line: string) => {
      const text = execFileSync('/bin/sh', ['-c', `ssh() { command ssh -G -F /dev/null "$@"; }; ${line}`], { encoding: 'utf8', cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      return (key: string) => text.split('\n').filter((l) => l.startsWith(`${key} `)).map((l) => l.slice(key.length + 1));
    };
    const forward = config(commands.forward);
    assert.deepEqual(forward('certificatefile'), [certificate]);
    assert.deepEqual(forward('userknownhostsfile'), [known_hosts]);
    // The ProxyCommand as ssh keeps it, run as ssh would (through /bin/sh): the same files.
    const [proxyCommand] = config(commands.proxy_command)('proxycommand');
    assert.ok(proxyCommand, commands.proxy_command);
    const inner = config(proxyCommand);
    assert.deepEqual(inner('certificatefile'), [certificate]);
    assert.deepEqual(inner('userknownhostsfile'), [known_hosts]);
  });

  it('an --out with % or ${ (an ssh token or variable in file names) is a usage error, before any lease', async () => {
    const ctx = testContext({});
    assert.equal(await run(['cert', 'hostx-ssh', '--out', '/tmp/a%hdir'], ctx), EXIT.USAGE);
    assert.match(ctx.err(), /--out DIR may not contain "%" or "\$\{"/);
    const ctx2 = testContext({});
    assert.equal(await run(['cert', 'hostx-ssh', '--out', '/tmp/a${HOME}dir'], ctx2), EXIT.USAGE);
    assert.match(ctx2.err(), /--out DIR may not contain/);
  });
});
