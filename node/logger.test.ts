import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createJsonLogger } from './logger.js';

it('a field named level, msg or time never overwrites the line’s own keys', () => {
  const lines: string[] = [];
  const log = createJsonLogger((l) => lines.push(l), { msg: 'base' }, () => new Date(0)).child({ time: 'child' });
  log.warn('connection error', { level: 'socket', err: new Error('boom') });
  const line = JSON.parse(lines[0] as string) as Record<string, unknown>;
  assert.equal(line.level, 'warn');
  assert.equal(line.msg, 'connection error');
  assert.equal(line.time, new Date(0).toISOString());
  assert.equal(line.field_level, 'socket');
  assert.equal(line.field_msg, 'base');
  assert.equal(line.field_time, 'child');
  assert.deepEqual(line.err, { name: 'Error', message: 'boom' });
});
