/**
 * The volume key store and its master key, on a real PostgreSQL (no libvirt, no Temporal): keys are
 * stored encrypted, open only under the master key they were stored with, and fail clearly otherwise.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/test-database.ts';
import { createDatabase, type Database } from '../src/db/database.ts';
import { VolumeKeyStore, passphraseOf } from '../src/blockstorage/volume-key-store.ts';
import { VolumeEncryptionError } from '../src/blockstorage/block-storage.ts';
import { loadVolumeMasterKey, masterKeyFingerprint, VOLUME_MASTER_KEY_FILE, type VolumeMasterKey } from '../src/security/volume-master-key.ts';
import { volumeKeyStore } from '../src/blockstorage/index.ts';

let db: Database;

beforeAll(async () => {
  db = createDatabase(await createTestDatabase('tether_keys'));
});

afterAll(async () => {
  await db?.end();
});

function master(key = randomBytes(32)): VolumeMasterKey {
  return { key, fingerprint: masterKeyFingerprint(key), source: 'test' };
}

/** A volume row for the key to belong to (the FK wants one). */
async function volumeRow(): Promise<string> {
  const id = randomUUID();
  await db.query(`INSERT INTO volumes (id, name, project_id, size_gb, status, availability_zone) VALUES ($1, 'k', 'p', 1, 'available', 'nova')`, [id]);
  return id;
}

describe('VolumeKeyStore', () => {
  it('stores a random 512-bit key encrypted and gives it back under the same master key', async () => {
    const m = master();
    const store = new VolumeKeyStore(async () => m);
    const volumeId = await volumeRow();
    const { keyId, key } = await store.createKey(db, volumeId);
    expect(key).toHaveLength(64);
    expect(await store.getKey(db, keyId, volumeId)).toEqual(key);
    const { rows } = await db.query<{ ciphertext: Buffer; master_key_fingerprint: string; cipher: string; key_size: number }>(
      'SELECT ciphertext, master_key_fingerprint, cipher, key_size FROM volume_encryption_keys WHERE id = $1',
      [keyId],
    );
    expect(rows[0]).toMatchObject({ master_key_fingerprint: m.fingerprint, cipher: 'aes-xts-plain64', key_size: 512 });
    expect(rows[0]!.ciphertext.equals(key)).toBe(false);
    expect(rows[0]!.ciphertext.includes(key.subarray(0, 8))).toBe(false);
    // the passphrase is the key's hex, as Nova derives it from a Barbican key
    expect(passphraseOf(key).toString()).toBe(key.toString('hex'));
  });

  it('refuses a different master key, naming both fingerprints and the variable, never the key', async () => {
    const volumeId = await volumeRow();
    const { keyId, key } = await new VolumeKeyStore(async () => master()).createKey(db, volumeId);
    const other = master();
    const err = (await new VolumeKeyStore(async () => other).getKey(db, keyId, volumeId).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(VolumeEncryptionError);
    expect(err.message).toMatch(new RegExp(`stored under master key [0-9a-f]{16}, but the configured master key \\(test\\) is ${other.fingerprint}.*TETHER_VOLUME_KEY`));
    expect(err.message).not.toContain(key.toString('hex'));
  });

  it('detects a tampered row (same fingerprint, altered ciphertext) and a key asked for another volume', async () => {
    const m = master();
    const store = new VolumeKeyStore(async () => m);
    const volumeId = await volumeRow();
    const { keyId } = await store.createKey(db, volumeId);
    await expect(store.getKey(db, keyId, await volumeRow())).rejects.toThrow(/belongs to another volume/);
    await db.query(`UPDATE volume_encryption_keys SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) WHERE id = $1`, [keyId]);
    await expect(store.getKey(db, keyId, volumeId)).rejects.toThrow(/fails authentication under the configured master key/);
  });

  it('says clearly when a key is gone, and when there is no master key at all', async () => {
    const store = new VolumeKeyStore(async () => master());
    await expect(store.getKey(db, randomUUID(), randomUUID())).rejects.toThrow(/does not exist/);
    const keyless = volumeKeyStore({}, {});
    await expect(keyless.createKey(db, await volumeRow())).rejects.toThrow(/no master key: No volume master key: set TETHER_VOLUME_KEY/);
  });
});

describe('the master key', () => {
  it('comes from TETHER_VOLUME_KEY; a malformed one stops the process at start, naming the variable only', () => {
    const good = randomBytes(32).toString('base64');
    expect(() => volumeKeyStore({}, { TETHER_VOLUME_KEY: good })).not.toThrow();
    expect(() => volumeKeyStore({}, { TETHER_VOLUME_KEY: randomBytes(16).toString('base64') })).toThrow(/TETHER_VOLUME_KEY: the volume master key must be 32 bytes \(AES-256\), got 16/);
    expect(() => volumeKeyStore({}, { TETHER_VOLUME_KEY: 'not base64!' })).toThrow(/TETHER_VOLUME_KEY: the volume master key is not base64/);
  });

  it('in dev mode is generated once into the data folder with mode 0600, and the same key is read again', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tether-keys-'));
    try {
      const [a, b] = await Promise.all([loadVolumeMasterKey({ env: {}, dataDir }), loadVolumeMasterKey({ env: {}, dataDir })]);
      expect(a.key).toEqual(b.key);
      const file = path.join(dataDir, VOLUME_MASTER_KEY_FILE);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(Buffer.from((await readFile(file, 'utf8')).trim(), 'base64')).toEqual(a.key);
      expect((await loadVolumeMasterKey({ env: {}, dataDir })).fingerprint).toBe(a.fingerprint);
      // TETHER_VOLUME_KEY wins over the file
      const configured = randomBytes(32);
      expect((await loadVolumeMasterKey({ env: { TETHER_VOLUME_KEY: configured.toString('base64') }, dataDir })).key).toEqual(configured);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
