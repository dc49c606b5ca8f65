/**
 * tether's embedded block storage: volumes are qcow2 files in a folder, their state lives in
 * PostgreSQL with Cinder's statuses, and connection_info is of tether's local `file` type.
 * Each state change locks the volume row, so concurrent reserves of one volume serialize and the
 * unique indexes of volume_attachments hold the "one attachment unless multiattach" rule.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { TetherError } from '../errors.ts';
import { withTransaction, isUniqueViolation, type Database, type Queryable } from '../db/database.ts';
import type { ConnectionInfo, HostConnector, Volume, VolumeStatus } from '../domain/types.ts';
import { VOLUME_TYPES, VolumeEncryptionError, type AttachmentRef, type BlockStorage, type VolumeAdmin, type VolumeEncryption } from './block-storage.ts';
import { LUKS_ENCRYPTION, passphraseOf, type VolumeKeyStore } from './volume-key-store.ts';

const run = promisify(execFile);

interface VolumeRow {
  id: string;
  name: string | null;
  project_id: string;
  size_gb: number;
  status: VolumeStatus;
  availability_zone: string;
  multiattach: boolean;
  bootable: boolean;
  encrypted: boolean;
  file_path: string | null;
  file_format: 'qcow2' | 'raw';
  encryption_key_id: string | null;
  created_at: Date;
}

/**
 * PBKDF2 time of the LUKS header, in ms (QEMU's default is 2000, paid again at every attach). The
 * passphrase is a random 512-bit key, not a password, so stretching it adds nothing.
 */
const LUKS_ITER_TIME_MS = 100;

/**
 * `qemu-img create` of a qcow2 file with LUKS encryption inside (what libvirt attaches with
 * `<driver type='qcow2'/>` + `<encryption format='luks'>`). The passphrase goes through a 0600 file in
 * a private folder, never on the command line. QEMU's PBKDF2 benchmark sometimes fails with "Unable
 * to get accurate CPU usage" on a busy machine (its thread-CPU clock is coarse): tried again then.
 */
async function createLuksQcow2(filePath: string, sizeGb: number, passphrase: Buffer): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tether-luks-'));
  try {
    const secretFile = path.join(dir, 'passphrase');
    await writeFile(secretFile, passphrase, { mode: 0o600 });
    const options = [
      'encrypt.format=luks',
      'encrypt.key-secret=sec0',
      'encrypt.cipher-alg=aes-256',
      'encrypt.cipher-mode=xts',
      'encrypt.ivgen-alg=plain64',
      `encrypt.iter-time=${LUKS_ITER_TIME_MS}`,
    ].join(',');
    for (let attempt = 1; ; attempt++) {
      try {
        await run('qemu-img', ['create', '-q', '-f', 'qcow2', '--object', `secret,id=sec0,file=${secretFile},format=raw`, '-o', options, filePath, `${sizeGb}G`]);
        return;
      } catch (err) {
        if (attempt >= 5 || !/Unable to get accurate CPU usage/.test(String((err as { stderr?: unknown }).stderr))) throw err;
        await rm(filePath, { force: true });
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface AttachmentRow {
  id: string;
  volume_id: string;
  instance_uuid: string;
  status: AttachmentRef['status'];
  mountpoint: string | null;
  attached_at: Date | null;
  host_name: string | null;
}

export class LocalVolumeService implements BlockStorage, VolumeAdmin {
  readonly kind = 'local';

  constructor(
    private readonly db: Database,
    private readonly options: { volumeDir: string; availabilityZone: string; keyStore?: VolumeKeyStore },
  ) {}

  private async lockVolume(tx: Queryable, volumeId: string): Promise<VolumeRow> {
    const { rows } = await tx.query<VolumeRow>('SELECT * FROM volumes WHERE id = $1 AND deleted_at IS NULL FOR UPDATE', [volumeId]);
    if (!rows[0]) throw new TetherError('VolumeNotFound', `Volume ${volumeId} could not be found.`);
    return rows[0];
  }

  private async attachmentsOf(db: Queryable, volumeIds: string[]): Promise<Map<string, AttachmentRow[]>> {
    const byVolume = new Map<string, AttachmentRow[]>();
    if (volumeIds.length === 0) return byVolume;
    const { rows } = await db.query<AttachmentRow>(
      `SELECT id, volume_id, instance_uuid, status, mountpoint, attached_at, connector->>'host' AS host_name
       FROM volume_attachments WHERE volume_id = ANY($1::uuid[]) AND deleted_at IS NULL ORDER BY created_at`,
      [volumeIds],
    );
    for (const r of rows) byVolume.set(r.volume_id, [...(byVolume.get(r.volume_id) ?? []), r]);
    return byVolume;
  }

  private toVolumes(rows: VolumeRow[], attachments: Map<string, AttachmentRow[]>): Volume[] {
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      projectId: r.project_id,
      size: r.size_gb,
      status: r.status,
      availabilityZone: r.availability_zone,
      multiattach: r.multiattach,
      bootable: r.bootable,
      encrypted: r.encrypted,
      createdAt: r.created_at.toISOString(),
      attachments: (attachments.get(r.id) ?? []).map((a) => ({
        id: r.id,
        attachmentId: a.id,
        volumeId: r.id,
        serverId: a.instance_uuid,
        hostName: a.host_name,
        device: a.mountpoint,
        attachedAt: a.attached_at?.toISOString() ?? null,
        status: a.status,
      })),
    }));
  }

  async getVolume(volumeId: string): Promise<Volume> {
    const { rows } = await this.db.query<VolumeRow>('SELECT * FROM volumes WHERE id = $1 AND deleted_at IS NULL', [volumeId]);
    if (!rows[0]) throw new TetherError('VolumeNotFound', `Volume ${volumeId} could not be found.`);
    return this.toVolumes(rows, await this.attachmentsOf(this.db, [volumeId]))[0]!;
  }

  async listVolumes(filter: { name?: string; projectId?: string } = {}): Promise<Volume[]> {
    const { rows } = await this.db.query<VolumeRow>(
      `SELECT * FROM volumes WHERE deleted_at IS NULL AND ($1::text IS NULL OR name = $1) AND ($2::text IS NULL OR project_id = $2)
       ORDER BY created_at, id`,
      [filter.name ?? null, filter.projectId ?? null],
    );
    return this.toVolumes(rows, await this.attachmentsOf(this.db, rows.map((r) => r.id)));
  }

  async createVolume(spec: Parameters<VolumeAdmin['createVolume']>[0]): Promise<Volume> {
    const availabilityZone = spec.availabilityZone ?? this.options.availabilityZone;
    if (availabilityZone !== this.options.availabilityZone) {
      throw new TetherError('InvalidInput', `Availability zone '${availabilityZone}' is invalid.`);
    }
    const volumeType = spec.volumeType ?? VOLUME_TYPES.default;
    if (volumeType !== VOLUME_TYPES.default && volumeType !== VOLUME_TYPES.luks) {
      throw new TetherError('InvalidInput', `Volume type ${volumeType} could not be found (types: ${VOLUME_TYPES.default}, ${VOLUME_TYPES.luks}).`);
    }
    const encrypted = volumeType === VOLUME_TYPES.luks;
    if (encrypted && spec.multiattach) throw new TetherError('InvalidInput', 'Multiattach is not supported for encrypted volumes.');
    const keyStore = this.options.keyStore;
    if (encrypted && !keyStore) throw new TetherError('InvalidInput', 'Encrypted volumes need the volume key store, which this process was built without.');
    const id = randomUUID();
    // QEMU cannot share a qcow2 image between writers: a multiattach volume is a sparse raw file.
    const format = spec.multiattach ? 'raw' : 'qcow2';
    const filePath = path.join(this.options.volumeDir, `volume-${id}.${format}`);
    // The volume row and its key are written together: no encrypted volume without a key.
    const key = await withTransaction(this.db, async (tx) => {
      await tx.query(
        `INSERT INTO volumes (id, name, description, project_id, size_gb, status, availability_zone, multiattach, file_path, file_format)
         VALUES ($1, $2, $3, $4, $5, 'creating', $6, $7, $8, $9)`,
        [id, spec.name, spec.description ?? null, spec.projectId, spec.size, availabilityZone, spec.multiattach ?? false, filePath, format],
      );
      if (!encrypted) return null;
      const created = await keyStore!.createKey(tx, id, LUKS_ENCRYPTION);
      await tx.query('UPDATE volumes SET encrypted = true, encryption_key_id = $2 WHERE id = $1', [id, created.keyId]);
      return created.key;
    }).catch((err: unknown) => {
      throw err instanceof VolumeEncryptionError ? new TetherError('InvalidInput', err.message) : err;
    });
    try {
      await mkdir(this.options.volumeDir, { recursive: true });
      if (key) await createLuksQcow2(filePath, spec.size, passphraseOf(key));
      else await run('qemu-img', ['create', '-q', '-f', format, filePath, `${spec.size}G`]);
      await this.db.query(`UPDATE volumes SET status = 'available', updated_at = now() WHERE id = $1`, [id]);
    } catch (err) {
      await this.db.query(`UPDATE volumes SET status = 'error', updated_at = now() WHERE id = $1`, [id]);
      throw err;
    }
    return this.getVolume(id);
  }

  async deleteVolume(volumeId: string): Promise<void> {
    const v = await withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      if (!['available', 'error', 'error_deleting'].includes(v.status)) {
        throw new TetherError('VolumeNotAvailable', `Invalid volume: Volume status must be available or error, but current status is: ${v.status}.`);
      }
      await tx.query(`UPDATE volumes SET status = 'deleting', updated_at = now() WHERE id = $1`, [volumeId]);
      return v;
    });
    if (v.file_path) await rm(v.file_path, { force: true });
    await withTransaction(this.db, async (tx) => {
      // Cinder deletes the key from Barbican with the volume: the key goes with the data.
      if (v.encryption_key_id) await tx.query('DELETE FROM volume_encryption_keys WHERE id = $1', [v.encryption_key_id]);
      await tx.query(`UPDATE volumes SET deleted_at = now(), updated_at = now() WHERE id = $1`, [volumeId]);
    });
  }

  async getVolumeEncryption(volumeId: string): Promise<VolumeEncryption | null> {
    const { rows } = await this.db.query<{ encrypted: boolean; encryption_key_id: string | null; cipher: string | null; key_size: number | null }>(
      `SELECT v.encrypted, v.encryption_key_id, k.cipher, k.key_size
       FROM volumes v LEFT JOIN volume_encryption_keys k ON k.id = v.encryption_key_id
       WHERE v.id = $1 AND v.deleted_at IS NULL`,
      [volumeId],
    );
    const r = rows[0];
    if (!r) throw new TetherError('VolumeNotFound', `Volume ${volumeId} could not be found.`);
    if (!r.encrypted || !r.encryption_key_id) return null;
    if (r.cipher === null || r.key_size === null) throw new VolumeEncryptionError(`The key of encrypted volume ${volumeId} is missing from the key store.`);
    return { ...LUKS_ENCRYPTION, cipher: r.cipher, keySize: r.key_size, encryptionKeyId: r.encryption_key_id };
  }

  /** The volume's key, from the key store (the LUKS passphrase is its hex: passphraseOf). */
  async getEncryptionKey(volumeId: string, encryption: VolumeEncryption): Promise<Buffer> {
    if (!this.options.keyStore) throw new VolumeEncryptionError('This process was built without the volume key store: it cannot attach encrypted volumes.');
    return this.options.keyStore.getKey(this.db, encryption.encryptionKeyId, volumeId);
  }

  async findAttachment(volumeId: string, instanceUuid: string): Promise<AttachmentRef | null> {
    const { rows } = await this.db.query<{ id: string; status: AttachmentRef['status'] }>(
      'SELECT id, status FROM volume_attachments WHERE volume_id = $1 AND instance_uuid = $2 AND deleted_at IS NULL',
      [volumeId, instanceUuid],
    );
    return rows[0] ? { attachmentId: rows[0].id, status: rows[0].status } : null;
  }

  async createAttachment(volumeId: string, instanceUuid: string): Promise<AttachmentRef> {
    try {
      return await withTransaction(this.db, async (tx) => {
        const v = await this.lockVolume(tx, volumeId);
        const existing = await tx.query<{ id: string; status: AttachmentRef['status'] }>(
          'SELECT id, status FROM volume_attachments WHERE volume_id = $1 AND instance_uuid = $2 AND deleted_at IS NULL',
          [volumeId, instanceUuid],
        );
        if (existing.rows[0]) return { attachmentId: existing.rows[0].id, status: existing.rows[0].status };
        const reservable = v.status === 'available' || (v.multiattach && (v.status === 'in-use' || v.status === 'reserved' || v.status === 'attaching'));
        if (!reservable) {
          throw new TetherError('VolumeNotAvailable', `Invalid volume: volume ${volumeId} status must be available, but current status is: ${v.status}.`);
        }
        const id = randomUUID();
        await tx.query(
          `INSERT INTO volume_attachments (id, volume_id, instance_uuid, multiattach, status) VALUES ($1, $2, $3, $4, 'reserved')`,
          [id, volumeId, instanceUuid, v.multiattach],
        );
        if (v.status === 'available') await this.setStatus(tx, volumeId, 'reserved');
        return { attachmentId: id, status: 'reserved' as const };
      });
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new TetherError('VolumeNotAvailable', `Invalid volume: volume ${volumeId} is already attached to another instance.`);
      }
      throw err;
    }
  }

  private async setStatus(tx: Queryable, volumeId: string, status: VolumeStatus): Promise<void> {
    await tx.query('UPDATE volumes SET status = $2, updated_at = now() WHERE id = $1', [volumeId, status]);
  }

  /** Locks the attachment's volume and returns both; throws when the attachment is gone. */
  private async lockAttachment(tx: Queryable, attachmentId: string): Promise<{ volume: VolumeRow; attachment: AttachmentRow } | null> {
    const { rows } = await tx.query<AttachmentRow>(
      'SELECT id, volume_id, instance_uuid, status, mountpoint, attached_at, NULL AS host_name FROM volume_attachments WHERE id = $1 AND deleted_at IS NULL',
      [attachmentId],
    );
    if (!rows[0]) return null;
    const volume = await this.lockVolume(tx, rows[0].volume_id);
    return { volume, attachment: rows[0] };
  }

  async updateAttachment(attachmentId: string, connector: HostConnector & { mountpoint?: string }): Promise<ConnectionInfo> {
    return withTransaction(this.db, async (tx) => {
      const found = await this.lockAttachment(tx, attachmentId);
      if (!found) throw new TetherError('VolumeNotAvailable', `Volume attachment ${attachmentId} could not be found.`);
      const { volume, attachment } = found;
      if (attachment.status === 'reserved' || attachment.status === 'attaching') {
        await tx.query(
          `UPDATE volume_attachments SET status = 'attaching', connector = $2, mountpoint = $3, updated_at = now() WHERE id = $1`,
          [attachmentId, JSON.stringify(connector), connector.mountpoint ?? null],
        );
        if (volume.status === 'reserved') await this.setStatus(tx, volume.id, 'attaching');
      }
      return {
        driver_volume_type: 'file',
        data: {
          path: volume.file_path,
          format: volume.file_format,
          access_mode: 'rw',
          volume_id: volume.id,
          name: `volume-${volume.id}`,
          encrypted: volume.encrypted,
        },
        serial: volume.id,
        multiattach: volume.multiattach,
      };
    });
  }

  async completeAttachment(attachmentId: string): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const found = await this.lockAttachment(tx, attachmentId);
      if (!found) throw new TetherError('VolumeNotAvailable', `Volume attachment ${attachmentId} could not be found.`);
      if (found.attachment.status === 'attached') return;
      await tx.query(`UPDATE volume_attachments SET status = 'attached', attached_at = now(), updated_at = now() WHERE id = $1`, [attachmentId]);
      await this.setStatus(tx, found.volume.id, 'in-use');
    });
  }

  async deleteAttachment(attachmentId: string): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const found = await this.lockAttachment(tx, attachmentId);
      if (!found) return;
      await tx.query('UPDATE volume_attachments SET deleted_at = now(), updated_at = now() WHERE id = $1', [attachmentId]);
      const { rows } = await tx.query<{ status: AttachmentRef['status'] }>(
        'SELECT status FROM volume_attachments WHERE volume_id = $1 AND deleted_at IS NULL',
        [found.volume.id],
      );
      const remaining = rows.map((r) => r.status);
      const next: VolumeStatus = remaining.length === 0 ? 'available'
        : remaining.includes('attached') ? 'in-use'
        : remaining.includes('attaching') ? 'attaching'
        : 'reserved';
      await this.setStatus(tx, found.volume.id, next);
    });
  }

  async beginDetaching(volumeId: string): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      if (v.status === 'detaching') return;
      if (v.status !== 'in-use') {
        throw new TetherError('VolumeNotAvailable', `Invalid volume: Unable to detach volume. Volume status must be 'in-use', but current status is: ${v.status}.`);
      }
      await this.setStatus(tx, volumeId, 'detaching');
    });
  }

  async rollDetaching(volumeId: string): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      if (v.status === 'detaching') await this.setStatus(tx, volumeId, 'in-use');
    });
  }
}
