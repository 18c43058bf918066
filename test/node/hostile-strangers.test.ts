/**
 * Hostile strangers (h-front): what anyone who can reach the relay's SSH port, with no account,
 * can make the relay do with a certificate of their own (OpenSSH's ssh-keygen and ssh).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConnectionEventSchema } from '../../protocol/node-api.js';
import { startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { clientFiles, killAll, spawnSsh, sshArgs } from './ssh-tools.js';

describe('hostile strangers', { timeout: 120_000 }, () => {
  let fc: FakeControl;
  let relay: StartedRelay;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
  });
  after(async () => {
    killAll();
    await relay.stop();
    await fc.stop();
  });

  it("a certificate from the stranger's own CA puts nothing of it into the connection events the control plane validates", async () => {
    // The key id is what the relay reported as the event's lease_id: 1,000 characters and a
    // control character are outside ConnectionEventSchema, so the control plane refused the whole
    // batch (400) and the relay dropped it, with up to 999 other members' events in it.
    const files = await clientFiles(relay.port, relay.hostKeyLine);
    const ca = join(files.dir, 'rogue_ca');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', ca]);
    await writeFile(`${files.keyFile}.pub`, execFileSync('ssh-keygen', ['-y', '-f', files.keyFile]));
    execFileSync('ssh-keygen', ['-q', '-s', ca, '-I', `${'k'.repeat(1000)}\u0007`, '-n', 'stranger', '-O', 'clear', '-O', 'permit-port-forwarding', `${files.keyFile}.pub`], {
      stdio: 'ignore',
    });
    const since = fc.events.length;
    const got = new Promise<void>((resolve) => fc.emitter.on('events', () => fc.events.slice(since).some((e) => e.type === 'auth_fail') && resolve()));
    const p = spawnSsh(sshArgs(files, relay.port, 'stranger', { cert: `${files.keyFile}-cert.pub`, extra: ['-N'] }));
    assert.equal(await p.exited, 255, p.stderr());
    await got;
    const fails = fc.events.slice(since).filter((e) => e.type === 'auth_fail');
    assert.ok(fails.some((e) => e.reason === 'ca_untrusted'), JSON.stringify(fails));
    for (const e of fails) assert.ok(ConnectionEventSchema.safeParse(e).success, `an event the control plane refuses: ${JSON.stringify(e).slice(0, 200)}`);
  });
});
