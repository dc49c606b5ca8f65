/**
 * The master key that encrypts volume keys at rest (src/blockstorage/volume-key-store.ts).
 *
 *   TETHER_VOLUME_KEY   base64 of 32 random bytes (`openssl rand -base64 32`). Every process that
 *                       creates encrypted volumes or attaches them (API, control plane, compute
 *                       agents, CLI) needs the same value.
 *   unset (dev mode)    a key generated once into <TETHER_DATA_DIR>/volume-master.key (mode 0600),
 *                       shared by every process of the stack on this machine.
 *
 * Losing the master key loses every encrypted volume's data: back it up with the database.
 * Errors name the variable or the file, never the key material.
 */
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const VOLUME_MASTER_KEY_FILE = 'volume-master.key';

export interface VolumeMasterKey {
  key: Buffer;
  /** Which master key: the first 8 bytes of SHA-256 of it, in hex (stored next to each volume key). */
  fingerprint: string;
  /** Where it came from, for messages: 'TETHER_VOLUME_KEY' or the file's path. */
  source: string;
}

export function masterKeyFingerprint(key: Buffer): string {
  return createHash('sha256').update(key).digest().subarray(0, 8).toString('hex');
}

function decode(material: string, source: string): VolumeMasterKey {
  const trimmed = material.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) throw new Error(`${source}: the volume master key is not base64 (make one with \`openssl rand -base64 32\`)`);
  const key = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (key.length !== 32) throw new Error(`${source}: the volume master key must be 32 bytes (AES-256), got ${key.length}; make one with \`openssl rand -base64 32\``);
  return { key, fingerprint: masterKeyFingerprint(key), source };
}

/** TETHER_VOLUME_KEY decoded (throws naming the variable when it is malformed); undefined when unset. */
export function volumeMasterKeyFromEnv(env: Record<string, string | undefined> = process.env): VolumeMasterKey | undefined {
  const configured = env.TETHER_VOLUME_KEY;
  return configured !== undefined && configured.trim() !== '' ? decode(configured, 'TETHER_VOLUME_KEY') : undefined;
}

/**
 * The configured master key: TETHER_VOLUME_KEY, else the dev-mode key file under `dataDir`, created
 * on first use. Creation is atomic (written aside, then hard-linked into place), so processes that
 * start together agree on one key.
 */
export async function loadVolumeMasterKey(options: { env?: Record<string, string | undefined>; dataDir?: string }): Promise<VolumeMasterKey> {
  const configured = volumeMasterKeyFromEnv(options.env ?? process.env);
  if (configured) return configured;
  if (!options.dataDir) throw new Error('No volume master key: set TETHER_VOLUME_KEY (base64 of 32 bytes) to create or attach encrypted volumes');
  const file = path.join(options.dataDir, VOLUME_MASTER_KEY_FILE);
  try {
    return decode(await readFile(file, 'utf8'), file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(options.dataDir, { recursive: true });
  const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(aside, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  try {
    await link(aside, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // another process was first: use its key
  } finally {
    await rm(aside, { force: true });
  }
  return decode(await readFile(file, 'utf8'), file);
}
