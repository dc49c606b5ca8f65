/**
 * Control-plane activities that touch tether's own database (and read the block storage to validate).
 * They run on the control-plane task queue.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Database } from '../src/db/database.ts';
import { withTransaction, isUniqueViolation } from '../src/db/database.ts';
import { beginInstanceTask, getInstance, markInstanceDeleted, setInstanceHost, setInstanceState } from '../src/db/instances.ts';
import {
  insertVolumeBdm,
  liveBdm,
  liveBdmsOfInstance,
  liveBdmsOfVolume,
  setBdmAttachStatus,
  setBdmVolumeSize,
  softDeleteBdmReturning,
} from '../src/db/block-device-mappings.ts';
import { recordVolumeEvent } from '../src/notifications/outbox.ts';
import { takeGeneration } from '../src/db/operation-generations.ts';
import { fenceHost, getComputeHost } from '../src/db/compute-hosts.ts';
import { currentOperation } from '../src/notifications/operation.ts';
import type { NotificationFault } from '../src/notifications/volume-events.ts';
import type { AttachRequest, DiskBus, VmState } from '../src/domain/types.ts';
import { attachRefusal } from '../src/domain/attach-rules.ts';
import { volumeOperationRefusal } from '../src/domain/instance-states.ts';
import { isVolumeEditing, type BlockStorage } from '../src/blockstorage/block-storage.ts';
import type { FaultPoints } from './fault-points.ts';
import { businessFailure, rethrowAsFailure } from './failures.ts';

export type { AttachRequest };

export interface ValidatedAttach {
  instanceUuid: string;
  host: string | null;
  shelvedOffloaded: boolean;
  multiattach: boolean;
}

export interface InstanceVolume {
  bdmUuid: string;
  volumeId: string;
  deviceName: string | null;
  attachmentId: string | null;
  deleteOnTermination: boolean;
}

export interface ValidatedDetach {
  bdmUuid: string;
  attachmentId: string | null;
  deviceName: string | null;
  shelvedOffloaded: boolean;
  wasAttached: boolean;
}

export interface ValidatedForceDetach {
  host: string;
  bdmUuid: string | null;
  attachmentId: string | null;
  deviceName: string | null;
  /** An operator forced the host down (Nova's forced_down): no point asking it. */
  hostForcedDown: boolean;
  /** The host is fenced already: its agent cleans up whatever is released before it serves again. */
  hostFenced: boolean;
}

export interface ValidatedExtend {
  bdmUuid: string;
  /** The size (GiB) the disk goes to: the one asked, or the block storage's when it already grew the volume. */
  size: number;
  /** Other servers the (multiattach) volume is attached to, told once it has grown (as Cinder tells Nova). */
  otherInstances: Array<{ instanceUuid: string; host: string | null }>;
}

export function createDatabaseActivities(deps: { db: Database; blockStorage: BlockStorage; faults: FaultPoints }) {
  const { db, blockStorage, faults } = deps;
  return {
    /** Everything Nova checks before it changes anything; failures are final (non-retryable). */
    async validateAttach(req: AttachRequest): Promise<ValidatedAttach> {
      faults.check('validate', 'before');
      const instance = await getInstance(db, req.instanceUuid);
      if (!instance) throw businessFailure('InstanceNotFound', `Instance ${req.instanceUuid} could not be found.`);
      const volume = await blockStorage.getVolume(req.volumeId).catch(rethrowAsFailure);
      const refusal = attachRefusal(instance, volume, await liveBdm(db, instance.uuid, volume.id), req);
      if (refusal) throw businessFailure(refusal.type, refusal.message);
      const shelvedOffloaded = instance.vmState === 'shelved_offloaded';
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

    /**
     * An extend's checks: the volume attached to this instance (an attached BDM), and with a size to
     * grow to (the block storage's refusal, in Cinder's words, when the volume is not in-use or not
     * smaller); without one, the size the block storage already grew the volume to.
     */
    async validateExtend(input: { instanceUuid: string; volumeId: string; newSize: number | null }): Promise<ValidatedExtend> {
      faults.check('validateExtend', 'before');
      const instance = await getInstance(db, input.instanceUuid);
      if (!instance) throw businessFailure('InstanceNotFound', `Instance ${input.instanceUuid} could not be found.`);
      const bdm = await liveBdm(db, instance.uuid, input.volumeId);
      if (!bdm || bdm.attachStatus !== 'attached') {
        throw businessFailure('VolumeNotAttached', `Instance ${instance.uuid} is not attached to volume ${input.volumeId}`);
      }
      const volume = await blockStorage.getVolume(input.volumeId).catch(rethrowAsFailure);
      let otherInstances: ValidatedExtend['otherInstances'] = [];
      if (input.newSize !== null) {
        if (!isVolumeEditing(blockStorage)) {
          throw businessFailure('NotImplemented', `The block storage (${blockStorage.kind}) extends its volumes itself, then tells tether (volume-extended).`);
        }
        const refusal = await blockStorage.extendRefusal(input.volumeId, input.newSize, 'in-use');
        // a repeat of this step after the volume began extending is not a refusal
        if (refusal && volume.status !== 'extending') throw rethrowAsFailure(refusal);
        const others = (await liveBdmsOfVolume(db, input.volumeId)).filter((b) => b.instanceUuid !== instance.uuid && b.attachStatus === 'attached');
        otherInstances = await Promise.all(others.map(async (b) => ({ instanceUuid: b.instanceUuid, host: (await getInstance(db, b.instanceUuid))?.host ?? null })));
      }
      return { bdmUuid: bdm.uuid, size: input.newSize ?? volume.size, otherInstances };
    },

    /** The disk reached its new size: the BDM's volume_size (Nova's). No-op when the BDM is gone (detached meanwhile). */
    async recordVolumeSize(input: { bdmUuid: string; size: number }): Promise<{ recorded: boolean }> {
      faults.check('recordVolumeSize', 'before');
      return { recorded: await setBdmVolumeSize(db, input.bdmUuid, input.size) };
    },

    /**
     * Detach: 'detaching' when it begins (notification volume_detach.start), back to 'attached' when it
     * is rolled back (volume_detach.error, with the workflow's `fault`), in one transaction each.
     */
    async setBdmAttachStatus(input: { bdmUuid: string; attachStatus: 'attached' | 'detaching'; fault?: NotificationFault | null }): Promise<void> {
      await withTransaction(db, async (tx) => {
        const bdm = await setBdmAttachStatus(tx, input.bdmUuid, input.attachStatus);
        if (!bdm?.volumeId) return;
        const event = { operation: currentOperation(), instanceUuid: bdm.instanceUuid, volumeId: bdm.volumeId };
        if (input.attachStatus === 'detaching') await recordVolumeEvent(tx, { ...event, eventType: 'instance.volume_detach.start' });
        else await recordVolumeEvent(tx, { ...event, eventType: 'instance.volume_detach.error', after: 'instance.volume_detach.start', fault: input.fault });
      });
    },

    /** The BDM is done: it records the attachment as attached (notification volume_attach.end, same transaction). */
    async markBdmAttached(input: { bdmUuid: string }): Promise<void> {
      await withTransaction(db, async (tx) => {
        const bdm = await setBdmAttachStatus(tx, input.bdmUuid, 'attached');
        if (!bdm) throw ApplicationFailure.nonRetryable(`Block device mapping ${input.bdmUuid} disappeared`, 'DiskAttachFailed');
        if (bdm.volumeId) {
          await recordVolumeEvent(tx, {
            eventType: 'instance.volume_attach.end',
            after: 'instance.volume_attach.start',
            operation: currentOperation(),
            instanceUuid: bdm.instanceUuid,
            volumeId: bdm.volumeId,
          });
        }
      });
    },

    /**
     * Compensation for the BDM: soft-deletes the mapping this workflow created (by its uuid); safe when there is none.
     * Also the last step of a detach. Notification, same transaction: volume_attach.error (with the workflow's
     * `fault`) when this operation's attach started, volume_detach.end when its detach did.
     */
    async destroyBdm(input: { bdmUuid: string; fault?: NotificationFault | null }): Promise<{ destroyed: boolean }> {
      faults.check('destroyBdm', 'before');
      return withTransaction(db, async (tx) => {
        const bdm = await softDeleteBdmReturning(tx, input.bdmUuid);
        if (bdm?.volumeId) {
          const event = { operation: currentOperation(), instanceUuid: bdm.instanceUuid, volumeId: bdm.volumeId };
          const attachFailed = await recordVolumeEvent(tx, {
            ...event,
            eventType: 'instance.volume_attach.error',
            after: 'instance.volume_attach.start',
            fault: input.fault ?? { type: 'AttachFailed', message: 'The attach failed and was rolled back', step: null },
          });
          if (!attachFailed) await recordVolumeEvent(tx, { ...event, eventType: 'instance.volume_detach.end', after: 'instance.volume_detach.start' });
        }
        return { destroyed: bdm !== null };
      });
    },

    /** Shelved-offloaded attach: the BDM without a device name (chosen at unshelve). Idempotent by uuid. */
    async createShelvedBdm(input: {
      bdmUuid: string;
      operationId: string;
      instanceUuid: string;
      volumeId: string;
      deleteOnTermination: boolean;
      diskBus: string | null;
      deviceType: string | null;
    }): Promise<{ bdmUuid: string }> {
      faults.check('createShelvedBdm', 'before');
      const existing = await liveBdm(db, input.instanceUuid, input.volumeId);
      if (existing) {
        if (existing.uuid === input.bdmUuid) return { bdmUuid: existing.uuid };
        throw businessFailure('VolumeAlreadyAttached', `Invalid volume: volume ${input.volumeId} already attached to instance ${input.instanceUuid}.`);
      }
      try {
        await insertVolumeBdm(db, {
          uuid: input.bdmUuid,
          instanceUuid: input.instanceUuid,
          volumeId: input.volumeId,
          deviceName: null,
          diskBus: (input.diskBus as DiskBus | null) ?? null,
          deviceType: input.deviceType ?? 'disk',
          tag: null,
          deleteOnTermination: input.deleteOnTermination,
          operationId: input.operationId,
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw businessFailure('VolumeAlreadyAttached', `Invalid volume: volume ${input.volumeId} already attached to instance ${input.instanceUuid}.`);
        throw err;
      }
      return { bdmUuid: input.bdmUuid };
    },

    /** The volume BDMs of an instance, for the server lifecycle workflows (no connection_info). */
    async volumeBdmsOf(input: { instanceUuid: string }): Promise<InstanceVolume[]> {
      return (await liveBdmsOfInstance(db, input.instanceUuid))
        .filter((b) => b.volumeId !== null)
        .map((b) => ({
          bdmUuid: b.uuid,
          volumeId: b.volumeId!,
          deviceName: b.deviceName,
          attachmentId: b.attachmentId,
          deleteOnTermination: b.deleteOnTermination,
        }));
    },

    /**
     * The operation's generation (src/db/operation-generations.ts), made the newest of each pair it
     * acts on: host steps of older operations on those pairs are refused from now on.
     */
    async takeGeneration(input: { operationId: string; pairs: Array<{ instanceUuid: string; volumeId: string }> }): Promise<{ generation: number }> {
      return { generation: await takeGeneration(db, input.operationId, input.pairs) };
    },

    /**
     * A force detach's checks: the instance has a host; the volume is attached (a live BDM) or being
     * attached (an attachment at the block storage); not its root device. The instance's state and
     * task do not matter (its host is what is in question), nor its lock (an operator asks).
     */
    async validateForceDetach(input: { instanceUuid: string; volumeId: string }): Promise<ValidatedForceDetach> {
      const instance = await getInstance(db, input.instanceUuid);
      if (!instance) throw businessFailure('InstanceNotFound', `Instance ${input.instanceUuid} could not be found.`);
      if (!instance.host) {
        throw businessFailure('InvalidInput', `Instance ${instance.uuid} has no host (${instance.vmState}): a plain detach releases its volume without asking any host.`);
      }
      const bdm = await liveBdm(db, instance.uuid, input.volumeId);
      if (bdm && (bdm.bootIndex === 0 || (bdm.deviceName !== null && bdm.deviceName === instance.rootDeviceName))) {
        throw businessFailure('RootDeviceDetach', 'Cannot detach a root device volume');
      }
      const attachment = await blockStorage.findAttachment(input.volumeId, instance.uuid).catch(rethrowAsFailure);
      if (!bdm && !attachment) throw businessFailure('VolumeNotAttached', `Instance ${instance.uuid} is not attached to volume ${input.volumeId}`);
      const host = await getComputeHost(db, instance.host);
      return {
        host: instance.host,
        bdmUuid: bdm?.uuid ?? null,
        attachmentId: bdm?.attachmentId ?? attachment?.attachmentId ?? null,
        deviceName: bdm?.deviceName ?? null,
        hostForcedDown: host?.forcedDown ?? false,
        hostFenced: host?.fence !== null && host?.fence !== undefined,
      };
    },

    /** Fences the host (a new epoch each time): its agent cleans up before it serves any instance queue again. */
    async fenceHost(input: { host: string; operationId: string; reason: string }): Promise<{ epoch: number }> {
      return { epoch: await fenceHost(db, input.host, { operationId: input.operationId, reason: input.reason }) };
    },

    /** Starts a task on the instance (task_state) if its vm_state allows it; final refusal otherwise. */
    async beginInstanceTask(input: { instanceUuid: string; task: string; allowedVmStates: VmState[] | 'any' }): Promise<void> {
      faults.check('beginInstanceTask', 'before');
      const refusal = await withTransaction(db, (tx) => beginInstanceTask(tx, input.instanceUuid, input.task, input.allowedVmStates));
      if (refusal) throw businessFailure(refusal.endsWith('could not be found.') ? 'InstanceNotFound' : 'InstanceInvalidState', refusal);
    },

    /** Ends the task: the new vm_state (and host, when it changes), task_state cleared. */
    async finishInstanceTask(input: { instanceUuid: string; vmState: VmState; host?: string | null }): Promise<void> {
      faults.check('finishInstanceTask', 'before');
      await setInstanceState(db, input.instanceUuid, { vmState: input.vmState, taskState: null, ...(input.host !== undefined ? { host: input.host } : {}) });
      faults.check('finishInstanceTask', 'after');
    },

    /** Unshelve of an offloaded instance: it gets a host (whose compute agent then serves its queue). */
    async setInstanceHost(input: { instanceUuid: string; host: string }): Promise<void> {
      faults.check('setInstanceHost', 'before');
      await setInstanceHost(db, input.instanceUuid, input.host);
      faults.check('setInstanceHost', 'after');
    },

    async markInstanceDeleted(input: { instanceUuid: string }): Promise<void> {
      faults.check('markInstanceDeleted', 'before');
      await markInstanceDeleted(db, input.instanceUuid);
      faults.check('markInstanceDeleted', 'after');
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
