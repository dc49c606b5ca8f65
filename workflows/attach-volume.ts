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
 * POST returns); the `progress` query reports every step so far. The contract (input, result,
 * update, query) is in src/domain/contracts/attach-volume.ts.
 */
import { ApplicationFailure, condition, patched, setHandler, uuid4, workflowInfo } from '@temporalio/workflow';
import { ATTACH_STEPS, COMPENSATION_STEPS, detachWorkflowId } from '../src/domain/steps.ts';
import {
  attachProgressQuery,
  reservationUpdate,
  type AttachReservation,
  type AttachResult,
  type AttachVolumeInput,
} from '../src/domain/contracts/attach-volume.ts';
import { controlMustFinish as controlUndo, controlSteps, hostActivities } from './activity-options.ts';
import { VolumeOperation } from './volume-operation.ts';
import { unlessSuperseded } from './saga.ts';

export async function attachVolume(input: AttachVolumeInput): Promise<AttachResult> {
  const { control, awaitEarlierOperation } = controlSteps(patched('control-steps-as-local-activities'));
  // Since this patch the host reads its connector in the reserveDeviceName activity: one round trip
  // to the host fewer per attach. Runs started before it ask for the connector in an activity of its
  // own, and so does a run whose agent is older than the patch (its answer has no connector).
  const connectorWithDeviceName = patched('connector-with-device-name');
  // Since this patch the attach takes the pair's generation once validated, and every host step
  // carries it: a late host step of an older operation on the pair is refused by the host.
  const withGeneration = patched('operation-generation');
  const saga = new VolumeOperation('attaching');
  const operationId = workflowInfo().workflowId;
  let reservation: AttachReservation | null = null;

  setHandler(attachProgressQuery, () => ({ ...saga.progress(), reservation }));
  // A refused POST answers only once the rollback has finished, so that nothing is left behind.
  setHandler(reservationUpdate, async () => {
    await condition(() => reservation !== null || saga.refusal !== null);
    if (reservation) return reservation;
    throw ApplicationFailure.nonRetryable(saga.refusal!.message, saga.refusal!.type);
  });
  saga.begin();

  const destroyBdmOnFailure = (bdmUuid: string) =>
    saga.addCompensation({ step: 'destroyBdm', description: COMPENSATION_STEPS.destroyBdm, run: () => controlUndo.destroyBdm({ bdmUuid, fault: saga.fault() }) });

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
    return saga.succeed('attached', { ...reserved, hostAttached: false });
  }

  try {
    await saga.step('awaitEarlierOperation', ATTACH_STEPS.awaitEarlierOperation, () =>
      awaitEarlierOperation({
        counterpartWorkflowId: detachWorkflowId(input.instanceUuid, input.volumeId),
        startedAt: workflowInfo().startTime.toISOString(),
      }),
    );
    const validated = await saga.step('validate', ATTACH_STEPS.validate, () => control.validateAttach(input));
    const generation = withGeneration
      ? (await saga.step('takeGeneration', ATTACH_STEPS.takeGeneration, () =>
          control.takeGeneration({ operationId: `${operationId}/${workflowInfo().runId}`, pairs: [{ instanceUuid: input.instanceUuid, volumeId: input.volumeId }] }),
        )).generation
      : undefined;
    const generationOf = generation === undefined ? {} : { generation };

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
      run: () => unlessSuperseded(host.mustFinish.detachDisk({ instanceUuid: input.instanceUuid, volumeId: input.volumeId, ...generationOf })),
    });
    await saga.step('attachDisk', ATTACH_STEPS.attachDisk, () =>
      host.forward.attachDisk({ instanceUuid: input.instanceUuid, bdmUuid, volumeId: input.volumeId, ...generationOf }),
    );
    await saga.step('completeAttachment', ATTACH_STEPS.completeAttachment, async () => {
      await control.completeAttachment({ attachmentId });
      await control.markBdmAttached({ bdmUuid });
    });

    return await saga.succeed('attached', { ...reserved, hostAttached: true });
  } catch (err) {
    return saga.fail(err, {
      action: `Attaching volume ${input.volumeId} to instance ${input.instanceUuid}`,
      defaultType: 'AttachFailed',
      rolledBack: 'everything was rolled back',
    });
  }
}
