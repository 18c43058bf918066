/**
 * Channel windows as ssh2 peers of the relay see them, for the channel-memory tests: what the
 * relay offered a channel, and a wait until a stream is blocked on windows.
 */
import assert from 'node:assert/strict';
import type { Client, ClientChannel } from 'ssh2';

/** The window the relay offered (or has left for) this side of a channel: what this side may still send. */
export const offeredTo = (ch: unknown): number => (ch as { outgoing: { window: number } }).outgoing.window;

/**
 * Waits until X's channels `xs` (which never read) have used all their windows allow and Y's
 * channels `ys` have no window left, still so after a round trip of Y's connection (a global
 * request the relay answers after the data before it): the relay has received everything Y may
 * send, could pass none of it on, and granted no more. Checked once per turn of the event loop
 * (the relay runs in the test's process: a loop of round trips alone kept its bridges from running).
 */
export async function untilBlocked(client: Client, ys: ClientChannel[], xs: ClientChannel[]): Promise<void> {
  const received = (ch: ClientChannel) => (ch as unknown as { incoming: { window: number } }).incoming.window;
  const blocked = () => xs.length === ys.length && xs.every((ch) => received(ch) === 0) && ys.every((ch) => offeredTo(ch) === 0);
  for (let turn = 0; ; turn++) {
    assert.ok(turn < 1_000_000, 'Y never ran out of window');
    if (blocked()) {
      await new Promise<void>((resolve) => client.openssh_noMoreSessions(() => resolve()));
      if (blocked()) return;
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
