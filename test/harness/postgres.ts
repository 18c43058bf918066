// A throwaway PostgreSQL cluster for tests: initdb into a temp dir, start on a free loopback
// port with trust auth, create the `tunnel` database, and remove everything on stop().
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, statSync } from 'node:fs';
import { appendFile, chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './net.js';

const execFileAsync = promisify(execFile);

/** A running cluster. `url` names the `tunnel` database as superuser `postgres`. */
export interface PostgresInstance {
  url: string;
  port: number;
  /** The temp directory holding the data directory, socket and server log. */
  dir: string;
  /** Stops the server (`pg_ctl stop -m immediate`) and removes its directory. Idempotent. */
  stop(): Promise<void>;
  /**
   * Restarts the server on the same data and port (`pg_ctl restart`, `fast` by default: open
   * sessions are terminated, as on a real restart) and resolves once it accepts connections.
   */
  restart(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Stops the server (`fast`), keeping its data, until start(). */
  pause(): Promise<void>;
  /** Starts a paused server again on the same data and port; resolves once it accepts connections. */
  resume(): Promise<void>;
  /** Runs one SQL statement as the superuser with psql (`-At`) and returns its output. */
  psql(sql: string): Promise<string>;
}

export interface StartPostgresOptions {
  /** Name of the database created for the tests. Default `tunnel`. */
  database?: string;
  /**
   * Run the server inside this network namespace (`ip netns exec`), e.g. a lab host: it then
   * listens on that namespace's 127.0.0.1, for processes in the same host. Needs root.
   */
  netns?: string;
  /** Listen on this port (default: a free one). */
  port?: number;
}

/** Server binaries, newest version first: /usr/lib/postgresql/<version>/bin. */
export function findPostgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const newest = versions[0];
  if (newest === undefined) {
    throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; install them with `apt-get install -y postgresql`');
  }
  return join(root, newest, 'bin');
}

/** Why no server can be started here (no binaries), or undefined when one can. */
export function postgresUnavailableReason(): string | undefined {
  try {
    findPostgresBinDir();
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}


/**
 * The server refuses to run as root, so as root every server binary runs as the `postgres` OS
 * user through `runuser` (argv only, no shell); otherwise it runs directly.
 */
interface Runner {
  run(bin: string, args: string[]): Promise<{ stdout: string; stderr: string }>;
  owner?: { uid: number; gid: number };
}

async function makeRunner(netns?: string): Promise<Runner> {
  const isRoot = process.getuid?.() === 0;
  if (netns !== undefined && !isRoot) throw new Error('a Postgres server inside a network namespace needs root');
  if (!isRoot) return { run: (bin, args) => execFileAsync(bin, args) };
  const [uid, gid] = await Promise.all([
    execFileAsync('id', ['-u', 'postgres']).then((r) => Number(r.stdout.trim())),
    execFileAsync('id', ['-g', 'postgres']).then((r) => Number(r.stdout.trim())),
  ]).catch((err: unknown) => {
    throw new Error('running as root but there is no `postgres` OS user to run the server as', { cause: err });
  });
  const inNs = netns === undefined ? [] : ['ip', 'netns', 'exec', netns];
  return {
    run: (bin, args) =>
      inNs.length
        ? execFileAsync(inNs[0]!, [...inNs.slice(1), 'runuser', '-u', 'postgres', '--', bin, ...args], { cwd: '/' })
        : execFileAsync('runuser', ['-u', 'postgres', '--', bin, ...args], { cwd: '/' }),
    owner: { uid, gid },
  };
}

/** A temp base the `postgres` user can traverse: TMPDIR may be private to root. */
function baseDirFor(runner: Runner): string {
  const base = tmpdir();
  if (!runner.owner) return base;
  let dir = base;
  for (;;) {
    if ((statSync(dir).mode & 0o001) === 0) return '/tmp';
    const parent = join(dir, '..');
    if (parent === dir) return base;
    dir = parent;
  }
}

/** Starts a fresh cluster. Call `stop()` in an `after` hook. */
export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresInstance> {
  const database = opts.database ?? 'tunnel';
  if (!/^[a-z_][a-z0-9_]*$/.test(database)) throw new Error(`database name must match [a-z_][a-z0-9_]*, got ${database}`);
  const bin = findPostgresBinDir();
  accessSync(join(bin, 'pg_ctl'), constants.X_OK);
  const runner = await makeRunner(opts.netns);
  const dir = await mkdtemp(join(baseDirFor(runner), 'tunnel-pg-'));
  if (runner.owner) await chown(dir, runner.owner.uid, runner.owner.gid);
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  let started = false;

  const stop = async (): Promise<void> => {
    if (started) {
      started = false;
      await runner.run(join(bin, 'pg_ctl'), ['-D', dataDir, 'stop', '-m', 'immediate', '-w']).catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await runner.run(join(bin, 'initdb'), [
      '-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '--encoding=UTF8', '--locale=C', '--no-instructions',
    ]);
    // Settings go into postgresql.conf rather than pg_ctl's `-o` string, which pg_ctl hands to a shell.
    const base = [
      `unix_socket_directories = '${dir}'`,
      `listen_addresses = '127.0.0.1'`,
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'max_connections = 200',
    ];
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = opts.port ?? (await freePort());
      // Later lines win, so each attempt only appends its port.
      await appendFile(join(dataDir, 'postgresql.conf'), [...(attempt === 1 ? base : []), `port = ${port}`, ''].join('\n'));
      try {
        await runner.run(join(bin, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-w', '-t', '60', 'start']);
        started = true;
        break;
      } catch (err) {
        // Another process may have taken the port between freePort() and the bind.
        if (attempt >= 3 || opts.port !== undefined) throw err;
      }
    }
    await runner.run(join(bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', database]);
    const restart = async (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
      if (!started) throw new Error('the Postgres server is stopped');
      await runner.run(join(bin, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-m', mode, 'restart']);
    };
    const pause = async (): Promise<void> => {
      await runner.run(join(bin, 'pg_ctl'), ['-D', dataDir, '-w', '-t', '60', '-m', 'fast', 'stop']);
    };
    const resume = async (): Promise<void> => {
      await runner.run(join(bin, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-w', '-t', '60', 'start']);
    };
    const psql = async (sql: string): Promise<string> =>
      (await runner.run(join(bin, 'psql'), ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', database, '-c', sql])).stdout;
    return { url: `postgres://postgres@127.0.0.1:${port}/${database}`, port, dir, stop, restart, pause, resume, psql };
  } catch (err) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    await stop();
    const tail = log.trim().split('\n').slice(-5).join('\n');
    throw new Error(`could not start a test PostgreSQL server${tail ? `; server log ends:\n${tail}` : ''}`, { cause: err });
  }
}
