/**
 * ssh-audit (Debian package) against the relay: no "fail" item, and what it lists is exactly
 * what node/ssh-algorithms.ts offers (each forced by a real client in openssh-algorithms.test.ts,
 * so nothing listed is something the relay cannot perform). The same tool runs against a
 * throwaway OpenSSH sshd for comparison; both summaries go to the test's diagnostics.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it, type TestContext } from 'node:test';
import { CIPHERS, COMPRESSION, KEX, MACS } from '../../node/ssh-algorithms.js';
import { startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { startSshd, type Sshd } from '../harness/sshd.js';

/** ssh-audit's exit codes (ssh_audit/exitcodes.py). */
const EXIT = { GOOD: 0, CONNECTION_ERROR: 1, WARNING: 2, FAILURE: 3 } as const;

/** ssh-audit 2.x lists ciphers and MACs as names, 3.x as `{ algorithm, notes }`: both are read. */
type Listed = string | { algorithm: string };
interface AuditJson {
  kex: Listed[];
  key: Listed[];
  enc: Listed[];
  mac: Listed[];
  compression: string[];
}
const names = (l: Listed[]): string[] => l.map((x) => (typeof x === 'string' ? x : x.algorithm));

interface Audit {
  code: number;
  text: string;
  json: AuditJson;
  /** Item lines with their level, e.g. "(kex) ecdh-sha2-nistp256 -- [fail] using weak elliptic curves". */
  items(level: 'fail' | 'warn'): string[];
}

// Asynchronous on purpose: the relay under audit runs in this process.
function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile('ssh-audit', args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (err as { code?: unknown }).code : 0;
      if (typeof code !== 'number') return reject(err ?? new Error('ssh-audit did not exit'));
      resolve({ code, stdout, stderr });
    });
  });
}

async function audit(port: number): Promise<Audit> {
  const target = ['-p', String(port), '127.0.0.1'];
  const text = await run(['-n', ...target]);
  const json = await run(['-j', ...target]);
  assert.notEqual(text.code, EXIT.CONNECTION_ERROR, `ssh-audit could not connect:\n${text.stdout}${text.stderr}`);
  const lines = text.stdout.split('\n');
  return {
    code: text.code,
    text: text.stdout,
    json: JSON.parse(json.stdout) as AuditJson,
    items: (level) => {
      // A continuation line ("`- [warn] ...") belongs to the item above it.
      const out: string[] = [];
      let item = '';
      for (const l of lines) {
        if (/^\(\w+\) /.test(l)) item = l.replace(/\s+--.*$/, '');
        if (l.includes(`[${level}]`)) out.push(`${item} -- ${l.replace(/^.*\[/, '[')}`);
      }
      return out;
    },
  };
}

function summary(t: TestContext, who: string, a: Audit): void {
  t.diagnostic(`${who}: exit ${a.code}, ${a.items('fail').length} fail, ${a.items('warn').length} warn`);
  for (const l of [...a.items('fail'), ...a.items('warn')]) t.diagnostic(`${who}:   ${l}`);
}

describe('ssh-audit', () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  let sshd: Sshd;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
    sshd = await startSshd({ trustedUserCaKeys: [] });
  });

  after(async () => {
    await sshd?.stop();
    await relay?.stop();
    await fc?.stop();
  });

  it('the relay: no fail item, and it lists exactly what the relay offers', async (t) => {
    const a = await audit(relay.port);
    summary(t, 'relay', a);
    assert.deepEqual(a.items('fail'), [], a.text);
    assert.notEqual(a.code, EXIT.FAILURE, a.text);
    // ssh2 appends the Terrapin countermeasure marker; ssh-audit lists it among the kex names.
    assert.deepEqual(names(a.json.kex), [...KEX, 'kex-strict-s-v00@openssh.com']);
    assert.deepEqual(names(a.json.key), ['ssh-ed25519']);
    assert.deepEqual(names(a.json.enc), [...CIPHERS]);
    assert.deepEqual(names(a.json.mac), [...MACS]);
    assert.deepEqual(a.json.compression, [...COMPRESSION]);
    assert.match(a.text, /\(gen\) compression: disabled/);
  });

  it('OpenSSH sshd, for comparison (its summary is in the diagnostics)', async (t) => {
    const a = await audit(sshd.port);
    summary(t, 'sshd', a);
    assert.ok(a.json.kex.length > 0, a.text);
  });
});
