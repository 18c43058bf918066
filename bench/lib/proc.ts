/**
 * What /proc says about a process (Linux): CPU time, resident memory, and the processes a
 * daemon forked (sshd runs each connection in children of the listener).
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ; Linux reports /proc/<pid>/stat times in these units

function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** utime and stime of `pid` in seconds, apart (NaN if it is gone). */
export function cpuTimes(pid: number): { user: number; sys: number } {
  const f = statFields(pid);
  // After the name: state(0) ppid(1) ... utime(11) stime(12)
  return f ? { user: Number(f[11]) / TICKS_PER_SECOND, sys: Number(f[12]) / TICKS_PER_SECOND } : { user: NaN, sys: NaN };
}

/** utime + stime of `pid` in seconds (0 if it is gone). */
export function cpuSeconds(pid: number): number {
  const { user, sys } = cpuTimes(pid);
  return Number.isNaN(user) ? 0 : user + sys;
}

function parentOf(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? Number(f[1]) : undefined;
}

/** `root` and every live process below it. */
export function processTree(root: number): number[] {
  const parents = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = parentOf(Number(name));
    if (ppid !== undefined) parents.set(Number(name), ppid);
  }
  const tree = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!tree.has(pid) && tree.has(ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  return [...tree].filter((p) => parents.has(p));
}

function statusKb(pid: number, field: string, file = 'status'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** VmRSS of one process, bytes. */
export function rssBytes(pid: number): number {
  return statusKb(pid, 'VmRSS') * 1024;
}

/**
 * Proportional set size of a process, bytes: shared pages divided among their sharers. Summing
 * RSS over forked processes (sshd) would count the shared binary and libraries once per process.
 */
export function pssBytes(pid: number): number {
  return statusKb(pid, 'Pss', 'smaps_rollup') * 1024;
}

/** What a process used so far: CPU seconds (user + kernel), kernel CPU seconds, read and write syscalls (/proc/PID/io). */
export interface ProcUse {
  cpu: number;
  sys: number;
  reads: number;
  writes: number;
}

/** `pid`'s ProcUse (zeros if it is gone). syscr/syscw count read(2)/write(2)-family calls, readv/writev and the socket send/recv calls included. */
export function procUse(pid: number): ProcUse {
  const { user, sys } = cpuTimes(pid);
  let reads = 0;
  let writes = 0;
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    reads = Number(/^syscr: (\d+)/m.exec(io)?.[1] ?? 0);
    writes = Number(/^syscw: (\d+)/m.exec(io)?.[1] ?? 0);
  } catch {
    // gone, or not ours to read
  }
  return Number.isNaN(user) ? { cpu: 0, sys: 0, reads, writes } : { cpu: user + sys, sys, reads, writes };
}

/** ProcUse summed over a whole process tree. */
export function treeProcUse(root: number): ProcUse {
  const sum: ProcUse = { cpu: 0, sys: 0, reads: 0, writes: 0 };
  for (const p of processTree(root)) {
    const u = procUse(p);
    sum.cpu += u.cpu;
    sum.sys += u.sys;
    sum.reads += u.reads;
    sum.writes += u.writes;
  }
  return sum;
}

/** CPU seconds of a whole process tree. */
export function treeCpuSeconds(root: number): number {
  return processTree(root).reduce((s, p) => s + cpuSeconds(p), 0);
}

/** Summed PSS of a whole process tree, bytes. */
export function treePssBytes(root: number): number {
  return processTree(root).reduce((s, p) => s + pssBytes(p), 0);
}

/**
 * Samples `read()` every `everyMs` until stopped; returns the samples. For "memory during a
 * saturated stream" without trusting a single instant.
 */
export function sampler(read: () => number, everyMs = 50): { stop(): number[] } {
  const samples: number[] = [read()];
  const t = setInterval(() => samples.push(read()), everyMs);
  return {
    stop() {
      clearInterval(t);
      samples.push(read());
      return samples;
    },
  };
}

/** Busy and total jiffies of all CPUs together (/proc/stat), for "how busy was the machine". */
export function machineTicks(): { busy: number; total: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}
