/**
 * What a compute agent does when it finds its host fenced (a force detach released volumes it could
 * not reach), before it serves any instance queue again: every disk of its instances' domains that
 * belongs to a volume the instance no longer holds — tether attached it once (a BDM of the pair
 * exists, deleted) and no live BDM remains — is unplugged from the persistent config and the live
 * domain, and the volume's libvirt secrets are removed. Disks tether never attached are left alone.
 */
import type { Database } from '../../src/db/database.ts';
import { listInstances } from '../../src/db/instances.ts';
import { diskElements } from '../../src/host/domain-disks.ts';
import { authSecretUuid, encryptionSecretUuid } from '../../src/host/disk-secrets.ts';
import { GuestHeldDisk, unplugDisk } from '../../src/host/unplug-disk.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';

export interface FenceCleanupReport {
  /** Disks removed: the instance, the volume (the disk's serial), where it was. */
  removed: Array<{ instanceUuid: string; volumeId: string; target: string | null }>;
  /** Disks the cleanup could not remove (the guest held it, libvirt failed): the fence stays. */
  failed: Array<{ instanceUuid: string; volumeId: string; error: string }>;
}

/** The volumes an instance once had a BDM of, and whether one is still live. */
async function volumeHistory(db: Database, instanceUuid: string): Promise<Map<string, boolean>> {
  const { rows } = await db.query<{ volume_id: string; live: boolean }>(
    `SELECT volume_id, bool_or(deleted_at IS NULL) AS live FROM block_device_mappings
     WHERE instance_uuid = $1 AND volume_id IS NOT NULL GROUP BY volume_id`,
    [instanceUuid],
  );
  return new Map(rows.map((r) => [r.volume_id, r.live]));
}

export async function cleanUpFencedHost(deps: {
  db: Database;
  libvirt: Pick<LibvirtConnection, 'lookupDomain' | 'getXml' | 'detachDevice' | 'undefineSecret'>;
  host: string;
  unplug?: { waitMs: number; requests: number };
}): Promise<FenceCleanupReport> {
  const { db, libvirt } = deps;
  const report: FenceCleanupReport = { removed: [], failed: [] };
  for (const instance of await listInstances(db, { host: deps.host })) {
    const info = await libvirt.lookupDomain(instance.uuid);
    if (!info) continue;
    const history = await volumeHistory(db, instance.uuid);
    const xmls = [await libvirt.getXml(instance.uuid, { inactive: true }), ...(info.active ? [await libvirt.getXml(instance.uuid)] : [])];
    const released = new Map<string, string | null>();
    for (const disk of xmls.flatMap(diskElements)) {
      if (disk.serial !== null && history.get(disk.serial) === false && !released.has(disk.serial)) released.set(disk.serial, disk.target);
    }
    for (const [volumeId, target] of released) {
      try {
        await unplugDisk(libvirt, instance.uuid, volumeId, info.active, deps.unplug ?? { waitMs: 5_000, requests: 3 });
        await libvirt.undefineSecret(authSecretUuid(volumeId));
        await libvirt.undefineSecret(encryptionSecretUuid(volumeId));
        report.removed.push({ instanceUuid: instance.uuid, volumeId, target });
      } catch (err) {
        report.failed.push({ instanceUuid: instance.uuid, volumeId, error: err instanceof GuestHeldDisk ? err.message : (err as Error).message });
      }
    }
  }
  return report;
}
