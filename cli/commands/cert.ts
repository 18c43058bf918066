import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { join, resolve } from 'node:path';
import { LeaseIssuedSchema, TargetNameSchema, type LeaseCreate, type LeaseIssued } from '../../protocol/api-types.js';
import { EXPOSURE_NAME_RE } from '../../protocol/lease-claims.js';
import { formatOpenSshPrivateKey, formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { Session } from '../session.js';
import { parseCommand } from '../args.js';
import { info, out, type Context } from '../context.js';
import { shellWord } from '../shell-word.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { writeFileAtomicSync } from '../../shared/write-file-atomic.js';
import { makeDirs } from '../../shared/make-dirs.js';
import { splitAddress } from '../ssh/relay-connection.js';
import { revokeUnanswered } from '../ssh/unanswered-lease.js';
import type { Command } from './command.js';

export const cert: Command = {
  name: 'cert',
  summary: 'write a key, certificate and known_hosts for plain OpenSSH',
  usage: `Usage: tunnel cert NAME --out DIR [--expose] [--port PORT] [--ttl SECS] [--json]
       tunnel cert --egress TARGET [--egress TARGET2 ...] --out DIR [--ttl SECS] [--json]

Gets a lease for exposure NAME and writes, into DIR: the private key (NAME, mode 0600), its
certificate (NAME-cert.pub, carrying the lease), and NAME-known_hosts pinning the relay's host
key (a file of its own: DIR may be ~/.ssh, whose known_hosts it leaves alone). Prints ready ssh command lines. The default is an open lease (for Y); --expose gets
an expose lease (for X) for PORT (default 22). Plain OpenSSH cannot renew a lease in band:
ask for a --ttl as long as you need (capped by the server). For an open lease the printed lines
use the port X has bound (as the lease reports it), or --port when given.
The exposure must exist first: tunnel exposures create NAME --allow USER. Nothing is written
when it stops (Ctrl-C: exit 130) before the lease came; a lease the control plane issued
meanwhile is revoked.

--egress gets an egress lease for admin-defined egress targets (host:port on the relay's own
network; every target of one lease must be on the same relay) and prints an
ssh -N -L 127.0.0.1:R:host:port line that forwards local port R to each of them (its files
are named egress-TARGET, after the first TARGET).

Examples:
  tunnel cert hostx-ssh --out ~/.tunnel/hostx
  tunnel cert hostx-ssh --out /etc/tunnel --expose --port 22 --ttl 86400
  tunnel cert --egress lan-db --out ~/.tunnel/lan-db`,
  async run(ctx, argv) {
    const a = parseCommand('cert', argv, {
      out: { type: 'string' },
      expose: { type: 'boolean' },
      port: { type: 'string' },
      ttl: { type: 'string' },
      egress: { type: 'string', multiple: true },
    });
    if (a.values.egress) return certEgress(ctx, a);
    const name = a.positionals[0];
    if (!name || a.positionals.length !== 1) throw new UsageError('cert', 'give exactly one exposure NAME');
    if (!EXPOSURE_NAME_RE.test(name)) throw new UsageError('cert', `NAME must match [a-z0-9-]{1,63}, got "${name}"`);
    if (!a.values.out) throw new UsageError('cert', '--out DIR is required');
    checkOutDir(a.values.out);
    const port = a.values.port === undefined ? 22 : Number(a.values.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError('cert', '--port must be from 1 to 65535');
    const ttl = a.values.ttl === undefined ? undefined : Number(a.values.ttl);
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 30)) throw new UsageError('cert', '--ttl must be whole seconds, at least 30');
    const dir = resolve(a.values.out);

    const session = Session.load(ctx, a.server);
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const issued = await issueLease(ctx, session, publicKey, {
      kind: a.values.expose ? 'expose' : 'open',
      exposure: name,
      ...(a.values.expose ? { port } : {}),
      public_key: formatPublicKeyLine(rawPublicKey(publicKey), `tunnel-${name}`),
      ...(ttl ? { ttl_seconds: ttl } : {}),
    });

    const { keyPath, certPath, khPath, common, dest } = await writeCertFiles(session, dir, name, privateKey, publicKey, issued);
    // Y: the port X has bound (the lease says), unless --port names another.
    const openPort = a.values.port === undefined ? (issued.lease.port ?? port) : port;
    const commands = a.values.expose
      ? { expose: `ssh -N ${common} -R ${name}:${port}:localhost:${port} ${dest}` }
      : {
          forward: `ssh -N ${common} -L 127.0.0.1:${localPortFor(openPort)}:${name}:${openPort} ${dest}`,
          proxy_command: `ssh -o ProxyCommand=${shellWord(`ssh ${common} -W ${name}:${openPort} ${dest}`)} USER@${name}`,
        };
    const result = { lease: issued.lease, private_key: keyPath, certificate: certPath, known_hosts: khPath, commands };
    if (a.json) out(ctx, JSON.stringify(result, null, 2));
    else {
      info(ctx, `Wrote ${keyPath}, ${certPath} and ${khPath}; the lease ${issued.lease.id} expires ${issued.lease.expires_at}.`);
      for (const c of Object.values(commands)) out(ctx, c);
    }
    return 0;
  },
};

/** The local port of an -L line: 2222 for ssh, the same port when unprivileged, else 10000 + port. */
function localPortFor(port: number): number {
  return port === 22 ? 2222 : port >= 1024 ? port : 10000 + port;
}

/** Local port R for a target port: the same port when unprivileged, else 10000 + port; unique per line. */
function localPorts(targets: { port: number }[]): number[] {
  const used = new Set<number>();
  return targets.map((t) => {
    let p = t.port >= 1024 ? t.port : 10000 + t.port;
    while (used.has(p)) p = p >= 65535 ? 1024 : p + 1;
    used.add(p);
    return p;
  });
}

type ParsedCert = ReturnType<typeof parseCommand<{
  out: { type: 'string' };
  expose: { type: 'boolean' };
  port: { type: 'string' };
  ttl: { type: 'string' };
  egress: { type: 'string'; multiple: true };
}>>;

/** `tunnel cert --egress TARGET ...`: an egress lease and the `ssh -L` line for plain OpenSSH. */
async function certEgress(ctx: Parameters<Command['run']>[0], a: ParsedCert): Promise<number> {
  const names = [...new Set(a.values.egress ?? [])];
  if (a.positionals.length > 0) throw new UsageError('cert', 'give either an exposure NAME or --egress TARGET, not both');
  if (a.values.expose || a.values.port !== undefined) throw new UsageError('cert', '--expose and --port are for exposures, not --egress');
  for (const n of names) if (!TargetNameSchema.safeParse(n).success) throw new UsageError('cert', `--egress TARGET must match [a-z0-9][a-z0-9-]{0,62}, got "${n}"`);
  if (!a.values.out) throw new UsageError('cert', '--out DIR is required');
  checkOutDir(a.values.out);
  const ttl = a.values.ttl === undefined ? undefined : Number(a.values.ttl);
  if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 30)) throw new UsageError('cert', '--ttl must be whole seconds, at least 30');
  const dir = resolve(a.values.out);
  const session = Session.load(ctx, a.server);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const keyName = `egress-${names[0]}`;
  const issued = await issueLease(ctx, session, publicKey, {
    kind: 'egress',
    targets: names,
    public_key: formatPublicKeyLine(rawPublicKey(publicKey), `tunnel-${keyName}`),
    ...(ttl ? { ttl_seconds: ttl } : {}),
  });
  const files = await writeCertFiles(session, dir, keyName, privateKey, publicKey, issued);
  const targets = issued.lease.targets ?? [];
  const ports = localPorts(targets);
  const forwards = targets.map((t, i) => `-L 127.0.0.1:${ports[i]}:${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`).join(' ');
  const commands = { forward: `ssh -N ${files.common} ${forwards} ${files.dest}` };
  const result = { lease: issued.lease, private_key: files.keyPath, certificate: files.certPath, known_hosts: files.khPath, local_ports: ports, commands };
  if (a.json) out(ctx, JSON.stringify(result, null, 2));
  else {
    info(ctx, `Wrote ${files.keyPath}, ${files.certPath} and ${files.khPath}; the egress lease ${issued.lease.id} expires ${issued.lease.expires_at}.`);
    targets.forEach((t, i) => info(ctx, `127.0.0.1:${ports[i]} will reach ${t.host}:${t.port}`));
    out(ctx, commands.forward);
  }
  return 0;
}

/**
 * POST /v1/leases for `publicKey`, cancelled by a stop (Ctrl-C). When the request was stopped or
 * cut off after it went out, the control plane may have issued the lease all the same: it is
 * looked for by its key and revoked (nobody will hold the key), and the failure is thrown.
 */
async function issueLease(ctx: Context, session: Session, publicKey: KeyObject, body: LeaseCreate): Promise<LeaseIssued> {
  try {
    return await session.call('POST', '/v1/leases', LeaseIssuedSchema, body, ctx.stopSignal);
  } catch (err) {
    const revoked = await revokeUnanswered(session, publicKey, err);
    if (revoked.length && err instanceof CliError) {
      throw new CliError(err.exitCode, `${err.message}; the lease it had issued (${revoked.join(', ')}) was revoked`, { code: err.code, cause: err });
    }
    throw err;
  }
}

/**
 * Writes key (0600), public key, certificate and a known_hosts pinning the relay; returns the ssh
 * options. DIR is made (mode 0700) only now, so a refused lease leaves nothing behind. Each file
 * replaces what was there (shared/write-file-atomic.ts), so an older key file with a looser
 * mode or a file planted in a shared directory never receives the key. When DIR or a file cannot
 * be written, the lease just issued is revoked (nobody holds its key) and the failure is one line.
 */
async function writeCertFiles(session: Session, dir: string, name: string, privateKey: KeyObject, publicKey: KeyObject, issued: LeaseIssued) {
  const keyPath = join(dir, name);
  const certPath = `${keyPath}-cert.pub`;
  // Its own name, as the key's: DIR may hold other leases' files, or be ~/.ssh.
  const khPath = join(dir, `${name}-known_hosts`);
  const relay = splitAddress(issued.relay.address);
  const hostPattern = relay.port === 22 ? relay.host : `[${relay.host}]:${relay.port}`;
  // Written into files OpenSSH reads line by line: a line break or tab in them (a hostile control
  // plane) would add lines of its own to known_hosts (a host key for '*', a @cert-authority).
  const bad = !OPENSSH_KEY_LINE.test(issued.relay.host_key) ? "the relay's host key" : !OPENSSH_KEY_LINE.test(issued.certificate) ? 'the certificate' : undefined;
  if (bad) {
    const revoked = await revokeIssued(session, issued.lease.id);
    throw new CliError(EXIT.ERROR, `the control plane sent ${bad} not as one OpenSSH key line (type, base64, comment); nothing was written; the lease ${issued.lease.id} was ${revoked}`);
  }
  let writing = dir;
  try {
    makeDirs(dir, 0o700);
    writing = keyPath;
    writeFileAtomicSync(keyPath, formatOpenSshPrivateKey(privateKey, `tunnel-${name}`), 0o600);
    writing = `${keyPath}.pub`;
    writeFileAtomicSync(`${keyPath}.pub`, formatPublicKeyLine(rawPublicKey(publicKey), `tunnel-${name}`) + '\n', 0o644);
    writing = certPath;
    writeFileAtomicSync(certPath, issued.certificate + '\n', 0o644);
    writing = khPath;
    writeFileAtomicSync(khPath, `${hostPattern} ${issued.relay.host_key.split(' ').slice(0, 2).join(' ')}\n`, 0o644);
  } catch (err) {
    const revoked = await revokeIssued(session, issued.lease.id);
    throw new CliError(EXIT.ERROR, `cannot write ${JSON.stringify(writing)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); the lease ${issued.lease.id} was ${revoked}`);
  }
  // Each path one shell word (DIR may hold spaces or quotes: the lines are pasted into a shell),
  // and in an -o option one word for ssh too (sshOptionWord).
  const common = `-i ${shellWord(keyPath)} -o ${shellWord(`CertificateFile=${sshOptionWord(certPath)}`)} -o IdentitiesOnly=yes -o ${shellWord(`UserKnownHostsFile=${sshOptionWord(khPath)}`)} -o StrictHostKeyChecking=yes -p ${relay.port}`;
  return { keyPath, certPath, khPath, common, dest: `${issued.lease.user}@${relay.host}` };
}

/**
 * `path` as one argument of an ssh `-o Keyword=VALUE` option: ssh splits the value at whitespace
 * and reads quotes and backslashes in it, as in ssh_config (UserKnownHostsFile takes several files;
 * CertificateFile with a space in its path was "extra arguments at end of line"), so a path with
 * any of them is double-quoted for ssh, its `"` and `\` escaped. `-i` takes its path as it is.
 */
function sshOptionWord(path: string): string {
  return /[\s"'\\]/.test(path) ? `"${path.replace(/["\\]/g, '\\$&')}"` : path;
}

/**
 * DIR's paths go into ssh options that expand `%` tokens and `${VAR}` environment variables
 * (IdentityFile, CertificateFile, UserKnownHostsFile, and the ProxyCommand around them, twice):
 * either in it would name another file.
 */
function checkOutDir(dir: string): void {
  if (dir.includes('%') || dir.includes('${')) {
    throw new UsageError('cert', `--out DIR may not contain "%" or "\${" (ssh reads them as a token or a variable in the file names it is given), got ${JSON.stringify(dir)}`);
  }
}

/** One OpenSSH public key or certificate line: its type, its base64 and maybe a comment, no control characters. */
// eslint-disable-next-line no-control-regex -- control characters are what a comment may not hold
const OPENSSH_KEY_LINE = /^[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}(?: [^\u0000-\u001f\u007f]*)?$/;

/** Revokes the lease just issued (nobody will hold its key); says whether it was. */
function revokeIssued(session: Session, leaseId: string): Promise<string> {
  return session.call('DELETE', `/v1/leases/${leaseId}`, null).then(
    () => 'revoked',
    () => 'not revoked (it expires by itself)',
  );
}
