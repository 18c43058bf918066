/**
 * A relay that never answers a channel open (h-attack, found and not fixed): `forwardOut`
 * gives up after its timeout with one CliError (exit 5, unreachable) instead of waiting for
 * ever, and a channel the relay grants after that is closed at once. The relay is a real ssh2
 * server holding `direct-tcpip` opens unanswered; the timeout is shortened for the test.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import type { ServerChannel } from 'ssh2';
import { CliError, EXIT } from '../errors.js';
import { clientOfFakeRelay } from '../testing/fake-relay.js';
import { forwardOut } from './open.js';

it('gives up on a channel open the relay never answers, and closes a channel granted after that', { timeout: 30_000 }, async () => {
  const pending: { accept: () => ServerChannel }[] = [];
  let lateClosed!: () => void;
  const closedLate = new Promise<void>((r) => (lateClosed = r));
  const { client, close } = await clientOfFakeRelay((accept) => pending.push({ accept }));
  after(close);

  const dest = { host: 'svc', port: 22, label: 'svc:22' };
  const err = await forwardOut(client, 0, dest, () => {}, 200).then(
    () => assert.fail('the open resolved without an answer'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CliError, String(err));
  assert.equal(err.exitCode, EXIT.UNREACHABLE);
  assert.match(err.message, /did not answer the request to open svc:22 within 200 ms/);
  assert.equal(pending.length, 1, 'the relay saw the open and left it unanswered');

  const late = pending[0]!.accept();
  late.resume(); // read to its end: the channel's 'close' comes after it
  late.on('close', () => lateClosed());
  await closedLate; // the CLI closed the channel it no longer wanted
});
