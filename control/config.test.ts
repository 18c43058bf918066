import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadControlConfig } from './config.js';
import { buildDeps } from './server.js';
import type { OpenedDb } from './db/client.js';
import { noopLogger } from '../shared/logger.js';

const KEY = { TUNNEL_MASTER_KEY: Buffer.alloc(32, 7).toString('base64') };

describe('tunnel-control configuration: TLS and defaults', () => {
  it('/metrics is served nowhere by default; --metrics-listen or TUNNEL_METRICS_LISTEN names its own address', () => {
    assert.equal(loadControlConfig([], { HOME: '/h' }).metricsListen, undefined);
    assert.deepEqual(loadControlConfig(['--metrics-listen', '127.0.0.1:9091'], { HOME: '/h' }).metricsListen, { host: '127.0.0.1', port: 9091 });
    assert.deepEqual(loadControlConfig([], { HOME: '/h', TUNNEL_METRICS_LISTEN: '[::1]:0' }).metricsListen, { host: '::1', port: 0 });
    for (const bad of ['9091', 'localhost', '127.0.0.1:70000', '127.0.0.1:9091\0']) {
      assert.throws(() => loadControlConfig(['--metrics-listen', bad], { HOME: '/h' }), (e: unknown) => e instanceof ConfigError && /--metrics-listen/.test(e.message), bad);
    }
  });

  it('audit events are kept 365 days by default; --audit-retention or TUNNEL_AUDIT_RETENTION_DAYS sets the days, 0 keeps them for good', () => {
    assert.equal(loadControlConfig([], { HOME: '/h' }).auditRetentionDays, 365);
    assert.equal(loadControlConfig(['--audit-retention', '30'], { HOME: '/h' }).auditRetentionDays, 30);
    assert.equal(loadControlConfig([], { HOME: '/h', TUNNEL_AUDIT_RETENTION_DAYS: '0' }).auditRetentionDays, 0);
    for (const bad of ['', '-1', '1.5', '36501', '1e3', '30d', '30\0', '99999999999999999999']) {
      assert.throws(() => loadControlConfig(['--audit-retention', bad], { HOME: '/h' }), (e: unknown) => e instanceof ConfigError && /--audit-retention/.test(e.message), bad);
    }
  });

  it('the console idle timeout: 12h by default; --console-idle-timeout or TUNNEL_CONSOLE_IDLE_TIMEOUT, 10m to 30d or off, reaches the settings', () => {
    assert.equal(loadControlConfig([], { HOME: '/h' }).consoleIdleTimeout, 12 * 3600);
    assert.equal(loadControlConfig(['--console-idle-timeout', '45m'], { HOME: '/h', TUNNEL_CONSOLE_IDLE_TIMEOUT: '2d' }).consoleIdleTimeout, 2700);
    assert.equal(loadControlConfig([], { HOME: '/h', TUNNEL_CONSOLE_IDLE_TIMEOUT: '2d' }).consoleIdleTimeout, 2 * 86400);
    assert.equal(loadControlConfig(['--console-idle-timeout=off'], { HOME: '/h' }).consoleIdleTimeout, 0);
    for (const bad of ['', '5m', '599', '31d', '1.5h', '12 h', 'never', '-1h', '12h\0']) {
      assert.throws(() => loadControlConfig([`--console-idle-timeout=${bad}`], { HOME: '/h' }), (e: unknown) => e instanceof ConfigError && /^--console-idle-timeout /.test(e.message), bad);
    }
    const opened = { db: {} as OpenedDb['db'], driver: 'pglite' as const, close: async () => undefined };
    const { settings } = buildDeps(loadControlConfig(['--console-idle-timeout', '8h'], { HOME: '/h', ...KEY }), opened, noopLogger);
    assert.equal(settings.consoleIdleTimeout, 8 * 3600);
  });

  it('relay event bounds: 600 batches and 60,000 events a minute by default; flags or TUNNEL_RELAY_EVENT_* set them, and they reach the settings', () => {
    const d = loadControlConfig([], { HOME: '/h' });
    assert.deepEqual([d.relayEventBatchLimit, d.relayEventLimit], [600, 60_000]);
    const f = loadControlConfig(['--relay-event-batch-limit', '30', '--relay-event-limit', '5000'], { HOME: '/h', TUNNEL_RELAY_EVENT_BATCH_LIMIT: '7' });
    assert.deepEqual([f.relayEventBatchLimit, f.relayEventLimit], [30, 5000], 'a flag wins over the environment');
    const e = loadControlConfig([], { HOME: '/h', TUNNEL_RELAY_EVENT_BATCH_LIMIT: '1', TUNNEL_RELAY_EVENT_LIMIT: '1000' });
    assert.deepEqual([e.relayEventBatchLimit, e.relayEventLimit], [1, 1000]);
    const opened = { db: {} as OpenedDb['db'], driver: 'pglite' as const, close: async () => undefined };
    const { settings } = buildDeps(loadControlConfig(['--relay-event-batch-limit', '30', '--relay-event-limit', '5000'], { HOME: '/h', ...KEY }), opened, noopLogger);
    assert.deepEqual([settings.relayEventBatchLimit, settings.relayEventLimit], [30, 5000]);
  });

  it('refuses relay event bounds that are not whole numbers, below 1 batch or one full batch of events, or absurd, naming the flag', () => {
    for (const bad of ['', '0', '-1', '1.5', '1e3', '10/min', '600\0', '1000000001', '99999999999999999999']) {
      assert.throws(() => loadControlConfig([`--relay-event-batch-limit=${bad}`], { HOME: '/h' }), (e: unknown) => e instanceof ConfigError && /^--relay-event-batch-limit /.test(e.message), bad);
    }
    for (const bad of ['0', '999', '-5', '6e4', '1000000001']) {
      assert.throws(() => loadControlConfig([], { HOME: '/h', TUNNEL_RELAY_EVENT_LIMIT: bad }), (e: unknown) => e instanceof ConfigError && /^--relay-event-limit .*from 1000/.test(e.message), bad);
    }
  });

  it('plain HTTP on a loopback --listen (the default; a reverse proxy in front), https:// public URL allowed', () => {
    const c = loadControlConfig([], { HOME: '/home/z' });
    assert.deepEqual(c.tls, { mode: 'off', warn: false });
    assert.equal(c.publicUrl, 'http://127.0.0.1:8080');
    const proxied = loadControlConfig(['--public-url', 'https://tunnel.example.com'], { HOME: '/home/z' });
    assert.equal(proxied.tls.mode, 'off');
    assert.equal(proxied.publicUrl, 'https://tunnel.example.com');
  });

  it('the public URL (every token\'s issuer) is at most 2048 characters of printable ASCII without " or \\, as lease claims hold it', () => {
    const longest = `https://t.example/${'p'.repeat(2048 - 'https://t.example/'.length)}`;
    assert.equal(loadControlConfig(['--public-url', longest], { HOME: '/h' }).publicUrl, longest);
    for (const bad of [`${longest}p`, 'https://t"x.example']) {
      assert.throws(() => loadControlConfig(['--public-url', bad], { HOME: '/h' }), (e: unknown) => e instanceof ConfigError && /--public-url must be at most 2048/.test(e.message), bad);
    }
    // What the URL serializer writes out as ASCII (punycode, percent-encoding) is fine.
    assert.equal(loadControlConfig(['--public-url', 'https://tünnel.example/a b"\\c'], { HOME: '/h' }).publicUrl, 'https://xn--tnnel-kva.example/a%20b%22/c');
  });

  it('its own certificate on another address with the embedded database; https:// by default', () => {
    const c = loadControlConfig(['--listen', '10.0.0.5:8443'], { HOME: '/home/z' });
    assert.deepEqual(c.tls, { mode: 'self-signed', dir: '/home/z/.local/share/tunnel/control/tls' });
    assert.equal(c.publicUrl, 'https://10.0.0.5:8443');
    assert.equal(loadControlConfig(['--tls', 'self-signed'], { HOME: '/h' }).tls.mode, 'self-signed');
  });

  it('certificate files; with Postgres a non-loopback address needs them (or an explicit, warned --tls off)', () => {
    const f = loadControlConfig(['--listen', '0.0.0.0:8443', '--public-url', 'https://t.example', '--tls-cert', '/etc/c.pem', '--tls-key', '/etc/k.pem'], {
      DATABASE_URL: 'postgres://db/t',
      ...KEY,
    });
    assert.deepEqual(f.tls, { mode: 'files', certFile: '/etc/c.pem', keyFile: '/etc/k.pem' });
    assert.throws(() => loadControlConfig(['--listen', '0.0.0.0:8443', '--public-url', 'https://t.example'], { DATABASE_URL: 'postgres://db/t', ...KEY }), /not loopback and no TLS/);
    assert.throws(() => loadControlConfig(['--tls', 'self-signed'], { DATABASE_URL: 'postgres://db/t', ...KEY }), /same --tls-cert\/--tls-key/);
    const off = loadControlConfig(['--listen', '0.0.0.0:8080', '--tls', 'off'], { DATABASE_URL: 'postgres://db/t', ...KEY });
    assert.deepEqual(off.tls, { mode: 'off', warn: true });
  });

  it('refuses half or contradictory TLS settings with one line each', () => {
    for (const argv of [
      ['--tls-cert', '/c.pem'],
      ['--tls', 'maybe'],
      ['--tls', 'off', '--tls-cert', '/c', '--tls-key', '/k'],
      ['--listen', '10.0.0.5:8443', '--public-url', 'http://10.0.0.5:8443'],
    ]) {
      assert.throws(() => loadControlConfig(argv, { HOME: '/h' }), ConfigError, argv.join(' '));
    }
  });

  it('the data dir is absolute: $XDG_DATA_HOME/tunnel/control, or a given one resolved', () => {
    assert.equal(loadControlConfig([], { XDG_DATA_HOME: '/x' }).dataDir, '/x/tunnel/control');
    assert.equal(loadControlConfig(['--data-dir', 'rel'], { HOME: '/h' }).dataDir, `${process.cwd()}/rel`);
    // A relative or empty XDG_DATA_HOME is ignored (XDG spec), not resolved against the working directory.
    for (const rel of ['rel', './rel', '../rel', '']) {
      assert.equal(loadControlConfig([], { XDG_DATA_HOME: rel, HOME: '/h' }).dataDir, '/h/.local/share/tunnel/control', rel);
    }
  });

  it('gen-master-key FILE', () => {
    assert.equal(loadControlConfig(['gen-master-key', '/etc/tunnel/master.key'], {}).masterKeyOut, '/etc/tunnel/master.key');
    assert.throws(() => loadControlConfig(['gen-master-key'], {}), /needs one FILE/);
  });
});
