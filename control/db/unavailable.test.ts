import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isConcurrentConflict, isDatabaseUnavailable } from './unavailable.js';

const withCode = (code: string, cause?: unknown) => Object.assign(new Error(`e ${code}`, { cause }), { code });

describe('isDatabaseUnavailable', () => {
  it('a lost or refused connection, and a server shutting down or starting, wrapped by drizzle or not', () => {
    for (const code of ['CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'ECONNREFUSED', 'ECONNRESET', '57P01', '57P03', '08006']) {
      assert.equal(isDatabaseUnavailable(withCode(code)), true, code);
      // drizzle's DrizzleQueryError carries the driver's error as its cause.
      assert.equal(isDatabaseUnavailable(new Error('Failed query: select 1\nparams: ', { cause: withCode(code) })), true, `wrapped ${code}`);
    }
  });
  it('not a query error, a constraint violation, or anything else', () => {
    for (const code of ['23505', '42P01', '22P02', '40001', 'ERR_SOMETHING']) assert.equal(isDatabaseUnavailable(withCode(code)), false, code);
    assert.equal(isDatabaseUnavailable(new Error('boom')), false);
    assert.equal(isDatabaseUnavailable('CONNECTION_CLOSED'), false);
    assert.equal(isDatabaseUnavailable(undefined), false);
  });
});

describe('isConcurrentConflict', () => {
  it('a deadlock, a serialization failure or a row referred to deleted meanwhile (23503), wrapped by drizzle or not', () => {
    for (const code of ['40P01', '40001', '23503']) {
      assert.equal(isConcurrentConflict(withCode(code)), true, code);
      assert.equal(isConcurrentConflict(new Error('Failed query: select 1\nparams: ', { cause: withCode(code) })), true, `wrapped ${code}`);
    }
  });
  it('nothing else', () => {
    for (const code of ['23505', '57P01', 'CONNECTION_CLOSED', '40P02']) assert.equal(isConcurrentConflict(withCode(code)), false, code);
    assert.equal(isConcurrentConflict(new Error('boom')), false);
    assert.equal(isConcurrentConflict(undefined), false);
  });
});
