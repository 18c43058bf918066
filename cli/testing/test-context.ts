import { PassThrough } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Context } from '../context.js';
import { tempDir } from '../../shared/testing/temp-dir.js';

export interface TestContext extends Context {
  out(): string;
  err(): string;
  abort(): void;
}

/**
 * A CLI context with captured output, a temp home (removed when the test that made it ends) and
 * (optionally) a mock HTTP dispatcher. `stdin`: its whole text (then it ends), or a stream the
 * test writes to (and ends, or not).
 */
export function testContext(opts: { dispatcher?: Dispatcher; env?: Record<string, string>; stdin?: string | Context['stdin'] } = {}): TestContext {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let o = '';
  let e = '';
  stdout.on('data', (d: Buffer) => (o += d.toString()));
  stderr.on('data', (d: Buffer) => (e += d.toString()));
  const stdin = typeof opts.stdin === 'object' ? opts.stdin : new PassThrough().end(opts.stdin ?? '');
  const controller = new AbortController();
  const homeDir = tempDir('tunnel-cli-');
  return {
    stdout,
    stderr,
    stdin,
    env: { HOME: homeDir, ...opts.env },
    homeDir,
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    stopSignal: controller.signal,
    out: () => o,
    err: () => e,
    abort: () => controller.abort(),
  };
}
