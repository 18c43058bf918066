import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createFaultInjector, currentFaultOwner, FaultGuard } from './fault-guard.js';

describe('FaultGuard', () => {
  const owner = () => {
    const faults: { where: string; message: string }[] = [];
    return { sessionId: 's_1', faults, fault: (err: unknown, where: string) => faults.push({ where, message: (err as Error).message }) };
  };

  it('turns a throw or a rejection into a fault of its owner, never into the caller', async () => {
    const o = owner();
    const g = new FaultGuard(o);
    const cb = g.wrap('sync', () => {
      throw new Error('boom');
    });
    assert.doesNotThrow(() => cb());
    g.run('async', async () => {
      await Promise.resolve();
      throw new Error('later');
    });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(o.faults, [
      { where: 'sync', message: 'boom' },
      { where: 'async', message: 'later' },
    ]);
  });

  it('makes the owner visible to what the handler starts (timers, immediates), for the process guard', async () => {
    const o = owner();
    const g = new FaultGuard(o);
    const seen = await new Promise<unknown>((resolve) => g.run('x', () => setImmediate(() => resolve(currentFaultOwner()))));
    assert.equal(seen, o);
    assert.equal(currentFaultOwner(), undefined);
  });

  it('injects faults only for the configured points and the user named after them', () => {
    assert.equal(createFaultInjector([]), undefined);
    const inject = createFaultInjector(['tcpip'])!;
    assert.doesNotThrow(() => inject('tcpip', { username: 'alice' }));
    assert.doesNotThrow(() => inject('ready', { username: 'fault-ready' }));
    assert.throws(() => inject('tcpip', { username: 'fault-tcpip' }), /injected fault at tcpip/);
  });
});
