/**
 * Device names on a compute host: the BDM with a reserved device name (Nova's
 * reserve_block_device_name), the name of a BDM made while the instance was offloaded (unshelve), and
 * the host connector, read with the name (one round trip) or in an activity of its own.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { Database } from '../../src/db/database.ts';
import { withTransaction, isUniqueViolation } from '../../src/db/database.ts';
import { getInstance } from '../../src/db/instances.ts';
import { insertVolumeBdm, liveBdm, liveBdmsOfInstance, setBdmDevice } from '../../src/db/block-device-mappings.ts';
import { busForDevice, deviceNamesInUse, nextDeviceName, stripDev } from '../../src/domain/device-names.ts';
import { volumeOperationRefusal } from '../../src/domain/instance-states.ts';
import type { AttachRequest, DiskBus, HostConnector } from '../../src/domain/types.ts';
import { hostConnector } from '../../src/host/connector.ts';
import { diskElements } from '../../src/host/domain-disks.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { recordVolumeEvent } from '../../src/notifications/outbox.ts';
import { currentOperation } from '../../src/notifications/operation.ts';
import type { FaultPoints } from '../fault-points.ts';
import { businessFailure } from '../failures.ts';
import { libvirtFailure } from './libvirt-failures.ts';

export interface ReserveDeviceInput extends AttachRequest {
  /** Chosen by the workflow, so that a retried or repeated reservation finds its own BDM. */
  bdmUuid: string;
  operationId: string;
  /**
   * Also read the host connector in the same activity (attaches started since the
   * 'connector-with-device-name' patch): one round trip to the host instead of two. The connector is
   * read-only host information, so reading it early changes nothing the saga must undo.
   */
  withConnector?: boolean;
}

export interface ReservedDevice {
  bdmUuid: string;
  deviceName: string;
  diskBus: DiskBus;
  /** Present when the input asked for it (withConnector). */
  connector?: HostConnector;
}

export function createDeviceNameActivities(deps: { db: Database; libvirt: LibvirtConnection; host: string; faults: FaultPoints }) {
  const { db, libvirt, host, faults } = deps;

  /** Targets used by the domain's disks, persistent and live. */
  async function domainTargets(instanceUuid: string): Promise<string[]> {
    try {
      const info = await libvirt.lookupDomain(instanceUuid);
      if (!info) return [];
      const xmls = [await libvirt.getXml(instanceUuid, { inactive: true })];
      if (info.active) xmls.push(await libvirt.getXml(instanceUuid));
      return xmls.flatMap((x) => diskElements(x).map((d) => d.target).filter((t): t is string => t !== null));
    } catch (err) {
      throw libvirtFailure(err, 'DiskAttachFailed');
    }
  }

  /** The getHostConnector step's work, wherever the workflow asks for it (its own activity, or with the device name). */
  async function readConnector(): Promise<HostConnector> {
    faults.check('getHostConnector', 'before');
    return hostConnector(host);
  }

  return {
    /**
     * Create the BDM with a reserved device name: the next free name on the bus among the domain's
     * disks and the instance's live BDMs (or the requested one when free). Idempotent by BDM uuid.
     */
    async reserveDeviceName(input: ReserveDeviceInput): Promise<ReservedDevice> {
      faults.check('reserveDeviceName', 'before');
      const targets = await domainTargets(input.instanceUuid);
      let result;
      try {
        result = await withTransaction(db, async (tx) => {
          // Lock the instance row: reservations of one instance serialize even across hosts.
          const instance = await getInstance(tx, input.instanceUuid, { forUpdate: true });
          if (!instance) throw businessFailure('InstanceNotFound', `Instance ${input.instanceUuid} could not be found.`);
          // Checked again under the lock: a delete or shelve may have started since the validation.
          const refusal = volumeOperationRefusal(instance, 'attach_volume');
          if (refusal) throw businessFailure('InstanceInvalidState', refusal);
          const existing = await liveBdm(tx, input.instanceUuid, input.volumeId);
          if (existing) {
            if (existing.uuid === input.bdmUuid && existing.deviceName && existing.diskBus) {
              return { bdmUuid: existing.uuid, deviceName: existing.deviceName, diskBus: existing.diskBus };
            }
            throw businessFailure('VolumeAlreadyAttached', `Invalid volume: volume ${input.volumeId} already attached to instance ${input.instanceUuid}.`);
          }
          const used = deviceNamesInUse(targets, await liveBdmsOfInstance(tx, input.instanceUuid), instance.rootDeviceName);
          let deviceName: string;
          let diskBus: DiskBus;
          if (input.device) {
            if (used.has(stripDev(input.device))) throw businessFailure('DevicePathInUse', `The supplied device path (${input.device}) is in use.`);
            deviceName = input.device;
            diskBus = busForDevice(input.device, (input.diskBus as DiskBus | null) ?? instance.defaultDiskBus);
          } else {
            diskBus = (input.diskBus as DiskBus | null) ?? instance.defaultDiskBus;
            const next = nextDeviceName(diskBus, used);
            if (!next) throw businessFailure('TooManyDiskDevices', `The maximum allowed number of disk devices on instance ${instance.uuid} has been reached.`);
            deviceName = next;
          }
          const bdm = await insertVolumeBdm(tx, {
            uuid: input.bdmUuid,
            instanceUuid: input.instanceUuid,
            volumeId: input.volumeId,
            deviceName,
            diskBus,
            deviceType: input.deviceType ?? 'disk',
            tag: input.tag,
            deleteOnTermination: input.deleteOnTermination,
            operationId: input.operationId,
          });
          await recordVolumeEvent(tx, { eventType: 'instance.volume_attach.start', operation: currentOperation(), instanceUuid: input.instanceUuid, volumeId: input.volumeId });
          return { bdmUuid: bdm.uuid, deviceName, diskBus };
        });
      } catch (err) {
        // The unique indexes caught a race that the row lock did not (should not happen): try again.
        if (isUniqueViolation(err)) throw ApplicationFailure.retryable(`Device name race: ${(err as Error).message}`, 'DeviceNameRace');
        throw err;
      }
      faults.check('reserveDeviceName', 'after');
      if (!input.withConnector) return result;
      return { ...result, connector: await readConnector() };
    },

    /** Unshelve: a BDM created while the instance was offloaded gets its device name now. Idempotent. */
    async assignDeviceName(input: { instanceUuid: string; bdmUuid: string }): Promise<{ deviceName: string }> {
      const targets = await domainTargets(input.instanceUuid);
      return withTransaction(db, async (tx) => {
        const instance = await getInstance(tx, input.instanceUuid, { forUpdate: true });
        if (!instance) throw businessFailure('InstanceNotFound', `Instance ${input.instanceUuid} could not be found.`);
        const bdms = await liveBdmsOfInstance(tx, input.instanceUuid);
        const bdm = bdms.find((b) => b.uuid === input.bdmUuid);
        if (!bdm) throw ApplicationFailure.nonRetryable(`Block device mapping ${input.bdmUuid} no longer exists`, 'DiskAttachFailed');
        if (bdm.deviceName) return { deviceName: bdm.deviceName };
        const bus = bdm.diskBus ?? instance.defaultDiskBus;
        const deviceName = nextDeviceName(bus, deviceNamesInUse(targets, bdms, instance.rootDeviceName));
        if (!deviceName) throw businessFailure('TooManyDiskDevices', `The maximum allowed number of disk devices on instance ${instance.uuid} has been reached.`);
        await setBdmDevice(tx, bdm.uuid, { deviceName, diskBus: bus });
        return { deviceName };
      });
    },

    async getHostConnector(): Promise<HostConnector> {
      return readConnector();
    },
  };
}

export type DeviceNameActivities = ReturnType<typeof createDeviceNameActivities>;
