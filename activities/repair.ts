/**
 * Control-plane activities of the repair sagas (workflows/repair-volume.ts): reading the pair's
 * database and block-storage state, and the repairs that change them. Every step that changes a
 * store is guarded by the repair's operation generation, in the same transaction as its change where
 * the database is concerned: once a newer attach, detach or repair of the pair took a generation,
 * the repair's steps are refused (OperationSuperseded) and it ends without touching the pair again.
 * Each step is idempotent (by BDM uuid, attachment id, or by checking first).
 */
import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { setTimeout as sleep } from 'node:timers/promises';
import { attachWorkflowId, detachWorkflowId, extendWorkflowId } from '../src/domain/steps.ts';
import { currentGeneration } from '../src/db/operation-generations.ts';
import type { Database, Queryable } from '../src/db/database.ts';
import { withTransaction, isUniqueViolation } from '../src/db/database.ts';
import { getInstance } from '../src/db/instances.ts';
import { insertVolumeBdm, updateBdm } from '../src/db/block-device-mappings.ts';
import { busForDevice } from '../src/domain/device-names.ts';
import type { HostConnector } from '../src/domain/types.ts';
import { canRepairVolumeStatus, type BlockStorage } from '../src/blockstorage/block-storage.ts';
import { readPairStores, type PairStores } from '../src/repair/pair-state.ts';
import { businessFailure, rethrowAsFailure } from './failures.ts';
import { OPERATION_SUPERSEDED } from './host/step-guard.ts';

interface Guarded {
  instanceUuid: string;
  volumeId: string;
  generation: number;
}

/** Refuses (for good) when a newer operation took the pair; locks the pair's generation row meanwhile. */
async function guardPair(tx: Queryable, step: string, g: Guarded): Promise<void> {
  const { rows } = await tx.query<{ generation: string; operation_id: string }>(
    'SELECT generation, operation_id FROM volume_operation_generations WHERE instance_uuid = $1 AND volume_id = $2 FOR UPDATE',
    [g.instanceUuid, g.volumeId],
  );
  const r = rows[0];
  if (r && Number(r.generation) > g.generation) {
    throw ApplicationFailure.nonRetryable(
      `Repair step ${step} of generation ${g.generation} refused: operation ${r.operation_id} (generation ${r.generation}) now owns volume ${g.volumeId} on instance ${g.instanceUuid}`,
      OPERATION_SUPERSEDED,
    );
  }
}

export function createRepairActivities(deps: { db: Database; blockStorage: BlockStorage; client: Client }) {
  const { db, blockStorage, client } = deps;
  const guarded = <T>(step: string, g: Guarded, fn: (tx: Queryable) => Promise<T>) =>
    withTransaction(db, async (tx) => {
      await guardPair(tx, step, g);
      return fn(tx);
    });

  /** Whether a workflow that changes the volume's attachments runs now (visibility). */
  async function volumeOperationRunning(volumeId: string): Promise<boolean> {
    const { count } = await client.workflow.count(
      `VolumeId = '${volumeId}' AND ExecutionStatus = 'Running' AND WorkflowType IN ('attachVolume', 'detachVolume', 'forceDetachVolume', 'extendVolume', 'swapVolume')`,
    );
    return count > 0;
  }

  /** The attach, detach (or force detach) and extend of the pair that run now. */
  async function pairOperationsRunning(instanceUuid: string, volumeId: string): Promise<string[]> {
    const running: string[] = [];
    for (const id of [attachWorkflowId(instanceUuid, volumeId), detachWorkflowId(instanceUuid, volumeId), extendWorkflowId(instanceUuid, volumeId)]) {
      try {
        if ((await client.workflow.getHandle(id).describe()).status.name === 'RUNNING') running.push(id);
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
      }
    }
    return running;
  }

  return {
    /** The pair's operations running now (one look). */
    async pairOperationsRunning(input: { instanceUuid: string; volumeId: string }): Promise<{ running: string[] }> {
      return { running: await pairOperationsRunning(input.instanceUuid, input.volumeId) };
    },

    /** Returns once no attach, detach or extend of the pair runs, whenever it started (heartbeating). */
    async awaitPairOperations(input: { instanceUuid: string; volumeId: string }): Promise<{ waitedMs: number }> {
      const ctx = Context.current();
      const began = Date.now();
      for (;;) {
        const running = await pairOperationsRunning(input.instanceUuid, input.volumeId);
        if (running.length === 0) return { waitedMs: Date.now() - began };
        ctx.heartbeat({ waitingFor: running });
        await sleep(250, undefined, { signal: ctx.cancellationSignal });
      }
    },

    /** The pair's newest generation as it is (0 when no operation took one): the repair acts as of it. */
    async observeGeneration(input: { instanceUuid: string; volumeId: string }): Promise<{ generation: number }> {
      return { generation: (await currentGeneration(db, input.instanceUuid, input.volumeId))?.generation ?? 0 };
    },

    /** What the database and the block storage say about the pair now. */
    async readPairStores(input: { instanceUuid: string; volumeId: string }): Promise<PairStores> {
      return readPairStores({ db, blockStorage }, input.instanceUuid, input.volumeId).catch(rethrowAsFailure);
    },

    /** The BDM of a disk whose row was lost: attached as the disk's target, on the live attachment. Idempotent by uuid. */
    async recreateBdm(input: Guarded & { bdmUuid: string; device: string; attachmentId: string; operationId: string }): Promise<{ created: boolean }> {
      return guarded('recreateBdm', input, async (tx) => {
        const { rows } = await tx.query<{ uuid: string }>(
          'SELECT uuid FROM block_device_mappings WHERE instance_uuid = $1 AND volume_id = $2 AND deleted_at IS NULL',
          [input.instanceUuid, input.volumeId],
        );
        if (rows[0]) {
          if (rows[0].uuid === input.bdmUuid) return { created: false };
          throw businessFailure('VolumeAlreadyAttached', `Instance ${input.instanceUuid} has a BDM of volume ${input.volumeId} again (${rows[0].uuid}): nothing to recreate.`);
        }
        const instance = await getInstance(tx, input.instanceUuid);
        if (!instance) throw businessFailure('InstanceNotFound', `Instance ${input.instanceUuid} could not be found.`);
        try {
          await insertVolumeBdm(tx, {
            uuid: input.bdmUuid,
            instanceUuid: input.instanceUuid,
            volumeId: input.volumeId,
            deviceName: input.device,
            diskBus: busForDevice(input.device, instance.defaultDiskBus),
            deviceType: 'disk',
            tag: null,
            deleteOnTermination: false,
            operationId: input.operationId,
          });
        } catch (err) {
          if (isUniqueViolation(err)) throw businessFailure('DevicePathInUse', `Device ${input.device} of instance ${input.instanceUuid} is held by another BDM.`);
          throw err;
        }
        await updateBdm(tx, input.bdmUuid, { attachmentId: input.attachmentId });
        return { created: true };
      });
    },

    /**
     * Refresh, part 1: the pair's live attachment, made when there is none (the volume's status first
     * made to agree with its attachments, or a reset-state left it refusing the reservation).
     */
    async ensureAttachment(input: Guarded): Promise<{ attachmentId: string; created: boolean }> {
      await guarded('ensureAttachment', input, async () => undefined);
      const existing = await blockStorage.findAttachment(input.volumeId, input.instanceUuid).catch(rethrowAsFailure);
      if (existing) return { attachmentId: existing.attachmentId, created: false };
      if (canRepairVolumeStatus(blockStorage)) await blockStorage.syncStatusWithAttachments(input.volumeId).catch(rethrowAsFailure);
      const { attachmentId } = await blockStorage.createAttachment(input.volumeId, input.instanceUuid).catch(rethrowAsFailure);
      return { attachmentId, created: true };
    },

    /** Refresh, part 2: the attachment updated with the host's connector; connection_info and attachment id recorded on the BDM (never returned). */
    async connectAttachment(input: Guarded & { bdmUuid: string; attachmentId: string; connector: HostConnector; device: string | null }): Promise<void> {
      const connectionInfo = await blockStorage
        .updateAttachment(input.attachmentId, { ...input.connector, ...(input.device ? { mountpoint: input.device } : {}) })
        .catch(rethrowAsFailure);
      await guarded('connectAttachment', input, async (tx) => {
        if (!(await updateBdm(tx, input.bdmUuid, { attachmentId: input.attachmentId, connectionInfo: { ...connectionInfo, serial: input.volumeId } }))) {
          throw businessFailure('VolumeNotAttached', `Block device mapping ${input.bdmUuid} no longer exists`);
        }
      });
    },

    /** Refresh, part 3: the attachment completed (volume in-use) and the BDM attached. */
    async completeRepairAttachment(input: Guarded & { bdmUuid: string; attachmentId: string }): Promise<void> {
      await guarded('completeAttachment', input, async () => undefined);
      await blockStorage.completeAttachment(input.attachmentId).catch(rethrowAsFailure);
      await guarded('completeAttachment', input, (tx) => updateBdm(tx, input.bdmUuid, { attachStatus: 'attached' }));
      // an attachment that was attached already leaves the volume's status where it was (a stuck 'detaching')
      if (canRepairVolumeStatus(blockStorage) && !(await volumeOperationRunning(input.volumeId))) {
        await blockStorage.syncStatusWithAttachments(input.volumeId).catch(rethrowAsFailure);
      }
    },

    /** Shelved-offloaded: a reserved attachment (no connector) recorded on the BDM. */
    async reserveRepairAttachment(input: Guarded & { bdmUuid: string }): Promise<{ attachmentId: string }> {
      await guarded('reserveAttachment', input, async () => undefined);
      const existing = await blockStorage.findAttachment(input.volumeId, input.instanceUuid).catch(rethrowAsFailure);
      const { attachmentId } = existing ?? (await blockStorage.createAttachment(input.volumeId, input.instanceUuid).catch(rethrowAsFailure));
      await guarded('reserveAttachment', input, (tx) => updateBdm(tx, input.bdmUuid, { attachmentId }));
      return { attachmentId };
    },

    /** Compensation of a refresh or a reservation: the attachment this repair made is deleted (never the one that existed before). */
    async deleteAttachmentUnless(input: { instanceUuid: string; volumeId: string; keep: string | null }): Promise<{ deleted: boolean }> {
      const current = await blockStorage.findAttachment(input.volumeId, input.instanceUuid).catch(rethrowAsFailure);
      if (!current || current.attachmentId === input.keep) return { deleted: false };
      await blockStorage.deleteAttachment(current.attachmentId).catch(rethrowAsFailure);
      return { deleted: true };
    },

    async setRepairDeviceName(input: Guarded & { bdmUuid: string; device: string }): Promise<void> {
      await guarded('setDeviceName', input, async (tx) => {
        const instance = await getInstance(tx, input.instanceUuid);
        await tx.query('UPDATE block_device_mappings SET device_name = $2, disk_bus = $3, updated_at = now() WHERE uuid = $1 AND deleted_at IS NULL', [
          input.bdmUuid,
          input.device,
          busForDevice(input.device, instance?.defaultDiskBus ?? 'scsi'),
        ]);
      });
    },

    async deleteRepairAttachment(input: Guarded & { attachmentId: string }): Promise<void> {
      await guarded('deleteAttachment', input, async () => undefined);
      await blockStorage.deleteAttachment(input.attachmentId).catch(rethrowAsFailure);
    },

    /** Soft-deletes the BDM (no-op when gone). */
    async retireBdm(input: Guarded & { bdmUuid: string }): Promise<{ retired: boolean }> {
      return guarded('retireBdm', input, async (tx) => {
        const { rowCount } = await tx.query('UPDATE block_device_mappings SET deleted_at = now(), updated_at = now() WHERE uuid = $1 AND deleted_at IS NULL', [input.bdmUuid]);
        return { retired: (rowCount ?? 0) > 0 };
      });
    },

    /** Compensation of a recreated BDM: retired again (no guard: only this repair's own row, by uuid). */
    async retireRecreatedBdm(input: { bdmUuid: string }): Promise<void> {
      await db.query('UPDATE block_device_mappings SET deleted_at = now(), updated_at = now() WHERE uuid = $1 AND deleted_at IS NULL', [input.bdmUuid]);
    },

    /**
     * The volume's status made to agree with its attachments — unless an attach, detach or extend of
     * the volume runs now (its transitional status is then right). Null when nothing changed.
     */
    async syncVolumeStatus(input: { volumeId: string }): Promise<{ from: string; to: string } | { skipped: string } | null> {
      if (!canRepairVolumeStatus(blockStorage)) return { skipped: `the block storage (${blockStorage.kind}) cannot reset a volume's status` };
      if (await volumeOperationRunning(input.volumeId)) return { skipped: 'an operation of the volume is running' };
      try {
        return await blockStorage.syncStatusWithAttachments(input.volumeId);
      } catch (err) {
        return rethrowAsFailure(err);
      }
    },
  };
}

export type RepairActivities = ReturnType<typeof createRepairActivities>;
