/**
 * Server actions that move volumes with them: shelve, shelve-offload, unshelve, delete.
 * Each takes the instance's task_state first (so attaches and detaches are refused meanwhile, as in
 * Nova) and gives it back at the end, also on failure.
 */
import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { DomainActivities } from '../activities/host.ts';
import type { VmState } from '../src/domain/types.ts';
import { hostTaskQueue } from '../src/domain/task-queues.ts';
import { control, controlMustFinishActivities, hostActivities, ordering } from './activity-options.ts';

export interface ServerActionInput {
  instanceUuid: string;
  /** The compute host the instance is on (or goes to, for unshelve). */
  host: string | null;
}

function domains(host: string) {
  return proxyActivities<DomainActivities>({
    taskQueue: hostTaskQueue(host),
    scheduleToCloseTimeout: '5m',
    startToCloseTimeout: '60s',
    retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 5 },
  });
}

function domainsMustFinish(host: string) {
  return proxyActivities<DomainActivities>({
    taskQueue: hostTaskQueue(host),
    startToCloseTimeout: '60s',
    retry: { initialInterval: '1s', maximumInterval: '60s' },
  });
}

/** Runs `body` inside the instance task; on failure the instance returns to `onFailure` state. */
async function withInstanceTask<T>(
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
    if (onFailure) await controlMustFinishActivities.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: onFailure });
    throw err;
  }
}

export async function shelveServer(input: ServerActionInput & { vmState: VmState }): Promise<void> {
  await withInstanceTask(input, 'shelving', ['active', 'paused', 'stopped'], input.vmState, async () => {
    if (input.host) await domains(input.host).stopDomain({ instanceUuid: input.instanceUuid });
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: 'shelved' });
  });
}

export async function shelveOffloadServer(input: ServerActionInput): Promise<void> {
  await withInstanceTask(input, 'shelving_offloading', ['shelved'], 'shelved', async () => {
    // The host's connections go: each volume stays reserved for the instance, its BDM keeps its device name.
    for (const v of await control.volumeBdmsOf({ instanceUuid: input.instanceUuid })) {
      await control.reReserveAttachment({ bdmUuid: v.bdmUuid, volumeId: v.volumeId, instanceUuid: input.instanceUuid, attachmentId: v.attachmentId });
    }
    if (input.host) await domains(input.host).destroyDomain({ instanceUuid: input.instanceUuid });
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: 'shelved_offloaded', host: null });
  });
}

/** Starts the domain again (defining it on `host` if it was offloaded) and connects every volume. */
export async function unshelveServer(input: ServerActionInput & { host: string }): Promise<{ devices: Record<string, string> }> {
  return withInstanceTask(input, 'unshelving', ['shelved', 'shelved_offloaded'], null, async () => {
    await control.setInstanceHost({ instanceUuid: input.instanceUuid, host: input.host });
    await domains(input.host).spawnDomain({ instanceUuid: input.instanceUuid, domainName: `tether-${input.instanceUuid.slice(0, 8)}` });
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
export async function deleteServer(input: ServerActionInput): Promise<{ deletedVolumes: string[] }> {
  return withInstanceTask(input, 'deleting', 'any', null, async () => {
    await ordering.awaitInstanceOperations({ instanceUuid: input.instanceUuid });
    if (input.host) await domains(input.host).destroyDomain({ instanceUuid: input.instanceUuid });
    const deletedVolumes: string[] = [];
    for (const v of await control.volumeBdmsOf({ instanceUuid: input.instanceUuid })) {
      await controlMustFinishActivities.deleteAttachment({ volumeId: v.volumeId, instanceUuid: input.instanceUuid, attachmentId: v.attachmentId });
      await controlMustFinishActivities.destroyBdm({ bdmUuid: v.bdmUuid });
      if (v.deleteOnTermination && (await controlMustFinishActivities.deleteVolume({ volumeId: v.volumeId })).deleted) deletedVolumes.push(v.volumeId);
    }
    await controlMustFinishActivities.markInstanceDeleted({ instanceUuid: input.instanceUuid });
    return { deletedVolumes };
  });
}

/**
 * Moves the instance to another compute host (a cold move: the domain's persistent XML, with every
 * attached disk, is defined on the target). Attaches and detaches in flight finish first; new ones
 * are refused while the task runs. Its queue `instance-<uuid>` follows it: the target's agent
 * serves it once the database says the instance lives there.
 */
export async function migrateServer(input: ServerActionInput & { targetHost: string; vmState: VmState }): Promise<{ host: string }> {
  const source = input.host;
  if (!source) throw ApplicationFailure.nonRetryable(`Instance ${input.instanceUuid} has no host to move from`, 'InstanceInvalidState');
  return withInstanceTask(input, 'migrating', ['active', 'paused', 'stopped'], input.vmState, async () => {
    await ordering.awaitInstanceOperations({ instanceUuid: input.instanceUuid });
    if (input.targetHost === source) return { host: source };
    const { xml } = await domains(source).exportDomain({ instanceUuid: input.instanceUuid });
    if (!xml) throw ApplicationFailure.nonRetryable(`Domain of instance ${input.instanceUuid} is not defined on ${source}`, 'SpawnFailed');
    const start = input.vmState === 'active' || input.vmState === 'paused';
    await domains(source).destroyDomain({ instanceUuid: input.instanceUuid });
    try {
      await control.setInstanceHost({ instanceUuid: input.instanceUuid, host: input.targetHost });
      await domains(input.targetHost).importDomain({ instanceUuid: input.instanceUuid, xml, start });
    } catch (err) {
      // The target could not take it: the domain goes back where it was.
      await controlMustFinishActivities.setInstanceHost({ instanceUuid: input.instanceUuid, host: source });
      await domainsMustFinish(source).importDomain({ instanceUuid: input.instanceUuid, xml, start });
      throw err;
    }
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: input.vmState });
    return { host: input.targetHost };
  });
}
