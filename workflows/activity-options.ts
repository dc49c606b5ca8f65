/**
 * Timeouts and retry policies by kind of step, shared by the sagas (one proxy per group, as in
 * Temporal's samples). Forward steps give up eventually so that the saga can roll back; compensations
 * and the steps after the point of no return retry until they succeed.
 */
import { proxyActivities, proxyLocalActivities, type ActivityOptions, type LocalActivityOptions } from '@temporalio/workflow';
import type { DatabaseActivities } from '../activities/database.ts';
import type { VolumeServiceActivities } from '../activities/volume-service.ts';
import type { HostActivities } from '../activities/host.ts';
import type { OperationActivities } from '../activities/operations.ts';
import { instanceTaskQueue } from '../src/domain/task-queues.ts';

type ControlActivities = DatabaseActivities & VolumeServiceActivities & OperationActivities;

/** Control-plane steps (database, block storage): quick, retried with backoff on infrastructure errors. */
const controlForward = {
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 10 },
} as const satisfies ActivityOptions;

/** Compensations and must-finish steps: retried until they succeed. */
const controlMustFinish = {
  startToCloseTimeout: '30s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '60s' },
} as const satisfies ActivityOptions;

/** Waiting for an earlier operation on the same pair: long, heartbeating. */
const waiting = {
  startToCloseTimeout: '1h',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '30s' },
} as const satisfies ActivityOptions;

export const control = proxyActivities<ControlActivities>(controlForward);
export const controlMustFinishActivities = proxyActivities<ControlActivities>(controlMustFinish);

/**
 * The same control-plane steps as local activities of the control worker: they run inside the
 * workflow task that asks for them, with the same timeouts and retry policies, and each result is
 * recorded in history (a MarkerRecorded event) when that task completes. A worker that dies
 * mid-step makes the workflow task time out and the step run again, as a regular activity would be
 * retried; every one of these steps is idempotent (by BDM uuid, attachment id or state check).
 * Only quick database/block-storage steps (and the first look for an earlier operation): waiting,
 * compensations and host steps stay activities.
 */
export const controlLocal = proxyLocalActivities<ControlActivities>(controlForward satisfies LocalActivityOptions);
export const controlMustFinishLocal = proxyLocalActivities<ControlActivities>(controlMustFinish satisfies LocalActivityOptions);

export const ordering = proxyActivities<OperationActivities>(waiting);
const orderingLocal = proxyLocalActivities<OperationActivities>(controlForward);

type EarlierOperation = { counterpartWorkflowId: string; startedAt: string };

/**
 * Waiting for an earlier operation on the same pair, local-activities style: one quick look first (a
 * local activity); the long, heartbeating wait is scheduled only when there is something to wait for.
 */
async function awaitEarlierOperationLookingFirst(input: EarlierOperation): Promise<{ waitedMs: number }> {
  if (!(await orderingLocal.isEarlierOperationRunning(input))) return { waitedMs: 0 };
  return ordering.awaitEarlierOperation(input);
}

/** Runs started before the control steps became local activities replay with regular activities. */
export function controlSteps(local: boolean) {
  return local
    ? { control: controlLocal, mustFinish: controlMustFinishLocal, awaitEarlierOperation: awaitEarlierOperationLookingFirst }
    : { control, mustFinish: controlMustFinishActivities, awaitEarlierOperation: ordering.awaitEarlierOperation };
}

/** Host steps on the instance's own queue. */
export function hostActivities(instanceUuid: string) {
  const taskQueue = instanceTaskQueue(instanceUuid);
  return {
    // Forward host steps give up if no compute agent serves the instance for 5 minutes, then roll back.
    forward: proxyActivities<HostActivities>({
      taskQueue,
      scheduleToCloseTimeout: '5m',
      startToCloseTimeout: '2m',
      heartbeatTimeout: '30s',
      retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 4 },
    }),
    // Compensations wait for the host for as long as it takes: a disk must not be left behind.
    mustFinish: proxyActivities<HostActivities>({
      taskQueue,
      startToCloseTimeout: '2m',
      heartbeatTimeout: '30s',
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s' },
    }),
  };
}
