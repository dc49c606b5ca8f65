/**
 * Control-plane steps of `tether server import` (workflows/import-server.ts): which disks of the
 * domain are volumes of the block storage, the instance row, and each volume's attachment and BDM
 * recorded as they already are on the host (nothing is plugged: the disk is in the domain already).
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Database } from '../src/db/database.ts';
import { withTransaction } from '../src/db/database.ts';
import { forgetImportedInstance, getInstance, insertInstance, setInstanceState } from '../src/db/instances.ts';
import { insertVolumeBdm, liveBdm, softDeleteBdm, updateBdm } from '../src/db/block-device-mappings.ts';
import type { BlockStorage } from '../src/blockstorage/block-storage.ts';
import type { DiskBus, HostConnector, Volume } from '../src/domain/types.ts';
import type { LeftAloneDisk } from '../src/domain/contracts/import-server.ts';
import type { InspectedDomain } from './host/domain-inspection.ts';
import type { FaultPoints } from './fault-points.ts';
import { businessFailure, rethrowAsFailure } from './failures.ts';
import { TetherError } from '../src/errors.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BUSES: readonly DiskBus[] = ['virtio', 'scsi', 'ide', 'sata', 'usb'];

export interface AdoptableDisk {
  volumeId: string;
  target: string;
  bus: DiskBus;
  deviceType: string;
  source: string | null;
}

export interface ImportPlan {
  instanceUuid: string;
  name: string;
  alreadyImported: boolean;
  vmState: 'active' | 'stopped';
  rootDeviceName: string;
  defaultDiskBus: DiskBus;
  adopt: AdoptableDisk[];
  leftAlone: LeftAloneDisk[];
}

export function createServerImportActivities(deps: { db: Database; blockStorage: BlockStorage; faults: FaultPoints }) {
  const { db, blockStorage, faults } = deps;

  async function volumeOf(serial: string): Promise<Volume | null> {
    try {
      return await blockStorage.getVolume(serial.toLowerCase());
    } catch (err) {
      if (err instanceof TetherError && err.type === 'VolumeNotFound') return null;
      return rethrowAsFailure(err);
    }
  }

  return {
    /** Which of the domain's disks become BDMs (their serial names a volume free to record), and why the others do not. */
    async planServerImport(input: { domain: InspectedDomain; host: string; name: string | null }): Promise<ImportPlan> {
      const d = input.domain;
      const existing = await getInstance(db, d.uuid);
      if (existing && existing.host !== input.host) {
        throw businessFailure('InvalidInput', `Server ${d.uuid} is known to tether already, on host ${existing.host ?? '(none)'}, not ${input.host}.`);
      }
      const adopt: AdoptableDisk[] = [];
      const leftAlone: LeftAloneDisk[] = [];
      for (const disk of d.disks) {
        const alone = (reason: string) => leftAlone.push({ target: disk.target, source: disk.source, serial: disk.serial, reason });
        if (!disk.serial || !UUID.test(disk.serial)) {
          alone('its serial names no volume (not a volume of the block storage)');
          continue;
        }
        const volume = await volumeOf(disk.serial);
        if (!volume) {
          alone(`no volume ${disk.serial} in the block storage`);
          continue;
        }
        // recorded on this server already (an import asked again, or a disk tether attached since): nothing to adopt
        if (existing && (await liveBdm(db, d.uuid, volume.id))) continue;
        const ours = volume.attachments.some((a) => a.serverId === d.uuid);
        if (!ours && volume.status !== 'available') alone(`volume ${volume.id} is ${volume.status}${volume.attachments[0] ? ` (attached to server ${volume.attachments[0].serverId})` : ''}`);
        else if (volume.encrypted) alone(`volume ${volume.id} is encrypted: the domain's LUKS secret is not one tether defined`);
        else if (volume.multiattach) alone(`volume ${volume.id} is multiattach: import it on one server at a time is not supported`);
        else if (disk.network) alone(`volume ${volume.id} is a network disk: tether imports file and block disks`);
        else {
          const bus = BUSES.find((b) => b === disk.bus) ?? (d.scsiController ? 'scsi' : 'virtio');
          adopt.push({ volumeId: volume.id, target: disk.target, bus, deviceType: disk.device, source: disk.source });
        }
      }
      const defaultDiskBus: DiskBus = d.scsiController ? 'scsi' : 'virtio';
      const firstOther = leftAlone[0]?.target;
      return {
        instanceUuid: d.uuid,
        name: input.name ?? existing?.name ?? d.name,
        alreadyImported: existing !== null,
        vmState: d.active ? 'active' : 'stopped',
        // the domain's own first disk (its boot disk) is the root; without one, the bus's first name stays free for it
        rootDeviceName: existing?.rootDeviceName ?? `/dev/${firstOther ?? (defaultDiskBus === 'scsi' ? 'sda' : 'vda')}`,
        defaultDiskBus,
        adopt,
        leftAlone,
      };
    },

    /** The instance row (uuid = the domain's, no task); idempotent. */
    async registerImportedInstance(input: { plan: ImportPlan; host: string; projectId: string; availabilityZone: string; domainName: string }): Promise<void> {
      faults.check('registerImportedInstance', 'before');
      const { plan } = input;
      await insertInstance(db, {
        uuid: plan.instanceUuid,
        name: plan.name,
        projectId: input.projectId,
        host: input.host,
        availabilityZone: input.availabilityZone,
        libvirtDomain: input.domainName,
        rootDeviceName: plan.rootDeviceName,
        defaultDiskBus: plan.defaultDiskBus,
      });
      await setInstanceState(db, plan.instanceUuid, { vmState: plan.vmState, taskState: null });
      faults.check('registerImportedInstance', 'after');
    },

    /** Compensation: the instance row goes (only an import's own, with no live BDM left). */
    async forgetImportedInstance(input: { instanceUuid: string }): Promise<void> {
      if (!(await withTransaction(db, (tx) => forgetImportedInstance(tx, input.instanceUuid)))) {
        throw ApplicationFailure.nonRetryable(`Instance ${input.instanceUuid} has volumes recorded: it is not removed`, 'InvalidInput');
      }
    },

    /**
     * One volume of the domain recorded as it is: its attachment created, connected with the host's
     * connector (its device as mountpoint) and completed; the BDM attached with that connection_info.
     * A volume the block storage keeps elsewhere than the disk's source is left alone (its
     * attachment removed again). Idempotent by BDM uuid.
     */
    async adoptVolume(input: { operationId: string; instanceUuid: string; bdmUuid: string; disk: AdoptableDisk; connector: HostConnector }): Promise<{ adopted: boolean; attachmentId: string | null; reason: string | null }> {
      faults.check('adoptVolume', 'before');
      const { disk } = input;
      const existing = await liveBdm(db, input.instanceUuid, disk.volumeId);
      if (existing && existing.uuid !== input.bdmUuid) throw businessFailure('VolumeAlreadyAttached', `Volume ${disk.volumeId} is recorded on instance ${input.instanceUuid} already.`);
      if (existing?.attachStatus === 'attached') return { adopted: true, attachmentId: existing.attachmentId, reason: null };
      const { attachmentId } = await blockStorage.createAttachment(disk.volumeId, input.instanceUuid).catch(rethrowAsFailure);
      const connectionInfo = await blockStorage.updateAttachment(attachmentId, { ...input.connector, mountpoint: `/dev/${disk.target}` }).catch(rethrowAsFailure);
      const path = connectionInfo.data.path ?? connectionInfo.data.device_path;
      if (typeof path === 'string' && disk.source !== null && path !== disk.source) {
        await blockStorage.deleteAttachment(attachmentId).catch(rethrowAsFailure);
        return { adopted: false, attachmentId: null, reason: `its source ${disk.source} is not where the block storage keeps volume ${disk.volumeId} (${path})` };
      }
      await blockStorage.completeAttachment(attachmentId).catch(rethrowAsFailure);
      await withTransaction(db, async (tx) => {
        if (!existing) {
          await insertVolumeBdm(tx, {
            uuid: input.bdmUuid,
            instanceUuid: input.instanceUuid,
            volumeId: disk.volumeId,
            deviceName: `/dev/${disk.target}`,
            diskBus: disk.bus,
            deviceType: disk.deviceType,
            tag: null,
            deleteOnTermination: false,
            operationId: input.operationId,
          });
        }
        await updateBdm(tx, input.bdmUuid, { attachmentId, connectionInfo: { ...connectionInfo, serial: disk.volumeId }, attachStatus: 'attached' });
      });
      faults.check('adoptVolume', 'after');
      return { adopted: true, attachmentId, reason: null };
    },

    /** Compensation: the volume's BDM and attachment go; the disk stays in the domain as it was. */
    async releaseAdoptedVolume(input: { instanceUuid: string; bdmUuid: string; volumeId: string }): Promise<void> {
      await softDeleteBdm(db, input.bdmUuid);
      const attachment = await blockStorage.findAttachment(input.volumeId, input.instanceUuid).catch(rethrowAsFailure);
      if (attachment) await blockStorage.deleteAttachment(attachment.attachmentId).catch(rethrowAsFailure);
    },
  };
}

export type ServerImportActivities = ReturnType<typeof createServerImportActivities>;
