import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { allInOneDataDir } from './data-dir.js';

describe('the all-in-one data dir', () => {
  it('is --data-dir, else TUNNEL_DATA_DIR, else $XDG_DATA_HOME/tunnel; a relative XDG_DATA_HOME is ignored (XDG spec) for ~/.local/share', () => {
    assert.equal(allInOneDataDir('/d', { TUNNEL_DATA_DIR: '/t', XDG_DATA_HOME: '/x' }), '/d');
    assert.equal(allInOneDataDir(undefined, { TUNNEL_DATA_DIR: '/t', XDG_DATA_HOME: '/x' }), '/t');
    assert.equal(allInOneDataDir(undefined, { XDG_DATA_HOME: '/x', HOME: '/h' }), '/x/tunnel');
    for (const rel of ['rel', './rel', '../rel', '']) {
      assert.equal(allInOneDataDir(undefined, { XDG_DATA_HOME: rel, HOME: '/h' }), '/h/.local/share/tunnel', rel);
    }
    // An empty TUNNEL_DATA_DIR is unset, as for tunnel-node (it named the working directory).
    assert.equal(allInOneDataDir(undefined, { TUNNEL_DATA_DIR: '', HOME: '/h' }), '/h/.local/share/tunnel');
  });
});
