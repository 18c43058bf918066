import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { open, seal, SealedBoxError } from './sealed-box.js';

const isSealedBoxError = (err: unknown) => err instanceof SealedBoxError && err.code === 'SEALED_BOX_INVALID';

describe('sealed box', () => {
  const key = randomBytes(32);
  const secret = randomBytes(48);

  it('round-trips and never stores the plaintext', () => {
    const sealed = seal(key, secret, 'sig_1');
    assert.deepEqual(open(key, sealed, 'sig_1'), secret);
    assert.ok(!Buffer.from(sealed, 'base64url').includes(secret.subarray(0, 16)));
    assert.notEqual(seal(key, secret, 'sig_1'), sealed, 'a fresh IV every time');
  });

  it('refuses a wrong master key, another kid, tampering and truncation with a typed error', () => {
    const sealed = seal(key, secret, 'sig_1');
    assert.throws(() => open(randomBytes(32), sealed, 'sig_1'), isSealedBoxError);
    assert.throws(() => open(key, sealed, 'sig_2'), isSealedBoxError);
    const raw = Buffer.from(sealed, 'base64url');
    const flipped = Buffer.from(raw);
    flipped[flipped.length - 1]! ^= 1;
    assert.throws(() => open(key, flipped.toString('base64url'), 'sig_1'), isSealedBoxError);
    assert.throws(() => open(key, raw.subarray(0, 20).toString('base64url'), 'sig_1'), isSealedBoxError);
    const otherVersion = Buffer.from(raw);
    otherVersion[0] = 2;
    assert.throws(() => open(key, otherVersion.toString('base64url'), 'sig_1'), isSealedBoxError);
  });

  it('needs a 32-byte master key', () => {
    assert.throws(() => seal(randomBytes(16), secret, 'k'), isSealedBoxError);
    assert.throws(() => open(randomBytes(31), seal(key, secret, 'k'), 'k'), isSealedBoxError);
  });
});
