/**
 * The package an operator installs: `npm pack` makes a lean tarball (built code, README, LICENSE,
 * systemd units; no tests, no TypeScript sources, no source maps) that `npm install -g --prefix`
 * installs into a fresh prefix with `tunnel`, `tunnel-control` and `tunnel-node` on PATH. The
 * installed `tunnel` then works as ssh's ProxyCommand, as written in the README.
 *
 * Dependencies come from the npm cache (filled by `npm ci`), else the registry (--prefer-offline).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { RELAY_NODE_FLAGS } from '../../node/node-flags.js';
import { repoRoot } from '../harness/net.js';
import { startSshd, type Sshd } from '../harness/sshd.js';
import { ADMIN, startStack, type Stack } from '../harness/stack.js';
import { waitForLine } from '../harness/streams.js';

const execFileP = promisify(execFile);
const BINS = ['tunnel', 'tunnel-control', 'tunnel-node'];

describe('npm pack and npm install -g into a fresh prefix', () => {
  let dir: string;
  let prefix: string;
  let tarball: string;
  let files: string[];
  const binDir = () => join(prefix, 'bin');
  const env = (home: string) => ({ PATH: `${binDir()}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: home, XDG_CONFIG_HOME: join(home, '.config') });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tunnel-pack-'));
    prefix = join(dir, 'prefix');
    // --ignore-scripts: the test runs after the build; `prepare` would rebuild dist/ under
    // the other tests' feet.
    const { stdout } = await execFileP('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: repoRoot(), maxBuffer: 16 << 20 });
    const packed = (JSON.parse(stdout) as { filename: string; files: { path: string }[] }[])[0]!;
    tarball = join(dir, packed.filename);
    files = packed.files.map((f) => f.path);
    await execFileP('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], {
      cwd: dir,
      timeout: 600_000,
      maxBuffer: 16 << 20,
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the tarball holds the built code, README, the docs it links to, LICENSE and the systemd units, and no tests or sources', () => {
    for (const f of ['package.json', 'README.md', 'docs/deploy.md', 'docs/performance.md', 'LICENSE', 'dist/cli/main.js', 'dist/control/main.js', 'dist/node/main.js', 'dist/control/db/migrations/0000_init.sql', 'dist/control/db/pglite-template.pack', 'infra/systemd/tunnel-control.service']) {
      assert.ok(files.includes(f), `${f} missing from the tarball`);
    }
    const unwanted = files.filter((f) => /(^|\/)test\/|\.test\.js$|\/testing\/|^bench\/|\.ts$|\.map$|fake-|^dist\/test|^dist\/bench|^infra\/lab|pglite-template\//.test(f));
    assert.deepEqual(unwanted, []);
    // About 0.2 MB of code and 1.8 MB for the embedded database's packed template (the 40 MB
    // cluster a first start would otherwise make with initdb).
    assert.ok(statSync(tarball).size < 2_500_000, `tarball is ${statSync(tarball).size} bytes`);
  });

  it('puts tunnel, tunnel-control and tunnel-node on PATH, executable, run by node (tunnel-node with its node flags)', async () => {
    const home = mkdtempSync(join(dir, 'home-'));
    const execArgvProbe = join(home, 'exec-argv.mjs');
    writeFileSync(execArgvProbe, 'process.stderr.write(`execArgv ${JSON.stringify(process.execArgv)}\\n`);\n');
    for (const bin of BINS) {
      const path = join(binDir(), bin);
      accessSync(path, constants.X_OK);
      const [first, second] = readFileSync(path, 'utf8').split('\n');
      if (bin === 'tunnel-node') {
        // sh runs node with the relay's node flags (node/main.ts's first lines).
        assert.equal(first, '#!/bin/sh');
        assert.equal(second, `//bin/sh -c :; exec node ${RELAY_NODE_FLAGS.join(' ')} "$0" "$@"`);
      } else {
        assert.match(first!, /^#!\/usr\/bin\/env node$/);
      }
      // By name through PATH, as an operator types it; a module loaded first says what node runs with.
      const { stdout, stderr } = await execFileP(bin, bin === 'tunnel' ? ['--version'] : ['--help'], { env: { ...env(home), NODE_OPTIONS: `--import=${execArgvProbe}` } });
      assert.match(stdout, bin === 'tunnel' ? /^tunnel \d/ : /[Uu]sage: tunnel-/);
      assert.equal(stderr, `execArgv ${JSON.stringify(bin === 'tunnel-node' ? RELAY_NODE_FLAGS : [])}\n`);
    }
    // The master key command of the installed tunnel-control: mode 0600, never overwritten.
    const key = join(home, 'master.key');
    await execFileP('tunnel-control', ['gen-master-key', key], { env: env(home) });
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.equal(Buffer.from(readFileSync(key, 'utf8').trim(), 'base64').length, 32);
    const again = await execFileP('tunnel-control', ['gen-master-key', key], { env: env(home) }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(again?.code, 2);
    assert.match(again?.stderr ?? '', /already exists; a master key is never overwritten/);
  });

  it("the installed tunnel-control's first start fills the embedded database from the packed template (no initdb)", async () => {
    const pkg = join(prefix, 'lib', 'node_modules', 'tunnel');
    const dataDir = join(mkdtempSync(join(dir, 'data-')), 'db');
    // The installed code with the installed PGlite: its version and migrations match the pack's stamp.
    const { stdout } = await execFileP(process.execPath, [
      '--input-type=module', '-e',
      `const { seedFromTemplate } = await import(${JSON.stringify(join(pkg, 'dist/control/db/pglite.js'))});
       const { MIGRATIONS_DIR } = await import(${JSON.stringify(join(pkg, 'dist/control/db/client.js'))});
       console.log(seedFromTemplate(${JSON.stringify(dataDir)}, MIGRATIONS_DIR));`,
    ]);
    assert.equal(stdout.trim(), 'true');
    assert.ok(statSync(join(dataDir, 'PG_VERSION')).isFile());
  });

  it('the systemd units, set up by the installed setup-host.sh for the installed paths, pass systemd-analyze verify', async () => {
    const home = mkdtempSync(join(dir, 'home-'));
    const pkg = join(prefix, 'lib', 'node_modules', 'tunnel');
    const units = join(dir, 'units');
    await execFileP('sh', [join(pkg, 'infra', 'systemd', 'setup-host.sh'), '--render', units], { env: env(home) });
    for (const [unit, bin] of [['tunnel-control.service', 'tunnel-control'], ['tunnel-node.service', 'tunnel-node'], ['tunnel-expose@.service', 'tunnel']] as const) {
      const text = readFileSync(join(units, unit), 'utf8');
      assert.match(text, new RegExp(`^ExecStart=${join(binDir(), bin).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}( |$)`, 'm'), unit);
    }
    // A template is verified as an instance.
    writeFileSync(join(units, 'tunnel-expose@ssh.service'), readFileSync(join(units, 'tunnel-expose@.service')));
    const verify = (files: string[]) =>
      execFileP('systemd-analyze', ['verify', '--man=no', ...files], { env: { ...env(home), SYSTEMD_LOG_COLOR: '0' } }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
    const ok = await verify(['tunnel-control.service', 'tunnel-node.service', 'tunnel-expose@ssh.service'].map((u) => join(units, u)));
    assert.equal(ok.code, 0, ok.out);
    assert.equal(ok.out.trim(), '', 'no warnings either');
    // The check can fail: a unit whose binary is not where it says.
    writeFileSync(join(units, 'broken.service'), readFileSync(join(units, 'tunnel-node.service'), 'utf8').replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/tunnel-node'));
    const bad = await verify([join(units, 'broken.service')]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.out, /not executable/);
    // The sysusers file is valid for systemd-sysusers.
    const users = await execFileP('systemd-sysusers', ['--dry-run', join(pkg, 'infra', 'systemd', 'tunnel.sysusers.conf')]);
    assert.match(users.stdout + users.stderr, /tunnel-node|exists/);
  });

  describe("the installed tunnel as ssh's ProxyCommand", () => {
    let stack: Stack;
    let sshd: Sshd;
    before(async () => {
      stack = await startStack();
      sshd = await startSshd({ trustedUserCaKeys: [] });
    });
    after(async () => {
      await sshd?.stop();
      await stack?.stop();
    });

    it("ProxyCommand='tunnel open --stdio %h' reaches X's sshd (host key checked strictly)", async () => {
      const home = mkdtempSync(join(dir, 'home-'));
      const e = { ...env(home), TUNNEL_SERVER: stack.control.url };
      await new Promise<void>((resolve, reject) => {
        const login = spawn('tunnel', ['login', '--password', '--user', ADMIN.name], { env: e, stdio: ['pipe', 'ignore', 'pipe'] });
        let err = '';
        login.stderr.on('data', (d: Buffer) => (err += d.toString()));
        login.stdin.end(`${ADMIN.password}\n`);
        login.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tunnel login: ${code} ${err}`))));
      });
      const child = spawn('tunnel', ['expose', String(sshd.port), '--name', 'hostx-ssh', '--json'], { env: e, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      const expose = Object.assign(child, { output: () => ({ stdout: out, stderr: err }) });
      try {
        await waitForLine(expose, /"event":"connected"/, 60_000);
        const knownHosts = join(home, 'known_hosts');
        writeFileSync(knownHosts, `hostx-ssh ${sshd.hostKeyLine}\n`);
        const from = sshd.log().length;
        // No user key: sshd refuses the login, which it only does after the key exchange with the
        // pinned host key succeeded over the ProxyCommand's stdin/stdout.
        const r = await execFileP(
          'ssh',
          ['-F', '/dev/null', '-o', 'ProxyCommand=tunnel open --stdio %h', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-o', 'PubkeyAuthentication=no', 'nobody@hostx-ssh', 'true'],
          { env: e, timeout: 60_000 },
        ).then(
          () => ({ code: 0, stderr: '' }),
          (err: { code: number; stderr: string }) => err,
        );
        assert.equal(r.code, 255);
        assert.match(r.stderr, /Permission denied/);
        assert.doesNotMatch(r.stderr, /Host key verification failed|REMOTE HOST IDENTIFICATION/);
        await sshd.waitForLog(/Connection closed by authenticating user nobody|Connection closed by|Disconnected from/, from, 15_000);
      } finally {
        expose.kill('SIGTERM');
      }
    });
  });
});
