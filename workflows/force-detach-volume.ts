/**
 * ForceDetachVolume: a detach from a host that may be gone (Nova bug 1909120), safe against
 * CVE-2023-2088 — the block-storage attachment is released only once the host has disconnected the
 * disk, or once the host is fenced (its agent removes the disk and cleans up before it serves any
 * instance queue again).
 *
 *   validate → take the pair's generation (older operations' host steps are refused from here on)
 *   → stop the attach of the pair still running → begin detaching
 *   → ask the host to detach, for at most hostWaitSeconds (skipped when the host is forced down or fenced)
 *   → destroy the BDM → fence the host unless it detached → delete the attachment
 *
 * Before the host step a failure rolls back (the volume stays attached); a host that answers with a
 * definite refusal (the guest keeps the disk) rolls back too. A host that does not answer in time is
 * fenced; from there the force detach only moves forward. It runs under the detach's workflow id (a
 * plain detach of the pair in flight is replaced by it), so a later attach of the pair waits for it.
 * The contract is in src/domain/contracts/force-detach-volume.ts.
 */
import { ActivityFailure, ApplicationFailure, TimeoutFailure, setHandler, workflowInfo } from '@temporalio/workflow';
import { attachWorkflowId, COMPENSATION_STEPS, FORCE_DETACH_STEPS } from '../src/domain/steps.ts';
import {
  forceDetachProgressQuery,
  type ForceDetachResult,
  type ForceDetachVolumeInput,
} from '../src/domain/contracts/force-detach-volume.ts';
import { control, controlLocal, controlMustFinish, controlMustFinishLocal, hostActivities, hostActivitiesWithin } from './activity-options.ts';
import { VolumeOperation } from './volume-operation.ts';
import { unlessSuperseded } from './saga.ts';

/** A host step that failed because nobody answered (a timeout, or errors worth retrying until it ran out): the host counts as gone. */
function hostDidNotAnswer(err: unknown): boolean {
  if (!(err instanceof ActivityFailure)) return false;
  const cause = err.cause;
  if (cause instanceof TimeoutFailure) return true;
  return cause instanceof ApplicationFailure && !cause.nonRetryable;
}

export async function forceDetachVolume(input: ForceDetachVolumeInput): Promise<ForceDetachResult> {
  const saga = new VolumeOperation('detaching');
  setHandler(forceDetachProgressQuery, () => saga.progress());
  saga.begin();
  const info = workflowInfo();
  const operationId = `${info.workflowId}/${info.runId}`;
  const pair = { instanceUuid: input.instanceUuid, volumeId: input.volumeId };

  try {
    let v = await saga.step('validateForceDetach', FORCE_DETACH_STEPS.validateForceDetach, () => controlLocal.validateForceDetach(pair));
    const { generation } = await saga.step('takeGeneration', FORCE_DETACH_STEPS.takeGeneration, () => controlLocal.takeGeneration({ operationId, pairs: [pair] }));
    const { terminated } = await saga.step('supersedeOperations', FORCE_DETACH_STEPS.supersedeOperations, async () => {
      const stopped = await control.terminatePairOperations({
        workflowIds: [attachWorkflowId(input.instanceUuid, input.volumeId)],
        reason: `superseded by the force detach ${info.workflowId} (${input.reason})`,
      });
      // what the stopped attach left is what this detach releases
      if (stopped.terminated.length > 0) v = await controlLocal.validateForceDetach(pair);
      return stopped;
    });

    saga.addCompensation({
      step: 'rollDetaching',
      description: COMPENSATION_STEPS.rollDetaching,
      run: async () => {
        await controlMustFinish.rollDetaching({ volumeId: input.volumeId });
        if (v.bdmUuid) await controlMustFinish.setBdmAttachStatus({ bdmUuid: v.bdmUuid, attachStatus: 'attached', fault: saga.fault() });
      },
    });
    await saga.step('beginDetaching', FORCE_DETACH_STEPS.beginDetaching, async () => {
      await control.beginForceDetaching({ volumeId: input.volumeId });
      if (v.bdmUuid) await control.setBdmAttachStatus({ bdmUuid: v.bdmUuid, attachStatus: 'detaching' });
    });

    let hostDetached = false;
    if (input.hostWaitSeconds > 0 && !v.hostForcedDown && !v.hostFenced) {
      const bdmUuid = v.bdmUuid;
      if (bdmUuid) {
        saga.addCompensation({
          step: 'reattachDisk',
          description: COMPENSATION_STEPS.reattachDisk,
          run: () => unlessSuperseded(hostActivities(input.instanceUuid).mustFinish.attachDisk({ ...pair, bdmUuid, generation })),
        });
      }
      hostDetached = await saga.step('detachDisk', FORCE_DETACH_STEPS.detachDisk, async () => {
        try {
          await hostActivitiesWithin(input.instanceUuid, input.hostWaitSeconds).detachDisk({ ...pair, generation });
          return true;
        } catch (err) {
          if (hostDidNotAnswer(err)) return false;
          throw err;
        }
      });
    }

    // From here on the force detach only moves forward: the BDM first (a fenced host's agent removes
    // the disks of volumes its instances no longer hold), then the fence, then the attachment.
    const bdmUuid = v.bdmUuid;
    if (bdmUuid) await saga.step('destroyBdm', FORCE_DETACH_STEPS.destroyBdm, () => controlMustFinishLocal.destroyBdm({ bdmUuid }));
    let fenceEpoch: number | null = null;
    if (!hostDetached) {
      const fenced = await saga.step('fenceHost', FORCE_DETACH_STEPS.fenceHost, () =>
        controlMustFinishLocal.fenceHost({ host: v.host, operationId, reason: `force detach of volume ${input.volumeId} from instance ${input.instanceUuid}: ${input.reason}` }),
      );
      fenceEpoch = fenced.epoch;
    }
    await saga.step('deleteAttachment', FORCE_DETACH_STEPS.deleteAttachment, () =>
      controlMustFinishLocal.deleteAttachment({ ...pair, attachmentId: v.attachmentId }),
    );
    return await saga.succeed('detached', {
      instanceUuid: input.instanceUuid,
      volumeId: input.volumeId,
      device: v.deviceName,
      host: v.host,
      hostDetached,
      fenceEpoch,
      superseded: terminated,
    });
  } catch (err) {
    return saga.fail(err, {
      action: `Force-detaching volume ${input.volumeId} from instance ${input.instanceUuid}`,
      defaultType: 'DetachFailed',
      rolledBack: 'the volume stays attached',
    });
  }
}
