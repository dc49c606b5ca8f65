/**
 * The key store of the embedded volume service (Barbican's role for Cinder): one random key per
 * encrypted volume, kept in PostgreSQL encrypted with AES-256-GCM under the master key
 * (src/security/volume-master-key.ts). The row's id is the volume's `encryption_key_id`; the key id
 * and volume id are the GCM additional data, so a ciphertext copied onto another row fails to open.
 * Deleting the row (with its volume) crypto-shreds the volume.
 *
 * The LUKS passphrase of a volume is the hex of its key, as Nova derives it from a Barbican key.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import type { Queryable } from '../db/database.ts';
import type { VolumeMasterKey } from '../security/volume-master-key.ts';
import { VolumeEncryptionError, type EncryptionSpec } from './block-storage.ts';

/** Cinder's front-end LUKS type: aes-xts-plain64 with a 512-bit XTS key (AES-256), QEMU's own default. */
export const LUKS_ENCRYPTION: EncryptionSpec = { provider: 'luks', cipher: 'aes-xts-plain64', keySize: 512, controlLocation: 'front-end' };

interface KeyRow {
  id: string;
  volume_id: string;
  ciphertext: Buffer;
  nonce: Buffer;
  auth_tag: Buffer;
  master_key_fingerprint: string;
}

function aad(keyId: string, volumeId: string): Buffer {
  return Buffer.from(`tether-volume-key:${keyId}:${volumeId}`, 'utf8');
}

/** LUKS passphrase of a key (Nova: binascii.hexlify(key.get_encoded())). */
export function passphraseOf(key: Buffer): Buffer {
  return Buffer.from(key.toString('hex'), 'utf8');
}

export class VolumeKeyStore {
  private master: Promise<VolumeMasterKey> | undefined;

  /** `masterKey` is called once, on first use (so a process that never meets an encrypted volume needs none). */
  constructor(private readonly masterKey: () => Promise<VolumeMasterKey>) {}

  private async key(): Promise<VolumeMasterKey> {
    this.master ??= this.masterKey().catch((err: unknown) => {
      this.master = undefined;
      throw new VolumeEncryptionError(`The volume key store has no master key: ${(err as Error).message}`);
    });
    return this.master;
  }

  /** Makes a new random key for the volume and stores it encrypted; run in the transaction that creates the volume. */
  async createKey(tx: Queryable, volumeId: string, spec: EncryptionSpec = LUKS_ENCRYPTION): Promise<{ keyId: string; key: Buffer }> {
    const master = await this.key();
    const keyId = randomUUID();
    const key = randomBytes(spec.keySize / 8);
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', master.key, nonce);
    cipher.setAAD(aad(keyId, volumeId));
    const ciphertext = Buffer.concat([cipher.update(key), cipher.final()]);
    await tx.query(
      `INSERT INTO volume_encryption_keys (id, volume_id, provider, cipher, key_size, control_location, ciphertext, nonce, auth_tag, master_key_fingerprint)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [keyId, volumeId, spec.provider, spec.cipher, spec.keySize, spec.controlLocation, ciphertext, nonce, cipher.getAuthTag(), master.fingerprint],
    );
    return { keyId, key };
  }

  /** The plain key. Throws VolumeEncryptionError when it is gone or the master key is not the one it was stored under. */
  async getKey(db: Queryable, keyId: string, volumeId: string): Promise<Buffer> {
    const { rows } = await db.query<KeyRow>('SELECT id, volume_id, ciphertext, nonce, auth_tag, master_key_fingerprint FROM volume_encryption_keys WHERE id = $1', [keyId]);
    const row = rows[0];
    if (!row) throw new VolumeEncryptionError(`Volume key ${keyId} does not exist (deleted with its volume?).`);
    if (row.volume_id !== volumeId) throw new VolumeEncryptionError(`Volume key ${keyId} belongs to another volume than ${volumeId}.`);
    const master = await this.key();
    if (row.master_key_fingerprint !== master.fingerprint) {
      throw new VolumeEncryptionError(
        `Volume key ${keyId} was stored under master key ${row.master_key_fingerprint}, but the configured master key (${master.source}) is ${master.fingerprint}: ` +
          'configure the master key the volume was created with (TETHER_VOLUME_KEY).',
      );
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', master.key, row.nonce);
      decipher.setAAD(aad(row.id, row.volume_id));
      decipher.setAuthTag(row.auth_tag);
      return Buffer.concat([decipher.update(row.ciphertext), decipher.final()]);
    } catch {
      throw new VolumeEncryptionError(`Volume key ${keyId} fails authentication under the configured master key (${master.source}): the stored key was altered.`);
    }
  }

  /** Forgets the key (the volume's data becomes unreadable for good). No-op when it is gone. */
  async deleteKey(db: Queryable, keyId: string): Promise<void> {
    await db.query('DELETE FROM volume_encryption_keys WHERE id = $1', [keyId]);
  }
}
