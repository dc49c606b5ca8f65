/**
 * Control-plane steps of a volume swap (workflows/swap-volume.ts): its checks, the new volume's
 * attachment and connection (connection_info goes to the volume_swaps row, never into history), the
 * end of the block storage's migration, and the BDM that follows the disk once it has pivoted.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Database } from '../src/db/database.ts';
import { withTransaction } from '../src/db/database.ts';
import { getInstance } from '../src/db/instances.ts';
import { liveBdm, setBdmSwappedVolume } from '../src/db/block-device-mappings.ts';
import { getVolumeSwap, recordVolumeSwap, updateVolumeSwap } from '../src/db/volume-swaps.ts';
import { completesMigrations, type BlockStorage } from '../src/blockstorage/block-storage.ts';
import type { HostConnector } from '../src/domain/types.ts';
import { swapRefusal } from '../src/domain/swap-rules.ts';
import type { FaultPoints } from './fault-points.ts';
import { businessFailure, rethrowAsFailure } from './failures.ts';

export interface ValidatedSwap {
  bdmUuid: string;
  oldAttachmentId: string | null;
  deviceName: string | null;
  host: string;
}

export function createVolumeSwapActivities(deps: { db: Database; blockStorage: BlockStorage; faults: FaultPoints }) {
  const { db, blockStorage, faults } = deps;
  return {
    /** Nova's swap checks, and tether's: both volumes plain (no LUKS, no multiattach) and of one size, the old one migrating. */
    async validateSwap(input: { instanceUuid: string; oldVolumeId: string; newVolumeId: string }): Promise<ValidatedSwap> {
      faults.check('validateSwap', 'before');
      const instance = await getInstance(db, input.instanceUuid);
      if (!instance) throw businessFailure('InstanceNotFound', `Instance ${input.instanceUuid} could not be found.`);
      const bdm = await liveBdm(db, instance.uuid, input.oldVolumeId);
      const [oldVolume, newVolume] = await Promise.all([
        blockStorage.getVolume(input.oldVolumeId).catch(rethrowAsFailure),
        blockStorage.getVolume(input.newVolumeId).catch(rethrowAsFailure),
      ]);
      const refusal = swapRefusal(instance, bdm, oldVolume, newVolume);
      if (refusal) throw businessFailure(refusal.type, refusal.message);
      return { bdmUuid: bdm!.uuid, oldAttachmentId: bdm!.attachmentId, deviceName: bdm!.deviceName, host: instance.host! };
    },

    /** Reserve the new volume for the instance (its attachment), recorded on the swap's row. Idempotent. */
    async reserveSwapVolume(input: { operationId: string; instanceUuid: string; bdmUuid: string; oldVolumeId: string; newVolumeId: string }): Promise<{ attachmentId: string }> {
      faults.check('reserveSwapVolume', 'before');
      await recordVolumeSwap(db, input);
      const { attachmentId } = await blockStorage.createAttachment(input.newVolumeId, input.instanceUuid).catch(rethrowAsFailure);
      await updateVolumeSwap(db, input.operationId, { newAttachmentId: attachmentId });
      faults.check('reserveSwapVolume', 'after');
      return { attachmentId };
    },

    /** The block storage exports the new volume to the host: its connection_info is kept on the swap's row. */
    async initializeSwapConnection(input: { operationId: string; attachmentId: string; connector: HostConnector; device: string | null }): Promise<{ driverVolumeType: string }> {
      faults.check('initializeSwapConnection', 'before');
      const connectionInfo = await blockStorage
        .updateAttachment(input.attachmentId, { ...input.connector, ...(input.device ? { mountpoint: input.device } : {}) })
        .catch(rethrowAsFailure);
      if (!(await updateVolumeSwap(db, input.operationId, { connectionInfo }))) {
        throw ApplicationFailure.nonRetryable(`Swap ${input.operationId} is not recorded`, 'SwapFailed');
      }
      faults.check('initializeSwapConnection', 'after');
      return { driverVolumeType: connectionInfo.driver_volume_type };
    },

    /** The disk pivoted: from here on the swap only moves forward (the checker and repairs read this). */
    async recordSwapPivot(input: { operationId: string }): Promise<void> {
      await updateVolumeSwap(db, input.operationId, { state: 'pivoted' });
    },

    /** Cinder's os-migrate_volume_completion: the id the attachment keeps (the old one after a migration). */
    async completeVolumeMigration(input: { oldVolumeId: string; newVolumeId: string; error: boolean }): Promise<{ saveVolumeId: string }> {
      faults.check('completeVolumeMigration', 'before');
      if (!completesMigrations(blockStorage)) return { saveVolumeId: input.error ? input.oldVolumeId : input.newVolumeId };
      return blockStorage.migrateVolumeCompletion(input.oldVolumeId, input.newVolumeId, input.error).catch(rethrowAsFailure);
    },

    /**
     * The BDM follows the disk: the volume the block storage kept, the new attachment, the new
     * connection_info (its serial the disk's, which QEMU cannot change). The swap's row ends 'completed'.
     */
    async recordSwapOnBdm(input: { operationId: string; saveVolumeId: string }): Promise<void> {
      faults.check('recordSwapOnBdm', 'before');
      await withTransaction(db, async (tx) => {
        const swap = await getVolumeSwap(tx, input.operationId);
        if (!swap?.connectionInfo || !swap.newAttachmentId) throw ApplicationFailure.nonRetryable(`Swap ${input.operationId} has no new attachment`, 'SwapFailed');
        if (swap.state === 'completed') return;
        const data = { ...swap.connectionInfo.data, ...('volume_id' in swap.connectionInfo.data ? { volume_id: input.saveVolumeId } : {}) };
        const connectionInfo = { ...swap.connectionInfo, data, serial: swap.oldVolumeId };
        await setBdmSwappedVolume(tx, swap.bdmUuid, { volumeId: input.saveVolumeId, attachmentId: swap.newAttachmentId, connectionInfo });
        await updateVolumeSwap(tx, input.operationId, { state: 'completed' });
      });
    },

    /**
     * Compensation before the pivot (and of a swap refused at validation): the new volume's
     * attachment goes (the volume is available again), the block storage's migration of the old
     * volume to the new one ends with an error (Nova does the same), the swap's row says rolled back.
     */
    async abandonSwap(input: { operationId: string; instanceUuid: string; oldVolumeId: string; newVolumeId: string }): Promise<void> {
      const swap = await getVolumeSwap(db, input.operationId);
      if (swap?.state === 'pivoted' || swap?.state === 'completed') {
        throw ApplicationFailure.nonRetryable(`Swap ${input.operationId} pivoted already: it can only go forward`, 'SwapFailed');
      }
      if (swap) {
        const attachmentId = swap.newAttachmentId ?? (await blockStorage.findAttachment(input.newVolumeId, input.instanceUuid).catch(rethrowAsFailure))?.attachmentId;
        if (attachmentId) await blockStorage.deleteAttachment(attachmentId).catch(rethrowAsFailure);
      }
      if (completesMigrations(blockStorage)) {
        const [oldVolume, newVolume] = await Promise.all([blockStorage.getVolume(input.oldVolumeId), blockStorage.getVolume(input.newVolumeId)].map((p) => p.catch(() => null)));
        // only this migration: the old volume migrating to the new one
        if (oldVolume?.migrationStatus === 'migrating' && newVolume?.migrationStatus === `target:${input.oldVolumeId}`) {
          await blockStorage.migrateVolumeCompletion(input.oldVolumeId, input.newVolumeId, true).catch(rethrowAsFailure);
        }
      }
      if (swap) await updateVolumeSwap(db, input.operationId, { state: 'rolled-back' });
    },
  };
}

export type VolumeSwapActivities = ReturnType<typeof createVolumeSwapActivities>;
