import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { execFileSync } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MockAgent } from 'undici';
import { run } from './run.js';
import { EXIT } from './errors.js';
import { tempDir } from '../shared/testing/temp-dir.js';
import { testContext } from './testing/test-context.js';
import { writeCredentials } from './settings.js';

const SERVER = 'https://control.test';

function loggedIn(agent: MockAgent) {
  const ctx = testContext({ dispatcher: agent });
  writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
  return ctx;
}

function mock(): MockAgent {
  const agent = new MockAgent();
  agent.disableNetConnect();
  return agent;
}

const problem = (status: number, code: string) =>
  [
    status,
    JSON.stringify({ type: 'x', title: 'x', status, code, detail: `detail of ${code}`, request_id: 'req_1' }),
    { headers: { 'content-type': 'application/problem+json' } },
  ] as const;

describe('tunnel exit codes and one-line errors', () => {
  it('prints usage and exits 2 without a command, 0 with --help', async () => {
    const ctx = testContext();
    assert.equal(await run([], ctx), EXIT.USAGE);
    assert.match(ctx.out(), /Usage: tunnel <command>/);
    const ctx2 = testContext();
    assert.equal(await run(['open', '--help'], ctx2), 0);
    assert.match(ctx2.out(), /Example/);
  });

  it('malformed flags exit 2 with a one-line message naming the command', async () => {
    for (const argv of [['bogus'], ['open'], ['open', 'BAD NAME'], ['expose', '22'], ['expose', '99999', '--name', 'x'], ['open', 'x', '--nope'], ['leases', 'revoke', 'nope']]) {
      const ctx = testContext();
      assert.equal(await run(argv, ctx), EXIT.USAGE, argv.join(' '));
      assert.equal(ctx.err().trim().split('\n').length, 1, ctx.err());
      assert.doesNotMatch(ctx.err(), /at .*\.js:\d+/);
    }
  });

  it('an argument with line breaks or escape sequences is quoted back on one line, without the control characters', async () => {
    for (const argv of [
      ['expose', '22', '--name', 'a\nb'],
      ['open', 'a\n\u001b[31mred', '--stdio'],
      ['open', 'x', '--listen', '1\r\n2'],
      ['open', '--egress', 'a\nb', '--stdio'],
      ['leases', 'revoke', 'x\ny'],
      ['cert', 'a\u0000b', '--out', 'd'],
      ['a\nb'],
    ]) {
      const ctx = testContext();
      assert.equal(await run(argv, ctx), EXIT.USAGE, JSON.stringify(argv));
      assert.equal(ctx.err().split('\n').length, 2, ctx.err());
      // eslint-disable-next-line no-control-regex -- control characters are what must not appear
      assert.doesNotMatch(ctx.err().slice(0, -1), /[\u0000-\u001f\u007f]/);
    }
  });

  it('--server names the login\'s server however it is spelled (trailing slash, case, spaces in a list); a malformed one exits 2', async () => {
    for (const spelled of [SERVER, `${SERVER}/`, 'HTTPS://CONTROL.TEST', ` ${SERVER} `]) {
      const agent = mock();
      agent.get(SERVER).intercept({ path: '/v1/me', method: 'GET' }).reply(200, JSON.stringify({ id: 'usr_1', name: 'bob', role: 'member' }), { headers: { 'content-type': 'application/json' } });
      const ctx = loggedIn(agent);
      assert.equal(await run(['whoami', '--server', spelled], ctx), 0, `${spelled}: ${ctx.err()}`);
    }
    let ctx = loggedIn(mock());
    assert.equal(await run(['whoami', '--server', 'https://other.test'], ctx), EXIT.NOT_LOGGED_IN);
    assert.match(ctx.err(), /logged in to https:\/\/control.test, not https:\/\/other.test/);
    for (const bad of ['ftp://control.test', 'http://[::1', 'control.test']) {
      ctx = loggedIn(mock());
      assert.equal(await run(['whoami', '--server', bad], ctx), EXIT.USAGE, `${bad}: ${ctx.err()}`);
      assert.equal(ctx.err().split('\n').length, 2, ctx.err());
    }
  });

  it('tunnel ssh-config --server puts the login\'s server in ProxyCommand as stored, not as typed', async () => {
    const agent = mock();
    const exposure = { name: 'hostx-ssh', owner: 'bob', allow: [], pinned_node: null, node: 'relay-1', online: true, port: 22, created_at: '2026-01-01T00:00:00Z' };
    agent.get(SERVER).intercept({ path: '/v1/exposures', method: 'GET' }).reply(200, JSON.stringify({ exposures: [exposure] }), { headers: { 'content-type': 'application/json' } });
    const ctx = loggedIn(agent);
    assert.equal(await run(['ssh-config', '--server', ` ${SERVER}/ `], ctx), 0, ctx.err());
    assert.match(ctx.out(), /^ {2}ProxyCommand tunnel open --stdio --server https:\/\/control\.test %h:22$/m);
  });

  it('tunnel ssh-config --server: a server URL with shell characters reaches tunnel open as one argument (ProxyCommand runs in a shell)', async () => {
    // A URL may keep ; | & $( ) ' in its path: unquoted, ssh's shell ran them at every ssh NAME.
    const server = "https://control.test/t;touch$(id)|sh&'q%";
    const agent = mock();
    const exposure = { name: 'hostx-ssh', owner: 'bob', allow: [], pinned_node: null, node: 'relay-1', online: true, port: 22, created_at: '2026-01-01T00:00:00Z' };
    agent.get('https://control.test').intercept({ path: '/t;touch$(id)|sh&\'q%/v1/exposures', method: 'GET' }).reply(200, JSON.stringify({ exposures: [exposure] }), { headers: { 'content-type': 'application/json' } });
    const ctx = testContext({ dispatcher: agent });
    writeCredentials(ctx, { server, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000, refresh_token: 'rt' });
    assert.equal(await run(['ssh-config', '--server', server], ctx), 0, ctx.err());
    const line = /^ {2}ProxyCommand (.*)$/m.exec(ctx.out())?.[1];
    assert.ok(line, ctx.out());
    // As ssh runs it (%h expanded, %% to %), with printf in place of tunnel: one argument a line.
    const command = line.replace('%h', 'hostx-ssh').replaceAll('%%', '%').replace(/^tunnel open/, "printf '%s\\n'");
    const args = execFileSync('/bin/sh', ['-c', command], { encoding: 'utf8' }).split('\n');
    assert.deepEqual(args, ['--stdio', '--server', server, 'hostx-ssh:22', '']);
  });

  it('a malformed TUNNEL_WINDOW_BUDGET exits 2 with one line naming it (not the default in silence); whole MiB and 0 are taken', async () => {
    for (const argv of [['open', 'hostx-ssh', '--stdio'], ['open', 'hostx-ssh'], ['expose', '22', '--name', 'x']]) {
      for (const bad of ['64MiB', '-1', '1.5', 'lots', '1234567', ' 8']) {
        const ctx = testContext({ env: { TUNNEL_WINDOW_BUDGET: bad } });
        assert.equal(await run(argv, ctx), EXIT.USAGE, `${argv.join(' ')} with ${bad}: ${ctx.err()}`);
        assert.equal(ctx.err().trim().split('\n').length, 1, ctx.err());
        assert.match(ctx.err(), /TUNNEL_WINDOW_BUDGET must be whole MiB/);
      }
      for (const good of ['0', '64', '']) {
        const ctx = testContext({ env: { TUNNEL_WINDOW_BUDGET: good } });
        assert.equal(await run(argv, ctx), EXIT.NOT_LOGGED_IN, `${argv.join(' ')} with "${good}": ${ctx.err()}`);
      }
    }
  });

  it('input that needs no server to check is a usage error (exit 2) before the login is looked at, logged in or not', async () => {
    const cases: [string[], RegExp][] = [
      [['exposures', 'create', 'BAD NAME'], /NAME must match/],
      [['exposures', 'bogus'], /unknown subcommand/],
      [['admin', 'users', 'add', 'a'.repeat(100)], /NAME must match \[a-z\]/],
      [['admin', 'users', 'add', 'Bob', '--password'], /NAME must match \[a-z\]/],
      [['admin', 'users', 'disable'], /needs a NAME/],
      [['expose', '22', '--name', 'x', '--allow', 'x y'], /--allow "x y" is not a user name/],
      [['expose', '22', '--name', 'x', '--max-connections', '-5'], /--max-connections must be a whole number from 1 to 65535, got "-5"/],
      [['expose', '22', '--name', 'x', '--ttl', '-30'], /--ttl must be whole seconds, at least 30, got "-30"/],
    ];
    for (const [argv, message] of cases) {
      // Logged in with nothing answering (no request may be made), and logged out.
      for (const ctx of [loggedIn(mock()), testContext()]) {
        assert.equal(await run(argv, ctx), EXIT.USAGE, `${argv.join(' ')}: ${ctx.err()}`);
        assert.equal(ctx.err().split('\n').length, 2, ctx.err());
        assert.match(ctx.err(), message);
      }
    }
  });

  it('a single-value option given twice exits 2 with one line (not its last value in silence); options meant to repeat still do', async () => {
    const cases: [string[], RegExp][] = [
      [['expose', '80', '--name', 'a', '--name', 'b'], /^tunnel expose: --name is given more than once; give it once \(see tunnel expose --help\)\n$/],
      [['expose', '80', '--name=a', '--name', 'a'], /--name is given more than once/],
      [['open', 'x', '--listen', '127.0.0.1:1', '--listen', '127.0.0.1:2'], /--listen is given more than once/],
      [['login', '--token', 'tok-1', '--token', 'tok-2', '--server', SERVER], /^tunnel login: --token is given more than once; give it once/],
      [['whoami', '--server', SERVER, '--control-url', 'https://other.test'], /--server and --control-url are the same option; give one of them once/],
      [['ls', '--server', SERVER, '--server', SERVER], /--server is given more than once/],
    ];
    for (const [argv, message] of cases) {
      for (const ctx of [loggedIn(mock()), testContext()]) {
        assert.equal(await run(argv, ctx), EXIT.USAGE, `${argv.join(' ')}: ${ctx.err()}`);
        assert.match(ctx.err(), message);
        assert.doesNotMatch(ctx.err(), /tok-/, 'values are not echoed');
      }
    }
    // Repeatable options and switches given twice are taken: these get as far as the login.
    for (const argv of [['expose', '80', '--name', 'a', '--allow', 'alice', '--allow', 'bob'], ['expose', '80', '--name', 'a', '--json', '--json'], ['exposures', 'create', 'a', '--allow', 'alice', '--allow', 'bob']]) {
      const ctx = testContext();
      assert.equal(await run(argv, ctx), EXIT.NOT_LOGGED_IN, `${argv.join(' ')}: ${ctx.err()}`);
    }
  });

  it('tunnel login refuses two ways to log in at once (exit 2, one line) rather than using one in silence', async () => {
    const file = join(tempDir('tunnel-tok-'), 'token');
    writeFileSync(file, 'tnl_st_x\n');
    for (const ways of [['--password', '--token-file', file], ['--password', '--token', 't'], ['--token', 't', '--token-file', file], ['--password', '--token', 't', '--token-file', file]]) {
      // A mock that answers nothing: no request may be made.
      const ctx = testContext({ dispatcher: mock(), stdin: 'pw\n' });
      assert.equal(await run(['login', '--server', SERVER, ...ways], ctx), EXIT.USAGE, `${ways.join(' ')}: ${ctx.err()}`);
      assert.equal(ctx.err().split('\n').length, 2, ctx.err());
      assert.match(ctx.err(), /^tunnel login: --\S+ and --\S+( and --\S+)? are (two|three) ways to log in; give one/);
    }
  });

  it('tunnel login --token with an empty value (an unset variable the shell expanded) is a usage error, not a browser login', async () => {
    for (const value of ['', '  ']) {
      // A mock that answers nothing: no request may be made (the device flow would start one).
      const ctx = testContext({ dispatcher: mock() });
      assert.equal(await run(['login', '--server', SERVER, '--token', value], ctx), EXIT.USAGE, ctx.err());
      assert.equal(ctx.err().split('\n').length, 2, ctx.err());
      assert.match(ctx.err(), /^tunnel login: --token is empty/);
    }
  });

  it('tunnel login with TUNNEL_TOKEN set but blank (a missing CI secret) is a usage error, not a browser login', async () => {
    for (const value of ['', '  ']) {
      // A mock that answers nothing: no request may be made (the device flow would start one).
      const ctx = testContext({ dispatcher: mock(), env: { TUNNEL_TOKEN: value } });
      assert.equal(await run(['login', '--server', SERVER], ctx), EXIT.USAGE, ctx.err());
      assert.equal(ctx.err().split('\n').length, 2, ctx.err());
      assert.match(ctx.err(), /^tunnel login: TUNNEL_TOKEN is set but empty/);
    }
  });

  it('tunnel admin enroll-token without --advertise prints the lines that enroll a relay, as root through the systemd unit and as another user in the foreground, with the RELAY_HOST:2222 placeholder; a malformed --advertise exits 2 before any request', async () => {
    const created = { name: 'relay-2', token: 'tnl_enr_x', expires_at: '2026-01-01T00:00:00.000Z' };
    for (const json of [false, true]) {
      const agent = mock();
      agent
        .get(SERVER)
        .intercept({ path: '/v1/nodes/enrollment-tokens', method: 'POST', body: (b) => JSON.parse(b).name === 'relay-2' })
        .reply(200, JSON.stringify(created), { headers: { 'content-type': 'application/json' } });
      const ctx = loggedIn(agent);
      assert.equal(await run(['admin', 'enroll-token', 'relay-2', ...(json ? ['--json'] : [])], ctx), 0, ctx.err());
      const printed = json ? (JSON.parse(ctx.out()) as { systemd_command: string; command: string }) : undefined;
      const [systemdCommand, command] = printed ? [printed.systemd_command, printed.command] : [...ctx.err().matchAll(/^ {2}(\S.*)$/gm)].map((m) => m[1]);
      // The guide's operator is root (tunnel-node refuses to start as root): the settings go into the unit's environment file.
      assert.equal(
        systemdCommand,
        `printf '%s\\n' TUNNEL_CONTROL_URL=${SERVER} TUNNEL_ADVERTISE=RELAY_HOST:2222 TUNNEL_ENROLL_TOKEN=tnl_enr_x > /etc/tunnel/node.env && systemctl enable --now tunnel-node`,
        ctx.err(),
      );
      assert.equal(command, `TUNNEL_ENROLL_TOKEN=tnl_enr_x tunnel-node --control-url ${SERVER} --advertise RELAY_HOST:2222`, ctx.err());
      if (!json) {
        assert.equal(ctx.out(), 'tnl_enr_x\n');
        assert.match(ctx.err(), /replace RELAY_HOST:2222 with the host:port clients will use/);
      }
    }
    for (const bad of ['RELAY_HOST:2222', 'relay.example.com', 'relay.example.com:99999']) {
      const ctx = loggedIn(mock());
      assert.equal(await run(['admin', 'enroll-token', 'relay-2', '--advertise', bad], ctx), EXIT.USAGE, `${bad}: ${ctx.err()}`);
      assert.equal(ctx.err().split('\n').length, 2, ctx.err());
      assert.match(ctx.err(), /--advertise must be host:port/);
    }
  });

  it('not logged in exits 3', async () => {
    for (const argv of [['whoami'], ['ls'], ['open', 'hostx-ssh', '--stdio'], ['expose', '22', '--name', 'x']]) {
      const ctx = testContext();
      assert.equal(await run(argv, ctx), EXIT.NOT_LOGGED_IN, argv.join(' '));
      assert.match(ctx.err(), /not logged in; run: tunnel login/);
    }
  });

  it('control plane unreachable exits 5', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const ctx = testContext();
    writeCredentials(ctx, { server: `http://127.0.0.1:${port}`, access_token: 'at', access_expires_at: Date.now() + 600_000 });
    assert.equal(await run(['whoami'], ctx), EXIT.UNREACHABLE);
    assert.match(ctx.err(), /cannot reach the control plane/);
  });

  it('an answer over 16 MiB exits 1 with one line, and the CLI stops reading it (declared or streamed)', async () => {
    let requests = 0;
    const srv = createHttpServer((_req, res) => {
      if (requests++ === 0) {
        // Streamed without a length, forever: only the cap ends it.
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(64 * 1024, 0x20);
        const more = () => {
          while (!res.destroyed && res.write(chunk));
        };
        res.on('drain', more);
        res.write('[');
        more();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(17 * 2 ** 20) });
      res.write('[');
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const port = (srv.address() as { port: number }).port;
      for (let i = 0; i < 2; i++) {
        const ctx = testContext();
        writeCredentials(ctx, { server: `http://127.0.0.1:${port}`, user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000 });
        assert.equal(await run(['whoami'], ctx), EXIT.ERROR);
        assert.match(ctx.err(), /^tunnel whoami: http:\/\/127\.0\.0\.1:\d+: the answer is over 16 MiB; is the server a Tunnel control plane\?\n$/);
      }
    } finally {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });

  it('unknown exposure exits 1, not permitted exits 4', async () => {
    const agent = mock();
    const pool = agent.get(SERVER);
    pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(...problem(404, 'NOT_FOUND'));
    let ctx = loggedIn(agent);
    assert.equal(await run(['open', 'nope', '--stdio'], ctx), EXIT.ERROR);
    assert.match(ctx.err(), /^tunnel open: detail of NOT_FOUND\n$/);

    pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(...problem(403, 'NOT_IN_ACL'));
    ctx = loggedIn(agent);
    assert.equal(await run(['open', 'secret', '--stdio'], ctx), EXIT.NOT_PERMITTED);
    assert.match(ctx.err(), /detail of NOT_IN_ACL/);
  });

  it('egress targets too long for one lease (400 LEASE_TOO_LARGE) exit 1 with the API\'s one line, and are not asked for again', async () => {
    const agent = mock();
    const pool = agent.get(SERVER);
    pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(...problem(400, 'LEASE_TOO_LARGE'));
    let ctx = loggedIn(agent);
    assert.equal(await run(['cert', '--egress', 'a', '--egress', 'b', '--out', '/nonexistent/never-written'], ctx), EXIT.ERROR);
    assert.match(ctx.err(), /^tunnel cert: detail of LEASE_TOO_LARGE\n$/);

    // tunnel open --listen keeps asking for a lease after most errors; not after this one (the next answer would say so).
    pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(...problem(400, 'LEASE_TOO_LARGE'));
    pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(...problem(404, 'NOT_FOUND'));
    ctx = loggedIn(agent);
    assert.equal(await run(['open', '--egress', 'a', '--listen', '127.0.0.1:0'], ctx), EXIT.ERROR);
    assert.match(ctx.err(), /tunnel open: detail of LEASE_TOO_LARGE\n$/);
    assert.doesNotMatch(ctx.err(), /NOT_FOUND/);
  });

  it('tunnel open --listen stops on a client error it does not know (a newer code, or a proxy\'s page without one): the same request would get the same answer', async () => {
    type Reply = readonly [number, string, { headers: Record<string, string> }];
    const html: Reply = [404, '<html>no such page</html>', { headers: { 'content-type': 'text/html' } }];
    const firsts: Reply[] = [problem(400, 'SOMETHING_NEW'), problem(415, 'UNSUPPORTED_MEDIA_TYPE'), html];
    for (const first of firsts) {
      const agent = mock();
      const pool = agent.get(SERVER);
      pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(...first);
      pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(...problem(403, 'NOT_IN_ACL'));
      const ctx = loggedIn(agent);
      assert.equal(await run(['open', 'hostx-ssh', '--listen', '127.0.0.1:0'], ctx), EXIT.ERROR, ctx.err());
      assert.match(ctx.err(), /\ntunnel open: [^\n]+\n$/);
      assert.doesNotMatch(ctx.err(), /NOT_IN_ACL|reconnecting/);
    }
  });

  it('tunnel open --listen asks again after a rate limit (429), and stops at the answer after it', async () => {
    const agent = mock();
    const pool = agent.get(SERVER);
    pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(...problem(429, 'RATE_LIMITED'));
    pool.intercept({ path: '/v1/leases', method: 'POST' }).reply(...problem(403, 'NOT_IN_ACL'));
    const ctx = loggedIn(agent);
    assert.equal(await run(['open', 'hostx-ssh', '--listen', '127.0.0.1:0'], ctx), EXIT.NOT_PERMITTED, ctx.err());
    assert.match(ctx.err(), /detail of RATE_LIMITED; reconnecting/);
    assert.match(ctx.err(), /detail of NOT_IN_ACL\n$/);
  });

  it('an expired access token is refreshed transparently and the new tokens are stored', async () => {
    const agent = mock();
    const pool = agent.get(SERVER);
    pool
      .intercept({ path: '/v1/auth/token', method: 'POST', body: (b) => JSON.parse(b).refresh_token === 'rt' })
      .reply(200, JSON.stringify({ access_token: 'at2', token_type: 'Bearer', expires_in: 600, refresh_token: 'rt2' }));
    pool
      .intercept({ path: '/v1/me', method: 'GET', headers: { authorization: 'Bearer at2' } })
      .reply(200, JSON.stringify({ id: 'usr_1', name: 'bob', role: 'member' }));
    const ctx = testContext({ dispatcher: agent });
    writeCredentials(ctx, { server: SERVER, user: 'bob', access_token: 'old', access_expires_at: Date.now() - 1, refresh_token: 'rt' });
    assert.equal(await run(['whoami'], ctx), 0);
    assert.match(ctx.out(), /^bob \(member\) at https:\/\/control.test/);
    const { readCredentials } = await import('./settings.js');
    assert.equal(readCredentials(ctx)?.refresh_token, 'rt2');
  });

  it('a revoked refresh token means not logged in (3)', async () => {
    const agent = mock();
    agent.get(SERVER).intercept({ path: '/v1/auth/token', method: 'POST' }).reply(...problem(400, 'INVALID_GRANT'));
    const ctx = testContext({ dispatcher: agent });
    writeCredentials(ctx, { server: SERVER, access_token: 'old', access_expires_at: 0, refresh_token: 'rt' });
    assert.equal(await run(['ls'], ctx), EXIT.NOT_LOGGED_IN);
  });
});
