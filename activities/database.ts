/**
 * Control-plane activities that touch tether's own database (and read the block storage to validate).
 * They run on the control-plane task queue.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Database } from '../src/db/database.ts';
import { getInstance, setInstanceState } from '../src/db/instances.ts';
import { liveBdm, softDeleteBdm, updateBdm } from '../src/db/block-device-mappings.ts';
import { isValidDevicePath } from '../src/domain/device-names.ts';
import { volumeOperationRefusal } from '../src/domain/instance-states.ts';
import type { BlockStorage } from '../src/blockstorage/block-storage.ts';
import type { FaultInjector } from '../src/faults.ts';
import { businessFailure, rethrowAsFailure } from './failures.ts';

export interface AttachRequest {
  instanceUuid: string;
  volumeId: string;
  device: string | null;
  tag: string | null;
  deleteOnTermination: boolean;
  diskBus: string | null;
  deviceType: string | null;
}

export interface ValidatedAttach {
  instanceUuid: string;
  host: string | null;
  shelvedOffloaded: boolean;
  multiattach: boolean;
}

export interface ValidatedDetach {
  bdmUuid: string;
  attachmentId: string | null;
  deviceName: string | null;
  shelvedOffloaded: boolean;
  wasAttached: boolean;
}

export function createDatabaseActivities(deps: { db: Database; blockStorage: BlockStorage; faults: FaultInjector }) {
  const { db, blockStorage, faults } = deps;
  return {
    /** Everything Nova checks before it changes anything; failures are final (non-retryable). */
    async validateAttach(req: AttachRequest): Promise<ValidatedAttach> {
      faults.check('validate', 'before');
      const instance = await getInstance(db, req.instanceUuid);
      if (!instance) throw businessFailure('InstanceNotFound', `Instance ${req.instanceUuid} could not be found.`);
      const refusal = volumeOperationRefusal(instance, 'attach_volume');
      if (refusal) throw businessFailure('InstanceInvalidState', refusal);
      if (instance.locked) throw businessFailure('InstanceLocked', `Instance ${instance.uuid} is locked`);
      if (req.device !== null && !isValidDevicePath(req.device)) {
        throw businessFailure('InvalidDevicePath', `The supplied device path (${req.device}) is invalid.`);
      }
      const shelvedOffloaded = instance.vmState === 'shelved_offloaded';
      if (shelvedOffloaded && req.tag !== null) {
        throw businessFailure('TaggedAttachToShelvedNotSupported', 'Tagged volume attachment is not supported for shelved-offloaded instances.');
      }
      const volume = await blockStorage.getVolume(req.volumeId).catch(rethrowAsFailure);
      const existing = await liveBdm(db, instance.uuid, volume.id);
      if (existing || volume.attachments.some((a) => a.serverId === instance.uuid)) {
        throw businessFailure('VolumeAlreadyAttached', `Invalid volume: volume ${volume.id} already attached to instance ${instance.uuid}.`);
      }
      if (shelvedOffloaded && volume.multiattach) {
        throw businessFailure('MultiattachToShelvedNotSupported', 'Attaching multiattach volumes is not supported for shelved-offloaded instances.');
      }
      const usable = volume.status === 'available' || (volume.multiattach && volume.status === 'in-use');
      if (!usable) {
        throw businessFailure('VolumeNotAvailable', `Invalid volume: volume ${volume.id} status must be available, but current status is: ${volume.status}.`);
      }
      if (volume.availabilityZone !== instance.availabilityZone) {
        throw businessFailure(
          'AvailabilityZoneMismatch',
          `Invalid volume: Instance ${instance.uuid} and volume ${volume.id} are not in the same availability_zone. Instance is in ${instance.availabilityZone}. Volume is in ${volume.availabilityZone}.`,
        );
      }
      faults.check('validate', 'after');
      return { instanceUuid: instance.uuid, host: instance.host, shelvedOffloaded, multiattach: volume.multiattach };
    },

    /** Nova's detach checks: the instance state, the volume attached to this instance, not the root device. */
    async validateDetach(input: { instanceUuid: string; volumeId: string }): Promise<ValidatedDetach> {
      faults.check('validateDetach', 'before');
      const instance = await getInstance(db, input.instanceUuid);
      if (!instance) throw businessFailure('InstanceNotFound', `Instance ${input.instanceUuid} could not be found.`);
      const refusal = volumeOperationRefusal(instance, 'detach_volume');
      if (refusal) throw businessFailure('InstanceInvalidState', refusal);
      if (instance.locked) throw businessFailure('InstanceLocked', `Instance ${instance.uuid} is locked`);
      const bdm = await liveBdm(db, instance.uuid, input.volumeId);
      if (!bdm) throw businessFailure('VolumeNotAttached', `Instance ${instance.uuid} is not attached to volume ${input.volumeId}`);
      if (bdm.bootIndex === 0 || (bdm.deviceName !== null && bdm.deviceName === instance.rootDeviceName)) {
        throw businessFailure('RootDeviceDetach', 'Cannot detach a root device volume');
      }
      return {
        bdmUuid: bdm.uuid,
        attachmentId: bdm.attachmentId,
        deviceName: bdm.deviceName,
        shelvedOffloaded: instance.vmState === 'shelved_offloaded',
        wasAttached: bdm.attachStatus === 'attached',
      };
    },

    async setBdmAttachStatus(input: { bdmUuid: string; attachStatus: 'attached' | 'detaching' }): Promise<void> {
      await updateBdm(db, input.bdmUuid, { attachStatus: input.attachStatus });
    },

    /** The BDM is done: it records the attachment as attached. */
    async markBdmAttached(input: { bdmUuid: string }): Promise<void> {
      if (!(await updateBdm(db, input.bdmUuid, { attachStatus: 'attached' }))) {
        throw ApplicationFailure.nonRetryable(`Block device mapping ${input.bdmUuid} disappeared`, 'DiskAttachFailed');
      }
    },

    /** Compensation for the BDM: soft-deletes the mapping this workflow created (by its uuid); safe when there is none. */
    async destroyBdm(input: { bdmUuid: string }): Promise<{ destroyed: boolean }> {
      faults.check('destroyBdm', 'before');
      return { destroyed: await softDeleteBdm(db, input.bdmUuid) };
    },

    async markInstanceActive(input: { instanceUuid: string }): Promise<void> {
      await setInstanceState(db, input.instanceUuid, { vmState: 'active', taskState: null });
    },

    async markInstanceError(input: { instanceUuid: string }): Promise<void> {
      await setInstanceState(db, input.instanceUuid, { vmState: 'error', taskState: null });
    },
  };
}

export type DatabaseActivities = ReturnType<typeof createDatabaseActivities>;
