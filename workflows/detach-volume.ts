/**
 * DetachVolume: the mirror of AttachVolume.
 *
 *   wait for an earlier attach of the pair → validate → begin detaching (volume: detaching)
 *   → libvirt detach, confirmed gone from the live XML → delete the attachment → destroy the BDM
 *
 * If the disk cannot be detached (the guest holds it), the volume is rolled back to in-use, the disk
 * is put back in the persistent config and the BDM is kept. Once the disk is gone there is no way
 * back: the remaining steps retry until they succeed. The contract is in
 * src/domain/contracts/detach-volume.ts.
 */
import { patched, setHandler, workflowInfo } from '@temporalio/workflow';
import { attachWorkflowId, COMPENSATION_STEPS, DETACH_STEPS } from '../src/domain/steps.ts';
import { detachProgressQuery, type DetachResult, type DetachVolumeInput } from '../src/domain/contracts/detach-volume.ts';
import { controlMustFinish, controlSteps, hostActivities } from './activity-options.ts';
import { VolumeOperation } from './volume-operation.ts';
import { unlessSuperseded } from './saga.ts';

export async function detachVolume(input: DetachVolumeInput): Promise<DetachResult> {
  const { control, mustFinish, awaitEarlierOperation } = controlSteps(patched('control-steps-as-local-activities'));
  // Since this patch the detach takes the pair's generation once validated, and its host steps carry it.
  const withGeneration = patched('operation-generation');
  const saga = new VolumeOperation('detaching');
  setHandler(detachProgressQuery, () => saga.progress());
  saga.begin();

  const host = hostActivities(input.instanceUuid);
  try {
    await saga.step('awaitEarlierOperation', DETACH_STEPS.awaitEarlierOperation, () =>
      awaitEarlierOperation({
        counterpartWorkflowId: attachWorkflowId(input.instanceUuid, input.volumeId),
        startedAt: workflowInfo().startTime.toISOString(),
      }),
    );
    const v = await saga.step('validateDetach', DETACH_STEPS.validateDetach, () => control.validateDetach(input));
    const info = workflowInfo();
    const generationOf = withGeneration
      ? await saga.step('takeGeneration', DETACH_STEPS.takeGeneration, () =>
          control.takeGeneration({ operationId: `${info.workflowId}/${info.runId}`, pairs: [{ instanceUuid: input.instanceUuid, volumeId: input.volumeId }] }),
        )
      : {};

    // A shelved-offloaded instance has no host and its volume is only reserved: local cleanup only.
    if (!v.shelvedOffloaded) {
      saga.addCompensation({
        step: 'rollDetaching',
        description: COMPENSATION_STEPS.rollDetaching,
        run: async () => {
          await controlMustFinish.rollDetaching({ volumeId: input.volumeId });
          await controlMustFinish.setBdmAttachStatus({ bdmUuid: v.bdmUuid, attachStatus: 'attached', fault: saga.fault() });
        },
      });
      await saga.step('beginDetaching', DETACH_STEPS.beginDetaching, async () => {
        await control.beginDetaching({ volumeId: input.volumeId });
        await control.setBdmAttachStatus({ bdmUuid: v.bdmUuid, attachStatus: 'detaching' });
      });

      saga.addCompensation({
        step: 'reattachDisk',
        description: COMPENSATION_STEPS.reattachDisk,
        run: () => unlessSuperseded(host.mustFinish.attachDisk({ instanceUuid: input.instanceUuid, bdmUuid: v.bdmUuid, volumeId: input.volumeId, ...generationOf })),
      });
      await saga.step('detachDisk', DETACH_STEPS.detachDisk, () => host.forward.detachDisk({ ...input, ...generationOf }));
    }

    // The disk is gone: from here on the detach only moves forward.
    await saga.step('deleteAttachment', DETACH_STEPS.deleteAttachment, () =>
      mustFinish.deleteAttachment({ volumeId: input.volumeId, instanceUuid: input.instanceUuid, attachmentId: v.attachmentId }),
    );
    await saga.step('destroyBdm', DETACH_STEPS.destroyBdm, () => mustFinish.destroyBdm({ bdmUuid: v.bdmUuid }));
    return await saga.succeed('detached', { instanceUuid: input.instanceUuid, volumeId: input.volumeId, device: v.deviceName, hostDetached: !v.shelvedOffloaded });
  } catch (err) {
    return saga.fail(err, {
      action: `Detaching volume ${input.volumeId} from instance ${input.instanceUuid}`,
      defaultType: 'DetachFailed',
      rolledBack: 'the volume stays attached',
    });
  }
}
