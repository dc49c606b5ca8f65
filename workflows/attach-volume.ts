/**
 * AttachVolume: Nova's attach path as a durable saga.
 *
 *   validate → reserve device name (BDM) → reserve volume → get connector → initialize connection
 *   → libvirt attach → complete attachment
 *
 * Control-plane steps run on the workflow's own task queue; host steps on `instance-<uuid>`, served
 * by the compute agent hosting the instance one activity at a time. Each step that changes state has
 * its compensation registered before it runs (destroy BDM, delete attachment, detach disk).
 * The `reservation` update answers once the device name and the volume are reserved (what Nova's
 * POST returns); the `progress` query reports every step so far.
 */
import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  defineQuery,
  defineUpdate,
  patched,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { AttachRequest } from '../src/domain/types.ts';
import { ATTACH_STEPS, COMPENSATION_STEPS, type OperationState, type StepProgress } from '../src/domain/steps.ts';
import { TetherState } from '../src/temporal/search-attributes.ts';
import { controlMustFinishActivities as controlUndo, controlSteps, hostActivities } from './activity-options.ts';
import { detachWorkflowId } from '../src/domain/steps.ts';
import { Saga, failureMessage, rootApplicationFailure, StepFailed } from './saga.ts';

export interface AttachVolumeInput extends AttachRequest {}

export interface AttachReservation {
  bdmUuid: string;
  device: string | null;
  attachmentId: string;
  instanceUuid: string;
  volumeId: string;
  tag: string | null;
  deleteOnTermination: boolean;
}

export interface AttachResult extends AttachReservation {
  /** False for a shelved-offloaded instance: the BDM waits for unshelve, nothing was asked of a host. */
  hostAttached: boolean;
}

export interface AttachProgress {
  state: OperationState;
  currentStep: string | null;
  steps: StepProgress[];
  reservation: AttachReservation | null;
  error: { type: string; message: string } | null;
}

export const reservationUpdate = defineUpdate<AttachReservation>('reservation');
export const progressQuery = defineQuery<AttachProgress>('progress');

export async function attachVolume(input: AttachVolumeInput): Promise<AttachResult> {
  const { control, awaitEarlierOperation } = controlSteps(patched('control-steps-as-local-activities'));
  // Since this patch the host reads its connector in the reserveDeviceName activity: one round trip
  // to the host fewer per attach. Runs started before it ask for the connector in an activity of its
  // own, and so does a run whose agent is older than the patch (its answer has no connector).
  const connectorWithDeviceName = patched('connector-with-device-name');
  const saga = new Saga();
  const operationId = workflowInfo().workflowId;
  let state: OperationState = 'attaching';
  let reservation: AttachReservation | null = null;
  let error: { type: string; message: string } | null = null;
  // Set once the rollback has finished, so that a refused POST answers only when nothing is left behind.
  let refusal: { type: string; message: string } | null = null;

  const setState = (s: OperationState) => {
    state = s;
    upsertSearchAttributes([{ key: TetherState, value: s }]);
  };

  setHandler(progressQuery, () => ({ state, currentStep: saga.current, steps: saga.steps, reservation, error }));
  setHandler(reservationUpdate, async () => {
    await condition(() => reservation !== null || refusal !== null);
    if (reservation) return reservation;
    throw ApplicationFailure.nonRetryable(refusal!.message, refusal!.type);
  });
  setState('attaching');

  const destroyBdmOnFailure = (bdmUuid: string) =>
    saga.addCompensation({ step: 'destroyBdm', description: COMPENSATION_STEPS.destroyBdm, run: () => controlUndo.destroyBdm({ bdmUuid, fault: error && { ...error, step: saga.failedStep } }) });

  /** Reserve the volume (its compensation first), then record the reservation the POST answers with. */
  async function reserveVolume(bdmUuid: string, device: string | null): Promise<AttachReservation> {
    saga.addCompensation({
      step: 'deleteAttachment',
      description: COMPENSATION_STEPS.deleteAttachment,
      run: () => controlUndo.deleteAttachment({ volumeId: input.volumeId, instanceUuid: input.instanceUuid }),
    });
    const { attachmentId } = await saga.step('reserveVolume', ATTACH_STEPS.reserveVolume, () =>
      control.reserveVolume({ bdmUuid, volumeId: input.volumeId, instanceUuid: input.instanceUuid }),
    );
    reservation = {
      bdmUuid,
      device,
      attachmentId,
      instanceUuid: input.instanceUuid,
      volumeId: input.volumeId,
      tag: input.tag,
      deleteOnTermination: input.deleteOnTermination,
    };
    return reservation;
  }

  /** Nova's local attach: a BDM with no device name (chosen at unshelve), the volume reserved, no host asked. */
  async function attachToShelvedOffloaded(bdmUuid: string): Promise<AttachResult> {
    destroyBdmOnFailure(bdmUuid);
    await saga.step('createBdm', ATTACH_STEPS.createShelvedBdm, () => control.createShelvedBdm({ ...input, bdmUuid, operationId }));
    const reserved = await reserveVolume(bdmUuid, null);
    setState('attached');
    await condition(allHandlersFinished);
    return { ...reserved, hostAttached: false };
  }

  try {
    await saga.step('awaitEarlierOperation', ATTACH_STEPS.awaitEarlierOperation, () =>
      awaitEarlierOperation({
        counterpartWorkflowId: detachWorkflowId(input.instanceUuid, input.volumeId),
        startedAt: workflowInfo().startTime.toISOString(),
      }),
    );
    const validated = await saga.step('validate', ATTACH_STEPS.validate, () => control.validateAttach(input));

    const bdmUuid = uuid4();
    if (validated.shelvedOffloaded) return await attachToShelvedOffloaded(bdmUuid);

    const host = hostActivities(input.instanceUuid);
    destroyBdmOnFailure(bdmUuid);
    const bdm = await saga.step('reserveDeviceName', ATTACH_STEPS.reserveDeviceName, () =>
      host.forward.reserveDeviceName({ ...input, bdmUuid, operationId, ...(connectorWithDeviceName ? { withConnector: true } : {}) }),
    );
    const reserved = await reserveVolume(bdmUuid, bdm.deviceName);
    const { attachmentId } = reserved;

    const connector = await saga.step('getHostConnector', ATTACH_STEPS.getHostConnector, async () =>
      connectorWithDeviceName && bdm.connector ? bdm.connector : host.forward.getHostConnector(),
    );
    await saga.step('initializeConnection', ATTACH_STEPS.initializeConnection, () =>
      control.initializeConnection({ bdmUuid, attachmentId, volumeId: input.volumeId, connector, device: bdm.deviceName }),
    );

    saga.addCompensation({
      step: 'detachDisk',
      description: COMPENSATION_STEPS.detachDisk,
      run: () => host.mustFinish.detachDisk({ instanceUuid: input.instanceUuid, volumeId: input.volumeId }),
    });
    await saga.step('attachDisk', ATTACH_STEPS.attachDisk, () =>
      host.forward.attachDisk({ instanceUuid: input.instanceUuid, bdmUuid, volumeId: input.volumeId }),
    );
    await saga.step('completeAttachment', ATTACH_STEPS.completeAttachment, async () => {
      await control.completeAttachment({ attachmentId });
      await control.markBdmAttached({ bdmUuid });
    });

    setState('attached');
    await condition(allHandlersFinished);
    return { ...reserved, hostAttached: true };
  } catch (err) {
    const root = rootApplicationFailure(err);
    const type = root?.type ?? 'AttachFailed';
    const where = err instanceof StepFailed ? ` at step ${err.step}` : '';
    error = { type, message: failureMessage(err) };
    const rolledBack = await saga.compensate();
    setState(rolledBack ? 'rolled-back' : 'failed');
    refusal = error;
    await condition(allHandlersFinished);
    const outcome = rolledBack ? 'everything was rolled back' : 'the rollback could not finish and will need a retry';
    throw ApplicationFailure.nonRetryable(
      `Attaching volume ${input.volumeId} to instance ${input.instanceUuid} failed${where}: ${error.message} (${outcome})`,
      type,
      { step: err instanceof StepFailed ? err.step : null, rolledBack },
    );
  }
}
