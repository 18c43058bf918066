import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { xdgBaseDir } from './xdg-base-dir.js';

describe('xdgBaseDir', () => {
  it('an absolute value is used; an unset, empty or relative one is ignored for the default under the home directory (XDG spec)', () => {
    for (const [name, def] of [['XDG_DATA_HOME', '/h/.local/share'], ['XDG_CONFIG_HOME', '/h/.config']] as const) {
      assert.equal(xdgBaseDir(name, { [name]: '/x/y', HOME: '/h' }), '/x/y');
      for (const v of [undefined, '', 'rel', './rel', '../rel', 'rel/', '~/rel']) {
        assert.equal(xdgBaseDir(name, { [name]: v, HOME: '/h' }), def, `${name}=${v}`);
      }
      // The home directory given wins over HOME; without either it is the account's.
      assert.equal(xdgBaseDir(name, { [name]: 'rel', HOME: '/h' }, '/g'), def.replace('/h', '/g'));
      assert.equal(xdgBaseDir(name, { [name]: 'rel' }), def.replace('/h', homedir()));
    }
  });
});
