/**
 * How every workflow step is run, in one table: where it runs (control plane; the instance's host
 * on `instance-<uuid>`; a host's domains on `host-<name>`) × whether it may give up. Forward steps
 * give up eventually so that the saga can roll back; compensations and the steps after the point of
 * no return (must-finish) retry until they succeed. No workflow sets timeouts or retries of its own:
 * a new saga takes its proxies from here.
 */
import { proxyActivities, proxyLocalActivities, type ActivityOptions, type LocalActivityOptions } from '@temporalio/workflow';
import type { DatabaseActivities } from '../activities/database.ts';
import type { VolumeServiceActivities } from '../activities/volume-service.ts';
import type { DomainActivities, HostActivities } from '../activities/host.ts';
import type { OperationActivities } from '../activities/operations.ts';
import type { RepairActivities } from '../activities/repair.ts';
import type { ReconcileActivities } from '../activities/reconcile.ts';
import type { RepairHostActivities } from '../activities/host.ts';
import type { VolumeSwapActivities } from '../activities/volume-swap.ts';
import type { ServerImportActivities } from '../activities/server-import.ts';
import { hostTaskQueue, instanceTaskQueue } from '../src/domain/task-queues.ts';

type ControlActivities = DatabaseActivities & VolumeServiceActivities & OperationActivities & RepairActivities & ReconcileActivities & VolumeSwapActivities & ServerImportActivities;

/** The step kinds (task queues are added per instance or host). */
export const STEP_KINDS = {
  control: {
    /** Database and block storage: quick, retried with backoff on infrastructure errors. */
    forward: {
      startToCloseTimeout: '30s',
      retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 10 },
    },
    mustFinish: {
      startToCloseTimeout: '30s',
      retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '60s' },
    },
    /** Waiting for an earlier operation: long, heartbeating. */
    waiting: {
      startToCloseTimeout: '1h',
      heartbeatTimeout: '30s',
      retry: { initialInterval: '1s', maximumInterval: '30s' },
    },
  },
  host: {
    /** Gives up if no compute agent serves the instance for 5 minutes, then the saga rolls back. */
    forward: {
      scheduleToCloseTimeout: '5m',
      startToCloseTimeout: '2m',
      heartbeatTimeout: '30s',
      retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 4 },
    },
    /** Waits for the host for as long as it takes: a disk must not be left behind. */
    mustFinish: {
      startToCloseTimeout: '2m',
      heartbeatTimeout: '30s',
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s' },
    },
  },
  domain: {
    /** Define, start, stop, move a domain: gives up if the host's agent does not answer for 5 minutes. */
    forward: {
      scheduleToCloseTimeout: '5m',
      startToCloseTimeout: '60s',
      retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 5 },
    },
    /** Putting a domain back where it was. */
    mustFinish: {
      startToCloseTimeout: '60s',
      retry: { initialInterval: '1s', maximumInterval: '60s' },
    },
  },
} as const satisfies Record<string, Record<string, ActivityOptions>>;

export const control = proxyActivities<ControlActivities>(STEP_KINDS.control.forward);
export const controlMustFinish = proxyActivities<ControlActivities>(STEP_KINDS.control.mustFinish);

/**
 * The same control-plane steps as local activities of the control worker: they run inside the
 * workflow task that asks for them, with the same timeouts and retry policies, and each result is
 * recorded in history (a MarkerRecorded event) when that task completes. A worker that dies
 * mid-step makes the workflow task time out and the step run again, as a regular activity would be
 * retried; every one of these steps is idempotent (by BDM uuid, attachment id or state check).
 * Only quick database/block-storage steps (and the first look for an earlier operation): waiting,
 * compensations and host steps stay activities.
 */
export const controlLocal = proxyLocalActivities<ControlActivities>(STEP_KINDS.control.forward satisfies LocalActivityOptions);
export const controlMustFinishLocal = proxyLocalActivities<ControlActivities>(STEP_KINDS.control.mustFinish satisfies LocalActivityOptions);

export const ordering = proxyActivities<OperationActivities>(STEP_KINDS.control.waiting);
const orderingLocal = proxyLocalActivities<OperationActivities>(STEP_KINDS.control.forward);

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
    : { control, mustFinish: controlMustFinish, awaitEarlierOperation: ordering.awaitEarlierOperation };
}

/** Volume steps on the instance's own queue (device names, disks), served by the agent hosting it. */
export function hostActivities(instanceUuid: string) {
  const taskQueue = instanceTaskQueue(instanceUuid);
  return {
    forward: proxyActivities<HostActivities>({ taskQueue, ...STEP_KINDS.host.forward }),
    mustFinish: proxyActivities<HostActivities>({ taskQueue, ...STEP_KINDS.host.mustFinish }),
  };
}

/**
 * A host step that may wait for the host only so long (a force detach asks a host that may be gone):
 * given up after `seconds`, however far it got.
 */
export function hostActivitiesWithin(instanceUuid: string, seconds: number) {
  const timeout = `${Math.max(1, Math.round(seconds))}s` as const;
  return proxyActivities<HostActivities>({
    taskQueue: instanceTaskQueue(instanceUuid),
    scheduleToCloseTimeout: timeout,
    startToCloseTimeout: timeout,
    heartbeatTimeout: STEP_KINDS.host.forward.heartbeatTimeout,
    retry: STEP_KINDS.host.forward.retry,
  });
}

/** Domain steps on a host's queue (define, start, stop, export, import, destroy). */
export function domainActivities(host: string) {
  const taskQueue = hostTaskQueue(host);
  return {
    forward: proxyActivities<DomainActivities>({ taskQueue, ...STEP_KINDS.domain.forward }),
    mustFinish: proxyActivities<DomainActivities>({ taskQueue, ...STEP_KINDS.domain.mustFinish }),
  };
}

/** Repair steps on a host's own queue (a leaked secret removed), waiting for the host as host steps do. */
export function hostRepairActivities(host: string) {
  return proxyActivities<RepairHostActivities>({ taskQueue: hostTaskQueue(host), ...STEP_KINDS.host.forward });
}

/** A repair waiting for the pair's operations to end: long, heartbeating. */
export const repairWaiting = proxyActivities<RepairActivities>(STEP_KINDS.control.waiting);
