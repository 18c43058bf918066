import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createJsonLogger, loggable } from './logger.js';

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

it('errors anywhere in a line keep their message, code and causes (never `{}`), and a failed query never its parameters', () => {
  const lines: string[] = [];
  const log = createJsonLogger((l) => lines.push(l));
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED', secret: 'tnl_node_do_not_log' });
  const wrapped = new Error('control plane unreachable: POST /v1/nodes/self/heartbeat', { cause: refused });
  const query = Object.assign(new Error('Failed query: insert ... params: hunter2'), {
    query: 'insert into users values ($1)',
    params: ['hunter2'],
    cause: Object.assign(new Error('value too long'), { code: '22001' }),
  });
  log.warn('heartbeat failed', { err: wrapped, nested: { inner: refused }, agg: new AggregateError([refused], 'all failed'), query });
  const text = lines[0] as string;
  const line = JSON.parse(text) as Record<string, Record<string, unknown>>;
  assert.deepEqual(line.err, {
    name: 'Error',
    message: 'control plane unreachable: POST /v1/nodes/self/heartbeat',
    cause: { name: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:9', code: 'ECONNREFUSED' },
  });
  assert.deepEqual(line.nested, { inner: { name: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:9', code: 'ECONNREFUSED' } });
  assert.equal((line.agg!.errors as unknown[]).length, 1);
  assert.deepEqual(line.query, { name: 'Error', message: 'failed query', query: 'insert into users values ($1)', cause: { name: 'Error', message: 'value too long', code: '22001' } });
  assert.doesNotMatch(text, /hunter2|tnl_node_do_not_log/);
});

it('loggable cuts a peer text to its bound, says how much more there was, and splits no surrogate pair', () => {
  assert.equal(loggable('short', 8), 'short');
  assert.equal(loggable('x'.repeat(8), 8), 'x'.repeat(8));
  assert.equal(loggable('x'.repeat(30_000), 256), `${'x'.repeat(256)}...(29744 more)`);
  // A pair across the cut: the high half goes with the rest, never alone.
  const cut = loggable(`${'a'.repeat(3)}\u{1F600}tail`, 4);
  assert.equal(cut, 'aaa...(6 more)');
  assert.doesNotMatch(cut, /[\ud800-\udfff]/);
  assert.equal(loggable(42, 8), '42');
});
