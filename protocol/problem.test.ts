import assert from 'node:assert/strict';
import { it } from 'node:test';
import { readProblem } from './problem.js';

const body = { type: 'urn:tunnel:problem:not-in-acl', title: 'not in acl', status: 403, code: 'NOT_IN_ACL', detail: 'you are not in the allow list of "web"', request_id: 'req_1' };

it('reads a problem body: code, known code, detail, request id', () => {
  assert.deepEqual(readProblem(403, body), { status: 403, code: 'NOT_IN_ACL', knownCode: 'NOT_IN_ACL', detail: 'you are not in the allow list of "web"', requestId: 'req_1' });
});

it('keeps a code this version does not know (knownCode undefined), and falls back to the title', () => {
  const p = readProblem(409, { ...body, code: 'SOMETHING_NEW', detail: undefined, title: 'something new' });
  assert.equal(p.code, 'SOMETHING_NEW');
  assert.equal(p.knownCode, undefined);
  assert.equal(p.detail, 'something new');
});

it('a body that is no problem (a proxy page, nothing, wrong types) gives one line naming the status', () => {
  for (const b of [undefined, '<html>bad gateway</html>', { code: 7 }, { error: 'invalid_grant' }]) {
    assert.deepEqual(readProblem(502, b), { status: 502, code: undefined, knownCode: undefined, detail: 'the server answered HTTP 502', requestId: undefined });
  }
});
