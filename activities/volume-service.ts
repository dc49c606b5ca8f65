/**
 * Control-plane activities that talk to the block storage (Cinder's attachments API shape).
 * connection_info is written straight into the BDM row and never returned, so storage secrets
 * never enter workflow history.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Database } from '../src/db/database.ts';
import { updateBdm } from '../src/db/block-device-mappings.ts';
import { isVolumeEditing, type BlockStorage, type VolumeEditing } from '../src/blockstorage/block-storage.ts';
import type { HostConnector } from '../src/domain/types.ts';
import type { FaultPoints } from './fault-points.ts';
import { businessFailure, rethrowAsFailure } from './failures.ts';
import { TetherError } from '../src/errors.ts';

export function createVolumeServiceActivities(deps: { db: Database; blockStorage: BlockStorage; faults: FaultPoints }) {
  const { db, blockStorage, faults } = deps;

  async function recordOnBdm(bdmUuid: string, patch: Parameters<typeof updateBdm>[2]): Promise<void> {
    if (!(await updateBdm(db, bdmUuid, patch))) {
      throw ApplicationFailure.nonRetryable(`Block device mapping ${bdmUuid} no longer exists`, 'DiskAttachFailed');
    }
  }

  /** The block storage's extend steps: the embedded service only (a Cinder grows its volumes itself). */
  function editing(): VolumeEditing {
    if (!isVolumeEditing(blockStorage)) throw businessFailure('NotImplemented', `The block storage (${blockStorage.kind}) extends its volumes itself.`);
    return blockStorage;
  }

  return {
    /** Extend of an in-use volume begins: in-use → extending (refused in Cinder's words otherwise). */
    async beginExtending(input: { volumeId: string; newSize: number }): Promise<void> {
      faults.check('beginExtending', 'before');
      await editing().beginExtending(input.volumeId, input.newSize).catch(rethrowAsFailure);
      faults.check('beginExtending', 'after');
    },

    /** Compensation: extending → in-use, the size as it was. */
    async rollExtending(input: { volumeId: string }): Promise<void> {
      await editing().rollExtending(input.volumeId).catch(rethrowAsFailure);
    },

    /** Grows the volume's file where no running QEMU holds it (a qcow2 in a running domain is grown by the host's block resize). */
    async growVolume(input: { volumeId: string; newSize: number }): Promise<{ outcome: 'grown' | 'already' | 'held-by-qemu' }> {
      faults.check('growVolume', 'before');
      const outcome = await editing().growVolume(input.volumeId, input.newSize).catch(rethrowAsFailure);
      faults.check('growVolume', 'after');
      return { outcome };
    },

    /** The new size recorded, extending → in-use. */
    async finishExtending(input: { volumeId: string; newSize: number }): Promise<void> {
      faults.check('finishExtending', 'before');
      await editing().finishExtending(input.volumeId, input.newSize).catch(rethrowAsFailure);
      faults.check('finishExtending', 'after');
    },

    /** Reserve: create the attachment (volume -> reserved) and remember its id on the BDM. */
    async reserveVolume(input: { bdmUuid: string; volumeId: string; instanceUuid: string }): Promise<{ attachmentId: string }> {
      faults.check('reserveVolume', 'before');
      const { attachmentId } = await blockStorage.createAttachment(input.volumeId, input.instanceUuid).catch(rethrowAsFailure);
      await recordOnBdm(input.bdmUuid, { attachmentId });
      faults.check('reserveVolume', 'after');
      return { attachmentId };
    },

    /** Initialize the connection: the block storage exports the volume to the host's connector. */
    async initializeConnection(input: {
      bdmUuid: string;
      attachmentId: string;
      volumeId: string;
      connector: HostConnector;
      device: string | null;
    }): Promise<{ driverVolumeType: string }> {
      faults.check('initializeConnection', 'before');
      const connectionInfo = await blockStorage
        .updateAttachment(input.attachmentId, { ...input.connector, ...(input.device ? { mountpoint: input.device } : {}) })
        .catch(rethrowAsFailure);
      // Nova sets the serial to the volume id; the disk's <serial> is how tether finds it again.
      await recordOnBdm(input.bdmUuid, { connectionInfo: { ...connectionInfo, serial: input.volumeId } });
      faults.check('initializeConnection', 'after');
      return { driverVolumeType: connectionInfo.driver_volume_type };
    },

    /** Complete the attachment (volume -> in-use). */
    async completeAttachment(input: { attachmentId: string }): Promise<void> {
      faults.check('completeAttachment', 'before');
      await blockStorage.completeAttachment(input.attachmentId).catch(rethrowAsFailure);
      faults.check('completeAttachment', 'after');
    },

    /** Detach begins at the block storage: in-use -> detaching. */
    async beginDetaching(input: { volumeId: string }): Promise<void> {
      faults.check('beginDetaching', 'before');
      await blockStorage.beginDetaching(input.volumeId).catch(rethrowAsFailure);
    },

    /** A force detach begins: in-use -> detaching; a volume still being attached (reserved, attaching) stays as it is. */
    async beginForceDetaching(input: { volumeId: string }): Promise<{ detaching: boolean }> {
      const volume = await blockStorage.getVolume(input.volumeId).catch(rethrowAsFailure);
      if (volume.status !== 'in-use' && volume.status !== 'detaching') return { detaching: false };
      await blockStorage.beginDetaching(input.volumeId).catch(rethrowAsFailure);
      return { detaching: true };
    },

    /** Detach rolled back: detaching -> in-use. */
    async rollDetaching(input: { volumeId: string }): Promise<void> {
      faults.check('rollDetaching', 'before');
      await blockStorage.rollDetaching(input.volumeId).catch(rethrowAsFailure);
      faults.check('rollDetaching', 'after');
    },

    /**
     * Shelve-offload: the host's connection goes away but the volume stays reserved for the instance
     * (Nova creates a new, connector-less attachment and deletes the old one). The BDM forgets its
     * connection_info and waits for unshelve.
     */
    async reReserveAttachment(input: { bdmUuid: string; volumeId: string; instanceUuid: string; attachmentId: string | null }): Promise<{ attachmentId: string }> {
      faults.check('reReserveAttachment', 'before');
      const current = await blockStorage.findAttachment(input.volumeId, input.instanceUuid);
      if (current && current.status !== 'reserved') await blockStorage.deleteAttachment(current.attachmentId).catch(rethrowAsFailure);
      const { attachmentId } = await blockStorage.createAttachment(input.volumeId, input.instanceUuid).catch(rethrowAsFailure);
      await recordOnBdm(input.bdmUuid, { attachmentId, connectionInfo: null, attachStatus: 'attaching' });
      return { attachmentId };
    },

    /** delete_on_termination: the volume goes with its server. No-op when it is already gone. */
    async deleteVolume(input: { volumeId: string }): Promise<{ deleted: boolean }> {
      try {
        await blockStorage.deleteVolume(input.volumeId);
        return { deleted: true };
      } catch (err) {
        if (err instanceof TetherError && err.type === 'VolumeNotFound') return { deleted: false };
        return rethrowAsFailure(err);
      }
    },

    /**
     * Compensation and detach: delete the attachment (terminate the connection, unreserve).
     * Finds the attachment by (volume, instance) when the id was never learned; no-op when none exists.
     */
    async deleteAttachment(input: { volumeId: string; instanceUuid: string; attachmentId?: string | null }): Promise<{ deleted: boolean }> {
      faults.check('deleteAttachment', 'before');
      const attachmentId = input.attachmentId ?? (await blockStorage.findAttachment(input.volumeId, input.instanceUuid))?.attachmentId;
      if (!attachmentId) return { deleted: false };
      await blockStorage.deleteAttachment(attachmentId).catch(rethrowAsFailure);
      return { deleted: true };
    },
  };
}

export type VolumeServiceActivities = ReturnType<typeof createVolumeServiceActivities>;
