/**
 * Server actions that move volumes with them: shelve, shelve-offload, unshelve, delete.
 * Each takes the instance's task_state first (so attaches and detaches are refused meanwhile, as in
 * Nova) and gives it back at the end, also on failure. Contracts: src/domain/contracts/server-actions.ts.
 */
import { ApplicationFailure } from '@temporalio/workflow';
import type { VmState } from '../src/domain/types.ts';
import type {
  DeleteServerResult,
  MigrateInput,
  MigrateResult,
  ServerActionInput,
  ShelveInput,
  UnshelveInput,
  UnshelveResult,
} from '../src/domain/contracts/server-actions.ts';
import { control, controlMustFinish, domainActivities, hostActivities, ordering } from './activity-options.ts';

/** Runs `body` inside the instance task; on failure the instance returns to `onFailure` state. */
export async function withInstanceTask<T>(
  input: ServerActionInput,
  task: string,
  allowed: VmState[] | 'any',
  onFailure: VmState | null,
  body: () => Promise<T>,
): Promise<T> {
  await control.beginInstanceTask({ instanceUuid: input.instanceUuid, task, allowedVmStates: allowed });
  try {
    return await body();
  } catch (err) {
    if (onFailure) await controlMustFinish.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: onFailure });
    throw err;
  }
}

export async function shelveServer(input: ShelveInput): Promise<void> {
  await withInstanceTask(input, 'shelving', ['active', 'paused', 'stopped'], input.vmState, async () => {
    if (input.host) await domainActivities(input.host).forward.stopDomain({ instanceUuid: input.instanceUuid });
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: 'shelved' });
  });
}

export async function shelveOffloadServer(input: ServerActionInput): Promise<void> {
  await withInstanceTask(input, 'shelving_offloading', ['shelved'], 'shelved', async () => {
    // The host's connections go: each volume stays reserved for the instance, its BDM keeps its device name.
    for (const v of await control.volumeBdmsOf({ instanceUuid: input.instanceUuid })) {
      await control.reReserveAttachment({ bdmUuid: v.bdmUuid, volumeId: v.volumeId, instanceUuid: input.instanceUuid, attachmentId: v.attachmentId });
    }
    if (input.host) await domainActivities(input.host).forward.destroyDomain({ instanceUuid: input.instanceUuid });
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: 'shelved_offloaded', host: null });
  });
}

/** Starts the domain again (defining it on `host` if it was offloaded) and connects every volume. */
export async function unshelveServer(input: UnshelveInput): Promise<UnshelveResult> {
  return withInstanceTask(input, 'unshelving', ['shelved', 'shelved_offloaded'], null, async () => {
    await control.setInstanceHost({ instanceUuid: input.instanceUuid, host: input.host });
    await domainActivities(input.host).forward.spawnDomain({ instanceUuid: input.instanceUuid, domainName: `tether-${input.instanceUuid.slice(0, 8)}` });
    const host = hostActivities(input.instanceUuid);
    const devices: Record<string, string> = {};
    const volumes = await control.volumeBdmsOf({ instanceUuid: input.instanceUuid });
    const connector = volumes.length > 0 ? await host.forward.getHostConnector() : null;
    for (const v of volumes) {
      const { deviceName } = await host.forward.assignDeviceName({ instanceUuid: input.instanceUuid, bdmUuid: v.bdmUuid });
      const attachmentId =
        v.attachmentId ??
        (await control.reserveVolume({ bdmUuid: v.bdmUuid, volumeId: v.volumeId, instanceUuid: input.instanceUuid })).attachmentId;
      await control.initializeConnection({ bdmUuid: v.bdmUuid, attachmentId, volumeId: v.volumeId, connector: connector!, device: deviceName });
      await host.forward.attachDisk({ instanceUuid: input.instanceUuid, bdmUuid: v.bdmUuid, volumeId: v.volumeId });
      await control.completeAttachment({ attachmentId });
      await control.markBdmAttached({ bdmUuid: v.bdmUuid });
      devices[v.volumeId] = deviceName;
    }
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: 'active' });
    return { devices };
  });
}

/**
 * Deletes the server: waits for attaches/detaches in flight, destroys the domain (its disks go with
 * it), deletes every attachment and BDM, deletes the volumes marked delete_on_termination.
 */
export async function deleteServer(input: ServerActionInput): Promise<DeleteServerResult> {
  return withInstanceTask(input, 'deleting', 'any', null, async () => {
    await ordering.awaitInstanceOperations({ instanceUuid: input.instanceUuid });
    if (input.host) await domainActivities(input.host).forward.destroyDomain({ instanceUuid: input.instanceUuid });
    const deletedVolumes: string[] = [];
    for (const v of await control.volumeBdmsOf({ instanceUuid: input.instanceUuid })) {
      await controlMustFinish.deleteAttachment({ volumeId: v.volumeId, instanceUuid: input.instanceUuid, attachmentId: v.attachmentId });
      await controlMustFinish.destroyBdm({ bdmUuid: v.bdmUuid });
      if (v.deleteOnTermination && (await controlMustFinish.deleteVolume({ volumeId: v.volumeId })).deleted) deletedVolumes.push(v.volumeId);
    }
    await controlMustFinish.markInstanceDeleted({ instanceUuid: input.instanceUuid });
    return { deletedVolumes };
  });
}

/**
 * Moves the instance to another compute host (a cold move: the domain's persistent XML, with every
 * attached disk, is defined on the target). Attaches and detaches in flight finish first; new ones
 * are refused while the task runs. Its queue `instance-<uuid>` follows it: the target's agent
 * serves it once the database says the instance lives there.
 */
export async function migrateServer(input: MigrateInput): Promise<MigrateResult> {
  const source = input.host;
  if (!source) throw ApplicationFailure.nonRetryable(`Instance ${input.instanceUuid} has no host to move from`, 'InstanceInvalidState');
  return withInstanceTask(input, 'migrating', ['active', 'paused', 'stopped'], input.vmState, async () => {
    await ordering.awaitInstanceOperations({ instanceUuid: input.instanceUuid });
    if (input.targetHost === source) return { host: source };
    const { xml } = await domainActivities(source).forward.exportDomain({ instanceUuid: input.instanceUuid });
    if (!xml) throw ApplicationFailure.nonRetryable(`Domain of instance ${input.instanceUuid} is not defined on ${source}`, 'SpawnFailed');
    const start = input.vmState === 'active' || input.vmState === 'paused';
    await domainActivities(source).forward.destroyDomain({ instanceUuid: input.instanceUuid });
    try {
      await control.setInstanceHost({ instanceUuid: input.instanceUuid, host: input.targetHost });
      await domainActivities(input.targetHost).forward.importDomain({ instanceUuid: input.instanceUuid, xml, start });
    } catch (err) {
      // The target could not take it: the domain goes back where it was.
      await controlMustFinish.setInstanceHost({ instanceUuid: input.instanceUuid, host: source });
      await domainActivities(source).mustFinish.importDomain({ instanceUuid: input.instanceUuid, xml, start });
      throw err;
    }
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: input.vmState });
    return { host: input.targetHost };
  });
}
