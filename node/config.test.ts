import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from './config.js';

describe('parseConfig', () => {
  it('applies defaults, env and flags (flag wins)', () => {
    const r = parseConfig(['--listen', '127.0.0.1:2200'], { TUNNEL_CONTROL_URL: 'http://c:8080/', TUNNEL_LISTEN: '0.0.0.0:1' });
    assert.equal(r.kind, 'run');
    if (r.kind !== 'run') return;
    assert.equal(r.config.controlUrl, 'http://c:8080');
    assert.deepEqual(r.config.listen, { host: '127.0.0.1', port: 2200 });
    assert.equal(r.config.advertise, '127.0.0.1:2200');
    assert.equal(r.config.keepaliveIntervalMs, 5000);
    assert.deepEqual(r.config.metricsListen, { host: '0.0.0.0', port: 9090 });
  });

  it('explains how to fix a missing control URL, a wildcard listen without --advertise and bad values', () => {
    assert.throws(() => parseConfig([], {}), (e: unknown) => e instanceof ConfigError && /--control-url/.test(e.message));
    assert.throws(() => parseConfig(['--control-url', 'http://c'], {}), (e: unknown) => e instanceof ConfigError && /--advertise/.test(e.message));
    assert.throws(() => parseConfig(['--control-url', 'http://c', '--listen', 'nope'], {}), ConfigError);
    assert.throws(() => parseConfig(['--control-url', 'http://c', '--advertise', 'a:1', '--keepalive-interval', 'soon'], {}), ConfigError);
    assert.throws(() => parseConfig(['--bogus'], {}), ConfigError);
  });

  it('prints help', () => {
    const r = parseConfig(['--help'], {});
    assert.equal(r.kind, 'help');
    assert.match(r.kind === 'help' ? r.text : '', /--enroll-token/);
  });
});
