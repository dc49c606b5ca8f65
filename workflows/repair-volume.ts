/**
 * The repair sagas: what `tether repair` and the reconciler start for the checker's findings.
 *
 * repairVolumePair (one (server, volume) pair, workflow id repair-<instance>-<volume>):
 *
 *   wait until no attach/detach/extend of the pair runs → take the pair's generation as it is
 *   (looked at again until no operation of the pair started meanwhile) → read the BDM, volume and
 *   attachment (control) and the domain's disk (on the instance's queue, in line with its host
 *   steps) → plan (src/domain/repair-plan.ts) → each action as a step
 *
 * In order with attaches and detaches: the repair starts only once none of the pair runs, and every
 * step that changes a store carries the generation it saw — an attach, detach or force detach of the
 * pair started later takes a newer one, the repair's next step is refused (OperationSuperseded) and
 * the repair ends `superseded` without undoing anything under the newer operation. The plan is made
 * from what the stores say once the repair owns the pair, so a repeated repair finds nothing to do.
 * Where a repair changes more than one store, compensations are registered before the step (a
 * recreated BDM retired again, an attachment the repair made deleted); otherwise any failure rolls
 * back what this repair did and the finding stays for the next run.
 *
 * repairVolumeStatus, repairQemuOrphans, repairLeakedSecret: one step each (see their comments).
 * The contract is in src/domain/contracts/repair.ts.
 */
import { setHandler, uuid4, workflowInfo } from '@temporalio/workflow';
import {
  REPAIR_STEPS,
  repairProgressQuery,
  type RepairLeakedSecretInput,
  type RepairPairInput,
  type RepairQemuOrphansInput,
  type RepairResult,
  type RepairVolumeStatusInput,
} from '../src/domain/contracts/repair.ts';
import { describeRepairAction, planPairRepair, type PairSnapshot, type RepairAction, type RepairPlan } from '../src/domain/repair-plan.ts';
import { control, controlLocal, controlMustFinish, hostActivities, hostRepairActivities, repairWaiting } from './activity-options.ts';
import { VolumeOperation } from './volume-operation.ts';
import { rootApplicationFailure } from './saga.ts';

const OPERATION_SUPERSEDED = 'OperationSuperseded';

function superseded(err: unknown): boolean {
  return rootApplicationFailure(err)?.type === OPERATION_SUPERSEDED;
}

export async function repairVolumePair(input: RepairPairInput): Promise<RepairResult> {
  const op = new VolumeOperation('repairing');
  let plan: RepairPlan | null = null;
  setHandler(repairProgressQuery, () => ({ ...op.progress(), plan }));
  op.begin();
  const info = workflowInfo();
  const pair = { instanceUuid: input.instanceUuid, volumeId: input.volumeId };
  const done: string[] = [];

  try {
    // In line with the pair's operations: none runs when the generation is taken, and any later one
    // takes a newer generation (which refuses this repair's steps).
    let generation = 0;
    for (;;) {
      await op.step('awaitPairOperations', REPAIR_STEPS.awaitPairOperations, () => repairWaiting.awaitPairOperations(pair));
      ({ generation } = await op.step('observeGeneration', REPAIR_STEPS.observeGeneration, () => controlLocal.observeGeneration(pair)));
      const { running } = await controlLocal.pairOperationsRunning(pair);
      if (running.length === 0) break;
    }
    const g = { ...pair, generation };

    const stores = await op.step('readPairStores', REPAIR_STEPS.readPairStores, () => controlLocal.readPairStores(pair));
    const askHost = stores.instance.state === 'live' && stores.instance.host !== null && stores.instance.vmState !== 'shelved_offloaded' && stores.instance.taskState === null;
    const host = hostActivities(input.instanceUuid);
    const disk: PairSnapshot['disk'] = askHost ? await op.step('inspectPairDisk', REPAIR_STEPS.inspectPairDisk, () => host.forward.inspectPairDisk(pair)) : null;
    plan = planPairRepair({ ...stores, disk }, uuid4());
    const device = (a: RepairAction & { bdmUuid: string }) =>
      plan!.actions.find((x): x is Extract<RepairAction, { kind: 'recreateBdm' }> => x.kind === 'recreateBdm' && x.bdmUuid === a.bdmUuid)?.device ?? stores.bdm?.deviceName ?? null;

    for (const a of plan.actions) {
      const description = describeRepairAction(a);
      switch (a.kind) {
        case 'recreateBdm':
          op.addCompensation({ step: 'retireRecreatedBdm', description: `retire the BDM this repair recreated (${a.bdmUuid})`, run: () => controlMustFinish.retireRecreatedBdm({ bdmUuid: a.bdmUuid }) });
          await op.step('recreateBdm', description, () => control.recreateBdm({ ...g, bdmUuid: a.bdmUuid, device: a.device, attachmentId: a.attachmentId, operationId: info.workflowId }));
          break;
        case 'refreshConnection': {
          const keep = stores.attachment?.id ?? null;
          op.addCompensation({
            step: 'deleteNewAttachment',
            description: 'delete the attachment this repair made (the one there before is kept)',
            run: () => controlMustFinish.deleteAttachmentUnless({ ...pair, keep }),
          });
          await op.step('refreshConnection', description, async () => {
            const { attachmentId } = await control.ensureAttachment(g);
            const connector = await host.forward.getHostConnector();
            await control.connectAttachment({ ...g, bdmUuid: a.bdmUuid, attachmentId, connector, device: device(a) });
            await control.completeRepairAttachment({ ...g, bdmUuid: a.bdmUuid, attachmentId });
          });
          break;
        }
        case 'reserveAttachment': {
          const keep = stores.attachment?.id ?? null;
          op.addCompensation({
            step: 'deleteNewAttachment',
            description: 'delete the attachment this repair made (the one there before is kept)',
            run: () => controlMustFinish.deleteAttachmentUnless({ ...pair, keep }),
          });
          await op.step('reserveAttachment', description, () => control.reserveRepairAttachment({ ...g, bdmUuid: a.bdmUuid }));
          break;
        }
        case 'setDeviceName':
          await op.step('setDeviceName', description, () => control.setRepairDeviceName({ ...g, bdmUuid: a.bdmUuid, device: a.device }));
          break;
        case 'restoreDisk':
          await op.step('restoreDisk', description, () => host.forward.attachDisk({ ...g, bdmUuid: a.bdmUuid }));
          break;
        case 'removeDisk':
          await op.step('removeDisk', description, () => host.forward.detachDisk(g));
          break;
        case 'defineSecrets':
          await op.step('defineSecrets', description, () => host.forward.defineDiskSecrets({ ...g, bdmUuid: a.bdmUuid }));
          break;
        case 'deleteAttachment':
          await op.step('deleteAttachment', description, () => control.deleteRepairAttachment({ ...g, attachmentId: a.attachmentId }));
          break;
        case 'retireBdm':
          await op.step('retireBdm', description, () => control.retireBdm({ ...g, bdmUuid: a.bdmUuid }));
          break;
        case 'syncVolumeStatus':
          await op.step('syncVolumeStatus', description, () => control.syncVolumeStatus({ volumeId: input.volumeId }));
          break;
      }
      done.push(description);
    }
    const outcome = plan.actions.length > 0 ? 'repaired' : plan.notes.length > 0 ? 'skipped' : 'nothing-to-do';
    return await op.succeed('repaired', { outcome, actions: done, notes: plan.notes });
  } catch (err) {
    if (superseded(err)) {
      // A newer operation owns the pair: nothing of this repair is undone under it.
      return op.succeed('repaired', { outcome: 'superseded', actions: done, notes: [...(plan?.notes ?? []), 'a newer operation of the pair took over'] });
    }
    return op.fail(err, {
      action: `Repairing volume ${input.volumeId} on instance ${input.instanceUuid}`,
      defaultType: 'RepairFailed',
      rolledBack: 'what this repair changed was undone',
    });
  }
}

/** A volume's status made to agree with its attachments (stuck-volume, volume-status-mismatch); skipped while an operation of the volume runs. */
export async function repairVolumeStatus(input: RepairVolumeStatusInput): Promise<RepairResult> {
  const op = new VolumeOperation('repairing');
  setHandler(repairProgressQuery, () => ({ ...op.progress(), plan: null }));
  op.begin();
  try {
    const r = await op.step('syncVolumeStatus', REPAIR_STEPS.syncVolumeStatus, () => control.syncVolumeStatus({ volumeId: input.volumeId }));
    const result: RepairResult = r === null ? { outcome: 'nothing-to-do', actions: [], notes: [] }
      : 'skipped' in r ? { outcome: 'skipped', actions: [], notes: [r.skipped] }
      : { outcome: 'repaired', actions: [`set the volume's status from '${r.from}' to '${r.to}', as its attachments say`], notes: [] };
    return await op.succeed('repaired', result);
  } catch (err) {
    return op.fail(err, { action: `Repairing the status of volume ${input.volumeId}`, defaultType: 'RepairFailed', rolledBack: 'nothing was changed' });
  }
}

/** Disks QEMU holds behind libvirt's back, removed on the instance's queue (in line with its attaches and detaches). */
export async function repairQemuOrphans(input: RepairQemuOrphansInput): Promise<RepairResult> {
  const op = new VolumeOperation('repairing');
  setHandler(repairProgressQuery, () => ({ ...op.progress(), plan: null }));
  op.begin();
  try {
    const { removed } = await op.step('removeQemuOrphanDisks', REPAIR_STEPS.removeQemuOrphanDisks, () =>
      hostActivities(input.instanceUuid).forward.removeQemuOrphanDisks({ instanceUuid: input.instanceUuid }));
    return await op.succeed('repaired', {
      outcome: removed.length > 0 ? 'repaired' : 'nothing-to-do',
      actions: removed.map((id) => `removed QEMU's orphan disk device ${id}`),
      notes: [],
    });
  } catch (err) {
    return op.fail(err, { action: `Removing QEMU's orphan disks of instance ${input.instanceUuid}`, defaultType: 'RepairFailed', rolledBack: 'nothing was changed' });
  }
}

/** A libvirt secret of a volume no BDM on the host holds, removed on the host's queue (checked again there). */
export async function repairLeakedSecret(input: RepairLeakedSecretInput): Promise<RepairResult> {
  const op = new VolumeOperation('repairing');
  setHandler(repairProgressQuery, () => ({ ...op.progress(), plan: null }));
  op.begin();
  try {
    const r = await op.step('removeLeakedSecrets', REPAIR_STEPS.removeLeakedSecrets, () => hostRepairActivities(input.host).removeLeakedSecrets({ volumeId: input.volumeId }));
    return await op.succeed('repaired', r.removed
      ? { outcome: 'repaired', actions: [`removed the libvirt secrets of volume ${input.volumeId} on host ${input.host}`], notes: [] }
      : { outcome: 'skipped', actions: [], notes: [`instance ${r.heldBy} on host ${input.host} holds volume ${input.volumeId} now`] });
  } catch (err) {
    return op.fail(err, { action: `Removing the leaked secrets of volume ${input.volumeId} on host ${input.host}`, defaultType: 'RepairFailed', rolledBack: 'nothing was changed' });
  }
}
