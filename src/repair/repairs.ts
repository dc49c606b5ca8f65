export { selectRepairs, describeTarget, repairWorkflowId, type RepairTarget, type RepairSelection } from './selection.ts';
/**
 * Starting repair sagas for the targets src/repair/selection.ts chose from the checker's findings, on the control task queue
 * (joining a repair of the same thing that runs already), and the dry run: the plan each pair's
 * repair would follow, read from the stores now, changing nothing.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Queryable } from '../db/database.ts';
import type { BlockStorage } from '../blockstorage/block-storage.ts';
import { REPAIR_WORKFLOWS, type RepairResult } from '../domain/contracts/repair.ts';
import { describeRepairAction, planPairRepair, statusFromAttachments, volumeStatusRepair } from '../domain/repair-plan.ts';
import type { LibvirtConnection } from '../libvirt/binding.ts';
import { InstanceUuid, VolumeId } from '../temporal/search-attributes.ts';
import { describeTarget, repairWorkflowId, type RepairTarget } from './selection.ts';
import { readPairDisk, readPairStores } from './pair-state.ts';
import { TetherError } from '../errors.ts';

/** Starts the target's repair saga, or joins the one of the same thing that runs already. */
export async function startRepair(client: Client, taskQueue: string, t: RepairTarget, reason: string): Promise<WorkflowHandle> {
  const why = `${reason}: ${[...new Set(t.findings.map((f) => f.kind))].join(', ')}`;
  const common = {
    taskQueue,
    workflowId: repairWorkflowId(t),
    workflowIdConflictPolicy: 'USE_EXISTING' as const,
  };
  switch (t.kind) {
    case 'pair':
      return client.workflow.start(REPAIR_WORKFLOWS.pair, {
        ...common,
        args: [{ instanceUuid: t.instanceUuid, volumeId: t.volumeId, reason: why }],
        typedSearchAttributes: [{ key: InstanceUuid, value: t.instanceUuid }, { key: VolumeId, value: t.volumeId }],
      });
    case 'volume-status':
      return client.workflow.start(REPAIR_WORKFLOWS.volumeStatus, { ...common, args: [{ volumeId: t.volumeId, reason: why }], typedSearchAttributes: [{ key: VolumeId, value: t.volumeId }] });
    case 'qemu-orphans':
      return client.workflow.start(REPAIR_WORKFLOWS.qemuOrphans, { ...common, args: [{ instanceUuid: t.instanceUuid, reason: why }], typedSearchAttributes: [{ key: InstanceUuid, value: t.instanceUuid }] });
    case 'leaked-secret':
      return client.workflow.start(REPAIR_WORKFLOWS.leakedSecret, { ...common, args: [{ host: t.host, volumeId: t.volumeId, reason: why }], typedSearchAttributes: [{ key: VolumeId, value: t.volumeId }] });
  }
}

export interface RepairRun {
  target: RepairTarget;
  workflowId: string;
  result?: RepairResult;
  error?: string;
}

/**
 * Starts every target's repair at once (each in line with its own pair's operations) and waits for
 * them; `onDone` is called as each one ends (progress output).
 */
export async function runRepairs(
  deps: { client: Client; taskQueue: string },
  targets: readonly RepairTarget[],
  options: { reason: string; onStart?: (run: RepairRun) => void; onDone?: (run: RepairRun) => void },
): Promise<RepairRun[]> {
  return Promise.all(targets.map(async (target) => {
    const run: RepairRun = { target, workflowId: repairWorkflowId(target) };
    try {
      const handle = await startRepair(deps.client, deps.taskQueue, target, options.reason);
      options.onStart?.(run);
      run.result = (await handle.result()) as RepairResult;
    } catch (err) {
      run.error = failureText(err);
    }
    options.onDone?.(run);
    return run;
  }));
}

function failureText(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  // WorkflowFailedError → ApplicationFailure with the saga's final message
  while (e && typeof e === 'object' && e.cause && typeof e.cause === 'object') e = e.cause as typeof e;
  return e?.message ?? String(err);
}

/**
 * The dry run: what each target's repair would do if it started now, read from the stores (the
 * domain through `libvirt`, the CLI's own connection), nothing changed.
 */
export async function planRepairs(
  deps: { db: Queryable; blockStorage: BlockStorage; libvirt: Pick<LibvirtConnection, 'lookupDomain' | 'getXml' | 'listSecrets'> },
  targets: readonly RepairTarget[],
): Promise<Array<{ target: RepairTarget; actions: string[]; notes: string[] }>> {
  const out: Array<{ target: RepairTarget; actions: string[]; notes: string[] }> = [];
  for (const t of targets) {
    switch (t.kind) {
      case 'pair': {
        const stores = await readPairStores(deps, t.instanceUuid, t.volumeId);
        const askHost = stores.instance.state === 'live' && stores.instance.host !== null && stores.instance.vmState !== 'shelved_offloaded' && stores.instance.taskState === null;
        const disk = askHost ? await readPairDisk(deps.libvirt, t.instanceUuid, t.volumeId) : null;
        const plan = planPairRepair({ ...stores, disk }, '(new uuid)');
        out.push({ target: t, actions: plan.actions.map(describeRepairAction), notes: plan.notes });
        break;
      }
      case 'volume-status': {
        try {
          const v = await deps.blockStorage.getVolume(t.volumeId);
          const statuses = v.attachments.map((a) => a.status);
          const to = volumeStatusRepair({ status: v.status, attachmentStatuses: statuses });
          out.push({ target: t, actions: to ? [`set the volume's status from '${v.status}' to '${to}', as its attachments say (${statuses.join(', ') || 'none'})`] : [], notes: to ? [] : [`the status '${v.status}' agrees with the attachments (${statusFromAttachments(statuses)})`] });
        } catch (err) {
          if (!(err instanceof TetherError && err.type === 'VolumeNotFound')) throw err;
          out.push({ target: t, actions: [], notes: ['the volume is gone'] });
        }
        break;
      }
      case 'qemu-orphans':
        out.push({ target: t, actions: t.findings.map((f) => `remove ${f.detail.replace(/^QEMU holds /, "QEMU's ")}`), notes: [] });
        break;
      case 'leaked-secret':
        out.push({ target: t, actions: [`remove the libvirt secrets of volume ${t.volumeId} on host ${t.host} (unless an instance there holds the volume by then)`], notes: [] });
        break;
    }
  }
  return out;
}
