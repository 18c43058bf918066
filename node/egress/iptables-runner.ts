import { execFile } from 'node:child_process';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one program with arguments (and optional stdin). Never a shell. */
export interface CommandRunner {
  run(cmd: string, args: readonly string[], input?: string): Promise<RunResult>;
}

export class RunnerError extends Error {
  override readonly name = 'RunnerError';
  readonly code = 'EGRESS_RUNNER_FAILED';
}

/**
 * The one place iptables programs are executed: `execFile`, no shell, a timeout, stdin for
 * `iptables-restore`. A non-zero exit is returned (the hook check uses exit 1 for "missing");
 * a program that cannot be started throws RunnerError.
 *
 * `prefix` runs every command through a wrapper, e.g. `['ip', 'netns', 'exec', NS]` so tests
 * manage a throwaway namespace and never the host's own tables.
 */
export function execFileRunner(opts: { prefix?: readonly string[]; timeoutMs?: number } = {}): CommandRunner {
  const prefix = opts.prefix ?? [];
  return {
    run(cmd, args, input) {
      const [file, ...rest] = [...prefix, cmd, ...args];
      return new Promise((resolve, reject) => {
        const child = execFile(file!, rest, { timeout: opts.timeoutMs ?? 15_000, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
          if (!err) return resolve({ code: 0, stdout, stderr });
          const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
          if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
          if (e.killed) return reject(new RunnerError(`${cmd} did not finish in time`, { cause: err }));
          reject(new RunnerError(e.code === 'ENOENT' ? `${cmd} not found` : `${cmd} could not be run: ${e.message}`, { cause: err }));
        });
        child.stdin?.on('error', () => undefined); // reported through the exit code
        child.stdin?.end(input ?? '');
      });
    },
  };
}
