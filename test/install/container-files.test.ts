/**
 * infra/container's Dockerfile and compose.yaml, checked without a Docker engine (none runs where
 * the tests do): the build stage copies every directory the build reads before building, `npm ci`
 * cannot run the package's own `prepare` before the sources are there, and each compose service's
 * command line and environment (the image's ENV and CMD under compose's) are accepted by the
 * built config parsers of tunnel-control and tunnel-node, with the secure defaults kept: plain HTTP
 * and the relay's metrics published on the host's loopback only, the master key from a secret file
 * that the build context leaves out, and an iptables egress lock that can reach the kernel.
 * What it cannot show: that the image builds, that iptables works inside the container, that the
 * services reach each other.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadControlConfig } from '../../control/config.js';
import { parseConfig } from '../../node/config.js';
import { RELAY_NODE_FLAGS } from '../../node/node-flags.js';
import { repoRoot } from '../harness/net.js';
import { parseComposeYaml, type YamlValue } from './compose-yaml.js';

const DIR = join(repoRoot(), 'infra', 'container');
const read = (...p: string[]) => readFileSync(join(repoRoot(), ...p), 'utf8');

interface Instruction {
  op: string;
  args: string;
}

/** Instructions per stage (a stage starts at FROM), continuation lines joined, comments dropped. */
function dockerStages(text: string): Instruction[][] {
  const stages: Instruction[][] = [];
  const logical = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.trim() !== '');
  for (const line of logical) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    assert.ok(m, `Dockerfile line "${line}"`);
    const ins = { op: m[1]!.toUpperCase(), args: m[2]!.trim() };
    if (ins.op === 'FROM') stages.push([]);
    stages.at(-1)!.push(ins);
  }
  return stages;
}

/** A JSON-array (exec form) instruction's words. */
const execForm = (ins: Instruction | undefined): string[] => JSON.parse(ins?.args ?? 'null') as string[];

/** `ENV A=1 B=2` instructions of a stage. */
function envOf(stage: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of stage.filter((i) => i.op === 'ENV')) {
    for (const kv of ins.args.split(/\s+/)) {
      const eq = kv.indexOf('=');
      assert.ok(eq > 0, `ENV ${ins.args} is written KEY=VALUE`);
      env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
  }
  return env;
}

/** What a build stage's COPY lines (not --from another stage) take from the context, by top-level name. */
function copiedFromContext(stage: Instruction[]): { index: number; names: string[] }[] {
  return stage.flatMap((ins, index) => {
    if (ins.op !== 'COPY' || /--from=/.test(ins.args)) return [];
    const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
    return [{ index, names: words.slice(0, -1).map((w) => w.replace(/^\.\//, '').split('/')[0]!) }];
  });
}

/** Compose's `${VAR:-default}` and `${VAR}`, from `vars`. */
function interpolate(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\{([A-Z0-9_]+)(?::-([^}]*))?\}/g, (_m, name: string, def: string | undefined) => vars[name] ?? def ?? '');
}

const asMap = (v: YamlValue | undefined, what: string): Record<string, YamlValue> => {
  assert.ok(v !== undefined && typeof v === 'object' && !Array.isArray(v), `${what} is a mapping`);
  return v;
};
const asList = (v: YamlValue | undefined): YamlValue[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const str = (v: YamlValue | undefined): string => (typeof v === 'string' ? v : assert.fail(`expected a string, got ${JSON.stringify(v)}`));

/** `HOST_IP:HOST_PORT:CONTAINER_PORT` or `HOST_PORT:CONTAINER_PORT`: the host address, or undefined for all of them. */
function publishedOn(ports: YamlValue[], containerPort: number): (string | undefined)[] {
  return ports
    .map((p) => str(p).split(':'))
    .filter((parts) => Number(parts.at(-1)) === containerPort)
    .map((parts) => (parts.length === 3 ? parts[0] : undefined));
}

/** A .dockerignore pattern (`**` any directories, `*` within one name) as a RegExp for a path in the context. */
function globRegExp(glob: string): RegExp {
  const parts = glob.trim().split(/(\*\*\/|\*)/).map((t) => (t === '**/' ? '(?:.*/)?' : t === '*' ? '[^/]*' : t.replace(/[.+?^${}()|[\]\\]/g, '\\$&')));
  return new RegExp(`^${parts.join('')}(?:/|$)`);
}

const isRoot = (user: string | undefined) => user !== undefined && /^(0|root)(:|$)/.test(user);

describe('infra/container (read, not run: no Docker here)', () => {
  const stages = dockerStages(readFileSync(join(DIR, 'Dockerfile'), 'utf8'));
  const build = stages[0]!;
  const image = stages.at(-1)!;

  it('the build stage copies every directory tsconfig.json includes and the build script reads, before it builds', () => {
    const tsconfig = JSON.parse(read('tsconfig.json')) as { include: string[] };
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    const scriptDirs = [...pkg.scripts.build!.matchAll(/(?:^|\s)([\w.-]+)\/[\w./-]+\.m?js\b/g)].map((m) => m[1]!);
    assert.ok(scriptDirs.includes('scripts'), 'the build runs scripts/copy-assets.mjs');
    const needed = new Set([...tsconfig.include.map((p) => p.split('/')[0]!), ...scriptDirs, 'tsconfig.json', 'package.json', 'package-lock.json']);
    const buildAt = build.findIndex((i) => i.op === 'RUN' && /npm run build/.test(i.args));
    assert.ok(buildAt > 0, 'the build stage runs npm run build');
    const copied = new Set(copiedFromContext(build).filter((c) => c.index < buildAt).flatMap((c) => c.names));
    assert.deepEqual([...needed].filter((n) => !copied.has(n)), [], 'not copied before npm run build');
  });

  it("npm ci runs no install scripts before the sources are copied, and ssh2's native binding is still built", () => {
    const ciAt = build.findIndex((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args));
    assert.ok(ciAt > 0, 'the build stage runs npm ci');
    const lastSource = Math.max(...copiedFromContext(build).filter((c) => c.names.some((n) => !n.startsWith('package'))).map((c) => c.index));
    const ci = build[ciAt]!.args;
    // The package's own `prepare` is `npm run build`: it needs every source.
    assert.ok(/--ignore-scripts\b/.test(ci) || ciAt > lastSource, `"${ci}" runs prepare (npm run build) before the sources are copied`);
    if (/--ignore-scripts\b/.test(ci)) {
      // The scripts package.json allows (docs/deploy.md step 1) run on their own, before the build.
      const allowed = Object.entries((JSON.parse(read('package.json')) as { allowScripts: Record<string, boolean> }).allowScripts)
        .filter(([, on]) => on)
        .map(([name]) => name);
      const rebuilt = build
        .slice(ciAt)
        .filter((i) => i.op === 'RUN')
        .flatMap((i) => [...i.args.matchAll(/npm rebuild((?:\s+[a-z@][\w@/.-]*)+)/g)].flatMap((m) => m[1]!.trim().split(/\s+/)));
      assert.deepEqual(allowed.filter((n) => !rebuilt.includes(n)), [], 'allowed install scripts not run (npm rebuild NAME)');
    }
  });

  describe('each compose service, as the built tunnel-control and tunnel-node read it', () => {
    const compose = asMap(parseComposeYaml(readFileSync(join(DIR, 'compose.yaml'), 'utf8')), 'compose.yaml');
    const services = asMap(compose.services, 'services');
    const vars = { RELAY_ENROLL_TOKEN: 'enroll_example-token' };
    const imageEnv = envOf(image);
    const imageUser = image.filter((i) => i.op === 'USER').at(-1)?.args;

    /** The process the service's container starts: ENTRYPOINT + command (compose's, else CMD), env, user. */
    function processOf(name: string) {
      const svc = asMap(services[name], name);
      assert.equal(svc.entrypoint, undefined, `${name} keeps the image's entrypoint`);
      const entrypoint = execForm(image.filter((i) => i.op === 'ENTRYPOINT').at(-1));
      const command = svc.command === undefined ? execForm(image.filter((i) => i.op === 'CMD').at(-1)) : asList(svc.command).map(str);
      const user = svc.user === undefined ? imageUser : str(svc.user);
      const own = Object.fromEntries(Object.entries(asMap(svc.environment ?? {}, `${name}.environment`)).map(([k, v]) => [k, interpolate(str(v), vars)]));
      const env: Record<string, string> = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: isRoot(user) ? '/root' : '/var/lib/tunnel', ...imageEnv, ...own };
      assert.equal(entrypoint.at(-1), 'node', 'the entrypoint runs node');
      // node's own flags come before the script.
      const script = command.findIndex((a) => !a.startsWith('-'));
      return { svc, nodeFlags: command.slice(0, script), script: command[script], args: command.slice(script + 1), env, user };
    }

    const serviceNamed = (script: string) => Object.keys(services).find((n) => asMap(services[n], n).build !== undefined && processOf(n).script === script);

    it('the control plane: accepted; plain HTTP only on the host loopback; the master key from a secret the build context leaves out', () => {
      const name = serviceNamed('dist/control/main.js');
      assert.ok(name, 'a service runs tunnel-control');
      const p = processOf(name);
      const cfg = loadControlConfig(p.args, p.env);
      assert.equal(cfg.command, 'serve');
      if (cfg.tls.mode === 'off') {
        assert.deepEqual(publishedOn(asList(p.svc.ports), cfg.listenPort).filter((h) => h !== '127.0.0.1'), [], 'plain HTTP published beyond the host loopback');
      }
      assert.equal(p.env.TUNNEL_MASTER_KEY, undefined, 'the master key itself in the environment');
      const secret = /^\/run\/secrets\/([\w.-]+)$/.exec(cfg.masterKeyFile ?? '')?.[1];
      assert.ok(secret && asList(p.svc.secrets).includes(secret), `the master key file ${cfg.masterKeyFile} is one of the service's secrets`);
      const file = str(asMap(asMap(compose.secrets, 'secrets')[secret], secret).file);
      const inContext = join('infra', 'container', file).replace(/\\/g, '/');
      const ignore = readFileSync(join(DIR, 'Dockerfile.dockerignore'), 'utf8')
        .split('\n')
        .filter((l) => l.trim() && !l.startsWith('#'))
        .map(globRegExp);
      assert.ok(ignore.some((re) => re.test(inContext)), `${inContext} is left out of the build context`);
      for (const k of Object.keys(imageEnv)) assert.ok(!/KEY|TOKEN|PASSWORD|SECRET/.test(k), `the image sets ${k}`);
    });

    it('the relay: accepted; reaches the control plane; metrics on the host loopback only; the egress lock can reach the kernel', () => {
      const name = serviceNamed('dist/node/main.js');
      assert.ok(name, 'a service runs tunnel-node');
      const p = processOf(name);
      assert.deepEqual(p.nodeFlags, RELAY_NODE_FLAGS, 'node runs the relay with the flags tunnel-node runs with as a program');
      const r = parseConfig(p.args, p.env);
      assert.equal(r.kind, 'run');
      if (r.kind !== 'run') return;
      const cfg = r.config;
      assert.equal(cfg.enrollToken, vars.RELAY_ENROLL_TOKEN);
      assert.deepEqual(publishedOn(asList(p.svc.ports), cfg.metricsListen.port).filter((h) => h !== '127.0.0.1'), [], '/metrics published beyond the host loopback');

      // The control URL is the control service's address on a network both are on, at its --listen port.
      const controlName = serviceNamed('dist/control/main.js')!;
      const control = processOf(controlName);
      const controlCfg = loadControlConfig(control.args, control.env);
      const url = new URL(cfg.controlUrl);
      assert.equal(Number(url.port), controlCfg.listenPort);
      const nets = asMap(control.svc.networks ?? {}, `${controlName}.networks`);
      const byAddress = Object.entries(nets).find(([, n]) => n && typeof n === 'object' && !Array.isArray(n) && n.ipv4_address === url.hostname);
      assert.ok(url.hostname === controlName || byAddress, `${url.hostname} names the control service`);
      if (byAddress) assert.ok(asList(p.svc.networks).includes(byAddress[0]), `the relay is on ${byAddress[0]}`);
      assert.equal(url.protocol === 'https:' || cfg.trust.insecureHttp, true, 'a plain http:// control URL is refused without --insecure-http');

      if (cfg.egress.driver === 'iptables') {
        // Docker hands capabilities to root only (a non-root user gets none, ambient or not).
        assert.ok(isRoot(p.user), `the relay runs as ${p.user ?? 'the image user'}: cap_add does not reach a non-root user, and iptables needs CAP_NET_ADMIN`);
        assert.ok(asList(p.svc.cap_add).map(str).includes('NET_ADMIN'), 'cap_add: NET_ADMIN');
        // node/boot.ts createFirewall: root without --egress-uid is refused (the chain would filter all of root).
        assert.notEqual(cfg.egress.uid, undefined, 'as root, tunnel-node needs --egress-uid 0 (its own network namespace)');
        // Docker's resolver (127.0.0.11) is NATed to a port of its own: the chain's port-53 rule would not match it.
        assert.ok(isIP(url.hostname), 'the control URL is an address, so the egress lock needs no DNS');
      }
    });
  });
});
