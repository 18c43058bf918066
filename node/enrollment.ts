import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BAD, obj, opt, str, type Check } from '../protocol/check.js';
import { formatOpenSshPrivateKey, formatPublicKeyLine, parseOpenSshPrivateKey } from '../protocol/ssh-key.js';
import type { ControlClient } from './control-client.js';
import { writeFileAtomic } from '../shared/write-file-atomic.js';
import type { Logger } from '../shared/logger.js';

export interface NodeState {
  node_id: string;
  name: string;
  node_token: string;
  issuer: string;
  control_url: string;
  /** The control plane's certificate pin given at enrollment (--ca-pin), used on every later start. */
  ca_pin?: string | undefined;
}
/** The state file as read (protocol/check.ts: no zod in the relay, issue 11). */
const nodeState: Check<NodeState> = obj({
  node_id: str({ min: 1 }),
  name: str(),
  node_token: str({ min: 1 }),
  issuer: str({ min: 1 }),
  control_url: str(),
  ca_pin: opt(str()),
});

export class EnrollmentError extends Error {
  override readonly name = 'EnrollmentError';
  constructor(
    readonly code: 'NOT_ENROLLED' | 'STATE_CORRUPT' | 'WRONG_CONTROL_PLANE',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const HOST_KEY_FILE = 'ssh_host_ed25519_key';
export const STATE_FILE = 'node.json';

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Loads the host key from the data directory, creating it (mode 0600) on first start. */
export async function loadOrCreateHostKey(dataDir: string, logger: Logger): Promise<{ pem: string; publicKeyLine: string }> {
  const path = join(dataDir, HOST_KEY_FILE);
  let pem = await readIfExists(path);
  if (pem === undefined) {
    const { privateKey } = generateKeyPairSync('ed25519');
    pem = formatOpenSshPrivateKey(privateKey, 'tunnel-node');
    await writeFileAtomic(path, pem, 0o600);
    logger.info('host key created', { path });
  }
  const { publicKey } = parseOpenSshPrivateKey(pem);
  return { pem, publicKeyLine: formatPublicKeyLine(publicKey) };
}

/** The stored enrollment state, or undefined before the first enrollment. */
export async function readNodeState(dataDir: string): Promise<NodeState | undefined> {
  const path = join(dataDir, STATE_FILE);
  const text = await readIfExists(path);
  if (text === undefined) return undefined;
  try {
    const state = nodeState(JSON.parse(text));
    if (state === BAD) throw new Error('not a node state');
    return state;
  } catch (err) {
    throw new EnrollmentError('STATE_CORRUPT', `${path} is unreadable; remove it and enroll again with --enroll-token`, { cause: err });
  }
}

/**
 * Returns the node's enrollment state, enrolling with the one-time token if there is none.
 * The state (node id, credential, issuer, and the control plane's pin when one was given) is
 * kept in the data directory, mode 0600. A pin given again later replaces the stored one.
 */
export async function ensureEnrolled(opts: {
  dataDir: string;
  controlUrl: string;
  enrollToken: string | undefined;
  advertise: string;
  hostKeyLine: string;
  /** --ca-pin of this start (stored with the state). */
  caPin?: string | undefined;
  control: Pick<ControlClient, 'enroll'>;
  logger: Logger;
}): Promise<NodeState> {
  const path = join(opts.dataDir, STATE_FILE);
  const existing = await readNodeState(opts.dataDir);
  if (existing !== undefined) {
    if (existing.control_url !== opts.controlUrl) {
      // Adding or removing replicas keeps the enrollment: some URL must be one it was made with.
      const before = new Set(existing.control_url.split(','));
      if (!opts.controlUrl.split(',').some((u) => before.has(u))) {
        throw new EnrollmentError('WRONG_CONTROL_PLANE', `this data directory is enrolled with ${existing.control_url}; use that --control-url or a fresh --data-dir`);
      }
      const moved = { ...existing, control_url: opts.controlUrl, ...(opts.caPin ? { ca_pin: opts.caPin } : {}) };
      await writeFileAtomic(path, JSON.stringify(moved, null, 2), 0o600);
      opts.logger.info('stored the new control plane URLs', { control_url: opts.controlUrl });
      return moved;
    }
    if (opts.caPin && opts.caPin !== existing.ca_pin) {
      const state = { ...existing, ca_pin: opts.caPin };
      await writeFileAtomic(path, JSON.stringify(state, null, 2), 0o600);
      opts.logger.info('stored the new control plane pin', { pin: opts.caPin });
      return state;
    }
    return existing;
  }
  if (!opts.enrollToken) {
    throw new EnrollmentError('NOT_ENROLLED', 'this node is not enrolled: pass --enroll-token (or TUNNEL_ENROLL_TOKEN) with a token from `tunnel admin enroll-token NAME`');
  }
  const res = await opts.control.enroll({ token: opts.enrollToken, host_key: opts.hostKeyLine, address: opts.advertise });
  const state: NodeState = {
    node_id: res.node_id,
    name: res.name,
    node_token: res.node_token,
    issuer: res.issuer,
    control_url: opts.controlUrl,
    ...(opts.caPin ? { ca_pin: opts.caPin } : {}),
  };
  await writeFileAtomic(path, JSON.stringify(state, null, 2), 0o600);
  opts.logger.info('node enrolled', { nodeId: state.node_id, name: state.name });
  return state;
}
