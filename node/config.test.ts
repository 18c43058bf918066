import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from './config.js';

describe('parseConfig', () => {
  it('applies defaults, env and flags (flag wins)', () => {
    const r = parseConfig(['--listen', '127.0.0.1:2200'], { TUNNEL_CONTROL_URL: 'https://c:8080/', TUNNEL_LISTEN: '0.0.0.0:1' });
    assert.equal(r.kind, 'run');
    if (r.kind !== 'run') return;
    assert.equal(r.config.controlUrl, 'https://c:8080');
    assert.deepEqual(r.config.listen, { host: '127.0.0.1', port: 2200 });
    assert.equal(r.config.advertise, '127.0.0.1:2200');
    assert.equal(r.config.keepaliveIntervalMs, 5000);
    assert.deepEqual(r.config.metricsListen, { host: '127.0.0.1', port: 9090 });
  });

  it('explains how to fix a missing control URL, a wildcard listen without --advertise and bad values', () => {
    assert.throws(() => parseConfig([], {}), (e: unknown) => e instanceof ConfigError && /--control-url/.test(e.message));
    assert.throws(() => parseConfig(['--control-url', 'https://c'], {}), (e: unknown) => e instanceof ConfigError && /--advertise/.test(e.message));
    assert.throws(() => parseConfig(['--control-url', 'https://c', '--listen', 'nope'], {}), ConfigError);
    assert.throws(() => parseConfig(['--control-url', 'https://c', '--advertise', 'a:1', '--keepalive-interval', 'soon'], {}), ConfigError);
    assert.throws(() => parseConfig(['--bogus'], {}), ConfigError);
  });

  it('the heartbeat, event batch and revocation poll intervals are at least 100ms: at 0 a failing control plane was asked in a tight loop', () => {
    const base = ['--control-url', 'https://c', '--advertise', 'a:1'];
    for (const flag of ['--heartbeat-interval', '--events-flush-interval', '--revocation-poll-interval']) {
      for (const bad of ['0', '0ms', '99ms']) {
        assert.throws(() => parseConfig([...base, flag, bad], {}), (e: unknown) => e instanceof ConfigError && e.message === `${flag} must be at least 100ms`, `${flag} ${bad}`);
      }
      parseConfig([...base, flag, '100ms'], {});
    }
  });

  it('--revocation-max-stale: 5 minutes by default, off, at least 1s and twice --revocation-wait', () => {
    const base = ['--control-url', 'https://c', '--advertise', 'a:1'];
    const stale = (args: string[]) => {
      const r = parseConfig([...base, ...args], {});
      assert.equal(r.kind, 'run');
      return r.kind === 'run' ? r.config.revocationMaxStaleMs : NaN;
    };
    assert.equal(stale([]), 300_000);
    assert.equal(stale(['--revocation-max-stale', 'off']), undefined);
    assert.equal(stale(['--revocation-max-stale', '40s']), 40_000);
    assert.equal(stale(['--revocation-wait', '0', '--revocation-max-stale', '1s']), 1000);
    for (const bad of ['0', '999ms', 'never', '']) {
      assert.throws(() => stale(['--revocation-wait', '0', '--revocation-max-stale', bad]), (e: unknown) => e instanceof ConfigError && /--revocation-max-stale must be a duration of at least 1s/.test(e.message), bad);
    }
    assert.throws(() => stale(['--revocation-max-stale', '39s']), (e: unknown) => e instanceof ConfigError && /at least twice --revocation-wait/.test(e.message));
  });

  it('egress lock: iptables by default, off only when asked for, uid and source-port blocks', () => {
    const run = (argv: string[], env: Record<string, string> = {}) => {
      const r = parseConfig(['--control-url', 'https://c', '--listen', '127.0.0.1:2222', ...argv], env);
      if (r.kind !== 'run') throw new Error('expected run');
      return r.config.egress;
    };
    assert.deepEqual(run([]), { driver: 'iptables', uid: undefined, sourcePorts: undefined, connectTimeoutMs: 10_000 });
    assert.equal(run([], { TUNNEL_EGRESS_DRIVER: 'off' }).driver, 'off');
    assert.equal(run(['--egress-driver', 'iptables'], { TUNNEL_EGRESS_DRIVER: 'off' }).driver, 'iptables');
    assert.equal(run(['--egress-uid', '0']).uid, 0);
    assert.deepEqual(run(['--egress-source-ports', '61000-61999', '--egress-ports-per-lease', '32']).sourcePorts, { range: { first: 61000, last: 61999 }, perLease: 32 });
    for (const bad of [['--egress-driver', 'nftables'], ['--egress-uid', '-1'], ['--egress-source-ports', '80-90'], ['--egress-source-ports', '61000-61010']]) {
      assert.throws(() => run(bad), ConfigError, bad.join(' '));
    }
  });

  it('send buffer bound and stall timeout: sizes with units, sane defaults, refused when too small', () => {
    const run = (argv: string[]) => {
      const r = parseConfig(['--control-url', 'https://c', '--listen', '127.0.0.1:2222', ...argv], {});
      if (r.kind !== 'run') throw new Error('expected run');
      return r.config;
    };
    assert.equal(run([]).limits.sendBufferBytes, 1 << 20);
    assert.equal(run([]).limits.sendStallMs, 60_000);
    assert.equal(run(['--max-send-buffer', '512KiB']).limits.sendBufferBytes, 512 * 1024);
    assert.equal(run(['--max-send-buffer', '1GiB']).limits.sendBufferBytes, 1 << 30);
    assert.equal(run(['--max-send-buffer', '70000']).limits.sendBufferBytes, 70000);
    assert.equal(run(['--send-stall-timeout', '2s']).limits.sendStallMs, 2000);
    for (const bad of ['1KiB', '4MB', '-1', 'lots']) assert.throws(() => run(['--max-send-buffer', bad]), ConfigError, bad);
  });

  it('test faults: off by default, only known points accepted', () => {
    const run = (argv: string[]) => {
      const r = parseConfig(['--control-url', 'https://c', '--listen', '127.0.0.1:2222', ...argv], {});
      if (r.kind !== 'run') throw new Error('expected run');
      return r.config;
    };
    assert.deepEqual(run([]).testFaults, []);
    assert.deepEqual(run(['--test-fault', 'tcpip,escape-tcpip']).testFaults, ['tcpip', 'escape-tcpip']);
    assert.throws(() => run(['--test-fault', 'everywhere']), ConfigError);
  });

  it('refuses plain http:// to a non-loopback control plane unless --insecure-http; takes a pin or a CA file', () => {
    const run = (argv: string[], env: Record<string, string> = {}) => {
      const r = parseConfig(['--listen', '127.0.0.1:2222', ...argv], env);
      if (r.kind !== 'run') throw new Error('expected run');
      return r.config;
    };
    assert.throws(() => run(['--control-url', 'http://192.0.2.1:8080']), (e: unknown) => e instanceof ConfigError && /refusing plain http:\/\/ to 192\.0\.2\.1:8080.*--insecure-http/.test(e.message));
    assert.throws(() => run(['--control-url', 'http://control.example']), ConfigError);
    for (const loopback of ['http://127.0.0.1:8080', 'http://localhost:8080', 'http://[::1]:8080', 'http://127.1.2.3']) {
      assert.equal(run(['--control-url', loopback]).insecureWarning, undefined, loopback);
    }
    const insecure = run(['--control-url', 'http://192.0.2.1:8080', '--insecure-http']);
    assert.match(insecure.insecureWarning ?? '', /WARNING.*plain HTTP/);
    assert.equal(run(['--control-url', 'http://192.0.2.1:8080'], { TUNNEL_INSECURE_HTTP: '1' }).trust.insecureHttp, true);
    const pin = `sha256:${'AB'.repeat(32)}`;
    assert.equal(run(['--control-url', 'https://c', '--ca-pin', pin]).trust.caPin, pin.toLowerCase());
    assert.equal(run(['--control-url', 'https://c'], { TUNNEL_CA_FILE: 'ca.pem' }).trust.caFile, join(process.cwd(), 'ca.pem'));
    assert.throws(() => run(['--control-url', 'https://c', '--ca-pin', 'sha256:abc']), (e: unknown) => e instanceof ConfigError && /--ca-pin/.test(e.message));
    assert.throws(() => run(['--control-url', 'https://c', '--ca-pin', pin, '--ca-file', 'x.pem']), ConfigError);
  });

  it('defaults are absolute: the data dir under XDG_DATA_HOME (or HOME), metrics on loopback', () => {
    const r = parseConfig(['--control-url', 'https://c', '--listen', '127.0.0.1:2222'], { HOME: '/home/relay' });
    const c = r.kind === 'run' ? r.config : undefined;
    assert.equal(c?.dataDir, '/home/relay/.local/share/tunnel/node');
    assert.equal(c?.metricsListen.host, '127.0.0.1');
    const x = parseConfig(['--control-url', 'https://c', '--listen', '127.0.0.1:2222', '--data-dir', 'rel'], { XDG_DATA_HOME: '/x' });
    assert.equal(x.kind === 'run' ? x.config.dataDir : '', join(process.cwd(), 'rel'));
    const y = parseConfig(['--control-url', 'https://c', '--listen', '127.0.0.1:2222'], { XDG_DATA_HOME: '/x' });
    assert.equal(y.kind === 'run' ? y.config.dataDir : '', '/x/tunnel/node');
  });

  it('a relative or empty XDG_DATA_HOME is ignored (XDG spec): the data dir is under ~/.local/share, not the working directory', () => {
    for (const rel of ['rel', './rel', '../rel', '']) {
      const r = parseConfig(['--control-url', 'https://c', '--listen', '127.0.0.1:2222'], { XDG_DATA_HOME: rel, HOME: '/home/relay' });
      assert.equal(r.kind === 'run' ? r.config.dataDir : '', '/home/relay/.local/share/tunnel/node', rel);
    }
  });

  it('prints help', () => {
    const r = parseConfig(['--help'], {});
    assert.equal(r.kind, 'help');
    assert.match(r.kind === 'help' ? r.text : '', /--enroll-token/);
    assert.match(r.kind === 'help' ? r.text : '', /--max-send-buffer .*\(default 1MiB\)/);
    assert.match(r.kind === 'help' ? r.text : '', /--send-stall-timeout .*\(default 60s\)/);
  });
});
