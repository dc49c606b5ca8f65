/**
 * BootServer: a server created through the API with volumes (Nova's block_device_mapping_v2, boot
 * from a volume): the service registered the instance (building/spawning) and one BDM per volume
 * (the boot volume on the root device name, boot_index 0). The saga defines and starts the domain,
 * then connects each volume the way an attach does (device name, block-storage attachment,
 * connection, disk, attachment complete) and marks the server active.
 *
 * On a failure everything it did is undone, newest first (each compensation registered before its
 * step): disks detached, attachments deleted, BDMs destroyed, domain destroyed; the server is left in
 * vm_state error (Nova's failed build), to be deleted. Progress: the `progress` query.
 */
import { ApplicationFailure, setHandler } from '@temporalio/workflow';
import type { BootServerInput } from '../src/domain/contracts/server-actions.ts';
import { COMPENSATION_STEPS, type StepProgress } from '../src/domain/steps.ts';
import { control, controlMustFinish, domainActivities, hostActivities } from './activity-options.ts';
import { Saga, StepFailed, failureMessage, rootApplicationFailure } from './saga.ts';
import { bootProgressQuery } from '../src/domain/contracts/server-actions.ts';

export async function bootServer(input: BootServerInput): Promise<{ state: string; devices: Record<string, string> }> {
  const saga = new Saga();
  let state = 'building';
  setHandler(bootProgressQuery, () => ({ state, steps: saga.steps as StepProgress[] }));
  const host = hostActivities(input.instanceUuid);
  const domains = domainActivities(input.host);
  const devices: Record<string, string> = {};
  try {
    const volumes = await saga.step('volumeBdmsOf', 'Read the block device mappings of the new server', () => control.volumeBdmsOf({ instanceUuid: input.instanceUuid }));
    for (const v of volumes) {
      saga.addCompensation({ step: 'destroyBdm', description: COMPENSATION_STEPS.destroyBdm, run: () => controlMustFinish.destroyBdm({ bdmUuid: v.bdmUuid }) });
    }
    saga.addCompensation({ step: 'destroyDomain', description: 'Destroy the domain and undefine it', run: () => domains.mustFinish.destroyDomain({ instanceUuid: input.instanceUuid }) });
    const { state: domainState } = await saga.step('spawnDomain', 'Define and start the domain on its compute host', () =>
      domains.forward.spawnDomain({ instanceUuid: input.instanceUuid, domainName: input.domainName }),
    );
    state = domainState;
    const connector = volumes.length > 0 ? await saga.step('getHostConnector', 'Read the host connector', () => host.forward.getHostConnector()) : null;
    for (const v of volumes) {
      const { deviceName } = await saga.step('assignDeviceName', 'Give the block device mapping its device name', () =>
        host.forward.assignDeviceName({ instanceUuid: input.instanceUuid, bdmUuid: v.bdmUuid }),
      );
      saga.addCompensation({
        step: 'deleteAttachment',
        description: COMPENSATION_STEPS.deleteAttachment,
        run: () => controlMustFinish.deleteAttachment({ volumeId: v.volumeId, instanceUuid: input.instanceUuid }),
      });
      const { attachmentId } = await saga.step('reserveVolume', 'Reserve the volume at the block storage (attachment create)', () =>
        control.reserveVolume({ bdmUuid: v.bdmUuid, volumeId: v.volumeId, instanceUuid: input.instanceUuid }),
      );
      await saga.step('initializeConnection', 'Connect the volume to the host (attachment update)', () =>
        control.initializeConnection({ bdmUuid: v.bdmUuid, attachmentId, volumeId: v.volumeId, connector: connector!, device: deviceName }),
      );
      saga.addCompensation({ step: 'detachDisk', description: COMPENSATION_STEPS.detachDisk, run: () => host.mustFinish.detachDisk({ instanceUuid: input.instanceUuid, volumeId: v.volumeId }) });
      await saga.step('attachDisk', 'Attach the disk to the domain', () => host.forward.attachDisk({ instanceUuid: input.instanceUuid, bdmUuid: v.bdmUuid, volumeId: v.volumeId }));
      await saga.step('completeAttachment', 'Mark the attachment complete (volume in-use)', () => control.completeAttachment({ attachmentId }));
      await saga.step('markBdmAttached', 'Mark the block device mapping attached', () => control.markBdmAttached({ bdmUuid: v.bdmUuid }));
      devices[v.volumeId] = deviceName;
    }
    await saga.step('markInstanceActive', 'Mark the server active', () => controlMustFinish.markInstanceActive({ instanceUuid: input.instanceUuid }));
    return { state, devices };
  } catch (err) {
    const rolledBack = await saga.compensate();
    await controlMustFinish.markInstanceError({ instanceUuid: input.instanceUuid });
    state = 'error';
    const where = err instanceof StepFailed ? ` at step ${err.step}` : '';
    throw ApplicationFailure.nonRetryable(
      `Build of instance ${input.instanceUuid} failed${where}: ${failureMessage(err)} (${rolledBack ? 'rolled back' : 'rollback incomplete'})`,
      rootApplicationFailure(err)?.type ?? 'BuildFailed',
    );
  }
}
