import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { it } from 'node:test';
import { MemoryCgroupError, memoryCgroups, memoryCgroupsAvailable } from './memory-cgroup.js';

it('refuses a limit below 64 MiB or not a whole number of bytes', () => {
  assert.throws(() => memoryCgroups(1 << 20), MemoryCgroupError);
  assert.throws(() => memoryCgroups(100 * 2 ** 20 + 0.5), MemoryCgroupError);
});

// Registered only where this process may make memory cgroups (root with a memory controller, as
// CI and the bench machine): elsewhere bench:footprint --memory-limit exits with one line.
if (memoryCgroupsAvailable()) {
  it('a wrapped node process starts in a cgroup of its own and sizes its heap from its limit', () => {
    const limit = 768 * 2 ** 20;
    const cg = memoryCgroups(limit);
    try {
      const script = "const fs = require('fs'); process.stdout.write(JSON.stringify({ pid: process.pid, limit: process.constrainedMemory(), cgroup: fs.readFileSync('/proc/self/cgroup', 'utf8') }))";
      const [cmd, ...args] = [...cg.wrap, process.execPath, '-e', script];
      const out = JSON.parse(execFileSync(cmd!, args, { encoding: 'utf8' })) as { pid: number; limit: number; cgroup: string };
      assert.equal(out.limit, limit);
      assert.match(out.cgroup, new RegExp(`tunnel-bench-${process.pid}/p${out.pid}\\n`), 'the cgroup is named by the command\'s own pid (the shell exec\'d it)');
    } finally {
      cg.remove();
    }
    const v1 = `/sys/fs/cgroup/memory/tunnel-bench-${process.pid}`;
    const v2 = `/sys/fs/cgroup/tunnel-bench-${process.pid}`;
    assert.ok(!existsSync(v1) && !existsSync(v2), 'remove() leaves no cgroup behind');
  });
}
