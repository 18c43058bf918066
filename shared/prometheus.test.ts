import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MetricsRegistry } from './prometheus.js';

it('label values are escaped as the text format requires (backslash, newline, double quote), plain ones as they are', () => {
  const registry = new MetricsRegistry();
  const c = registry.counter('t_total', 'test');
  c.inc({ route: '/v1/leases', status: '201' });
  c.inc({ route: '/v1/leases', status: '201' }, 2);
  c.inc({ v: 'a\\b"c\nd' });
  assert.equal(c.get({ route: '/v1/leases', status: '201' }), 3);
  assert.equal(c.get({ v: 'a\\b"c\nd' }), 1);
  const lines = registry.render().split('\n');
  assert.ok(lines.includes('t_total{route="/v1/leases",status="201"} 3'), lines.join('\n'));
  assert.ok(lines.includes('t_total{v="a\\\\b\\"c\\nd"} 1'), lines.join('\n'));
});
