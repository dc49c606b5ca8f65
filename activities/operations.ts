/**
 * Ordering of operations on one (instance, volume): an attach and a detach of the same pair never run
 * at the same time, and run in the order they were asked in. Each workflow first waits for its
 * counterpart (detach for attach, attach for detach) when that one started earlier and is still running.
 */
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { setTimeout as sleep } from 'node:timers/promises';
import { signalVolumeExtended } from '../src/temporal/volume-extended.ts';

export function createOperationActivities(deps: { client: Client; pollIntervalMs?: number }) {
  const pollIntervalMs = deps.pollIntervalMs ?? 250;
  /** Whether the counterpart workflow runs and started before `startedAt` (then we wait for it). */
  async function earlierRunning(input: { counterpartWorkflowId: string; startedAt: string }): Promise<boolean> {
    try {
      const description = await deps.client.workflow.getHandle(input.counterpartWorkflowId).describe();
      return description.status.name === 'RUNNING' && description.startTime.getTime() < Date.parse(input.startedAt);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  return {
    /** One look, no waiting (a local activity: the common case, nothing to wait for, costs one RPC). */
    async isEarlierOperationRunning(input: { counterpartWorkflowId: string; startedAt: string }): Promise<boolean> {
      return earlierRunning(input);
    },

    /** Returns once the counterpart workflow is closed, or when it started after `startedAt` (it waits for us). */
    async awaitEarlierOperation(input: { counterpartWorkflowId: string; startedAt: string }): Promise<{ waitedMs: number }> {
      const ctx = Context.current();
      const began = Date.now();
      while (await earlierRunning(input)) {
        ctx.heartbeat({ waitingFor: input.counterpartWorkflowId });
        await sleep(pollIntervalMs, undefined, { signal: ctx.cancellationSignal });
      }
      return { waitedMs: Date.now() - began };
    },

    /**
     * A force detach takes over the pair: the attach of the same volume and server still running is
     * terminated (its host steps, if the host comes back, are refused by their older generation).
     * Returns the workflow ids it stopped.
     */
    async terminatePairOperations(input: { workflowIds: string[]; reason: string }): Promise<{ terminated: string[] }> {
      const terminated: string[] = [];
      for (const workflowId of input.workflowIds) {
        const handle = deps.client.workflow.getHandle(workflowId);
        try {
          if ((await handle.describe()).status.name !== 'RUNNING') continue;
          await handle.terminate(input.reason);
          terminated.push(workflowId);
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) continue;
          throw err;
        }
      }
      return { terminated };
    },

    /**
     * The embedded volume service grew a multiattach volume: each other server it is attached to gets
     * a `volume-extended` event (its own ExtendVolume run, on its own queue), as Cinder tells Nova.
     */
    async notifyAttachedInstances(input: { volumeId: string; instances: Array<{ instanceUuid: string; host: string | null }> }): Promise<{ notified: number }> {
      const taskQueue = Context.current().info.taskQueue;
      for (const target of input.instances) await signalVolumeExtended(deps.client, taskQueue, { ...target, volumeId: input.volumeId });
      return { notified: input.instances.length };
    },

    /** Waits until no attach, detach or extend of the instance runs (server delete waits for them). */
    async awaitInstanceOperations(input: { instanceUuid: string }): Promise<{ waitedMs: number }> {
      const ctx = Context.current();
      const began = Date.now();
      const query = `InstanceUuid = '${input.instanceUuid}' AND ExecutionStatus = 'Running' AND WorkflowType IN ('attachVolume', 'detachVolume', 'forceDetachVolume', 'extendVolume', 'swapVolume')`;
      for (;;) {
        const { count } = await deps.client.workflow.count(query);
        if (count === 0) return { waitedMs: Date.now() - began };
        ctx.heartbeat({ running: count });
        await sleep(pollIntervalMs, undefined, { signal: ctx.cancellationSignal });
      }
    },
  };
}

export type OperationActivities = ReturnType<typeof createOperationActivities>;
