/**
 * A relay's refusal text reaches the user's terminal in `tunnel open`'s one line (h-rev): a
 * hostile relay could put escape sequences (retitle the terminal, move the cursor, hide text)
 * and line breaks (forge lines) into it, up to a packet (~35 KB) per refused connection.
 * channelOpenError shows it as one printable line, cut short; the refusal word still decides.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { EXIT } from '../errors.js';
import { channelOpenError } from './open.js';

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
