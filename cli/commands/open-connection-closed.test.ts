/**
 * A relay connection that closes while a channel open is pending (the relay restarting or
 * crashing before it answers, h-rev): ssh2 answers the open with 'No response from server'.
 * That is a connection closed before the open, which `tunnel open --listen` tries again on the
 * next connection (openWhenOnline), not the relay refusing the exposure (exit 1, "the relay
 * refused ..."). The relay is a real ssh2 server that hangs up on a `direct-tcpip` open.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { CliError, EXIT } from '../errors.js';
import { clientOfFakeRelay } from '../testing/fake-relay.js';
import { forwardOut } from './open.js';
import { CONNECTION_CLOSED } from './open-when-online.js';

it('a connection that closes before the relay answers an open is CONNECTION_CLOSED (tried again), not a refusal', { timeout: 30_000 }, async () => {
  let opens = 0;
  const { client, close } = await clientOfFakeRelay((_accept, conn) => {
    opens++;
    conn.end(); // the relay goes away with the open unanswered
  });
  after(close);

  const dest = { host: 'svc', port: 22, label: 'svc:22' };
  const err = await forwardOut(client, 0, dest, () => {}).then(
    () => assert.fail('the open resolved on a closed connection'),
    (e: unknown) => e,
  );
  assert.equal(opens, 1, 'the relay saw the open');
  assert.ok(err instanceof CliError, String(err));
  assert.equal(err.code, CONNECTION_CLOSED, err.message);
  assert.equal(err.exitCode, EXIT.UNREACHABLE);
  assert.match(err.message, /closed before svc:22 could be opened/);

  // And on the closed connection (ssh2 throws "Not connected"): the same.
  const again = await forwardOut(client, 0, dest, () => {}).then(
    () => assert.fail('the open resolved on a closed connection'),
    (e: unknown) => e,
  );
  assert.ok(again instanceof CliError && again.code === CONNECTION_CLOSED, String(again));
});
