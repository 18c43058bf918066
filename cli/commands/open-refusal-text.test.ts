/**
 * A relay's refusal text (and its DISCONNECT description) reaches the user's terminal (h-rev): a
 * hostile relay could put escape sequences (retitle the terminal, move the cursor, hide text)
 * and line breaks (forge lines) into it, up to a packet (~35 KB) per refused connection.
 * channelOpenError shows it as one printable line, cut short; the refusal word still decides.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { EXIT } from '../errors.js';
import { channelOpenError } from './open.js';
import { closedBy } from '../ssh/lease-session.js';

const dest = { host: 'svc', port: 22, label: 'svc:22' };
const hostile = `\x1b]0;owned\x07\x1b[2J\nfake: everything is fine\r${'A'.repeat(30_000)}`;

it("a relay's refusal text is one printable line, cut short, for each kind of refusal", () => {
  for (const word of ['busy', 'not_in_lease', 'no_such_port', 'egress_failed', 'no_such_word']) {
    const err = channelOpenError(new Error(`(SSH) Channel open failure: ${word}: ${hostile}`), dest);
    // eslint-disable-next-line no-control-regex -- no control character may be left
    assert.doesNotMatch(err.message, /[\u0000-\u001f\u007f-\u009f]/, word);
    assert.ok(err.message.length < 400, `${word}: ${err.message.length} characters`);
  }
  // The word still decides the exit code and the text.
  const busy = channelOpenError(new Error(`(SSH) Channel open failure: busy: too many pending opens\n`), dest);
  assert.equal(busy.exitCode, EXIT.UNREACHABLE);
  assert.equal(busy.message, 'the relay is busy: too many pending opens?; try again');
});

it("a relay's DISCONNECT description is one printable line, cut short, in the reason the CLI shows for the drop", () => {
  // ssh2 makes a relay's DISCONNECT description the connection error's message.
  const reason = closedBy(Object.assign(new Error(hostile), { level: 'protocol' }), false).reason;
  // eslint-disable-next-line no-control-regex -- no control character may be left
  assert.doesNotMatch(reason, /[\u0000-\u001f\u007f-\u009f]/);
  assert.ok(reason.length < 400, `${reason.length} characters`);
  assert.match(reason, /^connection error: \?\]0;owned\?/);
});
