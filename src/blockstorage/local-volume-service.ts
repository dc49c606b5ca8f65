/**
 * tether's embedded block storage: volumes are qcow2 files in a folder, their state lives in
 * PostgreSQL with Cinder's statuses, and connection_info is of tether's local `file` type.
 * Each state change locks the volume row, so concurrent reserves of one volume serialize and the
 * unique indexes of volume_attachments hold the "one attachment unless multiattach" rule.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { TetherError } from '../errors.ts';
import { volumeStatusRepair } from '../domain/repair-plan.ts';
import { withTransaction, isUniqueViolation, type Database, type Queryable } from '../db/database.ts';
import type { ConnectionInfo, HostConnector, Volume, VolumeStatus } from '../domain/types.ts';
import {
  VOLUME_TYPES,
  type VolumeMigrationCompletion,
  VolumeEncryptionError,
  type AttachmentRef,
  type BlockStorage,
  type VolumeAdmin,
  type VolumeAttachmentRecord,
  type VolumeEditing,
  type VolumeEncryption,
  type VolumeUpdate,
} from './block-storage.ts';
import { LUKS_ENCRYPTION, passphraseOf, type VolumeKeyStore } from './volume-key-store.ts';

const run = promisify(execFile);

interface VolumeRow {
  id: string;
  name: string | null;
  description: string | null;
  metadata: Record<string, string>;
  updated_at: Date;
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
  migration_status: string | null;
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
  const options = [
    'encrypt.format=luks',
    'encrypt.key-secret=sec0',
    'encrypt.cipher-alg=aes-256',
    'encrypt.cipher-mode=xts',
    'encrypt.ivgen-alg=plain64',
    `encrypt.iter-time=${LUKS_ITER_TIME_MS}`,
  ].join(',');
  await withSecretFile(passphrase, async (secretFile) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await run('qemu-img', ['create', '-q', '-f', 'qcow2', '--object', `secret,id=sec0,file=${secretFile},format=raw`, '-o', options, filePath, `${sizeGb}G`]);
        return;
      } catch (err) {
        if (attempt >= 5 || !/Unable to get accurate CPU usage/.test(String((err as { stderr?: unknown }).stderr))) throw err;
        await rm(filePath, { force: true });
      }
    }
  });
}

const GiB = 1024 ** 3;

/** qemu-img's answer when a running QEMU holds the image (its image locking). */
const HELD_BY_QEMU = /Failed to get ".*" lock|Is another process using the image/;

/** Runs `fn` with the LUKS passphrase in a 0600 file of a private folder (never on a command line); the file is removed after. */
async function withSecretFile<T>(passphrase: Buffer, fn: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tether-luks-'));
  try {
    const file = path.join(dir, 'passphrase');
    await writeFile(file, passphrase, { mode: 0o600 });
    return await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The size of the volume's data as its image says (qcow2: the virtual size; raw: the file's size), in bytes. */
async function imageSize(filePath: string, format: 'qcow2' | 'raw'): Promise<number> {
  if (format === 'raw') return (await stat(filePath)).size;
  // -U: read even while a running QEMU holds the image
  const { stdout } = await run('qemu-img', ['info', '-U', '--output=json', filePath]);
  return (JSON.parse(stdout) as { 'virtual-size': number })['virtual-size'];
}

/** What growing a volume's file did: grown now, already that size, or left to the hypervisor that holds it open. */
export type GrowOutcome = 'grown' | 'already' | 'held-by-qemu';

/** The embedded service's connection_info: its `file` type (the volume's path and format; no secret). */
function connectionInfoOf(volume: VolumeRow): ConnectionInfo {
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

export class LocalVolumeService implements BlockStorage, VolumeAdmin, VolumeEditing, VolumeMigrationCompletion {
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
      description: r.description,
      metadata: r.metadata ?? {},
      updatedAt: r.updated_at.toISOString(),
      migrationStatus: r.migration_status ?? null,
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
        `INSERT INTO volumes (id, name, description, project_id, size_gb, status, availability_zone, multiattach, file_path, file_format, metadata)
         VALUES ($1, $2, $3, $4, $5, 'creating', $6, $7, $8, $9, $10)`,
        [id, spec.name, spec.description ?? null, spec.projectId, spec.size, availabilityZone, spec.multiattach ?? false, filePath, format, JSON.stringify(spec.metadata ?? {})],
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

  // ---- update and metadata (Cinder's PUT /volumes/{id} and /volumes/{id}/metadata) ----

  /** Name, description and (all of the) metadata; absent fields stay as they are. */
  async updateVolume(volumeId: string, patch: VolumeUpdate): Promise<Volume> {
    await withTransaction(this.db, async (tx) => {
      await this.lockVolume(tx, volumeId);
      await tx.query(
        `UPDATE volumes SET
            name        = CASE WHEN $2::boolean THEN $3 ELSE name END,
            description = CASE WHEN $4::boolean THEN $5 ELSE description END,
            metadata    = COALESCE($6::jsonb, metadata),
            updated_at = now()
         WHERE id = $1`,
        [
          volumeId,
          patch.name !== undefined,
          patch.name ?? null,
          patch.description !== undefined,
          patch.description ?? null,
          patch.metadata === undefined ? null : JSON.stringify(patch.metadata),
        ],
      );
    });
    return this.getVolume(volumeId);
  }

  /** Merges (POST, PUT of one key) or replaces (PUT of all) the volume's metadata; returns all of it. */
  async setVolumeMetadata(volumeId: string, metadata: Record<string, string>, options: { replace: boolean }): Promise<Record<string, string>> {
    return withTransaction(this.db, async (tx) => {
      await this.lockVolume(tx, volumeId);
      const { rows } = await tx.query<{ metadata: Record<string, string> }>(
        `UPDATE volumes SET metadata = CASE WHEN $3::boolean THEN $2::jsonb ELSE metadata || $2::jsonb END, updated_at = now()
         WHERE id = $1 RETURNING metadata`,
        [volumeId, JSON.stringify(metadata), options.replace],
      );
      return rows[0]!.metadata;
    });
  }

  /** Removes one metadata key; Cinder's 404 when the volume has no such key. */
  async deleteVolumeMetadata(volumeId: string, key: string): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      if (!Object.hasOwn(v.metadata ?? {}, key)) {
        throw new TetherError('VolumeMetadataNotFound', `Volume ${volumeId} has no metadata with key ${key}.`);
      }
      await tx.query('UPDATE volumes SET metadata = metadata - $2::text, updated_at = now() WHERE id = $1', [volumeId, key]);
    });
  }

  // ---- the attachments resource (Cinder 3.27) ----

  async listAttachments(filter: { projectId?: string; volumeId?: string; instanceUuid?: string; status?: string } = {}): Promise<VolumeAttachmentRecord[]> {
    return this.attachmentRecords(
      `($1::text IS NULL OR v.project_id = $1) AND ($2::uuid IS NULL OR a.volume_id = $2) AND ($3::uuid IS NULL OR a.instance_uuid = $3)
       AND ($4::text IS NULL OR a.status = $4)`,
      [filter.projectId ?? null, filter.volumeId ?? null, filter.instanceUuid ?? null, filter.status ?? null],
    );
  }

  async getAttachment(attachmentId: string): Promise<VolumeAttachmentRecord> {
    const [found] = await this.attachmentRecords('a.id = $1', [attachmentId]);
    if (!found) throw new TetherError('VolumeAttachmentNotFound', `Volume attachment could not be found with filter: attachment_id = ${attachmentId}.`);
    return found;
  }

  private async attachmentRecords(where: string, params: unknown[]): Promise<VolumeAttachmentRecord[]> {
    const { rows } = await this.db.query<VolumeRow & { a_id: string; instance_uuid: string; a_status: AttachmentRef['status']; attach_mode: 'rw' | 'ro'; attached_at: Date | null }>(
      `SELECT v.*, a.id AS a_id, a.instance_uuid, a.status AS a_status, a.attach_mode, a.attached_at
       FROM volume_attachments a JOIN volumes v ON v.id = a.volume_id
       WHERE a.deleted_at IS NULL AND v.deleted_at IS NULL AND ${where}
       ORDER BY a.created_at DESC, a.id DESC`,
      params,
    );
    return rows.map((r) => ({
      id: r.a_id,
      volumeId: r.id,
      projectId: r.project_id,
      instanceUuid: r.instance_uuid,
      status: r.a_status,
      attachMode: r.attach_mode,
      attachedAt: r.attached_at?.toISOString() ?? null,
      connectionInfo: r.a_status === 'reserved' ? {} : { ...connectionInfoOf(r) },
    }));
  }

  // ---- extend (Cinder's os-extend) ----

  /** Cinder's checks of a new size, and of the status an extend needs (`in-use` only from volume API 3.42). */
  private static extendRefusal(v: VolumeRow, newSize: number, expected: 'available' | 'in-use'): TetherError | null {
    if (newSize <= v.size_gb) {
      return new TetherError(
        'InvalidInput',
        `Invalid input received: New size for extend must be greater than current size. (current: ${v.size_gb}, extended: ${newSize}).`,
      );
    }
    if (newSize > 1024) return new TetherError('InvalidInput', `Invalid input received: Volume size must be at most 1024 GiB, not ${newSize}.`);
    if (v.status !== expected) {
      return new TetherError('VolumeNotAvailable', `Invalid volume: Volume ${v.id} status must be '{'status': '${expected}'}' to extend, currently ${v.status}.`);
    }
    return null;
  }

  /** Why this volume cannot be extended to newSize with the status it must have, or null. Reads only. */
  async extendRefusal(volumeId: string, newSize: number, expected: 'available' | 'in-use'): Promise<TetherError | null> {
    const { rows } = await this.db.query<VolumeRow>('SELECT * FROM volumes WHERE id = $1 AND deleted_at IS NULL', [volumeId]);
    if (!rows[0]) return new TetherError('VolumeNotFound', `Volume ${volumeId} could not be found.`);
    return LocalVolumeService.extendRefusal(rows[0], newSize, expected);
  }

  /**
   * Extends an available volume at once: the row stays locked while the file grows (qemu-img resize;
   * a raw file is truncated larger), so a crash leaves the old size recorded and nothing half done
   * (a file already larger is harmless: the next extend resizes to an absolute size).
   */
  async extendVolume(volumeId: string, newSize: number): Promise<Volume> {
    await withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      const refusal = LocalVolumeService.extendRefusal(v, newSize, 'available');
      if (refusal) throw refusal;
      const outcome = await this.growFile(tx, v, newSize);
      if (outcome === 'held-by-qemu') throw new TetherError('VolumeNotAvailable', `Invalid volume: Volume ${volumeId} is open in a running QEMU although it is available.`);
      await tx.query('UPDATE volumes SET size_gb = $2, updated_at = now() WHERE id = $1', [volumeId, newSize]);
    });
    return this.getVolume(volumeId);
  }

  /** An in-use volume's extend begins (ExtendVolume saga): in-use → extending. A repeat is a no-op. */
  async beginExtending(volumeId: string, newSize: number): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      if (v.status === 'extending') return;
      const refusal = LocalVolumeService.extendRefusal(v, newSize, 'in-use');
      if (refusal) throw refusal;
      await this.setStatus(tx, volumeId, 'extending');
    });
  }

  /** The extend was rolled back: extending → in-use, the size as it was recorded. No-op in any other status. */
  async rollExtending(volumeId: string): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      if (v.status === 'extending') await this.setStatus(tx, volumeId, 'in-use');
    });
  }

  /**
   * Grows the file of an extending volume to newSize GiB when no QEMU holds it (a stopped or shelved
   * server's volume): qemu-img resize, with the LUKS key for an encrypted qcow2; a raw file (plain or
   * LUKS, Cinder's semantics: the device's whole size) is truncated larger, which a running QEMU allows.
   * A qcow2 a running QEMU holds cannot be resized from outside: 'held-by-qemu', the host's block
   * resize grows it. Idempotent.
   */
  async growVolume(volumeId: string, newSize: number): Promise<GrowOutcome> {
    const { rows } = await this.db.query<VolumeRow>('SELECT * FROM volumes WHERE id = $1 AND deleted_at IS NULL', [volumeId]);
    if (!rows[0]) throw new TetherError('VolumeNotFound', `Volume ${volumeId} could not be found.`);
    return this.growFile(this.db, rows[0], newSize);
  }

  /**
   * The extend is done: the file is at least newSize GiB (grown here now if it is not, e.g. the server
   * stopped before its QEMU could grow it), size_gb = newSize, extending → in-use. A repeat is a no-op.
   */
  async finishExtending(volumeId: string, newSize: number): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      if (v.status !== 'extending') {
        if (v.size_gb >= newSize) return;
        throw new TetherError('VolumeNotAvailable', `Invalid volume: Volume ${volumeId} is ${v.status}, not extending, and still ${v.size_gb} GiB.`);
      }
      if ((await this.growFile(tx, v, newSize)) === 'held-by-qemu') {
        // retryable: the host's block resize has not grown it yet
        throw new Error(`The file of volume ${volumeId} is smaller than ${newSize} GiB and held by a running QEMU.`);
      }
      await tx.query(`UPDATE volumes SET size_gb = $2, status = 'in-use', updated_at = now() WHERE id = $1`, [volumeId, newSize]);
    });
  }

  private async growFile(db: Queryable, v: VolumeRow, newSize: number): Promise<GrowOutcome> {
    if (!v.file_path) throw new TetherError('VolumeNotAvailable', `Invalid volume: Volume ${v.id} has no file.`);
    const bytes = newSize * GiB;
    if ((await imageSize(v.file_path, v.file_format)) >= bytes) return 'already';
    if (v.file_format === 'raw') {
      await truncate(v.file_path, bytes);
      return 'grown';
    }
    try {
      if (v.encrypted && v.encryption_key_id) {
        if (!this.options.keyStore) throw new VolumeEncryptionError('This process was built without the volume key store: it cannot resize encrypted volumes.');
        const key = await this.options.keyStore.getKey(db, v.encryption_key_id, v.id);
        const passphrase = passphraseOf(key);
        try {
          await withSecretFile(passphrase, (secretFile) =>
            run('qemu-img', [
              'resize',
              '--object',
              `secret,id=sec0,file=${secretFile},format=raw`,
              '--image-opts',
              `driver=qcow2,file.filename=${v.file_path!.replaceAll(',', ',,')},encrypt.key-secret=sec0`,
              String(bytes),
            ]),
          );
        } finally {
          key.fill(0);
          passphrase.fill(0);
        }
      } else {
        await run('qemu-img', ['resize', '-q', '-f', 'qcow2', v.file_path, String(bytes)]);
      }
      return 'grown';
    } catch (err) {
      if (HELD_BY_QEMU.test(String((err as { stderr?: unknown }).stderr))) return 'held-by-qemu';
      if (err instanceof VolumeEncryptionError) throw new TetherError('InvalidInput', err.message);
      throw err;
    }
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
        // a volume whose data is moving (Cinder's reserve expects no migration in progress)
        if (v.migration_status === 'migrating') {
          throw new TetherError('VolumeNotAvailable', `Invalid volume: volume ${volumeId} is migrating (migration_status ${v.migration_status}).`);
        }
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
      if (!found) throw new TetherError('VolumeNotAvailable', `Volume attachment could not be found with filter: attachment_id = ${attachmentId}.`);
      const { volume, attachment } = found;
      if (attachment.status === 'reserved' || attachment.status === 'attaching') {
        await tx.query(
          `UPDATE volume_attachments SET status = 'attaching', connector = $2, mountpoint = $3, updated_at = now() WHERE id = $1`,
          [attachmentId, JSON.stringify(connector), connector.mountpoint ?? null],
        );
        if (volume.status === 'reserved') await this.setStatus(tx, volume.id, 'attaching');
      }
      return connectionInfoOf(volume);
    });
  }

  async completeAttachment(attachmentId: string): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const found = await this.lockAttachment(tx, attachmentId);
      if (!found) throw new TetherError('VolumeNotAvailable', `Volume attachment could not be found with filter: attachment_id = ${attachmentId}.`);
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

  async syncStatusWithAttachments(volumeId: string): Promise<{ from: string; to: string } | null> {
    return withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      const { rows } = await tx.query<{ status: string }>('SELECT status FROM volume_attachments WHERE volume_id = $1 AND deleted_at IS NULL', [volumeId]);
      const to = volumeStatusRepair({ status: v.status, attachmentStatuses: rows.map((r) => r.status) });
      if (to === null) return null;
      await this.setStatus(tx, volumeId, to as VolumeStatus);
      return { from: v.status, to };
    });
  }

  async rollDetaching(volumeId: string): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const v = await this.lockVolume(tx, volumeId);
      if (v.status === 'detaching') await this.setStatus(tx, volumeId, 'in-use');
    });
  }

  // ---- migration (Cinder's os-migrate_volume of an in-use volume: its server's swap moves the data) ----

  /**
   * Begins moving an in-use volume's data to another volume (`newVolumeId`, available, of the same
   * size; or a new one made like it): the source says migration_status 'migrating', the destination
   * 'target:<source id>', as in Cinder. The server's swap (Nova's PUT os-volume_attachments, which
   * Cinder calls) then copies the data under the running guest; migrateVolumeCompletion ends it.
   */
  async beginMigration(volumeId: string, newVolumeId?: string): Promise<Volume> {
    const source = await this.getVolume(volumeId);
    if (source.status !== 'in-use') {
      throw new TetherError('VolumeNotAvailable', `Invalid volume: only an in-use volume migrates through its server's swap; volume ${volumeId} is ${source.status}.`);
    }
    const destId = newVolumeId ?? (await this.createVolume({
      name: source.name,
      size: source.size,
      projectId: source.projectId,
      availabilityZone: source.availabilityZone,
      ...(source.encrypted ? { volumeType: VOLUME_TYPES.luks } : {}),
    })).id;
    await withTransaction(this.db, async (tx) => {
      const [first, second] = [volumeId, destId].sort();
      const locked = new Map([[first!, await this.lockVolume(tx, first!)], [second!, await this.lockVolume(tx, second!)]]);
      const src = locked.get(volumeId)!;
      const dest = locked.get(destId)!;
      if (src.migration_status === 'migrating') {
        if (dest.migration_status === `target:${volumeId}`) return;
        throw new TetherError('VolumeNotAvailable', `Invalid volume: volume ${volumeId} is already migrating.`);
      }
      if (dest.status !== 'available' || dest.multiattach || (dest.migration_status !== null && !['success', 'error'].includes(dest.migration_status))) {
        throw new TetherError('VolumeNotAvailable', `Invalid volume: the destination ${destId} must be an available, single-attach volume that is not migrating (it is ${dest.status}).`);
      }
      if (dest.size_gb !== src.size_gb) {
        throw new TetherError('InvalidInput', `The destination volume ${destId} must have the size of volume ${volumeId} (${src.size_gb} GiB), not ${dest.size_gb} GiB.`);
      }
      await tx.query(`UPDATE volumes SET migration_status = 'migrating', updated_at = now() WHERE id = $1`, [volumeId]);
      await tx.query(`UPDATE volumes SET migration_status = $2, updated_at = now() WHERE id = $1`, [destId, `target:${volumeId}`]);
    });
    return this.getVolume(destId);
  }

  /**
   * Cinder's os-migrate_volume_completion. After a swap (error false) the two records trade their
   * data (file, format, size, encryption): the source keeps its id and now points at the
   * destination's file, the destination's attachment moves to the source id (its own old attachment
   * deleted if still there), and the destination, left with the old file, is deleted. A failed swap
   * (error true) ends the migration with 'error' on the source; the destination stays available.
   * Idempotent: a repeat after the destination is gone answers the same.
   */
  async migrateVolumeCompletion(volumeId: string, newVolumeId: string, error: boolean): Promise<{ saveVolumeId: string }> {
    const leftover = await withTransaction(this.db, async (tx) => {
      const src = await this.lockVolume(tx, volumeId);
      const { rows } = await tx.query<VolumeRow>('SELECT * FROM volumes WHERE id = $1 AND deleted_at IS NULL FOR UPDATE', [newVolumeId]);
      const dest = rows[0];
      if (!dest) {
        if (src.migration_status === 'success') return null;
        throw new TetherError('VolumeNotFound', `Volume ${newVolumeId} could not be found.`);
      }
      if (error) {
        if (src.migration_status === 'migrating') await tx.query(`UPDATE volumes SET migration_status = 'error', updated_at = now() WHERE id = $1`, [volumeId]);
        if (dest.migration_status === `target:${volumeId}`) await tx.query('UPDATE volumes SET migration_status = NULL, updated_at = now() WHERE id = $1', [newVolumeId]);
        return null;
      }
      if (src.migration_status === 'success' && dest.migration_status === null) return dest; // traded already; only the delete is left
      if (src.migration_status !== 'migrating' || dest.migration_status !== `target:${volumeId}`) {
        throw new TetherError('VolumeNotAvailable', `Invalid volume: volume ${volumeId} is not migrating to ${newVolumeId}.`);
      }
      // the source's own attachments of the servers the destination is attached to are the ones the swap replaced
      await tx.query(
        `UPDATE volume_attachments SET deleted_at = now(), updated_at = now()
         WHERE volume_id = $1 AND deleted_at IS NULL AND instance_uuid IN (SELECT instance_uuid FROM volume_attachments WHERE volume_id = $2 AND deleted_at IS NULL)`,
        [volumeId, newVolumeId],
      );
      await tx.query('UPDATE volume_attachments SET volume_id = $1, updated_at = now() WHERE volume_id = $2 AND deleted_at IS NULL', [volumeId, newVolumeId]);
      const trade = `UPDATE volumes SET file_path = $2, file_format = $3, size_gb = $4, encrypted = $5, encryption_key_id = $6, updated_at = now() WHERE id = $1`;
      await tx.query(trade, [volumeId, dest.file_path, dest.file_format, dest.size_gb, dest.encrypted, dest.encryption_key_id]);
      await tx.query(trade, [newVolumeId, src.file_path, src.file_format, src.size_gb, src.encrypted, src.encryption_key_id]);
      const statuses = (await tx.query<{ status: AttachmentRef['status'] }>('SELECT status FROM volume_attachments WHERE volume_id = $1 AND deleted_at IS NULL', [volumeId])).rows.map((r) => r.status);
      const next: VolumeStatus = statuses.length === 0 ? 'available' : statuses.includes('attached') ? 'in-use' : statuses.includes('attaching') ? 'attaching' : 'reserved';
      await tx.query(`UPDATE volumes SET status = $2, migration_status = 'success', updated_at = now() WHERE id = $1`, [volumeId, next]);
      await tx.query(`UPDATE volumes SET status = 'available', migration_status = NULL, updated_at = now() WHERE id = $1`, [newVolumeId]);
      return dest;
    });
    // the destination record now holds the source's old data: it goes (Cinder deletes it too)
    if (leftover) await this.deleteVolume(newVolumeId);
    return { saveVolumeId: volumeId };
  }
}
