/**
 * Hostile clients, finding 5: one Y hogging an exposure's channel slots, idle channels holding
 * slots, authentication methods other than publickey used to guess for free, log fields that
 * overwrite the log's own keys, and refusals without a reason. Real relay process, real sockets.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, type ClientChannel } from 'ssh2';
import { announceMaxPacket } from './hostile-clients.js';
import { startHostileRelay, silentSocket, type HostileRelay } from './hostile-relay.js';
import { clientFiles, killAll, spawnSsh, sshArgs, within, writeCert } from './ssh-tools.js';
import { mintLease } from '../harness/relay.js';

describe('hostile: channel hogs, free guesses and silent refusals', { timeout: 300_000 }, () => {
  let h: HostileRelay;

  before(async () => {
    h = await startHostileRelay([
      '--max-channels-per-connection', '24',
      '--max-channels-per-opener', '8',
      '--channel-idle-timeout', '2s',
      '--max-auth-attempts', '3',
      '--auth-failures-per-minute', '6',
    ]);
  });
  after(async () => {
    killAll();
    await h?.stop();
  });

  it('gives each opener a share of the exposure, frees idle channels, and another Y still moves data', async () => {
    const hog = await h.client('yhog', { kind: 'open', exposure: h.exposure });
    const held: ClientChannel[] = [];
    for (let i = 0; i < 8; i++) {
      const ch = await h.openChannel(hog.client);
      ch.resume(); // read (nothing comes), so the channel can end and close
      held.push(ch);
    }
    const refused = await h.openChannel(hog.client).then(
      () => assert.fail('a ninth channel was opened past the opener share'),
      (err: Error & { reason?: number }) => err,
    );
    assert.equal(refused.reason, 4, 'RESOURCE_SHORTAGE');
    assert.match(refused.message, /your share of hostile-svc:22's channels \(limit 8\)/);
    // Another user is not affected by the hog.
    await h.legitTransfer();
    let m = await h.metrics();
    assert.equal(m.value('tunnel_node_bridged_channels_total', { outcome: 'opener_share' }), 1);

    // The hog's channels move nothing: the relay closes them at the idle timeout and the slots return.
    await Promise.all(held.map((ch) => new Promise<void>((r) => ch.once('close', () => r()))));
    m = await h.metricsUntil((x) => x.value('tunnel_node_bridged_channels_total', { outcome: 'idle_timeout' }) >= 8, 'idle channels counted');
    assert.equal(m.value('tunnel_node_bridged_channels_total', { outcome: 'idle_timeout' }), 8);
    // X's side frees each slot once X confirmed the close; the hog gets a channel again after that.
    for (let i = 0; ; i++) {
      const again = await h.openChannel(hog.client).catch((e: Error) => e);
      if (!(again instanceof Error)) {
        again.destroy();
        break;
      }
      if (i > 100 || !/your share/.test(again.message)) throw again;
      await h.metrics(); // one round trip to the relay between attempts
    }
    assert.ok(h.alive());
  });

  it('counts none, password and keyboard-interactive attempts against max attempts and the per-source limit', async () => {
    const before = await h.metrics();
    const attempt = () =>
      new Promise<Error>((resolve) => {
        const methods = [{ type: 'none' }, { type: 'none' }, { type: 'password', password: 'guess' }, { type: 'keyboard-interactive', prompt: () => {} }, { type: 'password', password: 'more' }];
        const c = new Client();
        c.once('error', resolve);
        c.once('ready', () => resolve(new Error('authenticated')));
        c.connect({
          host: '127.0.0.1',
          port: h.relay.sshPort,
          localAddress: '127.0.0.7',
          username: 'guesser',
          hostVerifier: () => true,
          authHandler: (_left, _partial, next) => {
            const m = methods.shift();
            if (!m) return next(false as never);
            next({ ...m, username: 'guesser' } as never);
          },
          readyTimeout: 20_000,
        });
      });
    // The first none is free (it asks which methods exist); none, password, keyboard-interactive
    // make three failures: the relay disconnects with the reason.
    const err = await attempt();
    assert.match(err.message, /too many authentication failures/);
    const m = await h.metrics();
    assert.equal(m.value('tunnel_node_auth_failures_total', { reason: 'method_not_allowed' }) - before.value('tunnel_node_auth_failures_total', { reason: 'method_not_allowed' }), 3);
    // Three more use up this source's six failures a minute; its next connection is dropped before SSH.
    await attempt();
    const dropped = silentSocket(h.relay.sshPort, '127.0.0.7');
    assert.equal(await dropped.outcome, 'closed');
    assert.equal((await h.metrics()).value('tunnel_node_preauth_drops_total', { reason: 'auth_rate_limited' }), 1);
    await h.legitTransfer();
  });

  it('tells the client why: channel refusals and a revoked lease carry reason texts (OpenSSH client)', async () => {
    const keyLine = h.hostKeyLine;
    const y = await clientFiles(h.relay.sshPort, keyLine);
    const lease = await mintLease(h.fc, { grant: { kind: 'open', exposure: h.exposure }, clientPublicKey: y.privateKey, user: 'yssh' });
    await writeCert(y, lease.certificate);
    const wrong = spawnSsh(sshArgs(y, h.relay.sshPort, 'yssh', { extra: ['-W', 'not-mine:22'] }));
    wrong.child.stdin?.end();
    assert.equal(await wrong.exited, 255);
    assert.match(wrong.stderr(), /open failed: administratively prohibited: not_in_lease: not-mine:22 is not in this lease/);

    const live = spawnSsh(sshArgs(y, h.relay.sshPort, 'yssh', { extra: ['-v', '-N'] }));
    await live.waitStderr(/Authenticated to/);
    h.fc.revoke(lease.claims.jti, Math.floor(Date.now() / 1000) + 600);
    await live.exited;
    assert.match(live.stderr(), /Received disconnect from 127\.0\.0\.1 port \d+:11: lease revoked/);

    // Every log line keeps its own level (a field named level used to overwrite it).
    const levels = new Set(h.relay.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { level: string }).level));
    assert.deepEqual([...levels].filter((l) => !['info', 'warn', 'error'].includes(l)), []);
    await h.legitTransfer();
    assert.ok(h.alive());
  });

  // ssh2 slices a channel's writes by the peer's maximum packet size and takes any value: with 0
  // its write loop never advanced and the relay spun forever (even /metrics went unanswered);
  // with 1 each byte was a packet of its own.
  it('disconnects a Y that opens a channel with a maximum packet size of 0, and an X that confirms one; the relay keeps serving', async () => {
    const from = h.relay.stderr().length;
    const y = await h.client('ytinypacket', { kind: 'open', exposure: h.exposure });
    const yClosed = new Promise<void>((r) => y.client.once('close', () => r()));
    announceMaxPacket(y.client, 0);
    // Without the check the open is confirmed, and X's reply to what Y sends makes the relay spin.
    const opened = h.openChannel(y.client).then(
      (ch) => {
        ch.on('data', () => {});
        ch.end(Buffer.alloc(1000));
        return 'opened';
      },
      () => 'refused',
    );
    await within(yClosed, 30_000, "the relay did not close Y's connection");
    assert.equal(await opened, 'refused');
    await h.relayClosed('ytinypacket', from);

    // X's side: an exposure whose X confirms the relay's channel with a maximum packet size of 0.
    const x = await h.client('xtinypacket', { kind: 'expose', exposure: 'hostx-tinypacket', port: 22 });
    const xClosed = new Promise<void>((r) => x.client.once('close', () => r()));
    x.client.on('tcp connection', (_info, accept) => accept().resume());
    await new Promise<void>((resolve, reject) => x.client.forwardIn('hostx-tinypacket', 22, (err) => (err ? reject(err) : resolve())));
    announceMaxPacket(x.client, 0);
    const y2 = await h.client('ytotiny', { kind: 'open', exposure: 'hostx-tinypacket' });
    const second = await h.openChannel(y2.client, 'hostx-tinypacket').then(
      (ch) => {
        ch.end(Buffer.alloc(1000));
        return 'opened';
      },
      () => 'refused',
    );
    await within(xClosed, 30_000, "the relay did not close X's connection");
    assert.equal(second, 'refused');

    const lines = h.logs(from).filter((l) => l.msg === 'peer announced a channel maximum packet size too small; disconnecting');
    assert.deepEqual(
      lines.map((l) => [l.packetSize, l.type]),
      [
        [0, 'direct-tcpip'],
        [0, 'confirmation'],
      ],
    );
    const m = await h.metrics();
    assert.equal(m.value('tunnel_node_refused_requests_total', { type: 'channel_packet_size_too_small' }), 2);
    await h.legitTransfer();
    assert.ok(h.alive());
  });
});
