import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { createMemoryLogger } from '../shared/logger.js';
import { EXIT_TOO_MANY_ERRORS, installProcessGuard } from './process-guard.js';

describe('process guard', () => {
  it('lets the relay absorb attributed errors, survives a few unattributed ones, and exits on a burst', () => {
    const proc = new EventEmitter();
    const logger = createMemoryLogger();
    const exits: number[] = [];
    let t = 0;
    let attribute = true;
    const seen: string[] = [];
    const remove = installProcessGuard(
      { logger, absorb: (_err, origin) => (seen.push(origin), attribute), maxUnattributed: 2, windowMs: 1000, exit: (c) => exits.push(c), now: () => t },
      proc,
    );
    for (let i = 0; i < 10; i++) proc.emit('uncaughtException', new Error('attributed'));
    assert.deepEqual(exits, [], 'attributed errors never end the process');
    attribute = false;
    proc.emit('uncaughtException', new Error('one'));
    proc.emit('unhandledRejection', new Error('two'));
    assert.deepEqual(exits, []);
    t = 5000; // the window moved on: the old ones no longer count
    proc.emit('uncaughtException', new Error('three'));
    proc.emit('uncaughtException', new Error('four'));
    assert.deepEqual(exits, []);
    proc.emit('unhandledRejection', new Error('five'));
    assert.deepEqual(exits, [EXIT_TOO_MANY_ERRORS]);
    assert.ok(seen.includes('unhandledRejection') && seen.includes('uncaughtException'));
    remove();
    assert.equal(proc.listenerCount('uncaughtException'), 0);
  });
});
