import type { Dispatcher } from 'undici';

/** Everything a command touches outside itself, so tests can run commands in-process. */
export interface Context {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: Record<string, string | undefined>;
  homeDir: string;
  /** HTTP dispatcher for the API (tests pass an undici MockAgent). */
  dispatcher?: Dispatcher;
  /** Resolves when the user asks to stop (SIGINT/SIGTERM). */
  stopSignal: AbortSignal;
}

export function out(ctx: Context, line: string): void {
  ctx.stdout.write(line.endsWith('\n') ? line : `${line}\n`);
}

export function info(ctx: Context, line: string): void {
  ctx.stderr.write(line.endsWith('\n') ? line : `${line}\n`);
}
