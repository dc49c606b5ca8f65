/**
 * The reconciler's Temporal Schedule: created by the control plane at start, idempotently — an
 * existing schedule of the same id gets the current interval and settings, a period of 0 removes it.
 * A run still going when the next is due is not overlapped (SKIP).
 */
import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy, type Client, type ScheduleOptionsAction } from '@temporalio/client';
import { RECONCILE_WORKFLOW, reconcileScheduleId } from '../domain/contracts/reconcile.ts';
import type { ReconcileConfig } from './reconcile-config.ts';

export async function ensureReconcileSchedule(
  client: Client,
  o: { controlTaskQueue: string; config: ReconcileConfig },
): Promise<{ scheduleId: string; state: 'created' | 'updated' | 'removed' | 'off' }> {
  const scheduleId = reconcileScheduleId(o.controlTaskQueue);
  const { intervalSeconds, ...input } = o.config;
  if (intervalSeconds === 0) {
    try {
      await client.schedule.getHandle(scheduleId).delete();
      return { scheduleId, state: 'removed' };
    } catch (err) {
      if (err instanceof ScheduleNotFoundError) return { scheduleId, state: 'off' };
      throw err;
    }
  }
  const spec = { intervals: [{ every: `${intervalSeconds}s` as const }] };
  const action: ScheduleOptionsAction = {
    type: 'startWorkflow',
    workflowType: RECONCILE_WORKFLOW,
    workflowId: `reconcile-${o.controlTaskQueue}`,
    taskQueue: o.controlTaskQueue,
    args: [input],
  };
  try {
    await client.schedule.create({ scheduleId, spec, action, policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: `${Math.max(60, intervalSeconds)}s` } });
    return { scheduleId, state: 'created' };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await client.schedule.getHandle(scheduleId).update((previous) => ({
    ...previous,
    spec,
    action: { ...previous.action, type: 'startWorkflow', workflowType: RECONCILE_WORKFLOW, taskQueue: o.controlTaskQueue, args: [input] },
    policies: { ...previous.policies, overlap: ScheduleOverlapPolicy.SKIP },
  }));
  return { scheduleId, state: 'updated' };
}
