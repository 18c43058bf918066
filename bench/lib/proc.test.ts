import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { describe, it } from 'node:test';
import { procUse, treeProcUse } from './proc.js';

describe('procUse', () => {
  it('counts this process\'s write and read syscalls and its CPU (kernel part included) from /proc', () => {
    const fd = openSync('/dev/null', 'r+');
    try {
      const before = procUse(process.pid);
      for (let i = 0; i < 50; i++) writeSync(fd, 'x');
      for (let i = 0; i < 30; i++) readSync(fd, Buffer.alloc(1));
      const after = procUse(process.pid);
      assert.ok(after.writes - before.writes >= 50, `writes ${before.writes} -> ${after.writes}`);
      assert.ok(after.reads - before.reads >= 30, `reads ${before.reads} -> ${after.reads}`);
      assert.ok(after.cpu > 0 && after.sys >= 0 && after.sys <= after.cpu, JSON.stringify(after));
    } finally {
      closeSync(fd);
    }
  });

  it('sums a process tree, at least the root itself; a process that is gone counts nothing', () => {
    const self = procUse(process.pid);
    const tree = treeProcUse(process.pid);
    assert.ok(tree.writes >= self.writes && tree.cpu >= self.cpu - 0.02, `${JSON.stringify(tree)} against ${JSON.stringify(self)}`);
    assert.deepEqual(procUse(2 ** 22 + 1), { cpu: 0, sys: 0, reads: 0, writes: 0 });
  });
});
