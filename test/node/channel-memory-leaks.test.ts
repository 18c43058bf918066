/**
 * The relay's channel memory (--channel-memory, node/channel-memory.ts) is charged to whoever
 * opened a bridge, both its channels: so what X does with the channel the relay opened to it must
 * not keep an honest opener's share taken after the relay is done with that channel. X decides
 * when its channel emits 'close' (its answer to the relay's CHANNEL_CLOSE), and X decides when it
 * answers an open at all; an X that never does either kept Y's allowance (up to 2 MiB a channel,
 * within Y's member share and the relay's budget) for as long as X stayed connected.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Client, ClientChannel } from 'ssh2';
import { offeredTo, untilBlocked } from './channel-windows.js';
import { openDirect } from './hostile-clients.js';
import { relayUnderTest } from './relay-under-test.js';

const MiB = 1024 * 1024;
const STANDARD = 2 * MiB;

const protocolOf = (c: Client) => (c as unknown as { _protocol: { channelClose(id: number): void } })._protocol;

/** X: binds `exposure` and accepts every channel into it (read and dropped); `offered` gets each channel's window. */
async function exposeReading(client: Client, exposure: string, offered: number[] = []): Promise<void> {
  client.on('tcp connection', (_info, accept) => {
    const ch = accept();
    offered.push(offeredTo(ch));
    ch.resume();
  });
  await new Promise<void>((resolve, reject) => client.forwardIn(exposure, 22, (err) => (err ? reject(err) : resolve())));
}

function closed(ch: ClientChannel): Promise<void> {
  return new Promise((resolve) => ch.once('close', () => resolve()));
}

describe("hostile X: an opener's channel memory goes back when the relay is done with X's channel", { timeout: 60_000 }, () => {
  // A member's share: 2 MiB (a quarter of 8 MiB), one bridge's worth.
  const t = relayUnderTest(['--channel-memory', '8MiB', '--open-timeout', '1s']);
  const metric = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(t.relay.relay.metricsText())?.[1] ?? NaN);

  it('X that never answers CHANNEL_CLOSE: Y closed its channel, its share is whole again', async () => {
    const evil = await t.member('evil', { grant: { kind: 'expose', exposure: 'trap-c', port: 22 } });
    await exposeReading(evil.client, 'trap-c');
    protocolOf(evil.client).channelClose = () => {}; // never answers the relay's CLOSE
    const good = await t.member('good', { grant: { kind: 'expose', exposure: 'fine-c', port: 22 } });
    const toGood: number[] = [];
    await exposeReading(good.client, 'fine-c', toGood);

    const y = await t.member('victim', { grant: { kind: 'open', exposure: 'trap-c' } });
    const ch = (await openDirect(y.client, 'trap-c', 22)).resume();
    ch.close();
    await closed(ch); // the relay answered Y's CLOSE and tore the bridge down, closing X's channel
    await new Promise<void>((resolve) => y.client.openssh_noMoreSessions(() => resolve())); // the relay ran the bridge's close
    assert.equal(metric('tunnel_node_channel_memory_taken_bytes'), 0, "taken after victim's only bridge closed");

    const y2 = await t.member('victim', { grant: { kind: 'open', exposure: 'fine-c' } });
    await openDirect(y2.client, 'fine-c', 22);
    assert.deepEqual(toGood, [STANDARD], "the window offered to an honest X for victim's next bridge");
  });

  it("X that never answers Y's open: once Y was refused (--open-timeout), its share is whole again", async () => {
    const evil = await t.member('evil', { grant: { kind: 'expose', exposure: 'trap-o', port: 22 } });
    const asked = new Promise<void>((resolve) => evil.client.on('tcp connection', () => resolve())); // never accepted nor rejected
    await new Promise<void>((resolve, reject) => evil.client.forwardIn('trap-o', 22, (err) => (err ? reject(err) : resolve())));
    const good = await t.member('good', { grant: { kind: 'expose', exposure: 'fine-o', port: 22 } });
    const toGood: number[] = [];
    await exposeReading(good.client, 'fine-o', toGood);

    const y = await t.member('victim2', { grant: { kind: 'open', exposure: 'trap-o' } });
    const before = metric('tunnel_node_channel_memory_taken_bytes'); // the bridge the first case left open
    const refused = openDirect(y.client, 'trap-o', 22).then(
      () => 'opened',
      (err: Error) => err.message,
    );
    await asked;
    assert.match(await refused, /did not accept the channel within/);
    assert.equal(metric('tunnel_node_channel_memory_taken_bytes'), before, "taken after victim2's only open was refused");

    const y2 = await t.member('victim2', { grant: { kind: 'open', exposure: 'fine-o' } });
    await openDirect(y2.client, 'fine-o', 22);
    assert.deepEqual(toGood, [STANDARD], "the window offered to an honest X for victim2's next bridge");
  });
});

for (const [peer, ident] of [
  ["Tunnel's CLI as peer (adaptive windows)", 'tunnel-cli'],
  ['ssh2 as peer (standard windows)', undefined],
] as const) {
  describe(`${peer}: a channel the relay's channel memory keeps small stays small, and moves data`, { timeout: 60_000 }, () => {
    // A share of 2 MiB (a quarter of 8 MiB): one bridge's standard windows, then 64 KiB a channel.
    const t = relayUnderTest(['--channel-memory', '8MiB']);

    it('a member with its own exposure that never reads holds at most its share plus 64 KiB a channel', async () => {
      const x = await t.member('hog', { grant: { kind: 'expose', exposure: 'sink-cli', port: 22 }, ...(ident ? { ident } : {}) });
      const xs: ClientChannel[] = [];
      x.client.on('tcp connection', (_info, accept) => xs.push(accept().pause()));
      await new Promise<void>((resolve, reject) => x.client.forwardIn('sink-cli', 22, (err) => (err ? reject(err) : resolve())));
      const y = await t.member('hog', { grant: { kind: 'open', exposure: 'sink-cli' }, ...(ident ? { ident } : {}) });
      const ys: ClientChannel[] = [];
      for (let i = 0; i < 4; i++) ys.push(await openDirect(y.client, 'sink-cli', 22));
      const chunk = Buffer.alloc(32 * 1024, 7);
      for (const ch of ys) for (let i = 0; i < 256; i++) ch.write(chunk);
      await untilBlocked(y.client, ys, xs);
      const buffered = Number(/^tunnel_node_bridge_buffer_bytes (\d+)$/m.exec(t.relay.relay.metricsText())?.[1] ?? NaN);
      // The share (2 MiB) and 64 KiB for each of the 8 channels; what X's windows let through is not held.
      assert.ok(buffered <= 2 * MiB + 8 * 64 * 1024, `the relay holds ${buffered} bytes of hog's four paused bridges`);

      // hog's share is spent: a bridge to an X that echoes opens at 64 KiB both ways and still moves 4 MiB each way.
      const echo = await t.member('hog', { grant: { kind: 'expose', exposure: 'echo-cli', port: 22 }, ...(ident ? { ident } : {}) });
      const toEcho: number[] = [];
      echo.client.on('tcp connection', (_info, accept) => {
        const ch = accept();
        toEcho.push(offeredTo(ch));
        ch.pipe(ch);
      });
      await new Promise<void>((resolve, reject) => echo.client.forwardIn('echo-cli', 22, (err) => (err ? reject(err) : resolve())));
      const y2 = await t.member('hog', { grant: { kind: 'open', exposure: 'echo-cli' }, ...(ident ? { ident } : {}) });
      const ch = await openDirect(y2.client, 'echo-cli', 22);
      assert.deepEqual([toEcho[0], offeredTo(ch)], [64 * 1024, 64 * 1024], 'windows of a bridge opened with the share spent');
      let back = 0;
      const echoed = new Promise<void>((resolve) => ch.on('data', (c: Buffer) => (back += c.length) >= 4 * MiB && resolve()));
      for (let i = 0; i < 128; i++) ch.write(chunk);
      await echoed;
      assert.equal(back, 4 * MiB);
    });
  });
}

describe("a Y that never answers the relay's CHANNEL_CLOSE keeps its connection's channel slot", { timeout: 60_000 }, () => {
  // ssh2 keeps a channel (its object, its listeners, what it still receives and drops) until the
  // peer answers CLOSE: given back at the bridge's close, Y's slot bounded nothing of that.
  const t = relayUnderTest(['--max-channels-per-connection', '2']);

  for (const [who, answers] of [
    ['a Y that answers', true],
    ['a Y that never answers', false],
  ] as const) {
    it(`${who}: three bridges one after another, each closed by X`, async () => {
      const user = answers ? 'honest' : 'lingerer';
      const x = await t.member(user, { grant: { kind: 'expose', exposure: `self-${user}`, port: 22 } });
      x.client.on('tcp connection', (_info, accept) => accept().close());
      await new Promise<void>((resolve, reject) => x.client.forwardIn(`self-${user}`, 22, (err) => (err ? reject(err) : resolve())));
      const y = await t.member(user, { grant: { kind: 'open', exposure: `self-${user}` } });
      if (!answers) protocolOf(y.client).channelClose = () => {};
      const outcomes: string[] = [];
      for (let i = 0; i < 3; i++) {
        const outcome = await openDirect(y.client, `self-${user}`, 22).then(
          async (ch) => {
            await closed(ch.resume()); // the relay closed it (X closed its side)
            return 'opened';
          },
          () => 'refused',
        );
        outcomes.push(outcome);
      }
      assert.deepEqual(outcomes, answers ? ['opened', 'opened', 'opened'] : ['opened', 'opened', 'refused']);
    });
  }
});
