/**
 * The block-storage interface, shaped after Cinder's v3 attachments API (the flow Nova uses since
 * Queens). Workflows and activities only ever see this interface: the embedded local volume service
 * implements it today, a Cinder client can implement it without touching them.
 *
 *   createAttachment  = reserve            (volume: available -> reserved)
 *   updateAttachment  = initialize connection with the host connector (-> attaching), gives connection_info
 *   completeAttachment                      (-> in-use)
 *   deleteAttachment  = unreserve / terminate connection / detach (-> available when it was the last one)
 *
 * Every method is idempotent: repeating a call that already took effect changes nothing more.
 */
import type { ConnectionInfo, HostConnector, Volume } from '../domain/types.ts';

export interface AttachmentRef {
  attachmentId: string;
  status: 'reserved' | 'attaching' | 'attached' | 'detaching';
}

export interface BlockStorage {
  readonly kind: string;
  /** Throws TetherError VolumeNotFound. */
  getVolume(volumeId: string): Promise<Volume>;
  /** Reserve the volume for the instance; returns the existing attachment when this instance already holds one. */
  createAttachment(volumeId: string, instanceUuid: string): Promise<AttachmentRef>;
  /** The live attachment of the volume to the instance, if any. */
  findAttachment(volumeId: string, instanceUuid: string): Promise<AttachmentRef | null>;
  /** Export the volume to the host; connector.mountpoint carries the device name. */
  updateAttachment(attachmentId: string, connector: HostConnector & { mountpoint?: string }): Promise<ConnectionInfo>;
  completeAttachment(attachmentId: string): Promise<void>;
  /** No-op when the attachment no longer exists. */
  deleteAttachment(attachmentId: string): Promise<void>;
  /** Legacy actions used by detach: in-use -> detaching, and back. */
  beginDetaching(volumeId: string): Promise<void>;
  rollDetaching(volumeId: string): Promise<void>;
  /** Deletes an available volume (delete_on_termination when its server is deleted). */
  deleteVolume(volumeId: string): Promise<void>;
  /**
   * The volume's encryption metadata (Cinder: GET /volumes/{id}/encryption), null for a plain volume.
   * Asked by the compute host when connection_info says `data.encrypted`, as Nova does.
   */
  getVolumeEncryption(volumeId: string): Promise<VolumeEncryption | null>;
  /**
   * The volume's key from the key manager (Barbican for Cinder; the embedded key store for the local
   * service). Only ever called inside a host activity, which hands it straight to a libvirt secret:
   * it must never be returned from an activity, logged or stored. Throws VolumeEncryptionError when
   * no key manager can give it.
   */
  getEncryptionKey(volumeId: string, encryption: VolumeEncryption): Promise<Buffer>;
}

/** Cinder's volume type encryption spec (provider, cipher, key_size, control_location). */
export interface EncryptionSpec {
  provider: 'luks';
  cipher: string;
  /** bits */
  keySize: number;
  /** 'front-end': the hypervisor (QEMU) decrypts; the only kind tether attaches. */
  controlLocation: 'front-end';
}

export interface VolumeEncryption extends EncryptionSpec {
  /** The key's id in the key manager (Cinder's encryption_key_id). */
  encryptionKeyId: string;
}

/** The volume is encrypted but its key cannot be had (no key manager, wrong master key, key gone): retrying will not help. */
export class VolumeEncryptionError extends Error {
  override readonly name = 'VolumeEncryptionError';
}

/** Volume types of the embedded service: Cinder's default and `luks` (front-end LUKS encryption). */
export const VOLUME_TYPES = { default: '__DEFAULT__', luks: 'luks' } as const;

/** Volume management served by tether's own `/v3` API and CLI when the embedded service is in use. */
export interface VolumeAdmin {
  createVolume(spec: {
    name: string | null;
    size: number;
    projectId: string;
    availabilityZone?: string;
    multiattach?: boolean;
    description?: string | null;
    /** A volume type name: '__DEFAULT__' (or none) or 'luks' for an encrypted volume. */
    volumeType?: string | null;
    /** Cinder's user metadata. */
    metadata?: Record<string, string>;
  }): Promise<Volume>;
  listVolumes(filter?: { name?: string; projectId?: string }): Promise<Volume[]>;
}

/** A volume update (Cinder's PUT /volumes/{id}): absent fields are left as they are; metadata replaces all of it. */
export interface VolumeUpdate {
  name?: string | null;
  description?: string | null;
  metadata?: Record<string, string>;
}

/** One attachment as Cinder's attachments API (3.27) shows it. */
export interface VolumeAttachmentRecord {
  id: string;
  volumeId: string;
  /** The volume's project (who may see the attachment). */
  projectId: string;
  instanceUuid: string;
  status: AttachmentRef['status'];
  attachMode: 'rw' | 'ro';
  attachedAt: string | null;
  /** What the host was given to connect (never a secret for the embedded service's files); {} while only reserved. */
  connectionInfo: Record<string, unknown>;
}

/**
 * What tether's own `/v3` does beyond creating and deleting (the embedded service only; with a real
 * Cinder, clients talk to Cinder): update and metadata, extend (available volumes at once, in-use
 * volumes through the ExtendVolume saga's steps), and the attachments resource.
 */
export interface VolumeEditing {
  updateVolume(volumeId: string, patch: VolumeUpdate): Promise<Volume>;
  setVolumeMetadata(volumeId: string, metadata: Record<string, string>, options: { replace: boolean }): Promise<Record<string, string>>;
  /** Throws TetherError VolumeMetadataNotFound. */
  deleteVolumeMetadata(volumeId: string, key: string): Promise<void>;
  /** Cinder's refusal of an extend to newSize of a volume that must be `expected`, or null. */
  extendRefusal(volumeId: string, newSize: number, expected: 'available' | 'in-use'): Promise<Error | null>;
  /** An available volume, at once. */
  extendVolume(volumeId: string, newSize: number): Promise<Volume>;
  /** In-use → extending (the saga's first block-storage step); a repeat is a no-op. */
  beginExtending(volumeId: string, newSize: number): Promise<void>;
  /** Extending → in-use with the size as it was (the rollback). */
  rollExtending(volumeId: string): Promise<void>;
  /** Grows the backing file when no running QEMU holds it; 'held-by-qemu' leaves it to the host's block resize. */
  growVolume(volumeId: string, newSize: number): Promise<'grown' | 'already' | 'held-by-qemu'>;
  /** Records the new size, extending → in-use. */
  finishExtending(volumeId: string, newSize: number): Promise<void>;
  listAttachments(filter: { projectId?: string; volumeId?: string; instanceUuid?: string; status?: string }): Promise<VolumeAttachmentRecord[]>;
  /** Throws TetherError VolumeAttachmentNotFound. */
  getAttachment(attachmentId: string): Promise<VolumeAttachmentRecord>;
}

/** Whether the block storage is one whose volumes tether edits itself (the embedded service). */
export function isVolumeEditing(blockStorage: object): blockStorage is VolumeEditing {
  return typeof (blockStorage as Partial<VolumeEditing>).beginExtending === 'function';
}

/**
 * Repair (tether repair, the reconciler): the volume's status made to agree with its live
 * attachments, as a `cinder reset-state` done from the facts — in-use with an attached attachment,
 * attaching/reserved with only those, available with none. Statuses outside the attach flow
 * (error, extending, …) are left alone. Returns what changed, null when the status agreed.
 */
export interface VolumeStatusRepair {
  syncStatusWithAttachments(volumeId: string): Promise<{ from: string; to: string } | null>;
}

export function canRepairVolumeStatus(blockStorage: object): blockStorage is VolumeStatusRepair {
  return typeof (blockStorage as Partial<VolumeStatusRepair>).syncStatusWithAttachments === 'function';
}

/**
 * The end of a block-storage migration that swapped an attached volume (Cinder's
 * `os-migrate_volume_completion`, which Nova calls once its swap is done, or failed): the id the
 * attachment keeps (`saveVolumeId`: the source's id after a migration, whose record now points at
 * the destination's data).
 */
export interface VolumeMigrationCompletion {
  migrateVolumeCompletion(volumeId: string, newVolumeId: string, error: boolean): Promise<{ saveVolumeId: string }>;
}

/** Whether the block storage ends migrations for tether (the embedded service, a Cinder client). */
export function completesMigrations(blockStorage: object): blockStorage is VolumeMigrationCompletion {
  return typeof (blockStorage as Partial<VolumeMigrationCompletion>).migrateVolumeCompletion === 'function';
}
