/**
 * Native profiles of a bench's processes during one push (Linux `perf`, as root): `perf record`
 * (CPU-clock samples with frame-pointer call chains) attached to all the given processes, and a
 * `perf stat` per process counting its syscalls by kind. V8 hides native cost (OpenSSL, memcpy,
 * malloc, the kernel) in "(program)" and in the JS function that called into it; this shows it.
 * Node processes need --perf-basic-prof for their JS frames to have names (bench:e2e --node-arg).
 *
 * Files in `dir`: LABEL.data (perf report -i LABEL.data --pid PID) and LABEL.PID.stat (CSV).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** The syscalls counted per process: the data path's reads and writes and the event loop's waits. */
export const COUNTED_SYSCALLS = [
  'read',
  'readv',
  'recvfrom',
  'recvmsg',
  'write',
  'writev',
  'sendto',
  'sendmsg',
  'epoll_wait',
  'epoll_pwait',
  'epoll_ctl',
  'poll',
  'ppoll',
  'pselect6',
  'select',
  'futex',
  'mmap',
  'munmap',
  'madvise',
  'mprotect',
  'brk',
  'getrusage',
  'clock_gettime',
];

export interface PerfAttachment {
  /** Stops every perf (SIGINT: they write their files) and waits for them to exit. */
  stop(): Promise<void>;
}

/** How long perf takes to attach to running processes before the push may start. */
const ATTACH_MS = 1_000;

/**
 * Starts perf on `pids` (each labelled, e.g. "X:1234") and resolves once it has had time to
 * attach; the caller pushes, then stops it. `freq`: samples per CPU second.
 */
export async function attachPerf(dir: string, label: string, pids: { what: string; pid: number }[], freq = 999): Promise<PerfAttachment> {
  mkdirSync(dir, { recursive: true });
  const procs: ChildProcess[] = [];
  const all = pids.map((p) => p.pid).join(',');
  procs.push(spawn('perf', ['record', '-q', '-F', String(freq), '-g', '-e', 'cpu-clock', '-o', join(dir, `${label}.data`), '-p', all], { stdio: 'ignore' }));
  for (const { what, pid } of pids) {
    const events = COUNTED_SYSCALLS.map((s) => `syscalls:sys_enter_${s}`).join(',');
    procs.push(spawn('perf', ['stat', '-x', ',', '-e', events, '-o', join(dir, `${label}.${what}.${pid}.stat`), '-p', String(pid)], { stdio: 'ignore' }));
  }
  await new Promise((r) => setTimeout(r, ATTACH_MS));
  return {
    async stop() {
      await Promise.all(
        procs.map(async (p) => {
          if (p.exitCode !== null || p.signalCode !== null) return;
          const exited = once(p, 'exit');
          p.kill('SIGINT');
          await exited;
        }),
      );
    },
  };
}
