import { createInterface } from 'node:readline';
import { STOPPED } from './api-client.js';
import type { Context } from './context.js';
import { CliError, EXIT } from './errors.js';

/** What ended the wait for a line other than the line itself. */
const STOP = Symbol('stop');
const CLOSED = Symbol('closed');

/**
 * Reads one line: from a terminal with a prompt (and without echo when `secret`), or the first
 * line of piped standard input. A stop ends the wait like any other stop (exit 5, code STOPPED):
 * the stop signal (SIGINT, SIGTERM, SIGHUP), and Ctrl-C typed at the terminal, which readline
 * reads as a key (it puts the terminal in raw mode, so no SIGINT is sent). Standard input that
 * ends first (no stdin in CI, Ctrl-D) is a usage error.
 */
export async function readLine(ctx: Context, prompt: string, secret: boolean): Promise<string> {
  const input = ctx.stdin;
  const what = prompt.replace(/:\s*$/, '');
  const stop = ctx.stopSignal;
  if (stop.aborted) throw stoppedAt(what, stop.reason);
  const tty = input.isTTY === true;
  if (tty) ctx.stderr.write(prompt);
  // Without an output stream readline does not echo what is typed.
  const rl = createInterface(tty ? { input, terminal: true, output: secret ? undefined : ctx.stderr } : { input });
  let onAbort = () => {};
  const line = await new Promise<string | typeof STOP | typeof CLOSED>((resolve) => {
    rl.once('line', resolve);
    rl.once('close', () => resolve(CLOSED));
    rl.once('SIGINT', () => resolve(STOP));
    onAbort = () => resolve(STOP);
    stop.addEventListener('abort', onAbort, { once: true });
  });
  stop.removeEventListener('abort', onAbort);
  rl.close();
  // The line typed was not echoed (or nothing ended it): the next output starts on a line of its own.
  if (tty && (secret || typeof line !== 'string')) ctx.stderr.write('\n');
  if (line === STOP) throw stoppedAt(what, stop.reason);
  if (line === CLOSED) throw new CliError(EXIT.USAGE, `${what} expected on standard input`);
  return line;
}

function stoppedAt(what: string, cause: unknown): CliError {
  return new CliError(EXIT.UNREACHABLE, `stopped at the prompt "${what}"`, { code: STOPPED, cause });
}
