import { createInterface, type Interface } from 'node:readline';
import type { Context } from './context.js';
import { CliError, EXIT, STOPPED } from './errors.js';

/** What ended the wait for a line other than the line itself. */
const STOP = Symbol('stop');
const CLOSED = Symbol('closed');
const FAILED = Symbol('failed');
type Answer = string | typeof STOP | typeof CLOSED | typeof FAILED;

/**
 * The lines of a readline interface as they come, for one prompt at a time: `wake` is the waiting
 * prompt's (nextLine), unhooked the moment it settles, so a line that comes after (in the same
 * chunk) stays for the next prompt. `ended`: the input ended; `interrupted`: Ctrl-C was typed;
 * `failed`: reading it failed (readline re-emits the input's 'error', which unheard ended the CLI
 * with a stack trace: EIO from a terminal that went away, say).
 */
interface LineQueue {
  lines: string[];
  ended: boolean;
  interrupted: boolean;
  failed: NodeJS.ErrnoException | undefined;
  wake: (() => void) | undefined;
}

/**
 * Reads one line: from a terminal with a prompt (and without echo when `secret`), or the first
 * line of piped standard input. A stop ends the wait like any other stop (exit 130, code STOPPED):
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
  let line: Answer;
  let failure: NodeJS.ErrnoException | undefined;
  if (tty) {
    // Without an output stream readline does not echo what is typed. One interface per prompt, and
    // closed after it: echo is per prompt, and between prompts the terminal is out of raw mode, so
    // Ctrl-C is a SIGINT again.
    const rl = createInterface({ input, terminal: true, output: secret ? undefined : ctx.stderr });
    const q: LineQueue = { lines: [], ended: false, interrupted: false, failed: undefined, wake: undefined };
    hearErrors(rl, q);
    rl.on('line', (l) => {
      q.lines.push(l);
      q.wake?.();
    });
    rl.once('close', () => {
      q.ended = true;
      q.wake?.();
    });
    rl.once('SIGINT', () => {
      q.interrupted = true;
      q.wake?.();
    });
    line = await nextLine(q, stop, () => {});
    failure = q.failed;
    rl.close();
  } else {
    const p = pipedLines(input);
    line = await nextLine(p, stop, () => whileOpen(p, (rl) => rl.resume()));
    failure = p.failed;
    whileOpen(p, (rl) => rl.pause());
  }
  // The line typed was not echoed (or nothing ended it): the next output starts on a line of its own.
  if (tty && (secret || typeof line !== 'string')) ctx.stderr.write('\n');
  if (line === STOP) throw stoppedAt(what, stop.reason);
  if (line === FAILED) throw new CliError(EXIT.ERROR, `${what}: cannot read standard input (${failure?.code ?? 'read error'})`);
  if (line === CLOSED) throw new CliError(EXIT.USAGE, !tty && pipedLines(input).tooLong ? `${what}: a line on standard input is longer than ${MAX_LINE / 1024} KiB` : `${what} expected on standard input`);
  return line;
}

/**
 * The next of `q`'s lines (`start`, called once the wait is hooked, lets them come), or why none:
 * the input ended (CLOSED), or Ctrl-C or the stop signal (STOP).
 */
async function nextLine(q: LineQueue, stop: AbortSignal, start: () => void): Promise<Answer> {
  let onAbort = () => {};
  const line = await new Promise<Answer>((resolve) => {
    const settle = (v: Answer) => {
      q.wake = undefined;
      resolve(v);
    };
    q.wake = () => {
      if (q.interrupted) settle(STOP);
      else if (q.lines.length) settle(q.lines.shift()!);
      else if (q.failed) settle(FAILED);
      else if (q.ended) settle(CLOSED);
    };
    onAbort = () => settle(STOP);
    stop.addEventListener('abort', onAbort, { once: true });
    q.wake();
    start();
  });
  stop.removeEventListener('abort', onAbort);
  return line;
}

/** The longest line piped standard input may give a prompt (a name, a password): more is refused rather than buffered whole. */
export const MAX_LINE = 64 * 1024;

/**
 * Piped standard input read line by line across prompts (`printf 'bob\npw\n' | tunnel login
 * --password`): one readline interface per stream, since each one reads ahead of the line it
 * gives (a second interface found the input used up). It is paused while no prompt waits, so
 * what it holds is at most the lines of the chunk read last.
 */
interface PipedLines extends LineQueue {
  rl: Interface;
  /** The input ended here because a line ran past MAX_LINE. */
  tooLong: boolean;
}
const piped = new WeakMap<object, PipedLines>();

function pipedLines(input: Context['stdin']): PipedLines {
  let p = piped.get(input);
  if (!p) {
    const q: PipedLines = { rl: createInterface({ input }), lines: [], ended: false, interrupted: false, failed: undefined, tooLong: false, wake: undefined };
    hearErrors(q.rl, q);
    const refuse = () => {
      q.tooLong = true;
      input.off('data', measure);
      q.rl.close();
    };
    // readline keeps a line until its end comes: count the bytes since the last newline beside it,
    // and stop reading past MAX_LINE (a line that ended within one read is checked as a line).
    let partial = 0;
    const measure = (chunk: Buffer | string) => {
      const nl = typeof chunk === 'string' ? chunk.lastIndexOf('\n') : chunk.lastIndexOf(0x0a);
      partial = nl < 0 ? partial + chunk.length : chunk.length - nl - 1;
      if (partial > MAX_LINE && !q.tooLong) refuse();
    };
    input.on('data', measure);
    q.rl.on('line', (l) => {
      if (q.tooLong) return;
      if (l.length > MAX_LINE) return refuse();
      q.lines.push(l);
      whileOpen(q, (rl) => rl.pause());
      q.wake?.();
    });
    q.rl.once('close', () => {
      q.ended = true;
      q.wake?.();
    });
    piped.set(input, (p = q));
  }
  return p;
}

/**
 * `f(rl)` unless the interface has closed (the input ended, or a line ran past MAX_LINE): on
 * Node 24 (24.22 here) readline's pause() and resume() throw ERR_USE_AFTER_CLOSE once it has, where
 * Node 20 and 22 do nothing (`tunnel login --password` with piped input failed with an internal
 * error). `ended` is set by its 'close', which close() emits at once.
 */
function whileOpen(q: PipedLines, f: (rl: Interface) => void): void {
  if (!q.ended) f(q.rl);
}

/** The input's errors, as readline re-emits them, end the wait for a line (FAILED). */
function hearErrors(rl: Interface, q: LineQueue): void {
  rl.on('error', (err: NodeJS.ErrnoException) => {
    q.failed ??= err;
    q.wake?.();
  });
}

function stoppedAt(what: string, cause: unknown): CliError {
  return new CliError(EXIT.STOPPED, `stopped at the prompt "${what}"`, { code: STOPPED, cause });
}
