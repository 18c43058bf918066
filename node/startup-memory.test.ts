import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import type * as Ssh2 from 'ssh2';
import { formatOpenSshPrivateKey } from '../protocol/ssh-key.js';
import { collectStartupGarbage, Poly1305SkippedError, poly1305StandIn, skipUnusedSsh2Parts } from './startup-memory.js';

// This file must not load ssh2 before the tests below call skipUnusedSsh2Parts (node --test runs
// each file in its own process): ssh2 is only required inside the tests, in this order.
const require = createRequire(import.meta.url);
const polyPath = require.resolve('ssh2/lib/protocol/crypto/poly1305.js');
/** Undefined when ssh2's optional cpu-features is not installed (npm leaves it out when its native build fails). */
const cpuPath = ((): string | undefined => {
  try {
    return createRequire(require.resolve('ssh2/lib/protocol/constants.js')).resolve('cpu-features');
  } catch {
    return undefined;
  }
})();

/** Echoes `payload` through an ssh2 server and client that may only use `cipher`; resolves with what came back. */
async function echoThroughSsh2(cipher: Ssh2.CipherAlgorithm, payload: Buffer): Promise<Buffer> {
  const ssh2 = require('ssh2') as typeof Ssh2;
  // Not ssh2.utils.generateKeyPairSync: about 1 ed25519 key in 400 it makes, its own parser then
  // rejects ("Malformed OpenSSH private key"), which failed this test now and then.
  const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
  const server = new ssh2.Server({ hostKeys: [hostKey], algorithms: { cipher: [cipher] } }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('session', (accept) => {
      accept().on('exec', (acceptExec) => {
        const ch = acceptExec();
        ch.on('data', (d: Buffer) => ch.write(d));
        ch.on('end', () => {
          ch.exit(0);
          ch.end();
        });
      });
    });
    conn.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const client = new ssh2.Client();
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      client.on('error', reject);
      client.on('ready', () => {
        client.exec('echo', (err, ch) => {
          if (err) return reject(err);
          const got: Buffer[] = [];
          ch.on('data', (d: Buffer) => got.push(d));
          ch.on('close', () => resolve(Buffer.concat(got)));
          ch.end(payload);
        });
      });
      client.connect({ host: '127.0.0.1', port, username: 'u', algorithms: { cipher: [cipher] } });
    });
  } finally {
    client.end();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

describe('ssh2 parts the relay never runs (node/startup-memory.ts)', () => {
  it('without the native binding nothing is replaced (ssh2 needs its WebAssembly poly1305 then)', () => {
    const result = skipUnusedSsh2Parts(() => {
      throw new Error('no binding here');
    });
    assert.equal(result, 'no-binding');
    assert.equal(require.cache[polyPath], undefined);
    if (cpuPath) assert.equal(require.cache[cpuPath], undefined);
  });

  it('a binding that was never built (install scripts not run) is no-binding, not a crash at start', () => {
    const notBuilt = (specifier: string) => require(specifier.replace('sshcrypto.node', 'never-built.node'));
    assert.equal(skipUnusedSsh2Parts(notBuilt), 'no-binding');
    assert.equal(require.cache[polyPath], undefined);
  });

  it('without cpu-features (npm leaves out an optional dependency whose build failed) the poly1305 stand-in still goes in, and none for it', () => {
    const withoutCpuFeatures = (specifier: string, fromFile: string): string => {
      if (specifier === 'cpu-features') throw Object.assign(new Error(`Cannot find module '${specifier}'`), { code: 'MODULE_NOT_FOUND' });
      return createRequire(fromFile).resolve(specifier);
    };
    const before = new Set(Object.keys(require.cache));
    try {
      assert.equal(skipUnusedSsh2Parts(() => undefined, withoutCpuFeatures), 'skipped');
      assert.equal(require.cache[polyPath]?.exports, poly1305StandIn);
      assert.deepEqual(Object.keys(require.cache).filter((k) => !before.has(k)), [polyPath], 'no stand-in for a module that is not there');
    } finally {
      delete require.cache[polyPath]; // ssh2 is not loaded yet: the next test starts from nothing again
    }
  });

  it('with it, ssh2 loads with the stand-ins and chacha20-poly1305 and aes128-gcm still carry data', async (t) => {
    assert.equal(skipUnusedSsh2Parts(), 'skipped', 'the binding loads here (CI builds it)');
    assert.equal(require.cache[polyPath]?.exports, poly1305StandIn);
    if (cpuPath) {
      const cpuFeatures: unknown = require.cache[cpuPath]?.exports;
      assert.equal(typeof cpuFeatures, 'function');
      assert.equal((cpuFeatures as () => unknown)(), undefined, 'the stand-in, not the addon (which returns what the CPU has)');
    } else t.diagnostic('cpu-features is not installed: ssh2 runs without it, and without a stand-in');
    const payload = Buffer.alloc(200_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) & 0xff;
    for (const cipher of ['chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com'] as const) {
      const back = await echoThroughSsh2(cipher, payload);
      assert.ok(back.equals(payload), `${cipher}: ${back.length} bytes back`);
    }
    assert.equal(require.cache[polyPath]?.exports, poly1305StandIn, 'ssh2 did not load the real module');
    assert.equal(require('ssh2/lib/protocol/crypto.js').bindingAvailable, true);
  });

  it("ssh2's pure-JS chacha20-poly1305, if it ever ran, fails loudly instead of computing a wrong MAC", async () => {
    const { sampleCiphers } = await import('./ssh2-internals.js');
    const native = sampleCiphers().find((c) => Object.getPrototypeOf(c).constructor.name === 'ChaChaPolyCipherNative');
    assert.ok(native, 'ssh2 still has ChaChaPolyCipherNative');
    const cipher = native as unknown as { allocPacket(n: number): Buffer; encrypt(p: Buffer): void };
    assert.throws(() => cipher.encrypt(cipher.allocPacket(16)), Poly1305SkippedError);
  });

  it('too late once ssh2 is loaded: nothing changes', () => {
    assert.equal(skipUnusedSsh2Parts(), 'too-late');
  });
});

describe('collectStartupGarbage (node/startup-memory.ts)', () => {
  it('runs one full mark-compact collection of this isolate, without --expose-gc', async () => {
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'run without --expose-gc');
    const kinds: number[] = [];
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[]) kinds.push(e.detail?.kind ?? -1);
    });
    observer.observe({ entryTypes: ['gc'] });
    try {
      // Garbage the collection finds: 20,000 small objects nothing refers to.
      (() => {
        const junk: object[] = [];
        for (let i = 0; i < 20_000; i++) junk.push({ i, s: `garbage ${i}` });
        return junk.length;
      })();
      const r = collectStartupGarbage();
      assert.ok(r.heapUsedBefore > 0 && r.heapUsedAfter > 0 && r.ms >= 0, JSON.stringify(r));
      // GC entries are delivered on a later tick.
      for (let i = 0; i < 50 && !kinds.includes(constants.NODE_PERFORMANCE_GC_MAJOR); i++) await new Promise((res) => setTimeout(res, 10));
      assert.ok(kinds.includes(constants.NODE_PERFORMANCE_GC_MAJOR), `collections seen: ${kinds.join(',')}`);
      assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'gc is not left exposed');
    } finally {
      observer.disconnect();
    }
  });
});

