/**
 * Reading what every store says about one (server, volume) pair, for the repair planner
 * (src/domain/repair-plan.ts): the database and the block storage (read by the control plane), the
 * domain's disk and the secrets it names (read on the instance's host, or by the CLI's own libvirt
 * connection for a dry run).
 */
import type { Queryable } from '../db/database.ts';
import type { BlockStorage } from '../blockstorage/block-storage.ts';
import type { PairSnapshot } from '../domain/repair-plan.ts';
import type { BdmAttachStatus, VmState } from '../domain/types.ts';
import { TetherError } from '../errors.ts';
import { diskElements } from '../host/domain-disks.ts';
import { LibvirtError, VIR_ERR_NO_DOMAIN, type LibvirtConnection } from '../libvirt/binding.ts';

export type PairStores = Omit<PairSnapshot, 'disk'>;

export async function readPairStores(
  deps: { db: Queryable; blockStorage: Pick<BlockStorage, 'getVolume' | 'findAttachment'> },
  instanceUuid: string,
  volumeId: string,
): Promise<PairStores> {
  const { rows: instances } = await deps.db.query<{ vm_state: VmState; host: string | null; task_state: string | null; deleted: boolean }>(
    'SELECT vm_state, host, task_state, deleted_at IS NOT NULL AS deleted FROM instances WHERE uuid = $1',
    [instanceUuid],
  );
  const i = instances[0];
  const { rows: bdms } = await deps.db.query<{
    uuid: string; attach_status: BdmAttachStatus; device_name: string | null; disk_bus: string | null; attachment_id: string | null; has_ci: boolean;
  }>(
    `SELECT uuid, attach_status, device_name, disk_bus, attachment_id, connection_info IS NOT NULL AS has_ci
     FROM block_device_mappings WHERE instance_uuid = $1 AND volume_id = $2 AND deleted_at IS NULL ORDER BY created_at LIMIT 1`,
    [instanceUuid, volumeId],
  );
  const b = bdms[0];
  let volume: PairStores['volume'] = null;
  let attachment: PairStores['attachment'] = null;
  try {
    const v = await deps.blockStorage.getVolume(volumeId);
    volume = { status: v.status, multiattach: v.multiattach, attachmentStatuses: v.attachments.map((a) => a.status) };
    const mine = v.attachments.find((a) => a.serverId === instanceUuid);
    if (mine) attachment = { id: mine.attachmentId, status: mine.status };
  } catch (err) {
    if (!(err instanceof TetherError && err.type === 'VolumeNotFound')) throw err;
  }
  return {
    instanceUuid,
    volumeId,
    instance: { state: !i ? 'unknown' : i.deleted ? 'deleted' : 'live', vmState: i?.vm_state ?? null, host: i?.host ?? null, taskState: i?.task_state ?? null },
    bdm: b ? {
      uuid: b.uuid,
      attachStatus: b.attach_status,
      deviceName: b.device_name,
      diskBus: b.disk_bus,
      attachmentId: b.attachment_id,
      hasConnectionInfo: b.has_ci,
    } : null,
    volume,
    attachment,
  };
}

/** Secret UUIDs a `<disk>` element names (auth and LUKS passphrase). */
export function secretsNamedBy(diskXml: string): string[] {
  return [...diskXml.matchAll(/<secret\b[^>]*\buuid=['"]([^'"]+)['"]/g)].map((m) => m[1]!);
}

/** The volume's disk in the domain (by serial), and the secrets it names that libvirt lacks. */
export async function readPairDisk(
  libvirt: Pick<LibvirtConnection, 'lookupDomain' | 'getXml' | 'listSecrets'>,
  instanceUuid: string,
  volumeId: string,
): Promise<NonNullable<PairSnapshot['disk']>> {
  try {
    const info = await libvirt.lookupDomain(instanceUuid);
    if (!info) return { domain: false, active: false, configTarget: null, liveTarget: null, missingSecrets: [] };
    const config = diskElements(await libvirt.getXml(instanceUuid, { inactive: true })).find((d) => d.serial === volumeId);
    const live = info.active ? diskElements(await libvirt.getXml(instanceUuid)).find((d) => d.serial === volumeId) : undefined;
    const named = new Set([...(config ? secretsNamedBy(config.xml) : []), ...(live ? secretsNamedBy(live.xml) : [])]);
    let missingSecrets: string[] = [];
    if (named.size > 0) {
      const defined = new Set((await libvirt.listSecrets()).map((s) => s.uuid));
      missingSecrets = [...named].filter((u) => !defined.has(u));
    }
    return { domain: true, active: info.active, configTarget: config?.target ?? null, liveTarget: live?.target ?? null, missingSecrets };
  } catch (err) {
    if (err instanceof LibvirtError && err.code === VIR_ERR_NO_DOMAIN) return { domain: false, active: false, configTarget: null, liveTarget: null, missingSecrets: [] };
    throw err;
  }
}
