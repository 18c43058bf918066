import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { openStream, pump, startService, type Service } from './traffic.js';

const services: Service[] = [];
after(async () => {
  for (const s of services) await s.close();
});

describe("bench traffic: X's service (greets, counts what it reads through net's onread)", () => {
  it('greets each connection, counts every byte of two streams exactly, and answers a half-close with its own', async () => {
    const service = await startService();
    services.push(service);
    const SIZE = 48 * 1024 * 1024 + 12_345; // several reads of its 1 MiB buffer, and an odd tail
    const a = await openStream(service.port); // resolves on the greeting byte
    const b = await openStream(service.port);
    const ended = [once(a.sock, 'end'), once(b.sock, 'end')];
    await Promise.all([pump(a.sock, SIZE), pump(b.sock, 1000), service.waitForBytes(SIZE + 1000, 60_000)]);
    await Promise.all(ended); // the service ended its side after our EOF
    assert.equal(service.received(), SIZE + 1000);
    await assert.rejects(service.waitForBytes(SIZE + 1001, 50), new RegExp(`received ${SIZE + 1000} of ${SIZE + 1001} bytes`));
  });
});
