import assert from 'node:assert/strict';
import { it } from 'node:test';
import { decodeLeaseRenew, encodeLeaseRenew } from './lease-renew.js';
import { SshWireError, SshWriter } from './ssh-wire.js';

it('a renewal payload is one SSH string, the certificate blob', () => {
  const blob = Buffer.from('ssh-ed25519-cert-v01@openssh.com certificate bytes');
  assert.deepEqual(decodeLeaseRenew(encodeLeaseRenew(blob)), blob);
});

it('refuses trailing bytes, a short payload and an oversized blob', () => {
  const blob = Buffer.from('abc');
  assert.throws(() => decodeLeaseRenew(Buffer.concat([encodeLeaseRenew(blob), Buffer.from([0])])), SshWireError);
  assert.throws(() => decodeLeaseRenew(encodeLeaseRenew(blob).subarray(0, 5)), SshWireError);
  assert.throws(() => decodeLeaseRenew(new SshWriter().string(Buffer.alloc(1 << 20)).toBuffer()), SshWireError);
});
