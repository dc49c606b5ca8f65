/** All SQL about block device mappings (BDMs). */
import type { Queryable } from './database.ts';
import type { BdmAttachStatus, BlockDeviceMapping, ConnectionInfo, DiskBus } from '../domain/types.ts';

interface BdmRow {
  uuid: string;
  instance_uuid: string;
  volume_id: string | null;
  source_type: string;
  destination_type: string;
  device_name: string | null;
  disk_bus: DiskBus | null;
  device_type: string | null;
  boot_index: number | null;
  tag: string | null;
  delete_on_termination: boolean;
  attachment_id: string | null;
  attach_status: BdmAttachStatus;
  operation_id: string | null;
  created_at: Date;
  volume_size: number | null;
}

const COLUMNS = `uuid, instance_uuid, volume_id, source_type, destination_type, device_name, disk_bus, device_type,
  boot_index, tag, delete_on_termination, attachment_id, attach_status, operation_id, created_at, volume_size`;

function toBdm(r: BdmRow): BlockDeviceMapping {
  return {
    uuid: r.uuid,
    instanceUuid: r.instance_uuid,
    volumeId: r.volume_id,
    sourceType: r.source_type,
    destinationType: r.destination_type,
    deviceName: r.device_name,
    diskBus: r.disk_bus,
    deviceType: r.device_type,
    bootIndex: r.boot_index,
    tag: r.tag,
    deleteOnTermination: r.delete_on_termination,
    attachmentId: r.attachment_id,
    attachStatus: r.attach_status,
    operationId: r.operation_id,
    createdAt: r.created_at.toISOString(),
    volumeSize: r.volume_size,
  };
}

export async function liveBdmsOfInstance(db: Queryable, instanceUuid: string): Promise<BlockDeviceMapping[]> {
  const { rows } = await db.query<BdmRow>(
    `SELECT ${COLUMNS} FROM block_device_mappings WHERE instance_uuid = $1 AND deleted_at IS NULL
     ORDER BY device_name NULLS LAST, created_at`,
    [instanceUuid],
  );
  return rows.map(toBdm);
}

export async function liveBdm(db: Queryable, instanceUuid: string, volumeId: string): Promise<BlockDeviceMapping | null> {
  const { rows } = await db.query<BdmRow>(
    `SELECT ${COLUMNS} FROM block_device_mappings WHERE instance_uuid = $1 AND volume_id = $2 AND deleted_at IS NULL`,
    [instanceUuid, volumeId],
  );
  return rows[0] ? toBdm(rows[0]) : null;
}

export async function liveBdmsOfVolume(db: Queryable, volumeId: string): Promise<BlockDeviceMapping[]> {
  const { rows } = await db.query<BdmRow>(
    `SELECT ${COLUMNS} FROM block_device_mappings WHERE volume_id = $1 AND deleted_at IS NULL ORDER BY created_at`,
    [volumeId],
  );
  return rows.map(toBdm);
}

export interface NewVolumeBdm {
  uuid: string;
  instanceUuid: string;
  volumeId: string;
  deviceName: string | null;
  diskBus: DiskBus | null;
  deviceType: string;
  tag: string | null;
  deleteOnTermination: boolean;
  operationId: string;
  /** Nova's boot_index: 0 for the volume a server boots from (created with the server), null otherwise. */
  bootIndex?: number | null;
}

export async function insertVolumeBdm(db: Queryable, b: NewVolumeBdm): Promise<BlockDeviceMapping> {
  const { rows } = await db.query<BdmRow>(
    `INSERT INTO block_device_mappings (uuid, instance_uuid, volume_id, source_type, destination_type, device_name,
        disk_bus, device_type, tag, delete_on_termination, operation_id, boot_index)
     VALUES ($1, $2, $3, 'volume', 'volume', $4, $5, $6, $7, $8, $9, $10)
     RETURNING ${COLUMNS}`,
    [b.uuid, b.instanceUuid, b.volumeId, b.deviceName, b.diskBus, b.deviceType, b.tag, b.deleteOnTermination, b.operationId, b.bootIndex ?? null],
  );
  return toBdm(rows[0]!);
}

/** Updates one live BDM; returns false when it no longer exists. */
export async function updateBdm(
  db: Queryable,
  uuid: string,
  patch: { attachmentId?: string; connectionInfo?: ConnectionInfo | null; attachStatus?: BdmAttachStatus; deviceName?: string },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE block_device_mappings SET
        attachment_id   = CASE WHEN $2::boolean THEN $3::uuid ELSE attachment_id END,
        connection_info = CASE WHEN $4::boolean THEN $5::jsonb ELSE connection_info END,
        attach_status   = COALESCE($6, attach_status),
        device_name     = COALESCE($7, device_name),
        updated_at = now()
     WHERE uuid = $1 AND deleted_at IS NULL`,
    [
      uuid,
      patch.attachmentId !== undefined,
      patch.attachmentId ?? null,
      patch.connectionInfo !== undefined,
      patch.connectionInfo === undefined ? null : JSON.stringify(patch.connectionInfo),
      patch.attachStatus ?? null,
      patch.deviceName ?? null,
    ],
  );
  return (rowCount ?? 0) > 0;
}

/** Unshelve: the device name (and bus) a BDM made while its instance was offloaded gets on its new host. */
export async function setBdmDevice(db: Queryable, uuid: string, device: { deviceName: string; diskBus: DiskBus }): Promise<void> {
  await db.query('UPDATE block_device_mappings SET device_name = $2, disk_bus = $3, updated_at = now() WHERE uuid = $1', [uuid, device.deviceName, device.diskBus]);
}

export async function bdmConnectionInfo(db: Queryable, uuid: string): Promise<ConnectionInfo | null> {
  const { rows } = await db.query<{ connection_info: ConnectionInfo | null }>(
    'SELECT connection_info FROM block_device_mappings WHERE uuid = $1 AND deleted_at IS NULL',
    [uuid],
  );
  return rows[0]?.connection_info ?? null;
}

export async function getLiveBdmByUuid(db: Queryable, uuid: string): Promise<BlockDeviceMapping | null> {
  const { rows } = await db.query<BdmRow>(
    `SELECT ${COLUMNS} FROM block_device_mappings WHERE uuid = $1 AND deleted_at IS NULL`,
    [uuid],
  );
  return rows[0] ? toBdm(rows[0]) : null;
}

/** Soft-deletes one BDM; false when it was already gone. */
export async function softDeleteBdm(db: Queryable, uuid: string): Promise<boolean> {
  const { rowCount } = await db.query(
    'UPDATE block_device_mappings SET deleted_at = now(), updated_at = now() WHERE uuid = $1 AND deleted_at IS NULL',
    [uuid],
  );
  return (rowCount ?? 0) > 0;
}

/** Sets a live BDM's attach_status; returns what it was (and whose it is), or null when there is no such BDM. */
export async function setBdmAttachStatus(
  db: Queryable,
  uuid: string,
  attachStatus: BdmAttachStatus,
): Promise<{ previous: BdmAttachStatus; instanceUuid: string; volumeId: string | null } | null> {
  const { rows } = await db.query<{ previous: BdmAttachStatus; instance_uuid: string; volume_id: string | null }>(
    `UPDATE block_device_mappings b SET attach_status = $2, updated_at = now()
       FROM (SELECT uuid, attach_status FROM block_device_mappings WHERE uuid = $1 AND deleted_at IS NULL FOR UPDATE) old
      WHERE b.uuid = old.uuid
     RETURNING old.attach_status AS previous, b.instance_uuid, b.volume_id`,
    [uuid, attachStatus],
  );
  const r = rows[0];
  return r ? { previous: r.previous, instanceUuid: r.instance_uuid, volumeId: r.volume_id } : null;
}

/** Soft-deletes one BDM; returns whose it was, or null when it was already gone. */
export async function softDeleteBdmReturning(db: Queryable, uuid: string): Promise<{ instanceUuid: string; volumeId: string | null } | null> {
  const { rows } = await db.query<{ instance_uuid: string; volume_id: string | null }>(
    `UPDATE block_device_mappings SET deleted_at = now(), updated_at = now() WHERE uuid = $1 AND deleted_at IS NULL
     RETURNING instance_uuid, volume_id`,
    [uuid],
  );
  const r = rows[0];
  return r ? { instanceUuid: r.instance_uuid, volumeId: r.volume_id } : null;
}

/** An extend reached the instance's disk: Nova's bdm.volume_size (GiB). False when the BDM is gone. */
export async function setBdmVolumeSize(db: Queryable, uuid: string, volumeSize: number): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE block_device_mappings SET volume_size = $2, updated_at = now() WHERE uuid = $1 AND deleted_at IS NULL', [uuid, volumeSize]);
  return (rowCount ?? 0) > 0;
}

/** PUT os-volume_attachments (2.85): delete_on_termination of a live BDM. False when the BDM is gone. */
export async function setBdmDeleteOnTermination(db: Queryable, uuid: string, deleteOnTermination: boolean): Promise<boolean> {
  const { rowCount } = await db.query(
    'UPDATE block_device_mappings SET delete_on_termination = $2, updated_at = now() WHERE uuid = $1 AND deleted_at IS NULL',
    [uuid, deleteOnTermination],
  );
  return (rowCount ?? 0) > 0;
}

/** A swap ended: the BDM holds the volume the block storage kept, its new attachment and connection_info. */
export async function setBdmSwappedVolume(
  db: Queryable,
  uuid: string,
  swapped: { volumeId: string; attachmentId: string; connectionInfo: ConnectionInfo },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE block_device_mappings SET volume_id = $2, attachment_id = $3, connection_info = $4::jsonb, updated_at = now()
     WHERE uuid = $1 AND deleted_at IS NULL`,
    [uuid, swapped.volumeId, swapped.attachmentId, JSON.stringify(swapped.connectionInfo)],
  );
  return (rowCount ?? 0) > 0;
}

/** An instance on `host` (or on no host) with a live BDM of `volumeId`, if any: who still needs the volume's secrets there. */
export async function instanceNeedingVolumeOnHost(db: Queryable, volumeId: string, host: string): Promise<string | null> {
  const { rows } = await db.query<{ instance_uuid: string }>(
    `SELECT b.instance_uuid FROM block_device_mappings b JOIN instances i ON i.uuid = b.instance_uuid
     WHERE b.volume_id = $1 AND b.deleted_at IS NULL AND i.deleted_at IS NULL AND (i.host = $2 OR i.host IS NULL) LIMIT 1`,
    [volumeId, host],
  );
  return rows[0]?.instance_uuid ?? null;
}
