import { existsSync, readdirSync, readFileSync, rmdirSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Runs benchmark processes as on a machine with less memory (issue 11: a relay host is typically a
 * 512 MB to 1 GB VPS). Node sizes V8's heap from the memory it may use, the smaller of the
 * machine's and its memory cgroup's limit (process.constrainedMemory()): on this 24 GiB machine
 * Node 20 lets V8's young generation grow to 32 MB (16 MB semi-spaces; Node 24: 128 MB) and in a
 * 1 GiB cgroup to 8 MB (Node 24: 32 MB), which changes how much packet garbage a relay carries
 * between collections. Each wrapped process gets a cgroup of its own with the limit (a VPS runs
 * one of them, not the benchmark's other processes), made by a shell that then execs the command,
 * so the process id is the command's and Node reads the limit as it starts.
 *
 * Needs root and a memory controller: cgroup v2 (/sys/fs/cgroup/cgroup.controllers lists memory)
 * or v1 (/sys/fs/cgroup/memory).
 */
export interface MemoryCgroups {
  /** Prefix for a command: `[...wrap, cmd, ...args]` runs cmd in a fresh cgroup with the limit. */
  wrap: string[];
  /** Removes the cgroups of processes that have exited (call once they all have). */
  remove(): void;
}

export class MemoryCgroupError extends Error {
  override readonly name = 'MemoryCgroupError';
}

interface Layout {
  base: string;
  limitFile: string;
}

function layout(): Layout {
  const v2 = '/sys/fs/cgroup';
  if (existsSync(join(v2, 'cgroup.controllers'))) {
    if (!readFileSync(join(v2, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('memory')) throw new MemoryCgroupError('cgroup v2 without a memory controller');
    return { base: v2, limitFile: 'memory.max' };
  }
  const v1 = '/sys/fs/cgroup/memory';
  if (existsSync(join(v1, 'memory.limit_in_bytes'))) return { base: v1, limitFile: 'memory.limit_in_bytes' };
  throw new MemoryCgroupError('no memory cgroup controller found (/sys/fs/cgroup)');
}

/** Whether this machine lets this process make memory cgroups (root, a memory controller). */
export function memoryCgroupsAvailable(): boolean {
  try {
    const { base } = layout();
    const probe = join(base, `tunnel-bench-probe-${process.pid}`);
    mkdirSync(probe);
    rmdirSync(probe);
    return true;
  } catch {
    return false;
  }
}

export function memoryCgroups(limitBytes: number): MemoryCgroups {
  if (!Number.isSafeInteger(limitBytes) || limitBytes < 64 << 20) throw new MemoryCgroupError(`memory limit ${limitBytes} is not a whole number of bytes of at least 64 MiB`);
  const { base, limitFile } = layout();
  const dir = join(base, `tunnel-bench-${process.pid}`);
  try {
    mkdirSync(dir);
  } catch (err) {
    throw new MemoryCgroupError(`cannot make ${dir} (root is needed): ${(err as Error).message}`);
  }
  if (limitFile === 'memory.max') {
    // v2: children get a memory controller only if the parent hands it down.
    writeFileSync(join(dir, 'cgroup.subtree_control'), '+memory');
  }
  // One child cgroup per process, named by the shell's pid (the command's, after exec).
  const script = `d=${dir}/p$$ && mkdir "$d" && echo ${limitBytes} > "$d/${limitFile}" && echo $$ > "$d/cgroup.procs" && exec "$@"`;
  return {
    wrap: ['/bin/sh', '-c', script, 'sh'],
    remove() {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (!e.isDirectory()) continue;
        try {
          rmdirSync(join(dir, e.name));
        } catch {
          // still has a process: left for the next remove()
        }
      }
      try {
        rmdirSync(dir);
      } catch {
        // a process is still running in one of them
      }
    },
  };
}
