/** The release and API level peers state (protocol/api-level.ts): one release number, read strictly. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { API_LEVEL, API_LEVEL_MIN, API_LEVEL_UNSTATED, peerHeaders, peerOf, readApiLevel, servesApiLevel, TUNNEL_VERSION } from './api-level.js';

describe('api level', () => {
  it("TUNNEL_VERSION is package.json's version", () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(TUNNEL_VERSION, pkg.version);
  });

  it('a control plane serves the previous release: an old peer keeps working through a rolling upgrade', () => {
    assert.ok(API_LEVEL_MIN <= API_LEVEL);
    assert.ok(servesApiLevel(API_LEVEL));
    assert.ok(servesApiLevel(API_LEVEL_UNSTATED), 'a peer from before the header is served');
    assert.ok(!servesApiLevel(API_LEVEL + 1), 'a peer newer than the control plane is refused');
    assert.ok(!servesApiLevel(API_LEVEL_MIN - 1));
    assert.ok(!servesApiLevel(undefined));
  });

  it('reads the header strictly; its absence is the oldest level', () => {
    assert.equal(readApiLevel(undefined), API_LEVEL_UNSTATED);
    assert.equal(readApiLevel('2'), 2);
    assert.equal(readApiLevel(' 1 '), 1);
    for (const bad of ['', 'x', '1.5', '-1', '1234567', '1,2']) assert.equal(readApiLevel(bad), undefined, bad);
  });

  it('names a peer only from a User-Agent of ours', () => {
    assert.deepEqual(peerHeaders('node', 3, '1.2.3'), { 'user-agent': 'tunnel-node/1.2.3', 'tunnel-api': '3' });
    assert.equal(peerOf('tunnel-cli/0.1.0'), 'tunnel-cli/0.1.0');
    assert.equal(peerOf('curl/8.0'), undefined);
    assert.equal(peerOf(`tunnel-node/${'9'.repeat(40)}`), undefined);
    assert.equal(peerOf(undefined), undefined);
  });
});
