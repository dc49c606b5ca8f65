/**
 * SwapVolume: an attached volume's disk moves to another volume under the running guest (Nova's
 * swap_volume, which Cinder calls while it migrates the volume).
 *
 *   wait for an earlier attach, detach or extend of the pair → validate → take the generation of
 *   the server with both volumes → reserve the new volume → host connector → initialize its
 *   connection → copy the disk to it (virDomainBlockCopy) until the copy mirrors the guest
 *   → pivot (virDomainBlockJobAbort PIVOT)
 *   ── point of no return ──
 *   → record the pivot → the persistent disk follows → complete the new attachment → delete the old
 *   one → the block storage ends its migration (os-migrate_volume_completion) → the BDM follows
 *
 * Host steps run on `instance-<uuid>`, ordered with the instance's attaches, detaches and extends,
 * and carry the operation's generation. Before the pivot every failure rolls back: the copy is
 * dropped (the disk never left the old volume), the new volume's attachment deleted and the
 * migration ended with an error. A pivot whose answer was lost is looked at: a disk that did pivot
 * goes forward. After the pivot the steps retry until they succeed (must-finish); none is undone.
 * The contract is in src/domain/contracts/swap-volume.ts.
 */
import { ApplicationFailure, setHandler, workflowInfo } from '@temporalio/workflow';
import { attachWorkflowId, detachWorkflowId, extendWorkflowId } from '../src/domain/steps.ts';
import { SWAP_COMPENSATIONS, SWAP_STEPS, swapProgressQuery, type SwapResult, type SwapVolumeInput } from '../src/domain/contracts/swap-volume.ts';
import { controlSteps, hostActivities } from './activity-options.ts';
import { VolumeOperation } from './volume-operation.ts';
import { failureMessage, unlessSuperseded } from './saga.ts';

export async function swapVolume(input: SwapVolumeInput): Promise<SwapResult> {
  const { control, mustFinish, awaitEarlierOperation } = controlSteps(true);
  const saga = new VolumeOperation('swapping');
  setHandler(swapProgressQuery, () => saga.progress());
  saga.begin();

  const { instanceUuid, oldVolumeId, newVolumeId } = input;
  const info = workflowInfo();
  const operationId = `${info.workflowId}/${info.runId}`;
  const host = hostActivities(instanceUuid);
  let pivoted = false;
  try {
    await saga.step('awaitEarlierOperation', SWAP_STEPS.awaitEarlierOperation, async () => {
      const startedAt = info.startTime.toISOString();
      for (const counterpartWorkflowId of [attachWorkflowId(instanceUuid, oldVolumeId), detachWorkflowId(instanceUuid, oldVolumeId), extendWorkflowId(instanceUuid, oldVolumeId)]) {
        await awaitEarlierOperation({ counterpartWorkflowId, startedAt });
      }
    });
    // registered first: a swap refused at validation still ends the block storage's migration (with an error)
    saga.addCompensation({
      step: 'abandonSwap',
      description: SWAP_COMPENSATIONS.abandonSwap,
      run: () => mustFinish.abandonSwap({ operationId, instanceUuid, oldVolumeId, newVolumeId }),
    });
    const v = await saga.step('validateSwap', SWAP_STEPS.validateSwap, () => control.validateSwap(input));
    const { generation } = await saga.step('takeGeneration', SWAP_STEPS.takeGeneration, () =>
      control.takeGeneration({ operationId, pairs: [{ instanceUuid, volumeId: oldVolumeId }, { instanceUuid, volumeId: newVolumeId }] }),
    );

    const { attachmentId } = await saga.step('reserveNewVolume', SWAP_STEPS.reserveNewVolume, () =>
      control.reserveSwapVolume({ operationId, instanceUuid, bdmUuid: v.bdmUuid, oldVolumeId, newVolumeId }),
    );
    const connector = await saga.step('getHostConnector', SWAP_STEPS.getHostConnector, () => host.forward.getHostConnector());
    await saga.step('initializeConnection', SWAP_STEPS.initializeConnection, () =>
      control.initializeSwapConnection({ operationId, attachmentId, connector, device: v.deviceName }),
    );

    const disk = { instanceUuid, volumeId: oldVolumeId, operationId, generation };
    saga.addCompensation({ step: 'abortDiskCopy', description: SWAP_COMPENSATIONS.abortDiskCopy, run: () => host.mustFinish.abortDiskCopy(disk) });
    await saga.step('copyDisk', SWAP_STEPS.copyDisk, () => host.forward.copyDisk(disk));
    const { target } = await saga.step('pivotDisk', SWAP_STEPS.pivotDisk, async () => {
      try {
        return await host.forward.pivotDisk(disk);
      } catch (err) {
        // the pivot may have happened though its answer was lost: a disk that pivoted only goes forward
        const now = await host.mustFinish.inspectSwapDisk(disk);
        if (now.pivoted && now.target) return { target: now.target };
        throw err;
      }
    });
    pivoted = true;

    await saga.step('recordPivot', SWAP_STEPS.recordPivot, () => mustFinish.recordSwapPivot({ operationId }));
    await saga.step('updatePersistentDisk', SWAP_STEPS.updatePersistentDisk, () => unlessSuperseded(host.mustFinish.updatePersistentDisk(disk)));
    await saga.step('completeNewAttachment', SWAP_STEPS.completeNewAttachment, () => mustFinish.completeAttachment({ attachmentId }));
    await saga.step('releaseOldAttachment', SWAP_STEPS.releaseOldAttachment, () =>
      mustFinish.deleteAttachment({ volumeId: oldVolumeId, instanceUuid, attachmentId: v.oldAttachmentId }),
    );
    const { saveVolumeId } = await saga.step('completeMigration', SWAP_STEPS.completeMigration, () =>
      mustFinish.completeVolumeMigration({ oldVolumeId, newVolumeId, error: false }),
    );
    await saga.step('recordSwapOnBdm', SWAP_STEPS.recordSwapOnBdm, () => mustFinish.recordSwapOnBdm({ operationId, saveVolumeId }));
    return await saga.succeed('swapped', { instanceUuid, oldVolumeId, newVolumeId, volumeId: saveVolumeId, attachmentId, target });
  } catch (err) {
    if (pivoted) {
      // Past the pivot nothing is undone (the guest writes to the new volume): only a final refusal of
      // a must-finish step gets here, and a person must finish what is left.
      saga.setState('failed');
      throw ApplicationFailure.nonRetryable(
        `Swapping volume ${oldVolumeId} for ${newVolumeId} on instance ${instanceUuid} failed after the disk pivoted: ${failureMessage(err)} (the disk reads the new volume; the remaining steps need a retry)`,
        'SwapFailed',
        { step: saga.failedStep, rolledBack: false },
      );
    }
    return saga.fail(err, {
      action: `Swapping volume ${oldVolumeId} for ${newVolumeId} on instance ${instanceUuid}`,
      defaultType: 'SwapFailed',
      rolledBack: 'the old volume stays attached and the new one is released',
    });
  }
}
