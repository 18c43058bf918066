/**
 * Hostile members: the relay's memory for channel data, in bytes (--channel-memory). Every channel
 * lets its peer send up to its window before the relay reads any of it, and ssh2 opened every one
 * with 2 MiB: a member with its own exposure that never reads, at --max-channels-per-member 256,
 * could make the relay hold 512 MiB, and members together without bound. Now a channel opens with
 * the standard window only while the budget and its opener's share (a quarter) have room, else
 * with 64 KiB; both channels of a bridge (Y's, and the one the relay opens to X) count against
 * whoever opened it. Checked on the windows the relay offers X and Y (what they may send), and
 * on what the relay holds once they sent all of it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Client, ClientChannel } from 'ssh2';
import { offeredTo, untilBlocked } from './channel-windows.js';
import { openDirect } from './hostile-clients.js';
import { relayUnderTest } from './relay-under-test.js';

const MiB = 1024 * 1024;
const FLOOR = 64 * 1024;
const STANDARD = 2 * MiB;


/** X: binds `exposure` and accepts every channel into it without reading; `offered` gets each channel's window. */
async function exposeSink(client: Client, exposure: string, offered: number[], channels?: ClientChannel[]): Promise<void> {
  client.on('tcp connection', (_info, accept) => {
    const ch = accept();
    offered.push(offeredTo(ch));
    ch.pause();
    channels?.push(ch);
  });
  await new Promise<void>((resolve, reject) => client.forwardIn(exposure, 22, (err) => (err ? reject(err) : resolve())));
}

describe('hostile: one member holds at most its share of --channel-memory (plus 64 KiB a channel)', { timeout: 120_000 }, () => {
  // A share of 2 MiB (a quarter of 8 MiB): one channel's standard window and 64 KiB more.
  const t = relayUnderTest(['--channel-memory', process.env.CM ?? '8MiB']);

  it("offers X and Y the standard window while the opener's share has room, then 64 KiB; another member gets its own share", async () => {
    const toX: number[] = [];
    const toXChannels: ClientChannel[] = [];
    await exposeSink((await t.member('hog', { grant: { kind: 'expose', exposure: 'sink-m', port: 22 } })).client, 'sink-m', toX, toXChannels);
    const y = await t.member('hog', { grant: { kind: 'open', exposure: 'sink-m' } });
    const toY: number[] = [];
    const held: ClientChannel[] = [];
    for (let i = 0; i < 3; i++) {
      held.push(await openDirect(y.client, 'sink-m', 22));
      toY.push(offeredTo(held[i]));
    }
    // Bridge 1: the relay opens X's channel first (the standard window, all but 64 KiB of the
    // share), then confirms Y's with what is left; bridges 2 and 3 get the floor both ways.
    const left = 2 * MiB - (STANDARD - FLOOR);
    assert.deepEqual(toX, [STANDARD, FLOOR, FLOOR]);
    assert.deepEqual(toY, [FLOOR + left, FLOOR, FLOOR]);

    const other = await t.member('other', { grant: { kind: 'open', exposure: 'sink-m' } });
    const otherCh = await openDirect(other.client, 'sink-m', 22);
    assert.equal(toX[3], STANDARD, "another member's bridge to the same X has its own share");
    assert.equal(offeredTo(otherCh), FLOOR + left);

    const metric = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(t.relay.relay.metricsText())?.[1] ?? NaN);
    assert.equal(metric('tunnel_node_channel_memory_taken_bytes'), 4 * MiB, "two members' shares");
    assert.equal(metric('tunnel_node_channel_memory_short_channels'), 8 - 2);

    // hog pushes 8 MiB into each of its channels (X never reads): Y sends what its window
    // allows, the relay passes X what X's window allows and holds the rest, within its share.
    const chunk = Buffer.alloc(32 * 1024, 7);
    for (const ch of held) for (let i = 0; i < 256; i++) ch.write(chunk);
    // Y has sent all it may (its windows are used up and not topped up) once a request
    // answered after that data comes back: the relay parsed the data first.
    await untilBlocked(y.client, held, toXChannels.slice(0, 3));
    const buffered = metric('tunnel_node_bridge_buffer_bytes');
    assert.ok(buffered <= FLOOR + left + 2 * FLOOR, `the relay holds ${buffered} bytes of hog's three paused channels`);
  });
});
