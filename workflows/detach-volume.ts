/**
 * DetachVolume: the mirror of AttachVolume.
 *
 *   wait for an earlier attach of the pair → validate → begin detaching (volume: detaching)
 *   → libvirt detach, confirmed gone from the live XML → delete the attachment → destroy the BDM
 *
 * If the disk cannot be detached (the guest holds it), the volume is rolled back to in-use, the disk
 * is put back in the persistent config and the BDM is kept. Once the disk is gone there is no way
 * back: the remaining steps retry until they succeed.
 */
import { ApplicationFailure, condition, allHandlersFinished, defineQuery, patched, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { attachWorkflowId, COMPENSATION_STEPS, DETACH_STEPS, type OperationState, type StepProgress } from '../src/domain/steps.ts';
import { TetherState } from '../src/temporal/search-attributes.ts';
import { controlMustFinishActivities, controlSteps, hostActivities } from './activity-options.ts';
import { Saga, failureMessage, rootApplicationFailure, StepFailed } from './saga.ts';

export interface DetachVolumeInput {
  instanceUuid: string;
  volumeId: string;
}

export interface DetachResult {
  instanceUuid: string;
  volumeId: string;
  device: string | null;
  hostDetached: boolean;
}

export interface DetachProgress {
  state: OperationState;
  currentStep: string | null;
  steps: StepProgress[];
  error: { type: string; message: string } | null;
}

export const detachProgressQuery = defineQuery<DetachProgress>('progress');

export async function detachVolume(input: DetachVolumeInput): Promise<DetachResult> {
  const { control, mustFinish, awaitEarlierOperation } = controlSteps(patched('control-steps-as-local-activities'));
  const saga = new Saga();
  let state: OperationState = 'detaching';
  let error: { type: string; message: string } | null = null;
  const setState = (s: OperationState) => {
    state = s;
    upsertSearchAttributes([{ key: TetherState, value: s }]);
  };
  setHandler(detachProgressQuery, () => ({ state, currentStep: saga.current, steps: saga.steps, error }));
  setState('detaching');

  const host = hostActivities(input.instanceUuid);
  try {
    await saga.step('awaitEarlierOperation', DETACH_STEPS.awaitEarlierOperation, () =>
      awaitEarlierOperation({
        counterpartWorkflowId: attachWorkflowId(input.instanceUuid, input.volumeId),
        startedAt: workflowInfo().startTime.toISOString(),
      }),
    );
    const v = await saga.step('validateDetach', DETACH_STEPS.validateDetach, () => control.validateDetach(input));

    // A shelved-offloaded instance has no host and its volume is only reserved: local cleanup only.
    if (!v.shelvedOffloaded) {
      saga.addCompensation({
        step: 'rollDetaching',
        description: COMPENSATION_STEPS.rollDetaching,
        run: async () => {
          await controlMustFinishActivities.rollDetaching({ volumeId: input.volumeId });
          await controlMustFinishActivities.setBdmAttachStatus({ bdmUuid: v.bdmUuid, attachStatus: 'attached', fault: error && { ...error, step: saga.failedStep } });
        },
      });
      await saga.step('beginDetaching', DETACH_STEPS.beginDetaching, async () => {
        await control.beginDetaching({ volumeId: input.volumeId });
        await control.setBdmAttachStatus({ bdmUuid: v.bdmUuid, attachStatus: 'detaching' });
      });

      saga.addCompensation({
        step: 'reattachDisk',
        description: COMPENSATION_STEPS.reattachDisk,
        run: () => host.mustFinish.attachDisk({ instanceUuid: input.instanceUuid, bdmUuid: v.bdmUuid, volumeId: input.volumeId }),
      });
      await saga.step('detachDisk', DETACH_STEPS.detachDisk, () => host.forward.detachDisk(input));
    }

    // The disk is gone: from here on the detach only moves forward.
    await saga.step('deleteAttachment', DETACH_STEPS.deleteAttachment, () =>
      mustFinish.deleteAttachment({ volumeId: input.volumeId, instanceUuid: input.instanceUuid, attachmentId: v.attachmentId }),
    );
    await saga.step('destroyBdm', DETACH_STEPS.destroyBdm, () => mustFinish.destroyBdm({ bdmUuid: v.bdmUuid }));
    setState('detached');
    await condition(allHandlersFinished);
    return { instanceUuid: input.instanceUuid, volumeId: input.volumeId, device: v.deviceName, hostDetached: !v.shelvedOffloaded };
  } catch (err) {
    const type = rootApplicationFailure(err)?.type ?? 'DetachFailed';
    const where = err instanceof StepFailed ? ` at step ${err.step}` : '';
    error = { type, message: failureMessage(err) };
    const rolledBack = await saga.compensate();
    setState(rolledBack ? 'rolled-back' : 'failed');
    await condition(allHandlersFinished);
    const outcome = rolledBack ? 'the volume stays attached' : 'the rollback could not finish and will need a retry';
    throw ApplicationFailure.nonRetryable(
      `Detaching volume ${input.volumeId} from instance ${input.instanceUuid} failed${where}: ${error.message} (${outcome})`,
      type,
      { step: err instanceof StepFailed ? err.step : null, rolledBack },
    );
  }
}
