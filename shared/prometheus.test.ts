import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MetricsRegistry, type Labels } from './prometheus.js';

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

it('a sample without labels has no braces; one label, an empty value and a gauge list are written as the text format says', () => {
  const registry = new MetricsRegistry();
  const plain = registry.counter('plain_total', 'test');
  plain.inc();
  plain.inc({});
  const one = registry.counter('one_total', 'test');
  one.inc({ kind: 'open' });
  one.inc({ kind: '' });
  registry.gauge('g', 'test', (): { labels: Labels; value: number }[] => [
    { labels: {}, value: 1 },
    { labels: { a: 'x', b: 'y', c: 'z' }, value: 2 },
  ]);
  assert.equal(plain.get(), 2);
  const lines = registry.render().split('\n');
  for (const line of ['plain_total 2', 'one_total{kind="open"} 1', 'one_total{kind=""} 1', 'g 1', 'g{a="x",b="y",c="z"} 2']) {
    assert.ok(lines.includes(line), `${line} in\n${lines.join('\n')}`);
  }
});
