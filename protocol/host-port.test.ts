import assert from 'node:assert/strict';
import { it } from 'node:test';
import { AddressSchema } from './api-fields.js';
import { formatHostPort, parseHostPort } from './host-port.js';

it('parses host:port with a name, IPv4 or bracketed IPv6 host', () => {
  assert.deepEqual(parseHostPort('relay.example.com:2222'), { host: 'relay.example.com', port: 2222 });
  assert.deepEqual(parseHostPort('10.0.0.5:22'), { host: '10.0.0.5', port: 22 });
  assert.deepEqual(parseHostPort('[2001:db8::1]:443'), { host: '2001:db8::1', port: 443 });
  assert.equal(formatHostPort({ host: '2001:db8::1', port: 443 }), '[2001:db8::1]:443');
  assert.equal(formatHostPort({ host: '10.0.0.5', port: 22 }), '10.0.0.5:22');
});

it('refuses what is not host:port, ports out of range, and port 0 unless allowed', () => {
  for (const bad of ['relay', 'relay:', ':22', '22', 'relay:65536', 'relay:99999', 'a b:22', '2001:db8::1:22', 'relay:22\n', 'relay:0']) {
    assert.equal(parseHostPort(bad), undefined, bad);
  }
  assert.deepEqual(parseHostPort('127.0.0.1:0', { allowZero: true }), { host: '127.0.0.1', port: 0 });
});

it('leaves the host out only when given a default (the CLI\'s [host:]port, the relay\'s :PORT)', () => {
  assert.deepEqual(parseHostPort('8022', { defaultHost: '127.0.0.1' }), { host: '127.0.0.1', port: 8022 });
  assert.deepEqual(parseHostPort(':2222', { defaultHost: '0.0.0.0' }), { host: '0.0.0.0', port: 2222 });
  assert.deepEqual(parseHostPort('db:5432', { defaultHost: '127.0.0.1' }), { host: 'db', port: 5432 });
});

it('AddressSchema is the same rule on the wire', () => {
  assert.ok(AddressSchema.safeParse('relay-1.relay.test:2222').success);
  assert.ok(!AddressSchema.safeParse('relay:70000').success);
  assert.ok(!AddressSchema.safeParse('relay').success);
});
