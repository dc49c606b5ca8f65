/**
 * ExtendVolume: an attached volume grows, and the running domain's disk with it (Cinder's online
 * extend, 3.42, and Nova's `extend_volume`).
 *
 *   wait for an earlier attach or detach of the pair → validate → take the pair's generation
 *   → [tether's own /v3: begin extending (volume: extending) → grow the file where no QEMU holds it]
 *   → resize the disk under the running domain (virDomainBlockResize), confirmed by its capacity
 *   → [tether's own /v3: record the size, volume in-use] → record the size on the BDM
 *   → [a multiattach volume: tell its other servers (volume-extended)]
 *
 * The host step runs on `instance-<uuid>`, ordered with the instance's attaches and detaches. Only
 * `begin extending` has a compensation (the volume back to in-use with its size): a disk QEMU has
 * grown is never shrunk back (the guest may already use the space), so once the disk has grown the
 * saga only moves forward. A `volumeExtended` signal that arrives while a run is in flight (Cinder
 * extended again) makes the run resize once more, to the size the block storage then reports. The
 * contract is in src/domain/contracts/extend-volume.ts.
 */
import { ApplicationFailure, condition, setHandler, workflowInfo } from '@temporalio/workflow';
import { attachWorkflowId, COMPENSATION_STEPS, detachWorkflowId, EXTEND_STEPS } from '../src/domain/steps.ts';
import {
  extendAcceptedUpdate,
  extendProgressQuery,
  volumeExtendedSignal,
  type ExtendAcceptance,
  type ExtendResult,
  type ExtendVolumeInput,
} from '../src/domain/contracts/extend-volume.ts';
import { controlMustFinish, controlSteps, hostActivities } from './activity-options.ts';
import { VolumeOperation } from './volume-operation.ts';

export async function extendVolume(input: ExtendVolumeInput): Promise<ExtendResult> {
  const { control, mustFinish, awaitEarlierOperation } = controlSteps(true);
  const saga = new VolumeOperation('extending');
  const { instanceUuid, volumeId } = input;
  let accepted: ExtendAcceptance | null = null;
  // volume-extended events received, and how many of them the latest size read covers
  let events = 0;
  let covered = 0;

  setHandler(extendProgressQuery, () => ({ ...saga.progress(), accepted }));
  // A refused os-extend answers only once the rollback has finished, so that nothing is left behind.
  setHandler(extendAcceptedUpdate, async () => {
    await condition(() => accepted !== null || saga.refusal !== null);
    if (accepted) return accepted;
    throw ApplicationFailure.nonRetryable(saga.refusal!.message, saga.refusal!.type);
  });
  setHandler(volumeExtendedSignal, () => {
    events += 1;
  });
  saga.begin();

  const host = hostActivities(instanceUuid);
  const startedAt = workflowInfo().startTime.toISOString();
  try {
    await saga.step('awaitEarlierOperation', EXTEND_STEPS.awaitEarlierOperation, async () => {
      await awaitEarlierOperation({ counterpartWorkflowId: attachWorkflowId(instanceUuid, volumeId), startedAt });
      await awaitEarlierOperation({ counterpartWorkflowId: detachWorkflowId(instanceUuid, volumeId), startedAt });
    });
    covered = events;
    const v = await saga.step('validateExtend', EXTEND_STEPS.validateExtend, () => control.validateExtend(input));
    // Once it owns the pair, an operation that comes later (a detach, a force detach) supersedes its host step.
    const info = workflowInfo();
    const { generation } = await saga.step('takeGeneration', EXTEND_STEPS.takeGeneration, () =>
      control.takeGeneration({ operationId: `${info.workflowId}/${info.runId}`, pairs: [{ instanceUuid, volumeId }] }),
    );
    let size = v.size;

    const { newSize } = input;
    if (newSize !== null) {
      saga.addCompensation({
        step: 'rollExtending',
        description: COMPENSATION_STEPS.rollExtending,
        run: () => controlMustFinish.rollExtending({ volumeId }),
      });
      await saga.step('beginExtending', EXTEND_STEPS.beginExtending, () => control.beginExtending({ volumeId, newSize }));
      accepted = { instanceUuid, volumeId, newSize };
      await saga.step('growVolume', EXTEND_STEPS.growVolume, () => control.growVolume({ volumeId, newSize }));
    } else {
      accepted = { instanceUuid, volumeId, newSize: size };
    }

    let resized = await saga.step('resizeDisk', EXTEND_STEPS.resizeDisk, () => host.forward.resizeDisk({ instanceUuid, volumeId, sizeGb: size, generation }));
    // The disk has grown: from here on the extend only moves forward.
    if (newSize !== null) {
      await saga.step('finishExtending', EXTEND_STEPS.finishExtending, () => mustFinish.finishExtending({ volumeId, newSize }));
    }
    // Events that arrived meanwhile: the block storage may have grown the volume again.
    while (events > covered) {
      covered = events;
      const again = await saga.step('validateExtend', EXTEND_STEPS.validateExtend, () => control.validateExtend({ instanceUuid, volumeId, newSize: null }));
      if (again.size > size) {
        size = again.size;
        resized = await saga.step('resizeDisk', EXTEND_STEPS.resizeDisk, () => host.forward.resizeDisk({ instanceUuid, volumeId, sizeGb: size, generation }));
      }
    }
    await saga.step('recordVolumeSize', EXTEND_STEPS.recordVolumeSize, () => mustFinish.recordVolumeSize({ bdmUuid: v.bdmUuid, size }));
    if (v.otherInstances.length > 0) {
      await saga.step('notifyAttachedInstances', EXTEND_STEPS.notifyAttachedInstances, () =>
        mustFinish.notifyAttachedInstances({ volumeId, instances: v.otherInstances }),
      );
    }
    return await saga.succeed('extended', { instanceUuid, volumeId, size, live: resized.live, capacity: resized.capacity });
  } catch (err) {
    return saga.fail(err, {
      action: `Extending volume ${volumeId} of instance ${instanceUuid}`,
      defaultType: 'ExtendFailed',
      rolledBack: 'the volume keeps the size it had',
    });
  }
}
